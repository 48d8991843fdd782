"""P5 / TransRec ``sequential_data.txt`` ("user item item ...") + id→title / id→category JSON maps.

A folder may hold several relabelings of the same sequences (Beauty: ``p5_`` and
``transrec_``); the one whose ``<prefix>id2title.json`` sits beside it is read, since only
that one has item text. With a title map, the map is the catalog (a sequence item it lacks
is an unknown item); without one, the catalog is the ids seen, with no text. A P5
``<prefix>datamaps.json`` (``id2item``) adds each item's ASIN to ``Item.extra``.
"""

from __future__ import annotations

from pathlib import Path

from genrec.data.dataset import SequenceDataset
from genrec.data.readers._common import (
    SequenceBuilder,
    catalog_from_ids,
    check_on_unknown_item,
    find_one,
    load_json,
    require_file,
)
from genrec.errors import DataError

SUFFIX = "sequential_data.txt"


def _is_int(token: str) -> bool:
    return token.isascii() and token.isdigit()


def read_sequence_lines(path: Path, what: str = "sequence file") -> list[tuple[str, list[str], int]]:
    """Rows of ``user item item ...`` as (user, [item ids], line number); every id must be an integer."""
    require_file(path, what)
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                tokens = line.split()
                if not tokens:
                    continue
                if not _is_int("".join(tokens)):  # fast check; find the culprit only on failure
                    bad = next(t for t in tokens if not _is_int(t))
                    raise DataError(path, f"id {bad!r} is not an integer", line=n)
                rows.append((tokens[0], tokens[1:], n))
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text: {e}") from None
    if not rows:
        raise DataError(path, f"{what} has no sequence lines")
    return rows


def _pick_sequence_file(path: Path) -> Path:
    if not path.is_dir():
        return path
    candidates = sorted(path.glob(f"*{SUFFIX}"))
    with_titles = [p for p in candidates if (path / (p.name[: -len(SUFFIX)] + "id2title.json")).exists()]
    if with_titles:
        return with_titles[0]
    return find_one(path, f"*{SUFFIX}", "sequence file")


def read_p5(path: str | Path, on_unknown_item: str = "error", name: str | None = None) -> SequenceDataset:
    check_on_unknown_item(on_unknown_item)
    path = Path(path)
    seq_path = _pick_sequence_file(path)
    if not seq_path.name.endswith(SUFFIX):
        raise DataError(seq_path, f"expected a file named *{SUFFIX}")
    folder = seq_path.parent
    prefix = seq_path.name[: -len(SUFFIX)]
    titles_path = folder / f"{prefix}id2title.json"
    cats_path = folder / f"{prefix}id2category.json"
    maps_path = folder / f"{prefix}datamaps.json"
    titles = load_json(titles_path, "title map") if titles_path.exists() else {}
    cats = load_json(cats_path, "category map") if cats_path.exists() else {}
    for p, obj in ((titles_path, titles), (cats_path, cats)):
        if not isinstance(obj, dict):
            raise DataError(p, "expected a JSON object {item_id: value}")
    extra: dict[str, dict] = {}
    if maps_path.exists():
        maps = load_json(maps_path, "P5 data maps")
        id2item = maps.get("id2item") if isinstance(maps, dict) else None
        if not isinstance(id2item, dict):
            raise DataError(maps_path, "expected an 'id2item' object", field="id2item")
        extra = {str(i): {"asin": str(a)} for i, a in id2item.items()}
    rows = read_sequence_lines(seq_path)
    if titles:
        ids = list(titles)
        if not all(_is_int(i) for i in ids):
            bad = next(i for i in ids if not _is_int(i))
            raise DataError(titles_path, f"item id {bad!r} is not an integer")
    else:
        ids = list({i: None for _, items, _ in rows for i in items})
    ids.sort(key=int)
    catalog = catalog_from_ids(ids, titles, cats, extra)
    builder = SequenceBuilder(catalog, on_unknown_item)
    for user, items, n in rows:
        builder.extend(user, items, seq_path, n)
    return builder.build(name or folder.name, seq_path)
