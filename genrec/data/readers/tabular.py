"""A user's own data: CSV / TSV / JSON Lines interactions (+ optional item file) with a column mapping.

``path`` is the interactions file, or a folder holding exactly one interactions table and
at most one item table (a table whose name contains "item", e.g. ``items.csv``).

Options (the column mapping):

- ``user_col`` ("user_id"), ``item_col`` ("item_id");
- ``time_col``: rows ordered by it per user, ties by file order. Numbers or ISO dates. The
  default ``"auto"`` uses a ``timestamp`` column when there is one; ``None`` keeps file order.
- ``items``: the item file (CSV / TSV / JSONL; a relative path is looked up beside the
  interactions file too); ``item_id_col`` (default: ``item_col``), ``title_col`` ("title"),
  ``brand_col`` ("brand"), ``categories_col`` ("categories"), ``categories_sep`` (">"),
  ``price_col`` ("price"), ``description_col`` ("description"). A text column named
  explicitly must exist; one left at its default is used when present.

Without an item file every item id seen becomes a catalog entry with no text. A mapped
column that a file lacks is a DataError naming the file, the column and the columns present.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from genrec.data.catalog import Catalog, Item
from genrec.data.dataset import SequenceDataset
from genrec.data.jsonl import read_json_lines
from genrec.data.readers._common import (
    SequenceBuilder,
    check_on_unknown_item,
    clean,
    require_file,
    split_path,
)
from genrec.errors import DataError

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json")


def read_rows(path: Path, what: str = "table file") -> Iterator[tuple[int, dict]]:
    """(line number, row dict) of a CSV / TSV (header row) or JSON Lines file."""
    require_file(path, what)
    try:
        if path.suffix in (".jsonl", ".ndjson", ".json"):
            yield from read_json_lines(path, what)
            return
        with open(path, encoding="utf-8-sig", newline="") as f:
            sample = f.read(4096)
            f.seek(0)
            delimiter = "\t" if path.suffix == ".tsv" or sample.count("\t") > sample.count(",") else ","
            reader = csv.DictReader(f, delimiter=delimiter)
            for row in reader:
                yield reader.line_num, row
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text: {e}") from None
    except csv.Error as e:
        raise DataError(path, f"bad CSV: {e}") from None


def _check_columns(path: Path, n: int, row: dict, needed: list[str]) -> None:
    missing = [c for c in needed if c not in row]
    if missing:
        raise DataError(path, f"missing mapped column(s) {', '.join(map(repr, missing))}; "
                              f"present: {', '.join(str(c) for c in row if c is not None)}", line=n)


def _time(value: object, path: Path, n: int, col: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip() if value is not None else ""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise DataError(path, f"{col} value {value!r} is neither a number nor an ISO date", line=n,
                        field=col) from None


def _locate(path: Path, items: str | None) -> tuple[Path, Path | None]:
    """The interactions file and the item file (if any) for ``path`` and the ``items`` option."""
    item_path = None
    if items:
        item_path = Path(items)
        if not item_path.is_absolute() and not item_path.exists():
            beside = (path if path.is_dir() else path.parent) / items
            if beside.exists():
                item_path = beside
    if not path.is_dir():
        return path, item_path
    tables = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(TABLE_SUFFIXES))
    item_tables = [p for p in tables if "item" in p.name.lower() and not p.name.lower().startswith("inter")]
    inter_tables = [p for p in tables if p not in item_tables]
    if len(inter_tables) != 1:
        raise DataError(path, f"expected one interactions table (csv/tsv/jsonl) in this folder, found "
                              f"{[p.name for p in inter_tables] or 'none'}; pass the file itself")
    if item_path is None and len(item_tables) == 1:
        item_path = item_tables[0]
    elif item_path is None and len(item_tables) > 1:
        raise DataError(path, f"several item tables {[p.name for p in item_tables]}; choose one with items=...")
    return inter_tables[0], item_path


def _catalog(item_path: Path, id_col: str, cols: dict[str, tuple[str, bool]], categories_sep: str) -> Catalog:
    items: list[Item] = []
    seen: set[str] = set()
    for n, row in read_rows(item_path, "item file"):
        if not items:
            _check_columns(item_path, n, row, [id_col] + [c for c, required in cols.values() if required])
        item_id = clean(row.get(id_col))
        if item_id is None:
            raise DataError(item_path, f"empty item id in column {id_col!r}", line=n, field=id_col)
        if item_id in seen:
            raise DataError(item_path, f"item id {item_id!r} appears twice", line=n, field=id_col)
        seen.add(item_id)

        def get(key: str, row: dict = row) -> object:
            return row.get(cols[key][0])

        items.append(Item(
            item_id=item_id,
            title=clean(get("title")) or "",
            brand=clean(get("brand")),
            categories=split_path(get("categories"), sep=categories_sep),
            price=clean(get("price")),
            description=clean(get("description")),
        ))
    if not items:
        raise DataError(item_path, "item file has no rows")
    return Catalog(items)


def read_table(path: str | Path, on_unknown_item: str = "error", name: str | None = None, *,
               user_col: str = "user_id", item_col: str = "item_id", time_col: str | None = "auto",
               items: str | None = None, item_id_col: str | None = None, title_col: str | None = None,
               brand_col: str | None = None, categories_col: str | None = None, categories_sep: str = ">",
               price_col: str | None = None, description_col: str | None = None) -> SequenceDataset:
    check_on_unknown_item(on_unknown_item)
    inter_path, item_path = _locate(Path(path), items)
    rows: list[tuple[float, int, str, str]] = []
    first = True
    for n, row in read_rows(inter_path, "interactions file"):
        if first:
            if time_col == "auto":
                time_col = "timestamp" if "timestamp" in row else None
            _check_columns(inter_path, n, row, [user_col, item_col] + ([time_col] if time_col else []))
            first = False
        user, item = clean(row.get(user_col)), clean(row.get(item_col))
        if user is None or item is None:
            col = user_col if user is None else item_col
            raise DataError(inter_path, f"empty or missing value in column {col!r}", line=n, field=col)
        t = _time(row.get(time_col), inter_path, n, time_col) if time_col else 0.0
        rows.append((t, n, user, item))
    if not rows:
        raise DataError(inter_path, "no interaction rows")
    if time_col:
        rows.sort(key=lambda r: (r[0], r[1]))
    if item_path is not None:
        cols = {key: (given or key, given is not None) for key, given in (
            ("title", title_col), ("brand", brand_col), ("categories", categories_col), ("price", price_col),
            ("description", description_col))}
        catalog = _catalog(item_path, item_id_col or item_col, cols, categories_sep)
    else:
        catalog = Catalog(Item(item_id=i, title="") for i in dict.fromkeys(r[3] for r in rows))
    builder = SequenceBuilder(catalog, on_unknown_item)
    builder.extend_rows(((user, item, n) for _, n, user, item in rows), inter_path)
    stem = inter_path.name.split(".")[0]
    return builder.build(name or (inter_path.parent.name if Path(path).is_dir() else stem), inter_path)
