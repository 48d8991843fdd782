"""The fine-tuned CALRec model as a user and item encoder: its contrastive heads' v_U and v_T.

Why: CALRec's L_UT trains v_U (read from the user's prompt) to point at v_T (the next item's
text, encoded alone), so the fine-tuned model already holds a two-tower retriever. Its score
cos(v_U, v_T) / τ covers every catalog item after one forward pass of the prompt: no decoding,
no grounding, and no catalog-wide ties. That makes it the generative model's cheapest signal,
and one that fusion with the fallback can use item by item (``genrec.fusion``).

Vectors are read exactly as training read them: the training collator's tensors, then
:meth:`CALRecModel.user_vectors` / :meth:`CALRecModel.target_vectors`. So the validation L_UT a
run logged is the loss of these very vectors. A model folder (or LoRA adapter) needs its
heads (``calrec_heads``) and the ``calrec_heads.json`` that training writes beside them.

    enc = CALRecEncoder.load("runs/calrec_stage2/model")
    items = enc.items([template.render_target(it) for it in catalog])      # [N, d], unit length
    scores = enc.users([prompt], [template.history_span(prompt)]) @ items.T / enc.tau
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genrec.errors import GenrecError
from genrec.prompting import PromptTemplate

log = logging.getLogger(__name__)

# Rows x longest-row tokens encoded at once: a few MB of activations per layer for a 135M model.
TOKEN_BUDGET = 4096


def _folder_with_heads(model_dir: str, adapter: str | None) -> Path:
    from genrec.training.model import heads_file, heads_settings_file

    folder = Path(adapter or model_dir)
    if not heads_file(folder).exists():
        raise GenrecError(f"{folder}: no CALRec projection heads ({heads_file(folder)}); the embedding mode "
                          "needs a model fine-tuned with loss.projection_heads: true")
    if not heads_settings_file(folder).exists():
        raise GenrecError(f"{heads_settings_file(folder)}: missing. Training writes it beside the heads; for an "
                          'older run write {"user_pooling": "mean" or "last", "projection_dim": <d>, "tau_ut": <τ>} '
                          "with the run's loss settings")
    return folder


class CALRecEncoder:
    """v_U of prompts and v_T of item texts (unit length, numpy) from a fine-tuned CALRec model."""

    def __init__(self, wrapped, tokenizer, tau: float, heads_digest: str, token_budget: int = TOKEN_BUDGET) -> None:
        from genrec.training.collator import CALRecCollator

        self.wrapped = wrapped.eval()
        self.tokenizer = tokenizer
        self.tau = tau
        self.heads_digest = heads_digest  # identifies the weights the item vectors were read with
        self.token_budget = token_budget
        # No length guard beyond the model's own: prompts come within the bundle's budget already.
        self.collator = CALRecCollator(tokenizer, max_length=1 << 20, max_target_tokens=1 << 20)

    @classmethod
    def load(cls, model_dir: str, adapter: str | None = None, dtype: str = "auto") -> CALRecEncoder:
        """A model folder (full fine-tune) or base model + LoRA ``adapter``, with the heads beside it."""
        from genrec.generation.base import resolve_dtype
        from genrec.model_store import load_model_and_tokenizer, resolve_model
        from genrec.training.config import LossConfig
        from genrec.training.model import CALRecModel, heads_file, heads_settings_file

        folder = _folder_with_heads(model_dir, adapter)
        path = heads_settings_file(folder)
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            loss = LossConfig(alpha=0.0, beta=1.0, tau=float(info["tau_ut"]), projection_heads=True,
                              projection_dim=int(info["projection_dim"]), user_pooling=str(info["user_pooling"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise GenrecError(f"{path}: not the heads' settings ({type(e).__name__}: {e})") from None
        model, tokenizer = load_model_and_tokenizer(resolve_model(model_dir), dtype=resolve_dtype(dtype))
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        wrapped = CALRecModel(model, loss)
        wrapped.load_heads(folder)
        digest = hashlib.sha256(heads_file(folder).read_bytes()).hexdigest()[:16]
        return cls(wrapped, tokenizer, loss.tau, digest)

    def _batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Row indices, longest first, in batches of at most ``token_budget`` padded tokens."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        batches: list[list[int]] = []
        for i in order:
            if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= self.token_budget:
                batches[-1].append(i)
            else:
                batches.append([i])
        return batches

    @torch.no_grad()
    def _encode(self, rows: list[dict], user: bool, progress: str | None = None) -> np.ndarray:
        from genrec import console

        if not rows:
            return np.zeros((0, self.wrapped.heads.user.out_features), dtype=np.float32)
        enc = [self.collator.encode(r) for r in rows]
        lengths = [len(e["input_ids"] if user else e["t_input_ids"]) for e in enc]
        out: list[np.ndarray | None] = [None] * len(rows)
        w = self.wrapped
        with console.progress(total=len(rows), desc=progress or "", unit="text", disable=progress is None) as bar:
            for idx in self._batches(lengths):
                b = self.collator.collate([enc[i] for i in idx])
                if user:
                    h = w.hidden_states(b["input_ids"], b["attention_mask"], b["position_ids"])
                    v = w.user_vectors(h, b["history_mask"], b["target_mask"])
                else:
                    v = w.target_vectors(b["t_input_ids"], b["t_attention_mask"], b["t_position_ids"],
                                         b["t_target_mask"])
                v = torch.nn.functional.normalize(v.float(), dim=-1, eps=1e-8).numpy()
                for j, i in enumerate(idx):
                    out[i] = v[j]
                bar.update(len(idx))
        return np.stack(out).astype(np.float32)

    def users(self, prompts: Sequence[str], spans: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
        """v_U of each prompt; ``spans`` are the history's characters (the history mean pools
        them; ``PromptTemplate.history_span``), None = the whole prompt."""
        rows = [{"prompt": p, "target": "", **({"history_span": tuple(spans[i])} if spans is not None else {})}
                for i, p in enumerate(prompts)]
        return self._encode(rows, user=True)

    def items(self, texts: Sequence[str], progress: str | None = None) -> np.ndarray:
        """v_T of each item's target text (encoded alone, as training did)."""
        return self._encode([{"prompt": "", "target": t} for t in texts], user=False, progress=progress)


@dataclass
class CatalogEmbedding:
    """Scores of every catalog item for prompts: cos(v_U, v_T) / τ."""

    encoder: CALRecEncoder
    item_vectors: np.ndarray  # [N, d], unit length, catalog order
    template: PromptTemplate  # the bundle's template (its history span)

    def scores(self, prompts: Sequence[str]) -> np.ndarray:
        spans = [self.template.history_span(p) for p in prompts]
        return (self.encoder.users(prompts, spans) @ self.item_vectors.T / self.encoder.tau).astype(np.float64)


__all__ = ["CALRecEncoder", "CatalogEmbedding"]
