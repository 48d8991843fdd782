"""Ranking losses for the sequential models (SPEC.md §5): full softmax, sampled softmax, one-negative BCE.

The LLM-ESR reference trains with BCE against one sampled negative; on Scientific that loss
holds SASRec at NDCG@10 0.058 where a softmax over the whole catalog gives 0.0756 (RecBole's
SASRec-CE on the same split). So the loss is a setting of the trainer, ``ce`` by default:

- ``ce``: -log softmax(u_t · E^T)[target_t] at every real position t. Logits are formed only
  for real positions, in row chunks; above ``chunk_logits`` floats a chunk's logits are
  recomputed in the backward pass (activation checkpointing), so memory stays bounded by one
  chunk however large the catalog.
- ``sampled_softmax``: K negatives per position from a proposal Q (uniform, or item training
  count ^ power, add-one smoothed so every item can be drawn). Each negative's logit is
  corrected by -log(K·Q(j)) and the positive's is kept as is, which makes the sampled
  partition function an unbiased estimate of the full one (logQ correction, Bengio & Senécal
  2008; Yi et al. 2019). A negative that equals the position's target ("accidental hit") is
  dropped from that position's softmax.
- ``bce``: the reference's pairwise BCE with one negative per position that is not in the
  user's sequence, kept for ablations.

Every loss takes the per-position user states [B, L, W], the shifted target rows [B, L]
(0 = padding, item i is row i+1) and the output table [N+1, W] (row 0 = padding), and is the
mean over real positions. Negatives are drawn by the loss's ``sample`` from the trainer's
numpy generator, so a seeded run draws the same negatives every time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from genrec.errors import ConfigError

LOSSES = ("ce", "sampled_softmax", "bce")
SAMPLERS = ("uniform", "popularity")


@dataclass
class LossConfig:
    """Which ranking loss trains the model, and its knobs."""

    kind: str = "ce"  # ce | sampled_softmax | bce
    negatives: int = 256  # K negatives per position (sampled_softmax)
    sampler: str = "uniform"  # proposal Q of sampled_softmax: uniform | popularity
    pop_power: float = 1.0  # Q(j) ∝ (training count of j + 1) ^ pop_power with sampler=popularity
    chunk_logits: int = 16_777_216  # ce: floats of logits per chunk (64 MiB); larger batches are checkpointed

    def __post_init__(self) -> None:
        if self.kind not in LOSSES:
            raise ConfigError(f"train.loss.kind must be one of {', '.join(LOSSES)}, got {self.kind!r}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"train.loss.sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.kind == "sampled_softmax" and self.negatives < 1:
            raise ConfigError(f"train.loss.negatives must be at least 1, got {self.negatives}")
        if self.chunk_logits < 1:
            raise ConfigError(f"train.loss.chunk_logits must be positive, got {self.chunk_logits}")


def _real(states: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(states of real positions [R, W], their target rows [R])."""
    real = pos > 0
    return states[real], pos[real]


def _ce_sum(states: torch.Tensor, items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(states @ items.T, targets, reduction="sum")


def full_softmax_loss(states: torch.Tensor, pos: torch.Tensor, table: torch.Tensor,
                      chunk_logits: int = 16_777_216) -> torch.Tensor:
    """Mean over real positions of -log softmax over every catalog item (see the module docstring)."""
    s, rows = _real(states, pos)
    if s.shape[0] == 0:
        return states.sum() * 0.0
    items = table[1:]
    targets = rows - 1
    per_chunk = max(1, chunk_logits // max(1, items.shape[0]))
    if s.shape[0] <= per_chunk:
        return _ce_sum(s, items, targets) / s.shape[0]
    total = states.new_zeros(())
    for start in range(0, s.shape[0], per_chunk):
        part = slice(start, start + per_chunk)
        total = total + checkpoint(_ce_sum, s[part], items, targets[part], use_reentrant=False)
    return total / s.shape[0]


def sampled_softmax_loss(states: torch.Tensor, pos: torch.Tensor, table: torch.Tensor, neg: torch.Tensor,
                         log_kq: torch.Tensor) -> torch.Tensor:
    """Mean over real positions of -log of the target's share in {target} ∪ K corrected negatives.

    ``neg``: [B, L, K] negative rows; ``log_kq``: [N+1] log(K·Q(row)) (row 0 unused).
    """
    real = pos > 0
    if not bool(real.any()):
        return states.sum() * 0.0
    s, rows, negs = states[real], pos[real], neg[real]  # [R, W], [R], [R, K]
    pos_logit = (s * table[rows]).sum(-1, keepdim=True)  # [R, 1]
    neg_logit = torch.einsum("rw,rkw->rk", s, table[negs]) - log_kq[negs]
    neg_logit = neg_logit.masked_fill(negs == rows[:, None], float("-inf"))  # accidental hits
    logits = torch.cat([pos_logit, neg_logit], dim=1)
    return -(pos_logit[:, 0] - torch.logsumexp(logits, dim=1)).mean()


def bce_loss(states: torch.Tensor, pos: torch.Tensor, table: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Mean over real positions of BCE(target, 1) + BCE(one negative, 0) (the LLM-ESR reference)."""
    pos_logit = (states * table[pos]).sum(-1)
    neg_logit = (states * table[neg]).sum(-1)
    mask = (pos > 0).float()
    bce = (F.binary_cross_entropy_with_logits(pos_logit, torch.ones_like(pos_logit), reduction="none")
           + F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit), reduction="none"))
    return (bce * mask).sum() / mask.sum().clamp(min=1)


def sample_outside(pos: np.ndarray, seqs_full: np.ndarray, num_items: int, rng: np.random.Generator) -> np.ndarray:
    """One negative row (1..N) per position, never an item of that user's sequence (vectorised rejection)."""
    neg = rng.integers(1, num_items + 1, size=pos.shape)
    for _ in range(20):
        bad = (neg[:, :, None] == seqs_full[:, None, :]).any(-1) & (pos > 0)
        if not bad.any():
            break
        neg[bad] = rng.integers(1, num_items + 1, size=int(bad.sum()))
    return neg * (pos > 0)


class RankingLoss:
    """A configured loss: draws its negatives (if any) and computes the value."""

    def __init__(self, cfg: LossConfig, num_items: int, item_counts: np.ndarray | None = None) -> None:
        self.cfg = cfg
        self.num_items = num_items
        self._cdf = None
        self._log_kq = None
        if cfg.kind == "sampled_softmax":
            if cfg.sampler == "popularity":
                if item_counts is None or len(item_counts) != num_items:
                    raise ValueError("the popularity sampler needs the training count of every item")
                weights = (np.asarray(item_counts, dtype=np.float64) + 1.0) ** cfg.pop_power
            else:
                weights = np.ones(num_items, dtype=np.float64)
            q = weights / weights.sum()
            self._cdf = np.cumsum(q)
            self._cdf[-1] = 1.0
            log_kq = np.zeros(num_items + 1, dtype=np.float32)
            log_kq[1:] = np.log(cfg.negatives * q)
            self._log_kq = torch.from_numpy(log_kq)

    @property
    def kind(self) -> str:
        return self.cfg.kind

    def sample(self, pos: np.ndarray, seqs_full: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
        """Negative rows for a batch: [B, L] (bce), [B, L, K] (sampled_softmax) or None (ce)."""
        if self.cfg.kind == "bce":
            return sample_outside(pos, seqs_full, self.num_items, rng)
        if self.cfg.kind == "sampled_softmax":
            u = rng.random((*pos.shape, self.cfg.negatives))
            return np.minimum(np.searchsorted(self._cdf, u, side="right"), self.num_items - 1) + 1
        return None

    def __call__(self, states: torch.Tensor, pos: torch.Tensor, table: torch.Tensor,
                 neg: torch.Tensor | None = None) -> torch.Tensor:
        if self.cfg.kind == "ce":
            return full_softmax_loss(states, pos, table, self.cfg.chunk_logits)
        if neg is None:
            raise ValueError(f"the {self.cfg.kind} loss needs sampled negatives")
        if self.cfg.kind == "bce":
            return bce_loss(states, pos, table, neg)
        if self._log_kq.device != states.device:  # built on the CPU; kept where the model trains
            self._log_kq = self._log_kq.to(states.device)
        return sampled_softmax_loss(states, pos, table, neg, self._log_kq)

