"""DEALRec split files ``sequential_{train,valid,test}.txt`` + ``seqid2title.json`` / ``seqid2category.json``.

The three files hold consecutive periods of each user's sequence ("user item item ..."); a
user's sequence is their train, valid and test items concatenated in that order (valid and
test lines are often empty). The title map is the catalog. ASINs from ``asin2recid.json``
(seqid = recid + 1) are kept in ``Item.extra['asin']``. Some titles are placeholders
(``title_<n>``) in the source; they are kept as they are.
"""

from __future__ import annotations

from pathlib import Path

from genrec.data.dataset import SequenceDataset
from genrec.data.readers._common import (
    SequenceBuilder,
    catalog_from_ids,
    check_on_unknown_item,
    load_json,
    require_file,
)
from genrec.data.readers.p5 import read_sequence_lines
from genrec.errors import DataError


def read_dealrec(path: str | Path, on_unknown_item: str = "error", name: str | None = None) -> SequenceDataset:
    check_on_unknown_item(on_unknown_item)
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    if not folder.is_dir():
        raise DataError(folder, "expected the folder holding sequential_{train,valid,test}.txt")
    titles_path = require_file(folder / "seqid2title.json", "title map")
    titles = load_json(titles_path, "title map")
    if not isinstance(titles, dict):
        raise DataError(titles_path, "expected a JSON object {seqid: title}")
    cats_path = folder / "seqid2category.json"
    cats = load_json(cats_path, "category map") if cats_path.exists() else {}
    extra: dict[str, dict] = {}
    asin_path = folder / "asin2recid.json"
    if asin_path.exists():
        for asin, recid in load_json(asin_path, "ASIN map").items():
            if isinstance(recid, bool) or not isinstance(recid, int):
                raise DataError(asin_path, f"recid {recid!r} is not an integer", field=asin)
            extra[str(recid + 1)] = {"asin": asin}
    try:
        ids = sorted(titles, key=int)
    except ValueError:
        raise DataError(titles_path, "seqids must be integers") from None
    catalog = catalog_from_ids(ids, titles, cats, extra)
    builder = SequenceBuilder(catalog, on_unknown_item)
    train_path = require_file(folder / "sequential_train.txt", "training sequence file")
    for part in ("train", "valid", "test"):
        p = folder / f"sequential_{part}.txt"
        if part != "train" and not p.exists():
            continue
        for user, items, n in read_sequence_lines(p, f"{part} sequence file"):
            builder.extend(user, items, p, n)
    return builder.build(name or folder.name, train_path)
