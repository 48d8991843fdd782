"""LC-Rec / LETTER JSON: ``X.inter.json`` ({user: [item, ...]}) + ``X.item.json`` ({item: fields})."""

from __future__ import annotations

from pathlib import Path

from genrec.data.catalog import Catalog, Item
from genrec.data.dataset import SequenceDataset
from genrec.data.readers._common import SequenceBuilder, clean, find_one, load_json, split_path
from genrec.errors import DataError


def read_lcrec(path: str | Path, on_unknown_item: str = "error", name: str | None = None) -> SequenceDataset:
    path = Path(path)
    inter_path = find_one(path, "*.inter.json", "interaction file")
    item_path = find_one(inter_path.parent, "*.item.json", "item file")
    raw_items = load_json(item_path)
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
    catalog = Catalog(items)
    raw = load_json(inter_path)
    if not isinstance(raw, dict):
        raise DataError(inter_path, "expected a JSON object {user: [item, ...]}")
    builder = SequenceBuilder(catalog, on_unknown_item)
    for user, seq in raw.items():
        if not isinstance(seq, list):
            raise DataError(inter_path, "sequence is not a list", field=str(user))
        for item in seq:
            if isinstance(item, bool) or not isinstance(item, (int, str)) or not str(item).lstrip("-").isdigit():
                raise DataError(inter_path, f"item id {item!r} is not an integer", field=str(user))
            builder.add(str(user), str(item), inter_path, None)
    return builder.build(name or inter_path.name.split(".")[0])
