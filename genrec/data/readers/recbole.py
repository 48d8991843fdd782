"""RecBole atomic files: ``X.inter`` (+ ``X.item``) with typed headers ``name:type``.

Two shapes of ``.inter`` are read:

- **interaction rows** (``user_id``, ``item_id``, optional ``timestamp``), e.g. ML-100K: each
  user's items ordered by timestamp, ties broken by the file's row order (a stable sort);
  without a timestamp column, file order.
- **sequential rows** (``item_id_list:token_seq`` + ``item_id``), as in UniSRec / LLMRank
  downloads: each row is a history plus its target. A user's sequence is their longest row
  (history + target); in a ``*.test.inter`` that is the whole ordered sequence (capped at 50
  items by those pipelines). In ``*.train.inter`` (one row per prefix) it is the full
  training sequence.

Which file: ``path`` may be the ``.inter`` file itself. For a folder, the first match of
``*.test.inter``, then a plain ``*.inter`` (not train/valid), then ``*.valid.inter``, then
``*.train.inter``.

Item text: ``X.item`` (same stem, else the folder's only ``.item``) with title-like columns
(``title`` / ``movie_title`` / ``name``), categories (``class`` / ``categories`` / ``genre``,
space-separated tokens), ``brand``, ``price``, and the year (``release_year``) in
``Item.extra``. UniSRec's ``X.text`` (ASIN -> "title. category words. brand. ") is split
into title / one category string / brand, with ``X.item2index`` mapping ASINs to the
indices used in ``.inter`` (the ASIN kept in ``Item.extra``). Without any item file the
catalog is the ids seen, with no text.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from genrec.data.catalog import Catalog, Item
from genrec.data.dataset import SequenceDataset
from genrec.data.readers._common import (
    SequenceBuilder,
    check_on_unknown_item,
    clean,
    read_id_map,
    require_file,
    split_path,
)
from genrec.errors import DataError

_TITLE_COLS = ("title", "movie_title", "name", "text")


def read_atomic(path: Path, what: str = "atomic file") -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header field names (types stripped) and (line number, fields) rows of a RecBole TSV."""
    require_file(path, what)
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            header = f.readline().rstrip("\r\n").split("\t")
            names = [h.split(":")[0] for h in header]
            width = len(names)
            for n, line in enumerate(f, 2):
                line = line.rstrip("\r\n")
                if not line:
                    continue
                parts = line.split("\t")
                if len(parts) != width:
                    raise DataError(path, f"expected {width} tab-separated fields ({', '.join(header)}), "
                                          f"got {len(parts)}", line=n)
                rows.append((n, parts))
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text: {e}") from None
    if not rows:
        raise DataError(path, f"{what} has a header but no rows")
    return names, rows


def _col(names: list[str], path: Path, *candidates: str, required: bool = True) -> int | None:
    for c in candidates:
        if c in names:
            return names.index(c)
    if required:
        raise DataError(path, f"missing column {candidates[0]!r}; present: {', '.join(names)}")
    return None


def pick_inter_file(path: Path) -> Path:
    """The ``.inter`` file a folder is read from (see the module docstring for the order)."""
    if path.is_file():
        return path
    if not path.exists():
        raise DataError(path, "dataset folder not found")
    inter = sorted(path.glob("*.inter"))
    plain = [p for p in inter if not p.name.endswith((".train.inter", ".valid.inter", ".test.inter"))]
    for group in ([p for p in inter if p.name.endswith(".test.inter")], plain,
                  [p for p in inter if p.name.endswith(".valid.inter")],
                  [p for p in inter if p.name.endswith(".train.inter")]):
        if group:
            return group[0]
    raise DataError(path, "no .inter file in this folder")


def split_unisrec_text(text: str, root: str | None) -> tuple[str, str | None, str | None]:
    """(title, category words, brand) from UniSRec's "title. category words. brand. " string.

    Titles and brands may contain ". " themselves, so the category part is located by the
    dataset's root category (``root``, e.g. "Industrial & Scientific"); an empty category
    part shows as ". . ". When neither is found the whole text is the title (nothing lost).
    """
    s = text.strip()
    if s.endswith("."):
        s = s[:-1]
    if root:
        i = s.rfind(". " + root)
        if i > 0:
            cats, _, brand = s[i + 2:].partition(". ")
            return s[:i], clean(cats), clean(brand)
    j = s.rfind(". . ")
    if j > 0:
        return s[:j], None, clean(s[j + 4:])
    return text.strip(), None, None


def _unisrec_root(texts: list[str]) -> str | None:
    """The dataset's root category: the longest word prefix that starts a ". "-separated part
    (after the first) in at least half of the texts."""
    parts = [[seg.split() for seg in t.strip().rstrip(".").split(". ")[1:]] for t in texts]
    best = None
    for width in range(1, 6):
        counts: Counter[str] = Counter()
        for segs in parts:
            counts.update({" ".join(words[:width]) for words in segs if len(words) >= width})
        if not counts:
            break
        prefix, count = counts.most_common(1)[0]
        if count < 0.5 * len(texts):
            break
        best = prefix
    return best


def _item_file(inter_path: Path) -> Path | None:
    folder = inter_path.parent
    stem = inter_path.name.split(".")[0]
    for suffix in (".item", ".text"):
        if (folder / f"{stem}{suffix}").exists():
            return folder / f"{stem}{suffix}"
        others = sorted(folder.glob(f"*{suffix}"))
        if len(others) == 1:
            return others[0]
        if len(others) > 1:
            raise DataError(folder, f"several {suffix} files {[p.name for p in others]} and none named "
                                    f"{stem}{suffix}; pass the .inter file of the matching name")
    return None


def _catalog(inter_path: Path, item_ids_seen: list[str]) -> Catalog:
    item_file = _item_file(inter_path)
    if item_file is None:
        return Catalog(Item(item_id=i, title="") for i in dict.fromkeys(item_ids_seen))
    names, rows = read_atomic(item_file, "item file")
    id_col = _col(names, item_file, "item_id")
    title_col = _col(names, item_file, *_TITLE_COLS, required=False)
    cat_col = _col(names, item_file, "class", "categories", "genre", required=False)
    brand_col = _col(names, item_file, "brand", required=False)
    price_col = _col(names, item_file, "price", required=False)
    year_col = _col(names, item_file, "release_year", "year", required=False)
    remap: dict[str, str] = {}  # source id in the item file -> id used in .inter
    map_path = item_file.with_suffix(".item2index")
    if item_file.suffix == ".text" and map_path.exists():
        remap = {asin: index for index, asin in read_id_map(map_path).items()}
    unisrec = item_file.suffix == ".text" and names[title_col] == "text" if title_col is not None else False
    root = _unisrec_root([r[title_col] for _, r in rows]) if unisrec else None
    items: dict[str, Item] = {}
    for n, parts in rows:
        source_id = parts[id_col]
        item_id = remap.get(source_id, source_id)
        if remap and source_id not in remap:
            raise DataError(item_file, f"item {source_id!r} has no index in {map_path.name}", line=n)
        if item_id in items:
            raise DataError(item_file, f"item id {item_id!r} appears twice", line=n)
        extra = {}
        if remap:
            extra["asin"] = source_id
        if year_col is not None and clean(parts[year_col]):
            extra["year"] = clean(parts[year_col])
        title = clean(parts[title_col]) or "" if title_col is not None else ""
        brand = clean(parts[brand_col]) if brand_col is not None else None
        categories = split_path(parts[cat_col], sep=" ") if cat_col is not None else ()
        if unisrec and title:
            title, cat_words, text_brand = split_unisrec_text(title, root)
            title = clean(title) or ""
            categories = (cat_words,) if cat_words else ()
            brand = brand or text_brand
        items[item_id] = Item(
            item_id=item_id, title=title, brand=brand, categories=categories,
            price=clean(parts[price_col]) if price_col is not None else None,
            extra=tuple(sorted(extra.items())),
        )
    order = list(items)
    if all(i.isascii() and i.isdigit() for i in order):
        order.sort(key=int)
    return Catalog(items[i] for i in order)


def read_recbole(path: str | Path, on_unknown_item: str = "error", name: str | None = None) -> SequenceDataset:
    check_on_unknown_item(on_unknown_item)
    inter_path = pick_inter_file(Path(path))
    names, rows = read_atomic(inter_path, "interaction file")
    user_col = _col(names, inter_path, "user_id")
    item_col = _col(names, inter_path, "item_id")
    list_col = _col(names, inter_path, "item_id_list", required=False)
    seen = [r[item_col] for _, r in rows]
    if list_col is not None:
        seen = [i for _, r in rows for i in r[list_col].split()] + seen
    catalog = _catalog(inter_path, seen)
    builder = SequenceBuilder(catalog, on_unknown_item)
    if list_col is not None:
        longest: dict[str, tuple[int, list[str]]] = {}
        for n, parts in rows:
            seq = parts[list_col].split()
            seq.append(parts[item_col])
            user = parts[user_col]
            if user not in longest or len(seq) > len(longest[user][1]):
                longest[user] = (n, seq)
        for user, (n, seq) in longest.items():
            builder.extend(user, seq, inter_path, n)
    else:
        time_col = _col(names, inter_path, "timestamp", required=False)
        if time_col is not None:
            times = []
            for n, parts in rows:
                try:
                    times.append(float(parts[time_col]))
                except ValueError:
                    raise DataError(inter_path, f"timestamp {parts[time_col]!r} is not a number", line=n,
                                    field="timestamp") from None
            order = sorted(range(len(rows)), key=times.__getitem__)  # stable: file order breaks ties
            rows = [rows[k] for k in order]
        builder.extend_rows(((parts[user_col], parts[item_col], n) for n, parts in rows), inter_path)
    return builder.build(name or inter_path.name.split(".")[0], inter_path)
