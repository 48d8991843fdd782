"""Fusing the fallback's full-catalog scores with a generative signal (SPEC.md §6).

The fallback (LLM-ESR) scores every item; a generative mode scores a few (QRR's matched items,
the constrained beams' items, the reranked top-M), the rest being absent (-inf). Two fusions:

* ``zsum``: z(f) + w · z(g), each standardised per user over the catalog; an absent g takes
  the lowest present value, so absence never beats presence and the fallback orders the rest;
* ``rrf``: reciprocal-rank fusion 1/(c + rank_f) + w / (c + rank_g), the second term only for
  items the generative mode scored (ranks 1-based, ties by catalog index).

The weight w (and c) is chosen on the validation split only (:func:`tune` refuses any other, so
no test number is ever tuned on; run by ``eval/evaluate_modes.py tune_fusion=true``), by the
expected NDCG@10 under random tie-breaking, and stored in the bundle's settings with where it
was chosen (``chosen_on``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from genrec.errors import ConfigError
from genrec.metrics import expected_from_ranks, ranks

METHODS = ("none", "zsum", "rrf")
# Why the grids reach this low: a generative mode scores a few dozen of the catalog's items, so their
# z-scores are large (~sqrt(N / present): ~10-20 on Scientific's 4,344 items) and a small w already
# moves them a whole fallback standard deviation. On Scientific validation (200 users, 2026-11-30)
# zsum's best w was the old grid's lowest (0.02) for three of four modes; the points below it, added
# then, scored lower (0.002-0.01), so the optimum there is inside the grid, not beyond its edge.
ZSUM_WEIGHTS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
RRF_WEIGHTS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
RRF_CS = (10.0, 60.0)


@dataclass
class FusionSettings:
    """How the final score combines the fallback and the generative mode (``recommender.fusion``)."""

    method: str = "none"     # none (the mode alone) | zsum | rrf
    weight: float = 1.0      # w of the generative signal; the fallback's weight is 1
    rrf_c: float = 60.0      # c of reciprocal-rank fusion
    chosen_on: str = ""      # where w (and c) were chosen, written by the tuning command
    # "mode/method" -> {"weight", "rrf_c", "ndcg@10"}: the validation grid's best for each pair,
    # written by ``eval/evaluate_modes.py tune_fusion=true``; used whenever that pair is asked for
    tuned: dict = field(default_factory=dict)

    def for_mode(self, mode: str, method: str | None = None) -> FusionSettings:
        """The settings for ``mode`` fused by ``method`` (default: this one): the tuned weights
        of that pair when there are any, else these."""
        method = method or self.method
        chosen = self.tuned.get(f"{mode}/{method}")
        if chosen is None:
            return dataclasses.replace(self, method=method)
        return dataclasses.replace(self, method=method, weight=float(chosen["weight"]),
                                   rrf_c=float(chosen.get("rrf_c", self.rrf_c)))

    def check(self) -> FusionSettings:
        if self.method not in METHODS:
            raise ConfigError(f"fusion.method must be one of {', '.join(METHODS)}; got {self.method!r}")
        if not np.isfinite(self.weight) or self.weight < 0 or self.rrf_c < 0:
            raise ConfigError(f"fusion: weight and rrf_c must be >= 0; got {self.weight}, {self.rrf_c}")
        return self


def _z(x: np.ndarray) -> np.ndarray:
    """Per-row standardisation; a constant row becomes zeros."""
    mean = x.mean(axis=1, keepdims=True)
    std = x.std(axis=1, keepdims=True)
    return (x - mean) / np.where(std > 0, std, 1.0)


def _fill_absent(g: np.ndarray) -> np.ndarray:
    """-inf (absent) → the row's lowest present value (0 when none is present)."""
    present = np.isfinite(g)
    low = np.where(present, g, np.inf).min(axis=1, keepdims=True)
    low = np.where(np.isfinite(low), low, 0.0)
    return np.where(present, g, low)


def _ordinal_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks per row, best (highest) first, ties by lower index."""
    order = np.argsort(-x, axis=1, kind="stable")
    r = np.empty_like(order)
    np.put_along_axis(r, order, np.arange(1, x.shape[1] + 1)[None, :].repeat(x.shape[0], 0), axis=1)
    return r


def fuse(fallback: np.ndarray, signal: np.ndarray, settings: FusionSettings) -> np.ndarray:
    """Fused scores [B, N] (or [N] for one user) from fallback scores and a generative signal
    with -inf where absent. ``method: none`` returns the signal unchanged."""
    settings.check()
    one = np.ndim(signal) == 1
    f = np.atleast_2d(np.asarray(fallback, dtype=np.float64))
    g = np.atleast_2d(np.asarray(signal, dtype=np.float64))
    if f.shape != g.shape:
        raise ValueError(f"fallback scores {f.shape} and signal {g.shape} differ in shape")
    if settings.method == "none":
        out = g
    elif settings.method == "zsum":
        out = _z(np.nan_to_num(f, nan=0.0, neginf=np.nanmin(np.where(np.isfinite(f), f, np.nan)))) \
            + settings.weight * _z(_fill_absent(g))
    else:
        present = np.isfinite(g)
        rf = _ordinal_ranks(np.where(np.isfinite(f), f, -np.inf))
        rg = _ordinal_ranks(np.where(present, g, -np.inf))
        out = 1.0 / (settings.rrf_c + rf) + np.where(present, settings.weight / (settings.rrf_c + rg), 0.0)
    return out[0] if one else out


def candidates() -> list[FusionSettings]:
    """The grid :func:`tune` searches."""
    grid = [FusionSettings("zsum", w) for w in ZSUM_WEIGHTS]
    grid += [FusionSettings("rrf", w, c) for c in RRF_CS for w in RRF_WEIGHTS]
    return grid


TUNING_SPLIT = "valid"


def tune(fallback: np.ndarray, signal: np.ndarray, targets: Sequence[int],
         exclude: Sequence[Sequence[int]] | None = None, grid: Sequence[FusionSettings] | None = None,
         *, split: str) -> tuple[FusionSettings, list[dict]]:
    """The grid point with the best expected NDCG@10 (random tie-breaking) on these users of
    ``split``, and every point's value (so the choice can be reported). Only the validation split
    may choose weights: tuning on the test users would report a number chosen on them."""
    if split != TUNING_SPLIT:
        raise ConfigError(f"fusion weights are chosen on the validation split only (split={TUNING_SPLIT}); "
                          f"got split={split!r}: run the tuning on {TUNING_SPLIT}, then evaluate on {split} with "
                          f"the weights it stored")
    table = []
    best, best_value = None, -1.0
    for s in grid or candidates():
        opt, pes = ranks(fuse(fallback, signal, s), np.asarray(targets), exclude=exclude)
        value = expected_from_ranks(opt, pes)["ndcg@10"]
        table.append({"method": s.method, "weight": s.weight, "rrf_c": s.rrf_c, "ndcg@10_expected": round(value, 5)})
        if value > best_value:
            best, best_value = s, value
    assert best is not None
    return best, table
