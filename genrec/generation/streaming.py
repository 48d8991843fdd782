"""Many prompts through one generator, each prompt's samples handed back as soon as they exist.

Offline jobs (the evaluation harness, ``inference/batch_generate.py``) used to call
``generate`` on 8 users at a time: the engine idled while the caller grounded a batch, and
every batch waited for its slowest prompt. :func:`stream_samples` feeds a backend that can
stream (vLLM's :meth:`~genrec.generation.vllm_backend.VLLMGenerator.generate_stream`: one engine,
continuous batching, prompt prefixes cached across a prompt's N_gen samples) the whole list;
any other generator (transformers) gets chunks of ``chunk`` prompts, as before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from genrec.errors import ConfigError


def can_stream(generator: Any) -> bool:
    return callable(getattr(generator, "generate_stream", None))


def stream_samples(generator: Any, prompts: Sequence[str], n: int | None = None, seed: int | None = None,
                   chunk: int = 8, window: int = 64) -> Iterator[tuple[int, list[Any]]]:
    """(prompt index, samples) for every prompt, in the order they finish (every index once).

    ``window``: prompts kept inside a streaming engine; ``chunk``: prompts per ``generate``
    call for a generator that cannot stream. A generator error propagates (the caller decides
    what answers the prompts not yet yielded).
    """
    if chunk < 1 or window < 1:
        raise ConfigError(f"chunk and window must be at least 1, got chunk={chunk}, window={window}")
    if can_stream(generator):
        yield from generator.generate_stream(list(prompts), n=n, seed=seed, window=window)
        return
    for start in range(0, len(prompts), chunk):
        part = list(prompts[start:start + chunk])
        outs = generator.generate(part, n=n, seed=seed)
        if len(outs) != len(part):
            raise ConfigError(f"generator returned {len(outs)} sample lists for {len(part)} prompts")
        for j, samples in enumerate(outs):
            yield start + j, samples
