"""Ranking new items beside trained ones: each kind of item scored as its own source (issue #31).

A model trained without some items scores them by another route (an ID row mapped from their
text, an adapter over text it never fitted), and those scores are not on the scale of the
trained items': on Scientific's cold sets LLM-ESR ranks a cold target at a median of ~1,100 of
4,344 while text-kNN, which treats every item alike, puts it in the top 10 about as often as a
warm one. Merging result lists of different sources is what data fusion calibrates for
(Montague & Aslam 2001: standardise each source's scores, then sum). Here the two sources are the
trained items and the new ones, and text-kNN over the user's last item is a third:

* ``calibrated``: each user's model scores standardised (zero mean, unit deviation) within the
  trained items and within the new items separately, so the best new item competes with the best
  trained one on the same footing (under a random cold set, new items are as likely to be a
  target as trained ones);
* ``text_fused``: ``calibrated`` + w * the user's standardised text-kNN scores (cosine of each
  item's text vector to the last item's; ``cold.text_weights=per_group``: one w for the trained
  items and another for the new ones, as data fusion weighs each source by its own worth), w
  chosen on the validation split by the expected NDCG@10 (:func:`choose_weight`). The validation
  split has no new-item target (the protocol keeps them out), so there w is chosen for trained
  targets with new items competing in the ranking; ``cold.weight_on=held_out`` chooses it where
  new items are targets too, on a second model trained without a held-out set of warm items
  (:func:`genrec.data.cold_split.held_out_items`). On Scientific the held-out choice is the better
  one, and the per-group weights trade the new items away (docs/experiments/cold_items.md).

:class:`NewItemScorer` is the saved, servable form: the trained model's scorer, the new items,
the text-kNN vectors and w, in the model's scorer folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from genrec.data.cold_split import NEW_ITEM_SCORES as MODES
from genrec.errors import ConfigError, GenrecError
from genrec.esr.scorer import FallbackScorer, _Base, _check_k
from genrec.esr.text_knn import TextKNNScorer
from genrec.metrics import expected_from_ranks, ranks

NEW_ITEMS_FILE = "new_items.json"
WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)  # the grid w is chosen from


def standardise(scores: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
    """Each row of ``scores[:, columns]`` to zero mean and unit deviation (a constant row to 0)."""
    x = scores if columns is None else scores[:, columns]
    sd = x.std(axis=1, keepdims=True)
    return (x - x.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)


def calibrate(scores: np.ndarray, new: np.ndarray) -> np.ndarray:
    """``scores`` [B, N] standardised per row within the new items (``new``: a boolean mask [N]) and
    within the others separately."""
    out = np.empty(scores.shape, dtype=np.float64)
    for group in (new, ~new):
        if group.any():
            out[:, group] = standardise(scores, group)
    return out


Weight = float | tuple[float, float]  # one kNN weight for every item, or (trained items', new items')
PAIRS = tuple((w, v) for w in WEIGHTS for v in WEIGHTS)  # the grid of per-group weights


def weight_key(w: Weight) -> str:
    """How a grid point is written: ``"0.3"``, or ``"0.3/1.0"`` for (trained, new) items' weights."""
    return str(w) if not isinstance(w, tuple) else f"{w[0]}/{w[1]}"


def fused(model: np.ndarray, knn: np.ndarray | None, new: np.ndarray, weight: float,
          weight_new: float | None = None) -> np.ndarray:
    """``calibrate(model) + w * standardise(knn)`` (the kNN term only where given), w = ``weight``
    on the trained items and ``weight_new`` on the new ones (default: ``weight`` too)."""
    out = calibrate(model, new)
    if knn is None:
        return out
    w_new = weight if weight_new is None else weight_new
    if not (weight or w_new):
        return out
    return out + standardise(knn) * np.where(new, w_new, weight)


def weight_values(model: np.ndarray, knn: np.ndarray, new: np.ndarray, histories: Sequence[Sequence[int]],
                  targets: Sequence[int], grid: Sequence[Weight] = WEIGHTS,
                  groups: dict[str, np.ndarray] | None = None) -> dict[str, dict[str, float]]:
    """{group: {w: expected NDCG@10}} of :func:`fused` over ``grid`` (history masked; a pair sets
    the trained and the new items' weights apart): ``all`` the events, and each of ``groups`` (a
    boolean mask over the events)."""
    t = np.asarray(targets, dtype=np.int64)
    base, z_knn = calibrate(model, new), standardise(knn)  # once: only the weight changes over the grid
    masks = {"all": np.ones(len(t), dtype=bool), **(groups or {})}
    values: dict[str, dict[str, float]] = {g: {} for g in masks}
    for w in grid:
        warm, fresh = w if isinstance(w, tuple) else (w, w)
        opt, pes = ranks(base + z_knn * np.where(new, fresh, warm), t, histories)
        for g, m in masks.items():
            values[g][weight_key(w)] = round(expected_from_ranks(opt[m], pes[m])["ndcg@10"], 6) if m.any() else 0.0
    return values


def choose_weight(model: np.ndarray, knn: np.ndarray, new: np.ndarray, histories: Sequence[Sequence[int]],
                  targets: Sequence[int], grid: Sequence[Weight] = WEIGHTS) -> tuple[Weight, dict[str, float]]:
    """(w, {w: expected NDCG@10}) over ``grid`` on validation scores (history masked); the first
    best in grid order wins a tie (the smallest w; of pairs, the smallest trained then new weight)."""
    values = weight_values(model, knn, new, histories, targets, grid)["all"]
    return best_weight(values, grid), values


def best_weight(values: dict[str, float], grid: Sequence[Weight]) -> Weight:
    """The grid point of the best value in ``values`` (keyed by :func:`weight_key`), the first in
    grid order on a tie."""
    best = max(values.values())
    return next(w for w in grid if values[weight_key(w)] == best)


class NewItemScorer(_Base):
    """A trained model's scorer with new items scored as their own source (module docstring)."""

    def __init__(self, inner: FallbackScorer, new_items: Sequence[int], mode: str,
                 knn: TextKNNScorer | None = None, weight: float = 0.0, meta: dict | None = None,
                 weight_new: float | None = None) -> None:
        if mode not in MODES[1:]:
            raise ConfigError(f"new-item scores must be one of {', '.join(MODES[1:])}, got {mode!r}")
        if mode == "text_fused" and knn is None:
            raise ConfigError("text_fused new-item scores need the text-kNN vectors")
        self.inner, self.mode, self.knn, self.weight = inner, mode, knn, float(weight)
        self.weight_new = None if weight_new is None else float(weight_new)  # None: ``weight`` for new items too
        self.num_items = inner.num_items
        self.new_items = np.asarray(sorted(int(i) for i in new_items), dtype=np.int64)
        if len(self.new_items) and (self.new_items.min() < 0 or self.new_items.max() >= self.num_items):
            raise GenrecError(f"new items must be catalog indices below {self.num_items}")
        self.new = np.zeros(self.num_items, dtype=bool)
        self.new[self.new_items] = True
        self.meta = dict(meta or {})

    def score_batch(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        knn = self.knn.score_batch(histories) if self.mode == "text_fused" else None
        return fused(self.inner.score_batch(histories), knn, self.new, self.weight, self.weight_new)

    def recommend_batch(self, histories: Sequence[Sequence[int]], k: int,
                        exclude_history: bool = True) -> list[list[tuple[int, float]]]:
        k = _check_k(k)
        scores = self.score_batch(histories)
        out = []
        for h, row in zip(histories, scores):
            if exclude_history:
                row[self._known(h)] = -np.inf
            top = np.argsort(-row, kind="stable")[:k]
            out.append([(int(i), float(row[i])) for i in top if np.isfinite(row[i])])
        return out

    def save(self, directory: str | os.PathLike) -> Path:
        """The inner scorer's files, the text-kNN's (if any) and ``new_items.json``."""
        out = self.inner.save(directory)
        if self.knn is not None:
            self.knn.save(out)
        info = {"mode": self.mode, "weight": self.weight, "weight_new": self.weight_new,
                "new_items": self.new_items.tolist(), **self.meta}
        (out / NEW_ITEMS_FILE).write_text(json.dumps(info), encoding="utf-8")
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike, catalog=None) -> NewItemScorer:
        path = Path(directory)
        try:
            info = json.loads((path / NEW_ITEMS_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise GenrecError(f"{path / NEW_ITEMS_FILE}: cannot read the new-item settings: {e}") from None
        knn = TextKNNScorer.load(path) if info["mode"] == "text_fused" else None
        meta = {k: v for k, v in info.items() if k not in ("mode", "weight", "weight_new", "new_items")}
        return cls(FallbackScorer.load(path, catalog), info["new_items"], info["mode"], knn, info["weight"], meta,
                   info.get("weight_new"))

    @staticmethod
    def saved_in(directory: str | os.PathLike) -> bool:
        return (Path(directory) / NEW_ITEMS_FILE).exists()
