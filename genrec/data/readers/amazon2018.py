"""Raw Amazon Reviews 2018 downloads: ``<Category>_5.json.gz`` + ``meta_<Category>.json.gz``.

``path`` is the folder holding both (or the reviews file, with its meta file beside it).
Reviews give (reviewerID, asin, unixReviewTime); each user's items are ordered by time, ties
by file order. Meta lines are JSON, or Python-dict text in some releases (parsed safely with
``ast.literal_eval``); the first entry of a repeated asin wins. Item text: title, brand,
category (the path list; the root "Category" is kept as the first element), price,
description (a list of paragraphs, joined). HTML tags are stripped and entities decoded;
a price that is not a price (page-layout remnants in some meta lines) becomes ``None``.

A reviewed product missing from the meta file is an unknown item: an error naming the line,
or dropped and counted with ``on_unknown_item='drop'``. Plain (not gzipped) files work too.
"""

from __future__ import annotations

import ast
import gzip
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

from genrec.data.catalog import Catalog, Item
from genrec.data.dataset import SequenceDataset
from genrec.data.readers._common import (
    SequenceBuilder,
    check_on_unknown_item,
    clean,
    require_file,
    split_path,
)
from genrec.errors import DataError

_PRICE = re.compile(r"^[^\d]{0,4}\d[\d,.]*(\s*-\s*[^\d]{0,4}\d[\d,.]*)?$")  # "$9.99", "$1,024.00 - $1,100.00"


def _lines(path: Path, what: str) -> Iterator[tuple[int, str]]:
    """Non-blank (line number, text) of a .json / .json.gz file; bad gzip names the file and line."""
    require_file(path, what)
    opener = gzip.open if path.name.endswith(".gz") else open
    n = 0
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    yield n, line
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(path, f"cannot read past this point (truncated or not gzip?): {e}", line=n + 1) from None
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text: {e}", line=n + 1) from None


def _parse(line: str, path: Path, n: int) -> dict:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        try:
            obj = ast.literal_eval(line.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise DataError(path, "line is neither JSON nor a Python dict (truncated?)", line=n) from None
    if not isinstance(obj, dict):
        raise DataError(path, "expected an object per line", line=n)
    return obj


def _price(value: object) -> str | None:
    text = clean(value)
    return text if text and _PRICE.match(text) else None


def _timestamp(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value)
    return None


def _files(path: Path) -> tuple[Path, Path]:
    if path.is_file():
        reviews = path
        category = path.name.split(".json")[0].removesuffix("_5")
        metas = [p for p in (path.parent / f"meta_{category}.json.gz", path.parent / f"meta_{category}.json")
                 if p.exists()]
        if not metas:
            raise DataError(path.parent / f"meta_{category}.json.gz", "metadata file not found")
        return reviews, metas[0]
    if not path.is_dir():
        raise DataError(path, "dataset folder not found")
    metas = sorted(path.glob("meta_*.json*"))
    if len(metas) != 1:
        raise DataError(path, f"expected one meta_<Category>.json(.gz), found {[p.name for p in metas] or 'none'}")
    category = metas[0].name[len("meta_"):].split(".json")[0]
    for candidate in (f"{category}_5.json.gz", f"{category}_5.json", f"{category}.json.gz", f"{category}.json"):
        if (path / candidate).exists():
            return path / candidate, metas[0]
    raise DataError(path, f"no reviews file {category}_5.json.gz (or {category}.json.gz) beside {metas[0].name}")


def read_amazon2018(path: str | Path, on_unknown_item: str = "error", name: str | None = None) -> SequenceDataset:
    check_on_unknown_item(on_unknown_item)
    reviews_path, meta_path = _files(Path(path))
    items: dict[str, Item] = {}
    for n, line in _lines(meta_path, "metadata file"):
        obj = _parse(line, meta_path, n)
        asin = obj.get("asin")
        if not asin:
            raise DataError(meta_path, "missing 'asin'", line=n, field="asin")
        asin = str(asin)
        if asin in items:
            continue
        items[asin] = Item(
            item_id=asin,
            title=clean(obj.get("title")) or "",
            brand=clean(obj.get("brand")),
            categories=split_path(obj.get("category") or obj.get("categories")),
            price=_price(obj.get("price")),
            description=clean(obj.get("description")),
        )
    if not items:
        raise DataError(meta_path, "no products in the metadata file")
    catalog = Catalog(items.values())
    rows = []
    for n, line in _lines(reviews_path, "reviews file"):
        obj = _parse(line, reviews_path, n)
        for key in ("reviewerID", "asin", "unixReviewTime"):
            if key not in obj:
                raise DataError(reviews_path, f"missing '{key}'", line=n, field=key)
        t = _timestamp(obj["unixReviewTime"])
        if t is None:
            raise DataError(reviews_path, f"unixReviewTime {obj['unixReviewTime']!r} is not an integer", line=n,
                            field="unixReviewTime")
        rows.append((t, n, str(obj["reviewerID"]), str(obj["asin"])))
    rows.sort()  # by time, ties by line number (unique), i.e. file order
    builder = SequenceBuilder(catalog, on_unknown_item)
    builder.extend_rows(((user, asin, n) for _, n, user, asin in rows), reviews_path)
    category = reviews_path.name.split(".json")[0].removesuffix("_5")
    return builder.build(name or category, reviews_path)
