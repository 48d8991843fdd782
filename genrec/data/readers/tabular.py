"""A user's own data: CSV or JSON Lines interactions (+ optional item file) with a column mapping.

Options: ``user_col`` (default "user_id"), ``item_col`` ("item_id"), ``time_col`` (optional:
rows ordered by it, ties by file order; without it, file order), ``items`` (path of the item
file, CSV or JSONL), ``item_id_col``, ``title_col``, ``brand_col``, ``categories_col``,
``categories_sep`` (">"), ``price_col``, ``description_col``. Without an item file, every item
id seen becomes a catalog entry with no text.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from genrec.data.catalog import Catalog, Item
from genrec.data.dataset import SequenceDataset
from genrec.data.readers._common import SequenceBuilder, clean, require_file, split_path
from genrec.errors import DataError


def _rows(path: Path) -> Iterator[tuple[int, dict]]:
    require_file(path, "table file")
    if path.suffix in (".jsonl", ".json", ".ndjson"):
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(path, f"invalid JSON: {e.msg}", line=n) from None
                if not isinstance(row, dict):
                    raise DataError(path, "expected a JSON object per line", line=n)
                yield n, row
        return
    with open(path, encoding="utf-8", newline="") as f:
        sample = f.read(4096)
        f.seek(0)
        delimiter = "\t" if path.suffix == ".tsv" or sample.count("\t") > sample.count(",") else ","
        reader = csv.DictReader(f, delimiter=delimiter)
        for n, row in enumerate(reader, 2):
            yield n, row


def _check_columns(path: Path, n: int, row: dict, needed: list[str]) -> None:
    missing = [c for c in needed if c not in row]
    if missing:
        raise DataError(path, f"missing mapped column(s) {', '.join(map(repr, missing))}; "
                              f"present: {', '.join(map(str, row))}", line=n)


def read_table(path: str | Path, on_unknown_item: str = "error", name: str | None = None, *,
               user_col: str = "user_id", item_col: str = "item_id", time_col: str | None = None,
               items: str | None = None, item_id_col: str | None = None, title_col: str = "title",
               brand_col: str = "brand", categories_col: str = "categories", categories_sep: str = ">",
               price_col: str = "price", description_col: str = "description") -> SequenceDataset:
    path = Path(path)
    if path.is_dir():
        raise DataError(path, "the csv reader takes the interactions file itself (and items=... for item text)")
    needed = [user_col, item_col] + ([time_col] if time_col else [])
    rows = []
    for n, row in _rows(path):
        if not rows:
            _check_columns(path, n, row, needed)
        elif any(row.get(c) is None for c in needed):
            _check_columns(path, n, row, needed)
        t = 0.0
        if time_col:
            try:
                t = float(row[time_col])
            except (TypeError, ValueError):
                raise DataError(path, f"{time_col} value {row[time_col]!r} is not a number", line=n,
                                field=time_col) from None
        rows.append((t, n, str(row[user_col]), str(row[item_col])))
    if not rows:
        raise DataError(path, "no interaction rows")
    if time_col:
        rows.sort(key=lambda r: (r[0], r[1]))
    if items:
        item_path = Path(items)
        id_col = item_id_col or item_col
        catalog_items = []
        for n, row in _rows(item_path):
            _check_columns(item_path, n, row, [id_col])
            catalog_items.append(Item(
                item_id=str(row[id_col]),
                title=clean(row.get(title_col)) or "",
                brand=clean(row.get(brand_col)),
                categories=split_path(row.get(categories_col), sep=categories_sep),
                price=clean(row.get(price_col)),
                description=clean(row.get(description_col)),
            ))
        catalog = Catalog(catalog_items)
    else:
        seen = dict.fromkeys(r[3] for r in rows)
        catalog = Catalog(Item(item_id=i, title="") for i in seen)
    builder = SequenceBuilder(catalog, on_unknown_item)
    for _, n, user, item in rows:
        builder.add(user, item, path, n)
    return builder.build(name or path.stem)
