"""What every generation backend returns, and how it is configured."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Sample:
    """One generated continuation.

    ``score`` is s of SPEC.md §1: the sum of the generated tokens' log-probabilities under
    the model's own distribution (before temperature, top-k and top-p), so every backend
    gives the same s for the same tokens. ``text`` stops before the terminator.
    """

    text: str
    score: float
    token_ids: tuple[int, ...] = ()


@dataclass
class GenerationConfig:
    backend: str = "auto"            # auto | vllm | hf
    model: str = "smollm2-135m"      # built-in name, local folder or Hugging Face id
    adapter: str | None = None       # a PEFT adapter folder (merged on CPU, LoRARequest on GPU)
    n: int = 20                      # N_gen samples per prompt
    max_new_tokens: int = 48
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0                   # 0 = off
    stop: str = "\n"                 # the template's terminator
    seed: int | None = 0
    dtype: str = "bfloat16"
    max_model_len: int = 2048
    enforce_eager: bool = True       # CPU: compiled mode starts 4x slower for little gain
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    vllm_kwargs: dict = field(default_factory=dict)


class Generator(Protocol):
    def generate(self, prompts: list[str], n: int | None = None, seed: int | None = None) -> list[list[Sample]]:
        """N samples for each prompt."""
        ...

    def score(self, prompts: list[str], continuations: list[str]) -> list[float]:
        """s of a given continuation of each prompt (sum of its token log-probs)."""
        ...
