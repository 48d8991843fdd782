"""``genrec data stats``: what a dataset holds, before any filtering."""

from __future__ import annotations

from genrec.data.source import DatasetSource


def dataset_stats(fmt: str, path: str, on_unknown_item: str = "error") -> str:
    """Lines describing the dataset; the last is ``users=N items=N interactions=N``."""
    if fmt == "demo":
        src = DatasetSource(format="demo", name=path)
    else:
        src = DatasetSource(format=fmt, path=path, on_unknown_item=on_unknown_item)
    ds = src.load()
    lines = [f"dataset: {ds.name} ({fmt})"]
    lengths = sorted(len(s) for s in ds.sequences.values())
    if lengths:
        lines.append(f"sequence length: min={lengths[0]} median={lengths[len(lengths) // 2]} max={lengths[-1]}")
    with_text = sum(1 for it in ds.catalog if it.title)
    lines.append(f"items with a title: {with_text}/{len(ds.catalog)}")
    for reason, count in ds.dropped.items():
        lines.append(f"dropped ({reason}): {count}")
    lines.append(ds.stats_line())
    return "\n".join(lines)
