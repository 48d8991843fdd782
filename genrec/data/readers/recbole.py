"""RecBole atomic files: ``X.inter`` (+ ``X.item``) with typed headers ``name:type``.

Two shapes are read:
- interaction rows (``user_id``, ``item_id``, optional ``timestamp``): each user's items are
  ordered by timestamp, ties broken by the file's row order (a stable sort);
- sequential rows (``item_id_list:token_seq`` + ``item_id``, as in UniSRec / LLMRank
  downloads): each row is a history plus its target; a user's sequence is their longest row
  (history + target). Given a folder with ``*.test.inter``, that file is read.
Item text comes from ``X.item`` (title-like columns) or a UniSRec ``X.text`` file.
"""

from __future__ import annotations

from pathlib import Path

from genrec.data.catalog import Catalog, Item
from genrec.data.dataset import SequenceDataset
from genrec.data.readers._common import SequenceBuilder, clean, require_file, split_path
from genrec.errors import DataError

_TITLE_COLS = ("title", "movie_title", "name", "text")


def _read_table(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    require_file(path, "atomic file")
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        names = [h.split(":")[0] for h in header]
        rows = []
        for n, line in enumerate(f, 2):
            line = line.rstrip("\n")
            if not line:
                continue
            parts = line.split("\t")
            if len(parts) != len(names):
                raise DataError(path, f"expected {len(names)} tab-separated fields ({', '.join(header)}), "
                                      f"got {len(parts)}", line=n)
            rows.append((n, parts))
    return names, rows


def _col(names: list[str], path: Path, *candidates: str, required: bool = True) -> int | None:
    for c in candidates:
        if c in names:
            return names.index(c)
    if required:
        raise DataError(path, f"missing column {candidates[0]!r}; present: {', '.join(names)}")
    return None


def _pick_inter_file(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.exists():
        raise DataError(path, "dataset folder not found")
    for pattern in ("*.test.inter", "*.inter"):
        found = sorted(p for p in path.glob(pattern) if not p.name.endswith((".train.inter", ".valid.inter"))
                       or pattern == "*.test.inter")
        if found:
            return found[0]
    raise DataError(path, "no .inter file in this folder")


def _catalog(inter_path: Path, item_ids_in_order: list[str]) -> Catalog:
    folder = inter_path.parent
    stem = inter_path.name.split(".")[0]
    candidates = [folder / f"{stem}.item", *sorted(folder.glob("*.item")), folder / f"{stem}.text",
                  *sorted(folder.glob("*.text"))]
    item_file = next((p for p in candidates if p.exists()), None)
    items: dict[str, Item] = {}
    # UniSRec downloads key X.text by ASIN and map ASINs to the .inter indices in X.item2index.
    remap: dict[str, str] = {}
    map_path = folder / f"{stem}.item2index"
    if item_file is not None and item_file.suffix == ".text" and map_path.exists():
        with open(map_path, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    remap[parts[0]] = parts[1]
    if item_file is not None:
        names, rows = _read_table(item_file)
        id_col = _col(names, item_file, "item_id")
        title_col = _col(names, item_file, *_TITLE_COLS, required=False)
        cat_col = _col(names, item_file, "class", "categories", "genre", required=False)
        brand_col = _col(names, item_file, "brand", required=False)
        price_col = _col(names, item_file, "price", required=False)
        year_col = _col(names, item_file, "release_year", "year", required=False)
        for _, parts in rows:
            extra = {"year": parts[year_col]} if year_col is not None and clean(parts[year_col]) else {}
            cats = split_path(parts[cat_col], sep=" ") if cat_col is not None else ()
            item_id = remap.get(parts[id_col], parts[id_col])
            if remap:
                extra["asin"] = parts[id_col]
            items[item_id] = Item(
                item_id=item_id,
                title=(clean(parts[title_col]) or "") if title_col is not None else "",
                brand=clean(parts[brand_col]) if brand_col is not None else None,
                categories=cats,
                price=clean(parts[price_col]) if price_col is not None else None,
                extra=tuple(extra.items()),
            )
    else:
        items = {i: Item(item_id=i, title="") for i in item_ids_in_order}
    try:
        order = sorted(items, key=int)
    except ValueError:
        order = list(items)
    return Catalog(items[i] for i in order)


def read_recbole(path: str | Path, on_unknown_item: str = "error", name: str | None = None) -> SequenceDataset:
    inter_path = _pick_inter_file(Path(path))
    names, rows = _read_table(inter_path)
    user_col = _col(names, inter_path, "user_id")
    item_col = _col(names, inter_path, "item_id")
    list_col = _col(names, inter_path, "item_id_list", required=False)
    seen = [r[item_col] for _, r in rows]
    catalog = _catalog(inter_path, seen)
    builder = SequenceBuilder(catalog, on_unknown_item)
    if list_col is not None:
        longest: dict[str, tuple[int, list[str]]] = {}
        for n, parts in rows:
            seq = parts[list_col].split() + [parts[item_col]]
            user = parts[user_col]
            if user not in longest or len(seq) > len(longest[user][1]):
                longest[user] = (n, seq)
        for user, (n, seq) in longest.items():
            for item in seq:
                builder.add(user, item, inter_path, n)
    else:
        time_col = _col(names, inter_path, "timestamp", required=False)
        if time_col is not None:
            def key(row: tuple[int, list[str]]) -> float:
                try:
                    return float(row[1][time_col])
                except ValueError:
                    raise DataError(inter_path, f"timestamp {row[1][time_col]!r} is not a number",
                                    line=row[0]) from None
            rows = sorted(rows, key=key)  # stable: file order breaks ties
        for n, parts in rows:
            builder.add(parts[user_col], parts[item_col], inter_path, n)
    return builder.build(name or inter_path.name.split(".")[0])
