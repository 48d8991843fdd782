"""Several shops as one dataset: the training side of the zero-shot protocol (issue #31).

A model meant for a shop it has never seen is trained on the union of other shops. Their item
and user ids may collide (DEALRec's are small integers, and two shops can share a user), so every
id is prefixed by its shop's name: ``"<shop>/<id>"``. Catalogs are concatenated in the given
order, so shop k's item i is row ``offset_k + i`` of the mixed catalog and item vectors cached per
shop can be concatenated the same way (:func:`offsets`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from genrec.data.catalog import Catalog
from genrec.data.dataset import SequenceDataset
from genrec.errors import ConfigError


def offsets(datasets: Sequence[SequenceDataset]) -> list[int]:
    """Row of each shop's first item in the mixed catalog."""
    out, total = [], 0
    for ds in datasets:
        out.append(total)
        total += len(ds.catalog)
    return out


def mix_datasets(datasets: Sequence[SequenceDataset], name: str = "") -> SequenceDataset:
    """One dataset holding every shop's items and users, ids prefixed by the shop's name."""
    if not datasets:
        raise ConfigError("mixing shops needs at least one dataset")
    names = [ds.name for ds in datasets]
    if len(set(names)) != len(names):
        raise ConfigError(f"shops to mix must have distinct names (they prefix every id), got {names}")
    items, sequences, dropped = [], {}, {}
    for ds, start in zip(datasets, offsets(datasets)):
        items.extend(replace(item, item_id=f"{ds.name}/{item.item_id}") for item in ds.catalog)
        for user, seq in ds.sequences.items():
            sequences[f"{ds.name}/{user}"] = [start + i for i in seq]
        for reason, count in ds.dropped.items():
            dropped[f"{ds.name}: {reason}"] = count
    return SequenceDataset(Catalog(items), sequences, name=name or "+".join(names), dropped=dropped)
