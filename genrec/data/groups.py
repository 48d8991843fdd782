"""Head/tail users and items by the Pareto rule (SPEC.md §2), from training interactions only.

Exactly ceil(0.2 N) are head. Users are sorted by training-sequence length descending, ties
by user id ascending (numerically when every id is an integer, else as strings); items by
training interaction count descending, ties by item index ascending.
"""

from __future__ import annotations

import math
from fractions import Fraction
from itertools import chain

import numpy as np


def item_popularity(train: dict[str, list[int]], num_items: int) -> np.ndarray:
    """Training interaction count per item index (repeats counted), shape ``(num_items,)``."""
    flat = np.fromiter(chain.from_iterable(train.values()), dtype=np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= num_items):
        raise ValueError(f"item index out of range 0..{num_items - 1} in training sequences")
    return np.bincount(flat, minlength=num_items).astype(np.int64)


def head_count(n: int, frac: float = 0.2) -> int:
    """ceil(frac * n), computed exactly (no float round-off at the boundary)."""
    return math.ceil(Fraction(str(frac)) * n)


def _user_key(users: list[str]):
    if all(u.lstrip("-").isascii() and u.lstrip("-").isdigit() for u in users):
        return lambda u: int(u)
    return lambda u: u


def head_users(train: dict[str, list[int]], frac: float = 0.2) -> set[str]:
    """The ceil(frac N) users with the longest training sequences (N = every user in ``train``).

    Ties by user id ascending: numerically when every id is an integer ("2" < "10"), else
    as strings ("10" < "2").
    """
    users = list(train)
    if not users:
        return set()
    key = _user_key(users)
    order = sorted(users, key=lambda u: (-len(train[u]), key(u)))
    return set(order[: head_count(len(users), frac)])


def head_items(train: dict[str, list[int]], num_items: int, frac: float = 0.2) -> np.ndarray:
    """Boolean mask over item indices: True for the ceil(frac N) most popular items."""
    counts = item_popularity(train, num_items)
    order = np.lexsort((np.arange(num_items), -counts))  # primary: count desc; then index asc
    mask = np.zeros(num_items, dtype=bool)
    mask[order[: head_count(num_items, frac)]] = True
    return mask
