"""CALRec objectives (SPEC.md §1): next-item generation and the two in-batch InfoNCE terms.

Pure tensor functions, so tests can check them against hand-computed values and the
training module (:mod:`genrec.training.model`) only wires them to a forward pass.
All reductions run in float32 whatever the model's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def nig_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_NIG: mean cross-entropy over the labelled (target) tokens, transformers' shift convention.

    ``logits[:, t]`` predicts ``labels[:, t + 1]``; positions labelled ``-100`` (prompt,
    padding) carry no loss. The mean is per token over the whole batch, as in
    ``LlamaForCausalLM(..., labels=...)``.
    """
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    return F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="mean")


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden[b, t]`` over the positions where ``mask[b, t]`` is true ([B, T, H] -> [B, H]).

    A row with an empty span pools to zeros (its cosine similarities are then 0), never NaN.
    """
    m = mask.to(torch.float32).unsqueeze(-1)
    total = (hidden.float() * m).sum(dim=1)
    return total / m.sum(dim=1).clamp(min=1.0)


def last_prompt_state(hidden: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """``hidden[b, t]`` at the position just before row b's first target token ([B, T, H] -> [B, H]).

    That position's state predicts the target's first token. Rows without a target span
    (no True in ``target_mask``) take the last position.
    """
    has_target = target_mask.any(dim=1)
    first = target_mask.to(torch.int64).argmax(dim=1)
    idx = torch.where(has_target, (first - 1).clamp(min=0), torch.full_like(first, hidden.shape[1] - 1))
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx].float()


def info_nce(user_side: torch.Tensor, items: torch.Tensor, tau: float,
             queued: torch.Tensor | None = None) -> torch.Tensor:
    """In-batch InfoNCE of SPEC.md §1 with cosine similarity and temperature ``tau``.

    L = -(1/N) Σ_i log( exp(cos(u_i, t_i)/τ) / Σ_j exp(cos(u_j, t_i)/τ) ):
    for a fixed item i the denominator runs over the user-side vectors u_j of the batch.
    ``user_side`` is v_T|U (L_TT) or v_U (L_UT), ``items`` is v_T; both [N, D].
    ``queued`` ([Q, D], unit length, no gradient): user-side vectors of earlier steps that
    join every denominator as Q more negatives (chance is then ln(N + Q)).
    """
    u = F.normalize(user_side.float(), dim=-1, eps=1e-8)
    t = F.normalize(items.float(), dim=-1, eps=1e-8)
    if queued is not None and queued.shape[0]:
        u = torch.cat([u, queued.to(u.dtype)], dim=0)
    # sim[i, j] = cos(u_j, t_i) / tau: row i is item i against every user-side vector.
    sim = t @ u.T / tau
    target = torch.arange(sim.shape[0], device=sim.device)
    return F.cross_entropy(sim, target)


def info_nce_of_scores(scores: torch.Tensor, tau: float) -> torch.Tensor:
    """L_UT's InfoNCE for any scorer: ``scores[j, i]`` is user j's score for row i's target item
    ([N, N], a batch), and for each item i the softmax runs over the users j, as in
    :func:`info_nce` (with cosine scores the two are equal). Lets an ID model's scores
    (SASRec, LLM-ESR) be read on the same validation rows as the LLM's L_UT."""
    sim = scores.float().T / tau
    return F.cross_entropy(sim, torch.arange(sim.shape[0], device=sim.device))


def combine(nig: torch.Tensor, tt: torch.Tensor | None, ut: torch.Tensor | None,
            alpha: float, beta: float) -> torch.Tensor:
    """L = (1-α-β)·L_NIG + α·L_TT + β·L_UT; with α = β = 0 it is L_NIG itself (same tensor value)."""
    loss = nig if alpha == 0 and beta == 0 else (1.0 - alpha - beta) * nig
    if alpha != 0:
        loss = loss + alpha * tt
    if beta != 0:
        loss = loss + beta * ut
    return loss
