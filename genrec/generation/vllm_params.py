"""The vLLM request settings (``SamplingParams``) of a :class:`~genrec.generation.base.GenerationConfig`.

One function shared by the vLLM backend (:mod:`genrec.generation.vllm_backend`) and constrained
sampling inside vLLM (:mod:`genrec.decoding.vllm_trie`), kept apart from both so that neither
imports the other for it. Every request asks for ``logprobs=0`` so a sample's score is the sum
of its raw token log-probs (see the backend's docstring). vLLM is imported when called, so this
module imports without it.
"""

from __future__ import annotations

from genrec.generation.base import GenerationConfig


def sampling_params(cfg: GenerationConfig, n: int, seed: int | None = None, final_only: bool = False):
    """One request of ``n`` samples; ``final_only``: the async engine reports the request once, finished."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    greedy = cfg.temperature <= 0
    extra = {"output_kind": RequestOutputKind.FINAL_ONLY} if final_only else {}
    return SamplingParams(n=n, temperature=0.0 if greedy else cfg.temperature, top_p=1.0 if greedy else cfg.top_p,
                          top_k=cfg.top_k if (cfg.top_k and not greedy) else 0, max_tokens=cfg.max_new_tokens,
                          stop=[cfg.stop] if cfg.stop else None, logprobs=0, detokenize=True, seed=seed, **extra)
