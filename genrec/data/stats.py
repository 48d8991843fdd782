"""``genrec data stats``: what a dataset holds, before any filtering."""

from __future__ import annotations

from genrec.data.dataset import SequenceDataset
from genrec.data.source import DatasetSource


def describe(ds: SequenceDataset) -> list[str]:
    """Readable lines about a dataset; the last is ``users=N items=N interactions=N``."""
    lines = [f"dataset: {ds.name}"]
    lengths = sorted(len(s) for s in ds.sequences.values())
    if lengths:
        lines.append(f"sequence length: min={lengths[0]} median={lengths[len(lengths) // 2]} max={lengths[-1]} "
                     f"mean={sum(lengths) / len(lengths):.2f}")
    n = len(ds.catalog)
    fields = {
        "title": sum(1 for it in ds.catalog if it.title),
        "brand": sum(1 for it in ds.catalog if it.brand),
        "categories": sum(1 for it in ds.catalog if it.categories),
        "price": sum(1 for it in ds.catalog if it.price),
        "description": sum(1 for it in ds.catalog if it.description),
    }
    lines.append("items with " + ", ".join(f"{k} {v}/{n}" for k, v in fields.items()))
    used = len({i for s in ds.sequences.values() for i in s})
    if used < n:
        lines.append(f"catalog items never interacted with: {n - used}")
    for reason, count in ds.dropped.items():
        lines.append(f"dropped ({reason}): {count}")
    lines.append(ds.stats_line())
    return lines


def dataset_stats(fmt: str, path: str, on_unknown_item: str = "error", **options) -> str:
    """Lines describing the dataset; the last is ``users=N items=N interactions=N``.

    ``fmt="demo"`` takes a demo category name as ``path``. ``options`` go to the reader.
    """
    if fmt == "demo":
        src = DatasetSource(format="demo", name=path)
    else:
        src = DatasetSource(format=fmt, path=path, on_unknown_item=on_unknown_item, options=options)
    ds = src.load()
    lines = describe(ds)
    lines[0] += f" ({fmt}: {path})"
    return "\n".join(lines)
