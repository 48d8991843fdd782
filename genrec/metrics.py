"""Full-catalog ranking metrics with optimistic and pessimistic tie handling (SPEC.md §1).

QRR grounding leaves many items with equal scores (often 0), so the rank of the target is
reported both ways: optimistic = 1 + #{strictly higher}; pessimistic = #{higher or equal},
the target counted. Without a tie the two agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

DEFAULT_KS = (1, 10)


def ranks(scores: np.ndarray, targets: np.ndarray, exclude: Sequence[Sequence[int]] | None = None,
          chunk_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Optimistic and pessimistic 1-based ranks of each row's target.

    ``exclude`` (e.g. the user's history) is set to -inf before ranking, except the target
    itself, which always stays rankable. NaN scores count as -inf. Rows are processed in
    chunks so memory stays bounded for large batches.
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets, dtype=np.int64)
    if scores.ndim != 2 or scores.shape[0] != targets.shape[0]:
        raise ValueError(f"scores must be [B, N] with B = len(targets); got {scores.shape} and {targets.shape}")
    b, n = scores.shape
    if b and (targets.min() < 0 or targets.max() >= n):
        raise ValueError(f"target index out of range [0, {n})")
    opt = np.empty(b, dtype=np.int64)
    pes = np.empty(b, dtype=np.int64)
    for start in range(0, b, chunk_size):
        stop = min(start + chunk_size, b)
        block = np.array(scores[start:stop], dtype=np.float64)
        block[np.isnan(block)] = -np.inf
        rows = np.arange(stop - start)
        t = targets[start:stop]
        target_scores = block[rows, t].copy()
        if exclude is not None:
            for r, hist in enumerate(exclude[start:stop]):
                if len(hist):
                    block[r, np.asarray(hist, dtype=np.int64)] = -np.inf
            block[rows, t] = target_scores  # the target is never masked, even if in the history
        higher = (block > target_scores[:, None]).sum(axis=1)
        equal = (block == target_scores[:, None]).sum(axis=1)
        opt[start:stop] = 1 + higher
        pes[start:stop] = higher + equal
    return opt, pes


def per_user_metrics(rank: np.ndarray, ks: Sequence[int] = DEFAULT_KS, ndcg_k: int = 10) -> dict[str, np.ndarray]:
    """NDCG@ndcg_k, Recall@K for each K, and reciprocal rank, one value per user."""
    rank = np.asarray(rank, dtype=np.float64)
    out = {f"ndcg@{ndcg_k}": np.where(rank <= ndcg_k, 1.0 / np.log2(rank + 1.0), 0.0)}
    for k in ks:
        out[f"recall@{k}"] = (rank <= k).astype(np.float64)
    out["mrr"] = 1.0 / rank
    return out


def metrics_from_ranks(rank: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Means of :func:`per_user_metrics` (0.0 for no users)."""
    per = per_user_metrics(rank, ks)
    return {k: (float(v.mean()) if len(v) else 0.0) for k, v in per.items()}


def _summary(opt: np.ndarray, pes: np.ndarray, ks: Sequence[int]) -> dict:
    n = int(len(opt))
    out: dict = {"n": n}
    for name, r in (("opt", opt), ("pes", pes)):
        per = per_user_metrics(r, ks)
        out[name] = {k: (float(v.mean()) if n else 0.0) for k, v in per.items()}
        # 95% confidence half-width of the mean (normal approximation), for sampled evaluations.
        out[f"{name}_ci95"] = {k: (1.96 * float(v.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0)
                               for k, v in per.items()}
    return out


def evaluate_ranking(opt: np.ndarray, pes: np.ndarray, users: Sequence[str], targets: Sequence[int],
                     head_users: set[str], head_items: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict:
    """Metrics overall and for head/tail users and head/tail items (the test target's group)."""
    opt = np.asarray(opt)
    pes = np.asarray(pes)
    is_head_user = np.array([u in head_users for u in users], dtype=bool)
    is_head_item = np.asarray(head_items, dtype=bool)[np.asarray(targets, dtype=np.int64)] if len(targets) \
        else np.zeros(0, dtype=bool)
    groups = {
        "overall": np.ones(len(opt), dtype=bool),
        "head_users": is_head_user,
        "tail_users": ~is_head_user,
        "head_items": is_head_item,
        "tail_items": ~is_head_item,
    }
    return {g: _summary(opt[m], pes[m], ks) for g, m in groups.items()}


METRIC_ORDER = ("ndcg@10", "recall@1", "recall@10", "mrr")


def format_table(reports: dict[str, dict], group: str = "overall") -> str:
    """A Markdown table: one row per method, opt/pes per metric, for one group."""
    header = "| method | n | " + " | ".join(f"{m} (opt/pes)" for m in METRIC_ORDER) + " |"
    lines = [header, "|" + "---|" * (2 + len(METRIC_ORDER))]
    for method, report in reports.items():
        g = report[group]
        cells = [f"{g['opt'].get(m, float('nan')):.4f} / {g['pes'].get(m, float('nan')):.4f}" for m in METRIC_ORDER]
        lines.append(f"| {method} | {g['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_group_table(reports: dict[str, dict], metric: str = "ndcg@10") -> str:
    """A Markdown table of one metric (opt/pes) by user and item group, one row per method."""
    groups = ("overall", "head_users", "tail_users", "head_items", "tail_items")
    lines = ["| method | " + " | ".join(f"{g} {metric}" for g in groups) + " |", "|" + "---|" * (1 + len(groups))]
    for method, report in reports.items():
        cells = [f"{report[g]['opt'][metric]:.4f} / {report[g]['pes'][metric]:.4f} (n={report[g]['n']})"
                 for g in groups]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
