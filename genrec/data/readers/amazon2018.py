"""Raw Amazon Reviews 2018 downloads: ``<Category>_5.json.gz`` + ``meta_<Category>.json.gz``.

Reviews give (reviewerID, asin, unixReviewTime); each user's items are ordered by time, ties
by file order. Meta lines are JSON, or Python-dict text in some releases (parsed safely with
``ast.literal_eval``). A reviewed product missing from the meta file is an unknown item:
an error naming the line, or dropped and counted with ``on_unknown_item='drop'``.
"""

from __future__ import annotations

import ast
import gzip
import json
from pathlib import Path

from genrec.data.catalog import Catalog, Item
from genrec.data.dataset import SequenceDataset
from genrec.data.readers._common import SequenceBuilder, clean, find_one, split_path
from genrec.errors import DataError


def _lines(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    yield n, line
    except (EOFError, gzip.BadGzipFile, OSError) as e:
        raise DataError(path, f"cannot read (truncated or not gzip?): {e}") from None


def _parse(line: str, path: Path, n: int) -> dict:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        try:
            obj = ast.literal_eval(line)
        except (ValueError, SyntaxError):
            raise DataError(path, "line is neither JSON nor a Python dict (truncated?)", line=n) from None
    if not isinstance(obj, dict):
        raise DataError(path, "expected an object per line", line=n)
    return obj


def read_amazon2018(path: str | Path, on_unknown_item: str = "error", name: str | None = None) -> SequenceDataset:
    folder = Path(path)
    meta_path = find_one(folder, "meta_*.json*", "metadata file")
    reviews_path = next((p for p in sorted(folder.glob("*.json*")) if not p.name.startswith("meta_")), None)
    if reviews_path is None:
        raise DataError(folder, "no reviews file (<Category>_5.json.gz) in this folder")
    items: dict[str, Item] = {}
    for n, line in _lines(meta_path):
        obj = _parse(line, meta_path, n)
        asin = obj.get("asin")
        if not asin:
            raise DataError(meta_path, "missing 'asin'", line=n, field="asin")
        if asin in items:
            continue  # the 2018 meta files repeat some products; the first entry wins
        items[asin] = Item(
            item_id=str(asin),
            title=clean(obj.get("title")) or "",
            brand=clean(obj.get("brand")),
            categories=split_path(obj.get("category") or obj.get("categories")),
            price=clean(obj.get("price")),
            description=clean(obj.get("description")),
        )
    catalog = Catalog(items.values())
    rows = []
    for n, line in _lines(reviews_path):
        obj = _parse(line, reviews_path, n)
        for key in ("reviewerID", "asin", "unixReviewTime"):
            if key not in obj:
                raise DataError(reviews_path, f"missing '{key}'", line=n, field=key)
        try:
            t = int(obj["unixReviewTime"])
        except (TypeError, ValueError):
            raise DataError(reviews_path, "unixReviewTime is not an integer", line=n, field="unixReviewTime") from None
        rows.append((t, n, str(obj["reviewerID"]), str(obj["asin"])))
    rows.sort(key=lambda r: (r[0], r[1]))
    builder = SequenceBuilder(catalog, on_unknown_item)
    for _, n, user, asin in rows:
        builder.add(user, asin, reviews_path, n)
    return builder.build(name or reviews_path.name.split("_5")[0].split(".")[0])
