"""The cold-item protocol (issue #31): a seeded share of the catalog that training never sees.

A model that ranks only items it was trained on cannot be told apart from one that can rank a
new item by its text, unless some test targets are items absent from training. The protocol:

* **cold set**: ``round(fraction * N)`` catalog items drawn without replacement by
  ``numpy.random.default_rng(seed)`` (items with no interaction included: the share is of the
  catalog, not of the interactions).
* **training**: every occurrence of a cold item is removed from each user's training sequence,
  and a purchase that then repeats the one before it is dropped (as the normal split does); a
  user left with nothing is removed from training (one left with a single item keeps it: it
  counts for popularity, and the trainer skips it as always).
* **validation**: an example whose target is cold is dropped; every other example's history
  is the user's cold-free training sequence (cold items removed from it too), and an example
  whose history becomes empty is dropped.
* **test**: exactly the normal leave-one-out test split — each user's last item, the whole
  history before it, cold items included (by then they have appeared).

Nothing else changes: text statistics over the catalog (centring, PCA of item vectors) may still
read cold items' text, which exists before any interaction with them.

**Held-out items** (``weight_on=held_out``): the validation split holds no cold target, so a
setting that only matters for new items (how much text-kNN weighs beside a trained model,
:mod:`genrec.esr.new_item_scores`) cannot be chosen on it. :func:`held_out_items` draws a second
seeded set of the same size from the warm items; a second model trained without them too ranks
the validation split, where they are new items and some events' targets, as the cold items are at
test time. The test split and the cold set are untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genrec.data.dataset import Example, SequenceDataset, Split
from genrec.data.preprocess import dedup_consecutive, leave_one_out
from genrec.errors import ConfigError

ID_ROWS = ("mean", "text", "learned")
NEW_ITEM_SCORES = ("raw", "calibrated", "text_fused")  # genrec.esr.new_item_scores
WEIGHT_ON = ("valid", "held_out")  # where text_fused's weight is chosen (module docstring)
TEXT_WEIGHTS = ("one", "per_group")  # text_fused: one kNN weight, or the trained and the new items' apart


@dataclass
class ColdConfig:
    fraction: float = 0.0  # share of the catalog held out of training (0 = the normal split)
    seed: int = 0  # which items are cold
    id_rows: str = "mean"  # a cold item's ID row after training: mean (of trained rows) | text (ridge-mapped from its text) | learned (the map esr.id_dropout trained)
    scores: str = "raw"  # raw | calibrated (cold items standardised as their own source) | text_fused (+ text-kNN)
    weight_on: str = "valid"  # text_fused's weight chosen on: valid | held_out (validation with held-out items new)
    text_weights: str = "one"  # text_fused: one | per_group (the new items' kNN weight chosen apart; needs held_out)

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.fraction) < 1.0:
            raise ConfigError(f"cold.fraction must be in [0, 1), got {self.fraction}")
        if self.id_rows not in ID_ROWS:
            raise ConfigError(f"cold.id_rows must be one of {', '.join(ID_ROWS)}, got {self.id_rows!r}")
        if self.scores not in NEW_ITEM_SCORES:
            raise ConfigError(f"cold.scores must be one of {', '.join(NEW_ITEM_SCORES)}, got {self.scores!r}")
        if self.weight_on not in WEIGHT_ON:
            raise ConfigError(f"cold.weight_on must be one of {', '.join(WEIGHT_ON)}, got {self.weight_on!r}")
        if self.weight_on == "held_out" and self.scores != "text_fused":
            raise ConfigError("cold.weight_on=held_out chooses text_fused's weight: it needs cold.scores=text_fused")
        if self.text_weights not in TEXT_WEIGHTS:
            raise ConfigError(f"cold.text_weights must be one of {', '.join(TEXT_WEIGHTS)}, got {self.text_weights!r}")
        if self.text_weights == "per_group" and self.weight_on != "held_out":
            raise ConfigError("cold.text_weights=per_group chooses the new items' own weight, which needs new-item "
                              "targets: set cold.weight_on=held_out (the validation split holds none)")

    @property
    def enabled(self) -> bool:
        return self.fraction > 0


def cold_items(num_items: int, cfg: ColdConfig) -> np.ndarray:
    """The sorted catalog indices of the cold set (empty when the protocol is off)."""
    count = int(round(cfg.fraction * num_items))
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(cfg.seed)
    return np.sort(rng.choice(num_items, size=count, replace=False)).astype(np.int64)


def held_out_items(num_items: int, cold: np.ndarray, cfg: ColdConfig) -> np.ndarray:
    """The sorted held-out items (module docstring): as many as the cold set, drawn without
    replacement from the warm items by ``numpy.random.default_rng((seed, 1))``, so they depend on
    the cold set's seed and never overlap it."""
    warm = np.setdiff1d(np.arange(num_items, dtype=np.int64), cold)
    count = min(len(cold), len(warm))
    rng = np.random.default_rng((cfg.seed, 1))
    return np.sort(rng.choice(warm, size=count, replace=False)).astype(np.int64)


def remove_cold(split: Split, cold: np.ndarray) -> Split:
    """``split`` with the cold items out of training and validation (module docstring); the test
    split is the same list of examples."""
    cold_set = set(int(i) for i in cold)
    train: dict[str, list[int]] = {}
    for user, seq in split.train.items():
        kept = dedup_consecutive([i for i in seq if i not in cold_set])
        if kept:
            train[user] = kept
    valid = [Example(ex.user, tuple(train[ex.user]), ex.target) for ex in split.valid
             if ex.target not in cold_set and ex.user in train]
    return Split(dataset=split.dataset, train=train, valid=valid, test=split.test)


def cold_split(ds: SequenceDataset, cfg: ColdConfig) -> tuple[Split, np.ndarray]:
    """(leave-one-out split under the protocol, cold item indices); the normal split when off."""
    split = leave_one_out(ds)
    cold = cold_items(len(ds.catalog), cfg)
    return (remove_cold(split, cold) if len(cold) else split), cold


def cold_targets(examples: list[Example], cold: np.ndarray) -> np.ndarray:
    """One flag per example: is its target a cold item?"""
    flags = np.zeros(max(int(cold.max()) + 1 if len(cold) else 0, 1), dtype=bool)
    flags[cold] = True
    targets = np.asarray([e.target for e in examples], dtype=np.int64)
    return np.where(targets < len(flags), flags[np.minimum(targets, len(flags) - 1)], False)
