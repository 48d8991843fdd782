"""Training and validation rows from leave-one-out splits (SPEC.md §1 data handling).

The training stream is a deterministic function of (seed, row index): row i draws a category
with probability ∝ n_c^0.3 (:class:`~genrec.data.preprocess.CategoryMixer`), takes that
category's next user in a per-epoch permutation (so each user gives one augmented example
per epoch of its category) and augments it (:func:`~genrec.data.preprocess.augment_example`)
with a generator seeded by the row's coordinates. Rendering happens on access. Because any
row can be rebuilt from its index alone, the Trainer's sequential sampler plus its
"skip the batches already seen" on resume replay exactly the same data.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from genrec.data.cold_split import ColdConfig, cold_split
from genrec.data.dataset import Example, Split
from genrec.data.preprocess import CategoryMixer, augment_example, kcore, leave_one_out, truncate_history
from genrec.data.source import DatasetSource
from genrec.errors import ConfigError
from genrec.prompting import PromptTemplate

log = logging.getLogger(__name__)


def load_splits(sources: Sequence[DatasetSource], k: int = 0, cold: ColdConfig | None = None,
                cold_dataset: str = "") -> dict[str, Split]:
    """Each source loaded, optionally k-cored, split leave-one-out; keyed by category name.

    With ``cold`` enabled, the category ``cold_dataset`` is split under the cold-item protocol
    (:mod:`genrec.data.cold_split`: its cold items out of training and validation), so a generative
    model is trained as the fallback models are for the ``scientific_cold`` rows.
    """
    if not sources:
        raise ConfigError("no datasets configured (datasets: [{format, path, name}, ...])")
    cold_on = cold is not None and cold.enabled
    if cold_on and k:
        raise ConfigError("the cold-item protocol draws its items from the catalog as given; set kcore: 0")
    splits: dict[str, Split] = {}
    for src in sources:
        ds = src.load()
        name = src.name or ds.name
        if name in splits:
            raise ConfigError(f"two datasets named {name!r}: give them distinct `name`s")
        if k:
            ds = kcore(ds, k)
        splits[name] = cold_split(ds, cold)[0] if cold_on and name == cold_dataset else leave_one_out(ds)
        log.info("%s: %s, %d training users, %d validation examples", name, ds.stats_line(),
                 len(splits[name].train), len(splits[name].valid))
    if cold_on and cold_dataset not in splits:
        raise ConfigError(f"cold.fraction is set: cold_dataset must name the dataset whose items go cold, "
                          f"one of {list(splits)}; got {cold_dataset!r}")
    return splits


def render_row(template: PromptTemplate, split: Split, ex: Example, tokenizer, max_tokens: int,
               max_history: int | None) -> dict:
    """``{"prompt", "target", "history_span"}`` of one example (the span = the item lines, in characters)."""
    cat = split.dataset.catalog
    history = [cat[i] for i in truncate_history(ex.history, max_history)]
    # One token is left for a BOS the tokenizer may add in front of the prompt.
    prompt, target = template.render_example(history, cat[ex.target], tokenizer, max_tokens - 1)
    return {"prompt": prompt, "target": target, "history_span": template.history_span(prompt)}


class TrainingStream(torch.utils.data.Dataset):
    """``length`` training rows, row i a pure function of (seed, i); see the module docstring."""

    def __init__(self, splits: dict[str, Split], template: PromptTemplate, tokenizer, length: int,
                 max_tokens: int, max_history: int | None = None, max_drop: int = 4, power: float = 0.3,
                 seed: int = 0) -> None:
        self.splits, self.template, self.tokenizer = splits, template, tokenizer
        self.max_tokens, self.max_history, self.max_drop, self.seed = max_tokens, max_history, max_drop, seed
        self.names = list(splits)
        self.users = {c: sorted(u for u, s in splits[c].train.items() if len(s) >= 2) for c in self.names}
        empty = [c for c, us in self.users.items() if not us]
        if empty:
            raise ConfigError(f"dataset(s) {', '.join(empty)}: no user has 2 training items")
        mixer = CategoryMixer({c: len(self.users[c]) for c in self.names}, power=power, seed=seed)
        self.probabilities = mixer.probabilities
        drawn = mixer.draw_many(length) if len(self.names) > 1 else [self.names[0]] * length
        self.cat = np.array([self.names.index(c) for c in drawn], dtype=np.int32)
        # Position of each row in its category's stream -> (epoch, index in that epoch's permutation).
        self.pos = np.zeros(length, dtype=np.int64)
        for ci in range(len(self.names)):
            rows = np.flatnonzero(self.cat == ci)
            self.pos[rows] = np.arange(len(rows))
        self._perms: dict[tuple[int, int], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.cat)

    def example(self, i: int) -> tuple[str, Example]:
        ci = int(self.cat[i])
        name = self.names[ci]
        users = self.users[name]
        epoch, j = divmod(int(self.pos[i]), len(users))
        perm = self._perms.get((ci, epoch))
        if perm is None:
            perm = np.random.default_rng([self.seed, ci, epoch]).permutation(len(users))
            self._perms[(ci, epoch)] = perm
        user = users[int(perm[j])]
        rng = np.random.default_rng([self.seed, ci, epoch, j, 1])
        return name, augment_example(user, self.splits[name].train[user], rng, self.max_drop)

    def __getitem__(self, i: int) -> dict:
        name, ex = self.example(i)
        row = render_row(self.template, self.splits[name], ex, self.tokenizer, self.max_tokens, self.max_history)
        row["category"] = name
        return row


def validation_sample(splits: dict[str, Split], max_examples: int, seed: int) -> list[tuple[str, Example]]:
    """The validation rows of a run: per category a seeded sample of split.valid (at most
    ``max_examples`` over all categories, in split order; 0 = none)."""
    per = max(1, max_examples // max(1, len(splits)))
    items: list[tuple[str, Example]] = []
    for ci, (name, split) in enumerate(splits.items()):
        valid = split.valid
        if len(valid) > per:
            idx = np.sort(np.random.default_rng([seed, ci]).choice(len(valid), per, replace=False))
            valid = [valid[i] for i in idx]
        if max_examples > 0:
            items.extend((name, ex) for ex in valid)
    return items


class ValidationRows(torch.utils.data.Dataset):
    """A fixed, seeded sample of split.valid examples (at most ``max_examples``, shared over categories; 0 = none)."""

    def __init__(self, splits: dict[str, Split], template: PromptTemplate, tokenizer, max_tokens: int,
                 max_history: int | None = None, max_examples: int = 256, seed: int = 0) -> None:
        self.template, self.tokenizer, self.max_tokens, self.max_history = template, tokenizer, max_tokens, max_history
        self.splits = splits
        self.items = validation_sample(splits, max_examples, seed)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        name, ex = self.items[i]
        row = render_row(self.template, self.splits[name], ex, self.tokenizer, self.max_tokens, self.max_history)
        row["category"] = name
        return row
