"""P5 / TransRec ``sequential_data.txt`` ("user item item ...") + id→title / id→category JSON maps."""

from __future__ import annotations

from pathlib import Path

from genrec.data.dataset import SequenceDataset
from genrec.data.readers._common import (
    SequenceBuilder,
    catalog_from_ids,
    find_one,
    load_json,
    parse_int,
    require_file,
)


def read_sequence_lines(path: Path) -> list[tuple[str, list[str], int]]:
    """Rows of ``user item item ...`` as (user, [item ids], line number); ids must be integers."""
    require_file(path, "sequence file")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            tokens = line.split()
            if not tokens:
                continue
            for t in tokens:
                parse_int(t, path, n)
            rows.append((tokens[0], tokens[1:], n))
    return rows


def read_p5(path: str | Path, on_unknown_item: str = "error", name: str | None = None) -> SequenceDataset:
    path = Path(path)
    if path.is_dir():
        # A folder may hold several relabelings (Beauty: p5_ and transrec_); take the one
        # whose id→title map sits beside it.
        with_titles = [p for p in sorted(path.glob("*sequential_data.txt"))
                       if (path / (p.name[: -len("sequential_data.txt")] + "id2title.json")).exists()]
        seq_path = with_titles[0] if with_titles else find_one(path, "*sequential_data.txt", "sequence file")
    else:
        seq_path = path
    folder = seq_path.parent
    prefix = seq_path.name[: -len("sequential_data.txt")]
    titles_path = folder / f"{prefix}id2title.json"
    cats_path = folder / f"{prefix}id2category.json"
    titles = load_json(titles_path) if titles_path.exists() else {}
    cats = load_json(cats_path) if cats_path.exists() else {}
    rows = read_sequence_lines(seq_path)
    # The title map is the catalog when present; otherwise the ids seen in the sequences.
    ids = sorted(titles if titles else {i for _, items, _ in rows for i in items}, key=int)
    catalog = catalog_from_ids(ids, titles, cats)
    builder = SequenceBuilder(catalog, on_unknown_item)
    for user, items, n in rows:
        for item in items:
            builder.add(user, item, seq_path, n)
    return builder.build(name or folder.name)
