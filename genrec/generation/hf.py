"""The portable backend: transformers ``generate`` with sampling.

Slower than vLLM but runs anywhere transformers does, and is deterministic for a fixed seed.
s is taken from the raw logits (``output_logits``), i.e. before temperature / top-k / top-p.
"""

from __future__ import annotations

import torch

from genrec.generation._stop import cut_at_stop
from genrec.generation.base import GenerationConfig, Sample


class HFGenerator:
    def __init__(self, cfg: GenerationConfig, model=None, tokenizer=None) -> None:
        self.cfg = cfg
        if model is None:
            from genrec.model_store import load_model_and_tokenizer

            dtype = cfg.dtype if cfg.dtype in ("bfloat16", "float32", "float16") else "float32"
            model, tokenizer = load_model_and_tokenizer(cfg.model, dtype=dtype)
            if cfg.adapter:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, cfg.adapter).merge_and_unload()
        self.model = model.eval()
        self.tokenizer = tokenizer
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.eos_ids.add(self.tokenizer.eos_token_id)

    @torch.no_grad()
    def generate(self, prompts: list[str], n: int | None = None, seed: int | None = None) -> list[list[Sample]]:
        cfg = self.cfg
        n = n or cfg.n
        seed = cfg.seed if seed is None else seed
        results = []
        for p, prompt in enumerate(prompts):
            if seed is not None:
                torch.manual_seed(seed + p)
            ids = self.tokenizer(prompt, return_tensors="pt").input_ids
            sampling = cfg.temperature > 0
            out = self.model.generate(
                ids, attention_mask=torch.ones_like(ids), do_sample=sampling,
                temperature=cfg.temperature if sampling else None, top_p=cfg.top_p if sampling else None,
                top_k=(cfg.top_k or None) if sampling else None, max_new_tokens=cfg.max_new_tokens,
                num_return_sequences=n, stop_strings=[cfg.stop] if cfg.stop else None, tokenizer=self.tokenizer,
                output_logits=True, return_dict_in_generate=True, pad_token_id=self.tokenizer.pad_token_id)
            new = out.sequences[:, ids.shape[1]:]
            logp = torch.stack(out.logits, dim=1).float().log_softmax(-1)
            token_logp = logp.gather(-1, new.unsqueeze(-1)).squeeze(-1)
            samples = []
            for r in range(new.shape[0]):
                text, used = cut_at_stop(self.tokenizer, new[r].tolist(), cfg.stop, self.eos_ids)
                samples.append(Sample(text=text, score=float(token_logp[r, :used].sum()),
                                      token_ids=tuple(new[r, :used].tolist())))
            results.append(samples)
        return results

    @torch.no_grad()
    def score_ids(self, prompt_ids: list[int], continuation_ids: list[int]) -> float:
        ids = torch.tensor([prompt_ids + continuation_ids])
        logp = self.model(ids).logits[0, :-1].float().log_softmax(-1)
        targets = ids[0, 1:]
        per_token = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return float(per_token[len(prompt_ids) - 1:].sum())

    def score(self, prompts: list[str], continuations: list[str]) -> list[float]:
        return [self.score_ids(self.tokenizer(p).input_ids,
                               self.tokenizer(c, add_special_tokens=False).input_ids)
                for p, c in zip(prompts, continuations)]
