"""Full-catalog ranking metrics with optimistic and pessimistic tie handling (SPEC.md §1).

QRR grounding leaves many items with equal scores (often 0), so the rank of the target is
reported both ways: optimistic = 1 + #{items scored strictly higher}; pessimistic =
#{items scored higher or equal}, the target counted. Without a tie the two agree.

Conventions (fixed here so every report means the same thing):

* NaN scores count as -inf: a backend that failed to score an item ranks it last, never first.
* Masking (``exclude``, usually the user's history) sets those items to -inf before ranking,
  **except the target itself**: if the target also occurs in the history it stays rankable,
  so a repeat purchase can still be a hit. Masked items tie with a target scored -inf.
* Ranks are 1-based ints; NDCG@K = 1/log2(rank+1) if rank <= K else 0; Recall@K = [rank <= K];
  ``mrr`` is the full-ranking MRR, 1/rank at any depth; ``mrr@10`` is RecBole's truncated MRR@10,
  1/rank if rank <= 10 else 0. They are different numbers (SPEC.md §12): tables label ``mrr`` "full".
* The headline of a report is the *expected* metric under random tie-breaking (side ``exp``):
  the target's rank is uniform over [opt, pes], so each user's value is the mean of the metric
  over that range, computed exactly in closed form (:func:`expected_metrics`). Neither the
  optimistic value (which gives a user whose generation grounded to nothing rank 1) nor the
  pessimistic one is what a reader should take; both stay beside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

DEFAULT_KS = (1, 10)
MRR_K = 10  # RecBole's MRR@10
METRIC_ORDER = ("ndcg@10", "recall@1", "recall@10", "mrr@10", "mrr")
SIDES = ("exp", "opt", "pes")  # expected under random tie-breaking (the headline), optimistic, pessimistic
LABELS = {"mrr": "MRR (full)", "mrr@10": "MRR@10"}  # how tables name a metric key, where the key alone is ambiguous
_EXACT_HARMONIC = 64  # H(n) summed exactly below this; the asymptotic series above it errs by < 1e-17
GROUPS = ("overall", "head_users", "tail_users", "head_items", "tail_items")


def _exclusions(exclude: Sequence[Sequence[int]], targets: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the items to mask, each (row, col) once, the row's target left out."""
    lengths = np.fromiter((len(h) for h in exclude), dtype=np.int64, count=len(exclude))
    if not lengths.sum():
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    cols = np.concatenate([np.asarray(h, dtype=np.int64).reshape(-1) for h in exclude if len(h)])
    rows = np.repeat(np.arange(len(exclude), dtype=np.int64), lengths)
    if cols.min() < 0 or cols.max() >= n:
        bad = int(rows[(cols < 0) | (cols >= n)][0])
        raise ValueError(f"exclude[{bad}] holds an item index out of range [0, {n})")
    keys = np.unique(rows * n + cols)  # a history may repeat an item: mask it once
    rows, cols = keys // n, keys % n
    keep = cols != targets[rows]
    return rows[keep], cols[keep]


def ranks(scores: np.ndarray, targets: np.ndarray, exclude: Sequence[Sequence[int]] | None = None,
          chunk_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Optimistic and pessimistic 1-based ranks of each row's target, as int64 arrays [B].

    ``scores`` is [B, N] over the whole catalog (any float dtype; read-only views such as
    ``np.broadcast_to`` are fine, nothing is copied whole); ``targets`` [B] item indices;
    ``exclude[b]`` the item indices to mask for row b (or None). Rows are processed
    ``chunk_size`` at a time, so extra memory is O(chunk_size * N) booleans. Masking is applied
    as a correction of the counts (the masked items' own comparisons are subtracted) rather
    than by writing -inf into a copy, which keeps 10k x 10k at about a second.
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets, dtype=np.int64).reshape(-1)
    if scores.ndim != 2 or scores.shape[0] != targets.shape[0]:
        raise ValueError(f"scores must be [B, N] with B = len(targets); got {scores.shape} and {targets.shape}")
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    b, n = scores.shape
    if b and (targets.min() < 0 or targets.max() >= n):
        raise ValueError(f"target index out of range [0, {n})")
    if exclude is not None and len(exclude) != b:
        raise ValueError(f"exclude must have one entry per row: {len(exclude)} != {b}")
    opt = np.empty(b, dtype=np.int64)
    pes = np.empty(b, dtype=np.int64)
    for start in range(0, b, max(int(chunk_size), 1)):
        stop = min(start + max(int(chunk_size), 1), b)
        block = scores[start:stop]
        local = np.arange(stop - start)
        t = targets[start:stop]
        ts = block[local, t].astype(block.dtype)
        ts[np.isnan(ts)] = -np.inf
        col = ts[:, None]
        higher = np.count_nonzero(block > col, axis=1)
        equal = np.count_nonzero(block == col, axis=1)  # the target counts itself (it is not NaN any more)
        low = np.isneginf(ts)
        if low.any():  # a target at -inf also ties with the NaN items (they count as -inf)
            equal[low] += np.count_nonzero(np.isnan(block[low]), axis=1)  # a NaN target included
        if exclude is not None:
            rows, cols = _exclusions(exclude[start:stop], t, n)
            if len(rows):
                vals = block[rows, cols]
                vals = np.where(np.isnan(vals), -np.inf, vals)
                higher -= np.bincount(rows, weights=vals > ts[rows], minlength=len(t)).astype(np.int64)
                # A masked item becomes -inf: it leaves the tie if it was tied, or joins one at -inf.
                was_equal = vals == ts[rows]
                now_equal = np.isneginf(ts[rows])
                equal += np.bincount(rows, weights=now_equal.astype(np.int64) - was_equal,
                                     minlength=len(t)).astype(np.int64)
        opt[start:stop] = 1 + higher
        pes[start:stop] = higher + equal
    return opt, pes


def per_user_metrics(rank: np.ndarray, ks: Sequence[int] = DEFAULT_KS, ndcg_k: int = 10) -> dict[str, np.ndarray]:
    """NDCG@ndcg_k, Recall@K for each K, MRR@10 and the full MRR, one float per user."""
    rank = np.asarray(rank, dtype=np.float64)
    if rank.size and rank.min() < 1:
        raise ValueError("ranks are 1-based; got a rank < 1")
    out = {f"ndcg@{ndcg_k}": np.where(rank <= ndcg_k, 1.0 / np.log2(rank + 1.0), 0.0)}
    for k in ks:
        out[f"recall@{k}"] = (rank <= k).astype(np.float64)
    out[f"mrr@{MRR_K}"] = np.where(rank <= MRR_K, 1.0 / rank, 0.0)
    out["mrr"] = 1.0 / rank
    return out


def harmonic(n: np.ndarray) -> np.ndarray:
    """H(n) = 1 + 1/2 + ... + 1/n for integer n >= 0 (H(0) = 0), as float64: summed exactly below
    64, by the Euler-Maclaurin series above (error < 1e-17), so a catalog of any size costs O(1)."""
    n = np.asarray(n, dtype=np.int64)
    table = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, _EXACT_HARMONIC, dtype=np.float64))])
    x = np.maximum(n, 1).astype(np.float64)
    inv2 = 1.0 / (x * x)
    series = np.log(x) + np.euler_gamma + 0.5 / x - inv2 * (1 / 12 - inv2 * (1 / 120 - inv2 / 252))
    return np.where(n < _EXACT_HARMONIC, table[np.clip(n, 0, _EXACT_HARMONIC - 1)], series)


def expected_metrics(opt: np.ndarray, pes: np.ndarray, ks: Sequence[int] = DEFAULT_KS,
                     ndcg_k: int = 10) -> dict[str, np.ndarray]:
    """Each user's expected metrics when ties are broken at random (SPEC.md §12): the target's rank
    is uniform over [opt, pes], so a metric's expectation is its mean over that range.

    Exact and O(K) per user whatever the catalog size: with w = pes - opt + 1 and a = opt - 1,
    NDCG@K = (C(min(pes, K)) - C(min(a, K))) / w where C(m) = sum_{r<=m} 1/log2(r+1) (nothing is
    added beyond K), Recall@K = (min(pes, K) - min(a, K)) / w, MRR@10 the same with harmonic
    numbers H, full MRR = (H(pes) - H(a)) / w. An untied user (w = 1) gets the point value itself,
    bit for bit, so expected == optimistic == pessimistic wherever nothing ties.
    """
    opt = np.asarray(opt, dtype=np.int64).reshape(-1)
    pes = np.asarray(pes, dtype=np.int64).reshape(-1)
    if opt.shape != pes.shape:
        raise ValueError(f"opt and pes differ in length: {len(opt)} != {len(pes)}")
    if opt.size and (opt.min() < 1 or (pes < opt).any()):
        raise ValueError("ranks are 1-based with opt <= pes; got a rank < 1 or opt > pes")
    point = per_user_metrics(opt, ks, ndcg_k)
    tied = pes > opt
    if not tied.any():
        return point
    w = (pes - opt + 1).astype(np.float64)
    a = opt - 1

    def span(cum: np.ndarray, k: int) -> np.ndarray:
        return cum[np.minimum(pes, k)] - cum[np.minimum(a, k)]

    discounts = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, ndcg_k + 2, dtype=np.float64)))])
    ranged = {f"ndcg@{ndcg_k}": span(discounts, ndcg_k) / w}
    for k in ks:
        ranged[f"recall@{k}"] = (np.minimum(pes, k) - np.minimum(a, k)) / w
    ranged[f"mrr@{MRR_K}"] = (harmonic(np.minimum(pes, MRR_K)) - harmonic(np.minimum(a, MRR_K))) / w
    ranged["mrr"] = (harmonic(pes) - harmonic(a)) / w
    return {k: np.where(tied, ranged[k], v) for k, v in point.items()}


def paired_ci(a: np.ndarray, b: np.ndarray, resamples: int, seed: int = 0) -> tuple[float, list[float]]:
    """Mean of a - b over users and its 95% bootstrap interval (users resampled)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.size == 0:
        return 0.0, [0.0, 0.0]
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    return float(d.mean()), [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]


def metrics_from_ranks(rank: np.ndarray, ks: Sequence[int] = DEFAULT_KS, ndcg_k: int = 10) -> dict[str, float]:
    """Means of :func:`per_user_metrics`: ``ndcg@10``, ``recall@K`` per K, ``mrr@10``, ``mrr`` (0.0 for no users)."""
    per = per_user_metrics(rank, ks, ndcg_k)
    return {k: (float(v.mean()) if len(v) else 0.0) for k, v in per.items()}


def expected_from_ranks(opt: np.ndarray, pes: np.ndarray, ks: Sequence[int] = DEFAULT_KS,
                        ndcg_k: int = 10) -> dict[str, float]:
    """Means of :func:`expected_metrics` (0.0 for no users): what selection and tuning compare."""
    per = expected_metrics(opt, pes, ks, ndcg_k)
    return {k: (float(v.mean()) if len(v) else 0.0) for k, v in per.items()}


def _summary(opt: np.ndarray, pes: np.ndarray, ks: Sequence[int], empty: np.ndarray | None) -> dict:
    n = int(len(opt))
    out: dict = {"n": n}
    per_side = {"exp": expected_metrics(opt, pes, ks), "opt": per_user_metrics(opt, ks),
                "pes": per_user_metrics(pes, ks)}
    for name in SIDES:
        per = per_side[name]
        out[name] = {k: (float(v.mean()) if n else 0.0) for k, v in per.items()}
        # 95% confidence half-width of the mean (normal approximation), for sampled evaluations.
        out[f"{name}_ci95"] = {k: (1.96 * float(v.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0)
                               for k, v in per.items()}
    if empty is not None:
        out["n_empty"] = int(np.count_nonzero(empty))
    return out


def evaluate_ranking(opt: np.ndarray, pes: np.ndarray, users: Sequence[str], targets: Sequence[int],
                     head_users: set[str], head_items: np.ndarray, ks: Sequence[int] = DEFAULT_KS,
                     empty: Sequence[bool] | None = None) -> dict:
    """Metrics overall and for head/tail users and head/tail items.

    Returns ``{group: {"n": count, "exp": {metric: mean}, "opt": {...}, "pes": {...}, "exp_ci95": {...},
    "opt_ci95": {...}, "pes_ci95": {...}}}`` for the groups in :data:`GROUPS`; ``exp`` (expected under
    random tie-breaking) is the headline. ``empty`` (generative paths) marks the users whose output
    grounded to nothing, every item tied; each group then also counts them as ``n_empty``. A user is
    head if in ``head_users``; an example's item group is that of its test target
    (``head_items[target]``). The groups themselves come from :mod:`genrec.data.groups` (training
    data only, SPEC.md §2 tie rule).
    """
    opt = np.asarray(opt)
    pes = np.asarray(pes)
    targets = np.asarray(targets, dtype=np.int64).reshape(-1)
    if not len(opt) == len(pes) == len(users) == len(targets):
        raise ValueError(f"opt, pes, users and targets differ in length: "
                         f"{len(opt)}, {len(pes)}, {len(users)}, {len(targets)}")
    flags = None if empty is None else np.asarray(empty, dtype=bool).reshape(-1)
    if flags is not None and len(flags) != len(opt):
        raise ValueError(f"empty has {len(flags)} flags for {len(opt)} users")
    head_items = np.asarray(head_items, dtype=bool)
    if len(targets) and targets.max() >= len(head_items):
        raise ValueError(f"a target index is beyond head_items (length {len(head_items)})")
    is_head_user = np.fromiter((u in head_users for u in users), dtype=bool, count=len(users))
    is_head_item = head_items[targets] if len(targets) else np.zeros(0, dtype=bool)
    masks = {
        "overall": np.ones(len(opt), dtype=bool),
        "head_users": is_head_user,
        "tail_users": ~is_head_user,
        "head_items": is_head_item,
        "tail_items": ~is_head_item,
    }
    return {g: _summary(opt[m], pes[m], ks, None if flags is None else flags[m]) for g, m in masks.items()}


def evaluate_parts(opt: np.ndarray, pes: np.ndarray, users: Sequence[str], targets: Sequence[int],
                   parts: Mapping[str, np.ndarray], head_users: set[str], head_items: np.ndarray,
                   empty: Sequence[bool] | None = None) -> dict[str, dict]:
    """``{name: the overall group of evaluate_ranking}`` on the events each boolean mask of ``parts``
    selects (the cold-item protocol's cold- and warm-target events)."""
    opt, pes, targets = np.asarray(opt), np.asarray(pes), np.asarray(targets, dtype=np.int64)
    flags = None if empty is None else np.asarray(empty, dtype=bool)
    out = {}
    for name, mask in parts.items():
        idx = np.flatnonzero(mask)
        out[name] = evaluate_ranking(opt[idx], pes[idx], [users[i] for i in idx], targets[idx], head_users,
                                     head_items, empty=None if flags is None else flags[idx])["overall"]
    return out


def label(metric: str) -> str:
    """A metric key as a table names it (``mrr`` is the full-ranking MRR, not RecBole's MRR@10)."""
    return LABELS.get(metric, metric)


def format_table(reports: Mapping[str, dict], group: str = "overall") -> str:
    """A Markdown table comparing methods, one row per method, for one group: each metric's expected
    value under random tie-breaking (the headline) with its optimistic / pessimistic bounds beside
    it, and, where a report counts them, the users whose generation grounded to nothing."""
    empty = any("n_empty" in r[group] for r in reports.values())
    header = ("| method | n | " + " | ".join(f"{label(m)} exp (opt/pes)" for m in METRIC_ORDER)
              + (" | n_empty" if empty else "") + " |")
    lines = [header, "|" + "---|" * (2 + len(METRIC_ORDER) + empty)]
    for method, report in reports.items():
        g = report[group]
        cells = [f"**{_get(g, 'exp', m):.4f}** ({_get(g, 'opt', m):.4f} / {_get(g, 'pes', m):.4f})"
                 for m in METRIC_ORDER]
        if empty:
            cells.append(str(g.get("n_empty", "")))
        lines.append(f"| {method} | {g['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _get(group: Mapping, side: str, metric: str) -> float:
    return group.get(side, {}).get(metric, float("nan"))


def format_report(report: dict, metrics: Sequence[str] | None = None) -> str:
    """A Markdown table of ONE report: a row per metric, an exp, opt and pes column per group.

    The header row carries each group's count, e.g. ``head_users (n=200) exp``.
    """
    groups = [g for g in GROUPS if g in report]
    metrics = list(metrics) if metrics else [m for m in report[groups[0]]["opt"]]
    lines = ["| metric | " + " | ".join(f"{g} (n={report[g]['n']}) {side}" for g in groups for side in SIDES)
             + " |", "|" + "---|" * (1 + len(SIDES) * len(groups))]
    for m in metrics:
        cells = [f"{_get(report[g], side, m):.4f}" for g in groups for side in SIDES]
        lines.append(f"| {label(m)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_group_table(reports: Mapping[str, dict], metric: str = "ndcg@10") -> str:
    """A Markdown table of one metric, expected (opt / pes), by user and item group, one row per method."""
    lines = ["| method | " + " | ".join(f"{g} {label(metric)}" for g in GROUPS) + " |", "|" + "---|" * (1 + len(GROUPS))]
    for method, report in reports.items():
        cells = [f"{_get(report[g], 'exp', metric):.4f} ({report[g]['opt'][metric]:.4f} / "
                 f"{report[g]['pes'][metric]:.4f}, n={report[g]['n']})" for g in GROUPS]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
