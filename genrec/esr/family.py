"""What every model of the fallback family offers the shared trainer, scorer and registry.

A model reads left-padded item rows [B, L] (0 = padding, catalog item i is row i+1) and gives
one user vector per history; its item table [N, W] scores every catalog item by inner product
with that vector, so one trainer (:mod:`genrec.esr.trainer`: ranking losses, early stopping,
resume), one evaluation and one faiss top-K scorer (:mod:`genrec.esr.scorer`) serve them all.
Item tables are computed once per step (training) or once at load (serving) and passed back in,
so a model whose items depend on heavy work (AlphaRec's graph propagation) pays for it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn


def pad_left(seqs: Sequence[Sequence[int]], max_len: int, shift: int = 1, length: int | None = None) -> np.ndarray:
    """Sequences of catalog indices → [B, L] int64 rows (item + shift, 0 = padding), newest kept.

    L is the longest (cut) sequence unless ``length`` is given; the model's outputs do not
    depend on extra left padding. ``max_len`` 0 keeps whole sequences.
    """
    cut = [s[-max_len:] if max_len else s for s in seqs]
    width = length or max((len(s) for s in cut), default=1) or 1
    out = np.zeros((len(cut), width), dtype=np.int64)
    for r, s in enumerate(cut):
        if len(s):
            out[r, width - len(s):] = np.asarray(s, dtype=np.int64) + shift
    return out


class FallbackModel(nn.Module):
    """The interface of a fallback model (subclasses: SASRec/LLM-ESR, AlphaRec, DaRec, PAD).

    ``cfg`` must have ``max_len`` (newest items read; 0 = all) and ``to_dict()`` (saved with
    checkpoints and scorers; a resumed run must match it).
    """

    name: ClassVar[str] = ""
    sequential: ClassVar[bool] = True  # False: the order of a history does not matter (AlphaRec)
    cfg: Any
    num_items: int

    def item_tables(self) -> dict[str, torch.Tensor]:
        """Whatever item vectors the model reads and scores with (row 0 = padding)."""
        raise NotImplementedError

    def output_table(self, tables: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The item vectors [N, W] user vectors are scored against (inner product)."""
        raise NotImplementedError

    def encode(self, seqs: torch.Tensor, tables: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-position user states [B, L, W] of a sequential model (the newest is its user vector)."""
        raise NotImplementedError

    def user_vectors(self, seqs: torch.Tensor, tables: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """One vector [B, W] per left-padded history: by default :meth:`encode`'s newest position
        (a model that is not sequential, AlphaRec, overrides it)."""
        return self.encode(seqs, tables if tables is not None else self.item_tables())[:, -1]

    def loss(self, seqs: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor | None = None,
             teacher: torch.Tensor | None = None, ranking=None) -> tuple[torch.Tensor, dict[str, float]]:
        """(total loss, named parts) for a batch from :meth:`train_inputs`; ``ranking`` is the configured
        :class:`~genrec.esr.losses.RankingLoss`, ``neg`` its negatives, ``teacher`` LLM-ESR's only."""
        raise NotImplementedError

    def score(self, seqs: torch.Tensor) -> torch.Tensor:
        """Scores of every catalog item for each sequence [B, N] (index = catalog index)."""
        tables = self.item_tables()
        return self.user_vectors(seqs, tables) @ self.output_table(tables).T

    # -- what the shared trainer and scorer ask -------------------------------------------
    def train_inputs(self, seqs: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """(input rows, target rows) [B, L] of training sequences: by default the next item at every
        position (SASRec-style)."""
        max_len = self.cfg.max_len
        inp = pad_left([s[:-1] for s in seqs], max_len)
        return inp, pad_left([s[1:] for s in seqs], max_len, length=inp.shape[1])

    def param_groups(self, lr: float) -> list[dict]:
        """Optimiser parameter groups: one group at the trainer's ``lr`` unless a model trains some
        parts at another rate (HLLM's pretrained blocks)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]

    @property
    def distills(self) -> bool:
        """Whether training needs LLM-ESR's similar-user teachers."""
        return bool(getattr(self.cfg, "distill", False)) and getattr(self.cfg, "alpha", 0.0) > 0

    def saved_shapes(self) -> dict[str, int]:
        """Sizes of the non-trainable inputs (frozen LLM vectors, a graph) that rebuilding the model
        for loading saved weights needs; see the registry's ``load_model``."""
        return {}
