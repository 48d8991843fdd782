"""CALRec preprocessing (SPEC.md §1): dedup, k-core, leave-one-out split, augmentation, mixing.

All functions are pure (randomness comes in as a ``numpy.random.Generator``) so a run is
reproducible from its seed.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from genrec.data.dataset import Example, SequenceDataset, Split

log = logging.getLogger(__name__)


def dedup_consecutive(seq: Sequence[int]) -> list[int]:
    """Drop a purchase that exactly repeats the previous one; a later re-purchase is kept."""
    out: list[int] = []
    for item in seq:
        if not out or out[-1] != item:
            out.append(item)
    return out


def dedup_dataset(ds: SequenceDataset) -> SequenceDataset:
    """Every sequence deduplicated; the number removed is added to ``dropped['consecutive_repeat']``."""
    seqs = {u: dedup_consecutive(s) for u, s in ds.sequences.items()}
    removed = ds.num_interactions - sum(len(s) for s in seqs.values())
    dropped = dict(ds.dropped)
    if removed:
        dropped["consecutive_repeat"] = dropped.get("consecutive_repeat", 0) + removed
    return SequenceDataset(ds.catalog, seqs, name=ds.name, dropped=dropped)


def kcore(ds: SequenceDataset, k: int) -> SequenceDataset:
    """Iterative k-core: repeat until every user and every item has at least ``k`` interactions.

    An item's count is its number of interactions (repeats included), as in the Amazon
    "5-core" files. The catalog is kept whole — indices stay stable, so prompts, indexes and
    caches built on it remain valid; only the sequences are filtered. What was removed is
    counted in ``dropped`` (``kcore_interactions``, ``kcore_users``).
    """
    seqs = {u: list(s) for u, s in ds.sequences.items()}
    if k > 1:
        while True:
            counts = Counter(i for s in seqs.values() for i in s)
            new = {}
            changed = False
            for u, s in seqs.items():
                kept = [i for i in s if counts[i] >= k]
                if len(kept) != len(s):
                    changed = True
                if len(kept) >= k:
                    new[u] = kept
                else:
                    changed = True
            seqs = new
            if not changed:
                break
    dropped = dict(ds.dropped)
    removed = ds.num_interactions - sum(len(s) for s in seqs.values())
    if removed:
        dropped["kcore_interactions"] = dropped.get("kcore_interactions", 0) + removed
    if len(seqs) < ds.num_users:
        dropped["kcore_users"] = dropped.get("kcore_users", 0) + ds.num_users - len(seqs)
    return SequenceDataset(ds.catalog, seqs, name=ds.name, dropped=dropped)


def leave_one_out(ds: SequenceDataset, dedup: bool = True) -> Split:
    """Last item = test target, second-to-last = validation target, the rest = training.

    Users with fewer than three items (after dedup) cannot give all three parts: they
    contribute training data only, and their count is logged.
    """
    if dedup:
        ds = dedup_dataset(ds)
    train: dict[str, list[int]] = {}
    valid: list[Example] = []
    test: list[Example] = []
    short = 0
    for user, seq in ds.sequences.items():
        if len(seq) < 3:
            short += 1
            if seq:
                train[user] = list(seq)
            continue
        train[user] = list(seq[:-2])
        valid.append(Example(user, tuple(seq[:-2]), seq[-2]))
        test.append(Example(user, tuple(seq[:-1]), seq[-1]))
    if short:
        log.info("%s: %d users with fewer than 3 items are used for training only", ds.name, short)
    return Split(dataset=ds, train=train, valid=valid, test=test)


def train_only_users(split: Split) -> list[str]:
    """Users of a split with training data but no validation / test example (fewer than 3 items)."""
    evaluated = {ex.user for ex in split.test}
    return [u for u in split.train if u not in evaluated]


def truncate_history(history: Sequence[int], max_len: int | None) -> tuple[int, ...]:
    """Keep the newest ``max_len`` items (cut from the oldest side)."""
    if max_len is None or len(history) <= max_len:
        return tuple(history)
    return tuple(history[len(history) - max_len:]) if max_len > 0 else ()


def augment_example(user: str, train_seq: Sequence[int], rng: np.random.Generator,
                    max_drop: int = 4) -> Example:
    """CALRec augmentation: drop the last k items, k uniform in {0..max_drop} with k < n-1.

    The last kept item becomes the target and what precedes it the history, so a history is
    never empty.
    """
    n = len(train_seq)
    if n < 2:
        raise ValueError(f"user {user}: a training sequence needs at least 2 items, got {n}")
    k = int(rng.integers(0, min(max_drop, n - 2) + 1))
    kept = train_seq[: n - k]
    return Example(user, tuple(kept[:-1]), kept[-1])


def training_examples(split: Split, rng: np.random.Generator, max_history: int | None = None,
                      max_drop: int = 4) -> list[Example]:
    """One augmented example per user with at least two training items (one epoch's worth)."""
    out = []
    for user, seq in split.train.items():
        if len(seq) < 2:
            continue
        ex = augment_example(user, seq, rng, max_drop)
        out.append(Example(user, truncate_history(ex.history, max_history), ex.target))
    return out


def category_probabilities(counts: Mapping[str, int], power: float = 0.3) -> dict[str, float]:
    """P(c) ∝ n_c^power, so large categories do not swamp small ones in stage 1.

    Categories with no training sequences get no entry (probability zero).
    """
    weights = {c: float(n) ** power for c, n in counts.items() if n > 0}
    total = sum(weights.values())
    if total == 0:
        raise ValueError("no category has training sequences")
    return {c: w / total for c, w in weights.items()}


def training_sequence_count(data: int | SequenceDataset | Split) -> int:
    """n_c of a category: its training sequences that can give an example (at least 2 items).

    A count passes through; a dataset counts its users; a split its train sequences of length >= 2.
    """
    if isinstance(data, Split):
        return sum(1 for s in data.train.values() if len(s) >= 2)
    if isinstance(data, SequenceDataset):
        return data.num_users
    return int(data)


class CategoryMixer:
    """Draws category names with probability ∝ n_c^power (stage-1 mixing, SPEC.md §1).

    ``sources``: ``{name: count | SequenceDataset | Split}``, or a list of datasets / splits
    (named by ``dataset.name``). Draws come from a private seeded generator, so a run
    replays exactly.
    """

    def __init__(self, sources: Mapping[str, int | SequenceDataset | Split] | Sequence[SequenceDataset | Split],
                 power: float = 0.3, seed: int = 0) -> None:
        if isinstance(sources, Mapping):
            counts = {str(name): training_sequence_count(v) for name, v in sources.items()}
        else:
            counts = {}
            for v in sources:
                name = v.dataset.name if isinstance(v, Split) else v.name
                if name in counts:
                    raise ValueError(f"two categories named {name!r}; pass a dict to name them")
                counts[name] = training_sequence_count(v)
        self.counts = counts
        self.probabilities = category_probabilities(counts, power)
        self.names = list(self.probabilities)
        self._p = np.array([self.probabilities[c] for c in self.names])
        self.rng = np.random.default_rng(seed)

    def draw(self) -> str:
        return self.names[int(self.rng.choice(len(self.names), p=self._p))]

    def draw_many(self, n: int) -> list[str]:
        return [self.names[i] for i in self.rng.choice(len(self.names), size=n, p=self._p)]

    def __iter__(self) -> Iterator[str]:
        while True:
            yield self.draw()
