"""The portable backend: transformers ``generate`` with sampling.

Slower than vLLM but runs anywhere transformers does, and is deterministic for a fixed seed:
prompt p is sampled after ``torch.manual_seed(seed + p)``, so its samples do not depend on the
other prompts of the call. s is taken from the RAW logits (``output_logits=True``; generate's
``scores`` would be the processed ones), i.e. before temperature / top-k / top-p.
"""

from __future__ import annotations

import copy

import torch

from genrec.generation._stop import cut_at_stop, eos_token_ids
from genrec.generation.base import GenerationConfig, Sample, resolve_dtype

# Rows x tokens x vocabulary floats of logits computed at once when scoring candidates
# (SmolLM2: 49,152 x 4 bytes a token, so ~128 MB).
_SCORE_CHUNK_FLOATS = 32_000_000


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

    # -- decoding onto the catalog (genrec.decoding) ---------------------------------------
    def prompt_ids(self, prompt: str) -> list[int]:
        """The prompt's tokens exactly as ``generate`` encodes them."""
        return self.tokenizer(prompt).input_ids

    def constrained_beam(self, prompts: list[str], trie, width: int | None = None) -> list[list]:
        """Beam search inside the item prefix tree (``width`` = N_gen by default), the prompts'
        beams stepped together: a list of :class:`~genrec.decoding.constrained.Decoded` per prompt."""
        from genrec.decoding.constrained import HFBatchStepper, beam_search_many

        if not prompts:
            return []
        stepper = HFBatchStepper(self.model, self.tokenizer.pad_token_id or 0)
        return beam_search_many(stepper, trie, [self.prompt_ids(p) for p in prompts], width or self.cfg.n,
                                self.cfg.max_new_tokens)

    def constrained_sample(self, prompts: list[str], trie, n: int | None = None,
                           seed: int | None = None) -> list[list]:
        """N_gen samples inside the item prefix tree per prompt (prompt p seeded ``seed + p``),
        merged by item path; the prompts' rows stepped together."""
        from genrec.decoding.constrained import HFBatchStepper, sample_many

        if not prompts:
            return []
        cfg = self.cfg
        seed = cfg.seed if seed is None else seed
        stepper = HFBatchStepper(self.model, self.tokenizer.pad_token_id or 0)
        return sample_many(stepper, trie, [self.prompt_ids(p) for p in prompts], n or cfg.n, cfg.max_new_tokens,
                           cfg.temperature, cfg.top_k, cfg.top_p,
                           [None if seed is None else seed + i for i in range(len(prompts))])

    @torch.no_grad()
    def score_candidates(self, prompt: str, continuations: list[list[int]]) -> list[float]:
        """s of each continuation after one prompt: the prompt is run once and its KV cache
        shared by every candidate (the transformers form of prefix caching), the candidates
        then go through in batches, right-padded (a causal model never attends to the pads)."""
        if not continuations:
            return []
        prompt_ids = self.prompt_ids(prompt)
        ids = torch.tensor([prompt_ids], device=self.model.device)
        out = self.model(ids, use_cache=True)
        first = out.logits[0, -1].float().log_softmax(-1)
        prefix = out.past_key_values
        vocab = out.logits.shape[-1]
        longest = max(len(c) for c in continuations)
        rows = max(1, _SCORE_CHUNK_FLOATS // max(1, longest * vocab))
        scores: list[float] = []
        for start in range(0, len(continuations), rows):
            chunk = continuations[start:start + rows]
            width = max(len(c) for c in chunk)
            if width == 1:
                scores.extend(float(first[c[0]]) for c in chunk)
                continue
            cache = copy.deepcopy(prefix)
            cache.reorder_cache(torch.zeros(len(chunk), dtype=torch.long, device=self.model.device))
            pad = self.tokenizer.pad_token_id or 0
            batch = torch.tensor([c[:-1] + [pad] * (width - len(c)) for c in chunk], device=self.model.device)
            logp = self.model(batch, past_key_values=cache, use_cache=True).logits.float().log_softmax(-1)
            for r, c in enumerate(chunk):
                rest = logp[r, :len(c) - 1].gather(-1, torch.tensor(c[1:], device=logp.device)[:, None])
                scores.append(float(first[c[0]].double() + rest.double().sum()))
        return scores
