"""Head/tail users and items by the Pareto rule (SPEC.md §2), from training interactions only.

Exactly ceil(0.2 N) are head. Users are sorted by training-sequence length descending, ties
by user id ascending (numerically when every id is an integer, else as strings); items by
training interaction count descending, ties by item index ascending.
"""

from __future__ import annotations

import math

import numpy as np


def item_popularity(train: dict[str, list[int]], num_items: int) -> np.ndarray:
    """Training interaction count per item index."""
    counts = np.zeros(num_items, dtype=np.int64)
    for seq in train.values():
        if seq:
            np.add.at(counts, np.asarray(seq, dtype=np.int64), 1)
    return counts


def _user_key(users: list[str]):
    if all(u.lstrip("-").isdigit() for u in users):
        return lambda u: int(u)
    return lambda u: u


def head_users(train: dict[str, list[int]], frac: float = 0.2) -> set[str]:
    users = list(train)
    if not users:
        return set()
    key = _user_key(users)
    order = sorted(users, key=lambda u: (-len(train[u]), key(u)))
    return set(order[: math.ceil(frac * len(users))])


def head_items(train: dict[str, list[int]], num_items: int, frac: float = 0.2) -> np.ndarray:
    """Boolean mask over item indices: True for the ceil(frac N) most popular items."""
    counts = item_popularity(train, num_items)
    order = np.lexsort((np.arange(num_items), -counts))  # primary: count desc; then index asc
    mask = np.zeros(num_items, dtype=bool)
    mask[order[: math.ceil(frac * num_items)]] = True
    return mask
