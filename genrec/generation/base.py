"""What every generation backend returns, and how it is configured."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Sample:
    """One generated continuation.

    ``score`` is s of SPEC.md §1: the sum of the generated tokens' log-probabilities under
    the model's own distribution (before temperature, top-k and top-p), so every backend
    gives the same s for the same tokens. ``text`` stops before the terminator;
    ``token_ids`` are the tokens s sums over (up to and including the one that completes the
    terminator, or EOS).
    """

    text: str
    score: float
    token_ids: tuple[int, ...] = ()


@dataclass
class GenerationConfig:
    """Settings of a generation backend (``generation:`` in configs and bundles)."""

    backend: str = "auto"            # auto | vllm | hf (auto: vllm when it imports)
    model: str = "smollm2-135m"      # built-in name, local folder or Hugging Face id
    adapter: str | None = None       # a PEFT adapter folder (merged on CPU, LoRARequest on GPU)
    n: int = 20                      # N_gen samples per prompt
    max_new_tokens: int = 48
    temperature: float = 1.0         # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0                   # 0 = off
    stop: str = "\n"                 # the template's terminator; generation stops at it, text excludes it
    seed: int | None = 0             # hf: per prompt seed + index; vllm: the engine's global seed
    dtype: str = "auto"              # auto (bf16 on CUDA; vllm also on CPUs with native bf16; else fp32) | bfloat16 | ...
    max_model_len: int = 2048        # vllm: longest prompt + continuation
    enforce_eager: bool = True       # vllm on CPU: compiled mode starts ~4x slower for little gain
    tensor_parallel_size: int = 1    # vllm on GPU
    gpu_memory_utilization: float = 0.85
    max_lora_rank: int = 64          # vllm on GPU with an adapter
    vllm_kwargs: dict = field(default_factory=dict)  # anything else for vllm.LLM / AsyncEngineArgs
    cpu_binding: str = "auto"        # vllm on CPU: all = every core, default = vLLM's (one kept back), auto = all when idle


def resolve_dtype(dtype: str) -> str:
    """``auto``: bfloat16 on CUDA, float32 on CPU — on our CPUs (no native bf16 matmul) a bf16
    prefill of SmolLM2 ran 6x slower than float32."""
    if dtype != "auto":
        return dtype
    from genrec.hardware import torch_has_cuda

    return "bfloat16" if torch_has_cuda() else "float32"


class Generator(Protocol):
    """What the recommender, evaluation and batch scripts call; both backends implement it."""

    def generate(self, prompts: list[str], n: int | None = None, seed: int | None = None) -> list[list[Sample]]:
        """``n`` (default ``cfg.n``) samples for each prompt, in prompt order."""
        ...

    def score(self, prompts: list[str], continuations: list[str]) -> list[float]:
        """s of a given continuation of each prompt (the continuation tokenised on its own)."""
        ...

    def score_ids(self, prompt_ids: list[int], continuation_ids: list[int]) -> float:
        """s of exactly these continuation tokens after exactly these prompt tokens."""
        ...
