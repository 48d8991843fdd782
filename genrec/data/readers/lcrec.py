"""LC-Rec / LETTER JSON: ``X.inter.json`` ({user: [item, ...]}) + ``X.item.json`` ({item: fields}).

Item fields: title, description, brand, categories (a comma-joined path string, or a list);
empty strings, ".", "nan" and null become ``None``. The item file is the catalog, in its
order. Without an item file, ``X.item2id`` ("ASIN<TAB>index", as in the Instruments download)
marks a dataset without text: its ids are the catalog (ASIN kept in ``Item.extra``) and
``genrec data stats`` shows that no item has a title. Neither file is a DataError.
"""

from __future__ import annotations

import re
from pathlib import Path

from genrec.data.catalog import Catalog, Item
from genrec.data.dataset import SequenceDataset
from genrec.data.readers._common import (
    SequenceBuilder,
    check_on_unknown_item,
    clean,
    find_one,
    load_json,
    read_id_map,
    split_path,
)
from genrec.errors import DataError


def _item_id(item: object) -> str | None:
    if isinstance(item, bool):
        return None
    if isinstance(item, int):
        return str(item)
    if isinstance(item, str) and item.isascii() and item.isdigit():
        return item
    return None


def _line_of_key(path: Path, key: str) -> int | None:
    """The line where ``"key":`` first occurs in a JSON file (only used to point at an error)."""
    text = path.read_text(encoding="utf-8")
    match = re.search('"' + re.escape(str(key)) + r'"\s*:', text)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _catalog_from_item_file(item_path: Path) -> Catalog:
    raw_items = load_json(item_path, "item file")
    if not isinstance(raw_items, dict):
        raise DataError(item_path, "expected a JSON object {item_id: {title, ...}}")
    items = []
    for item_id, fields in raw_items.items():
        if not isinstance(fields, dict):
            raise DataError(item_path, "item entry is not an object", field=str(item_id))
        items.append(Item(
            item_id=str(item_id),
            title=clean(fields.get("title")) or "",
            brand=clean(fields.get("brand")),
            categories=split_path(fields.get("categories")),
            price=clean(fields.get("price")),
            description=clean(fields.get("description")),
        ))
    return Catalog(items)


def read_lcrec(path: str | Path, on_unknown_item: str = "error", name: str | None = None) -> SequenceDataset:
    check_on_unknown_item(on_unknown_item)
    path = Path(path)
    inter_path = find_one(path, "*.inter.json", "interaction file")
    folder = inter_path.parent
    stem = inter_path.name[: -len(".inter.json")]
    raw = load_json(inter_path, "interaction file")
    if not isinstance(raw, dict):
        raise DataError(inter_path, "expected a JSON object {user: [item, ...]}")

    item_files = [folder / f"{stem}.item.json"] if (folder / f"{stem}.item.json").exists() \
        else sorted(folder.glob("*.item.json"))
    if len(item_files) > 1:
        raise DataError(folder, f"several item files {[p.name for p in item_files]}; none named {stem}.item.json")
    if item_files:
        catalog = _catalog_from_item_file(item_files[0])
    elif (folder / f"{stem}.item2id").exists():
        id_to_asin = read_id_map(folder / f"{stem}.item2id")
        catalog = Catalog(Item(item_id=i, title="", extra=(("asin", id_to_asin[i]),))
                          for i in sorted(id_to_asin, key=lambda s: int(s) if s.isdigit() else -1))
    else:
        raise DataError(folder / f"{stem}.item.json", "item file not found (a dataset without item text "
                                                       f"needs {stem}.item2id: 'ASIN<TAB>index' lines)")

    builder = SequenceBuilder(catalog, on_unknown_item)
    for user, seq in raw.items():
        if not isinstance(seq, list):
            raise DataError(inter_path, "sequence is not a list", field=f"user {user}")
        ids = [_item_id(item) for item in seq]
        if None in ids:
            bad = seq[ids.index(None)]
            raise DataError(inter_path, f"item id {bad!r} is not an integer", line=_line_of_key(inter_path, user),
                            field=f"user {user}")
        if on_unknown_item == "error":
            unknown = next((i for i in ids if i not in catalog), None)
            if unknown is not None:  # name the line where this user's list starts (files may be indented)
                raise DataError(inter_path, f"item id {unknown!r} is not in the catalog (on_unknown_item='drop' "
                                            "skips and counts such items)", line=_line_of_key(inter_path, user),
                                field=f"user {user}")
        builder.extend(str(user), ids, inter_path, None, field=f"user {user}")
    return builder.build(name or stem, inter_path)
