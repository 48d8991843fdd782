"""Rows (prompt text, target text) → the tensors of one CALRec training step.

Each row becomes a *joint* sequence ``prompt + target`` (labels -100 on the prompt, so only
the target carries L_NIG) and, when the contrastive terms are on, a *target-alone* sequence.
Masks mark the history span and the target span for mean-pooling.

Sequences are LEFT-padded with explicit position ids: every target then ends at the last
position, so the model only has to produce logits for the last ``max target length + 1``
positions (``logits_to_keep``) instead of the whole vocabulary at every prompt token.
Prompt and target are tokenised separately and concatenated, which is exactly what the
model sees at generation time (the prompt encoded, the target generated after it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from genrec.training.losses import IGNORE_INDEX

log = logging.getLogger(__name__)


@dataclass
class CALRecCollator:
    """Tokenises rows ``{"prompt", "target", optional "history_span": (start_char, end_char)}``.

    Without ``history_span`` the whole prompt is the history span. ``max_length`` is a guard
    (the prompt template fits the budget first): an over-long prompt is cut from the left,
    keeping a leading BOS; a target longer than ``max_target_tokens`` is cut on the right.
    Both cuts are counted in ``self.truncated``.
    """

    tokenizer: Any
    max_length: int = 512
    max_target_tokens: int = 64
    with_target_alone: bool = True

    def __post_init__(self) -> None:
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id
        self.truncated = {"prompt": 0, "target": 0}
        self._bos = getattr(self.tokenizer, "bos_token_id", None)
        probe = self.tokenizer("a", add_special_tokens=True)["input_ids"]
        self._adds_bos = bool(probe) and self._bos is not None and probe[0] == self._bos

    # -- one row -------------------------------------------------------------------------
    def _prompt(self, text: str, span: Sequence[int] | None) -> tuple[list[int], list[bool]]:
        if span is None:
            ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
            hist = [True] * len(ids)
            if self._adds_bos:
                hist[0] = False
            return ids, hist
        enc = self.tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
        start, end = span
        hist = []
        for i, (a, b) in enumerate(enc["offset_mapping"]):
            special = self._adds_bos and i == 0
            hist.append(not special and b > a and a < end and b > start)
        return list(enc["input_ids"]), hist

    def encode(self, row: dict) -> dict[str, list]:
        """Token ids and span masks of one row, after the length guards."""
        p_ids, hist = self._prompt(row["prompt"], row.get("history_span"))
        t_ids = self.tokenizer(row["target"], add_special_tokens=False)["input_ids"]
        if len(t_ids) > self.max_target_tokens:
            t_ids = t_ids[: self.max_target_tokens]
            self.truncated["target"] += 1
        room = self.max_length - len(t_ids)
        if len(p_ids) > room:
            keep_bos = 1 if self._adds_bos else 0
            cut = len(p_ids) - room
            p_ids = p_ids[:keep_bos] + p_ids[keep_bos + cut:]
            hist = hist[:keep_bos] + hist[keep_bos + cut:]
            self.truncated["prompt"] += 1
        out = {
            "input_ids": p_ids + t_ids,
            "labels": [IGNORE_INDEX] * len(p_ids) + list(t_ids),
            "history_mask": hist + [False] * len(t_ids),
            "target_mask": [False] * len(p_ids) + [True] * len(t_ids),
        }
        if self.with_target_alone:
            lead = [self._bos] if self._adds_bos else []
            out["t_input_ids"] = lead + list(t_ids)
            out["t_target_mask"] = [False] * len(lead) + [True] * len(t_ids)
        return out

    # -- a batch -------------------------------------------------------------------------
    def _left_pad(self, seqs: list[list], value) -> torch.Tensor:
        width = max(len(s) for s in seqs)
        return torch.tensor([[value] * (width - len(s)) + list(s) for s in seqs])

    def _block(self, rows: list[dict], ids_key: str, prefix: str) -> dict[str, torch.Tensor]:
        ids = [r[ids_key] for r in rows]
        mask = self._left_pad([[1] * len(s) for s in ids], 0)
        return {
            f"{prefix}input_ids": self._left_pad(ids, self.pad_id),
            f"{prefix}attention_mask": mask,
            f"{prefix}position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
        }

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        return self.collate([self.encode(r) for r in rows])

    def collate(self, enc: list[dict[str, list]]) -> dict[str, torch.Tensor]:
        """The padded batch of rows already :meth:`encode`-d (callers that sort by length first
        need not tokenise twice)."""
        batch = self._block(enc, "input_ids", "")
        batch["labels"] = self._left_pad([e["labels"] for e in enc], IGNORE_INDEX)
        batch["history_mask"] = self._left_pad([e["history_mask"] for e in enc], False)
        batch["target_mask"] = self._left_pad([e["target_mask"] for e in enc], False)
        if self.with_target_alone:
            batch.update(self._block(enc, "t_input_ids", "t_"))
            batch["t_target_mask"] = self._left_pad([e["t_target_mask"] for e in enc], False)
        return batch
