"""The portable backend: transformers ``generate`` with sampling.

Slower than vLLM but runs anywhere transformers does, and is deterministic for a fixed seed:
prompt p is sampled after ``torch.manual_seed(seed + p)``, so its samples do not depend on the
other prompts of the call. s is taken from the RAW logits (``output_logits=True``; generate's
``scores`` would be the processed ones), i.e. before temperature / top-k / top-p.
"""

from __future__ import annotations

import torch

from genrec.generation._stop import cut_at_stop, eos_token_ids
from genrec.generation.base import GenerationConfig, Sample, resolve_dtype


class HFGenerator:
    """``generate(prompts, n, seed)`` with transformers; pass ``model``/``tokenizer`` to reuse
    a model already in memory (e.g. during training-time validation)."""

    def __init__(self, cfg: GenerationConfig, model=None, tokenizer=None) -> None:
        self.cfg = cfg
        model_dir = None
        if model is None:
            from genrec.model_store import load_model_and_tokenizer, resolve_model

            model_dir = resolve_model(cfg.model)
            dtype = resolve_dtype(cfg.dtype)
            if dtype not in ("bfloat16", "float32", "float16"):
                from genrec.errors import ConfigError

                raise ConfigError(f"generation.dtype must be auto, bfloat16, float16 or float32; got {cfg.dtype!r}")
            model, tokenizer = load_model_and_tokenizer(model_dir, dtype=dtype)
            if cfg.adapter:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, cfg.adapter).merge_and_unload()
        self.model = model.eval()
        self.tokenizer = tokenizer
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.eos_ids = eos_token_ids(model_dir, tokenizer)
        eos = self.model.generation_config.eos_token_id
        self.eos_ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])

    @torch.no_grad()
    def generate(self, prompts: list[str], n: int | None = None, seed: int | None = None) -> list[list[Sample]]:
        cfg = self.cfg
        n = n or cfg.n
        seed = cfg.seed if seed is None else seed
        sampling = cfg.temperature > 0
        results = []
        for p, prompt in enumerate(prompts):
            if seed is not None:
                torch.manual_seed(seed + p)
            ids = self.tokenizer(prompt, return_tensors="pt").input_ids.to(self.model.device)
            out = self.model.generate(
                ids, attention_mask=torch.ones_like(ids), do_sample=sampling,
                temperature=cfg.temperature if sampling else None, top_p=cfg.top_p if sampling else None,
                top_k=(cfg.top_k or None) if sampling else None, max_new_tokens=cfg.max_new_tokens,
                num_return_sequences=n if sampling else 1, stop_strings=[cfg.stop] if cfg.stop else None,
                tokenizer=self.tokenizer, output_logits=True, return_dict_in_generate=True,
                pad_token_id=self.tokenizer.pad_token_id)
            new = out.sequences[:, ids.shape[1]:]
            # log-prob of each chosen token under the raw distribution, one step at a time
            # (never the whole [n, steps, vocab] tensor at once)
            token_logp = torch.stack([
                step.float().log_softmax(-1).gather(-1, new[:, t:t + 1]).squeeze(-1)
                for t, step in enumerate(out.logits)], dim=1)
            samples = []
            for r in range(new.shape[0]):
                text, used = cut_at_stop(self.tokenizer, new[r].tolist(), cfg.stop, self.eos_ids)
                samples.append(Sample(text=text, score=float(token_logp[r, :used].double().sum()),
                                      token_ids=tuple(new[r, :used].tolist())))
            if not sampling:  # greedy: one decode, n identical samples (as vLLM returns them)
                samples = samples * n
            results.append(samples)
        return results

    @torch.no_grad()
    def score_ids(self, prompt_ids: list[int], continuation_ids: list[int]) -> float:
        """s of these continuation tokens after these prompt tokens (one forward pass)."""
        if not continuation_ids:
            return 0.0
        ids = torch.tensor([list(prompt_ids) + list(continuation_ids)], device=self.model.device)
        logp = self.model(ids).logits[0, len(prompt_ids) - 1:-1].float().log_softmax(-1)
        targets = ids[0, len(prompt_ids):]
        return float(logp.gather(-1, targets.unsqueeze(-1)).double().sum())

    def score(self, prompts: list[str], continuations: list[str]) -> list[float]:
        return [self.score_ids(self.tokenizer(p).input_ids, self.tokenizer(c, add_special_tokens=False).input_ids)
                for p, c in zip(prompts, continuations, strict=True)]
