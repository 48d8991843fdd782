"""DEALRec split files ``sequential_{train,valid,test}.txt`` + ``seqid2title.json`` / ``seqid2category.json``.

The three files hold consecutive periods of each user's sequence; they are concatenated in
that order. ASINs (``asin2recid.json``: seqid = recid + 1) are kept in ``Item.extra``.
"""

from __future__ import annotations

from pathlib import Path

from genrec.data.dataset import SequenceDataset
from genrec.data.readers._common import SequenceBuilder, catalog_from_ids, load_json, require_file
from genrec.data.readers.p5 import read_sequence_lines
from genrec.errors import DataError


def read_dealrec(path: str | Path, on_unknown_item: str = "error", name: str | None = None) -> SequenceDataset:
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(folder, "expected the folder holding sequential_{train,valid,test}.txt")
    titles = load_json(require_file(folder / "seqid2title.json", "title map"))
    cats_path = folder / "seqid2category.json"
    cats = load_json(cats_path) if cats_path.exists() else {}
    extra: dict[str, dict] = {}
    asin_path = folder / "asin2recid.json"
    if asin_path.exists():
        for asin, recid in load_json(asin_path).items():
            extra[str(int(recid) + 1)] = {"asin": asin}
    catalog = catalog_from_ids(sorted(titles, key=int), titles, cats, extra)
    builder = SequenceBuilder(catalog, on_unknown_item)
    for part in ("train", "valid", "test"):
        p = folder / f"sequential_{part}.txt"
        if part == "train":
            require_file(p, "training sequence file")
        elif not p.exists():
            continue
        for user, items, n in read_sequence_lines(p):
            builder.sequences.setdefault(user, [])
            for item in items:
                builder.add(user, item, p, n)
    return builder.build(name or folder.name)
