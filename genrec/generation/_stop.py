"""Cutting a sampled token sequence at the terminator, the same way for every backend."""

from __future__ import annotations

from typing import Sequence


def cut_at_stop(tokenizer, token_ids: Sequence[int], stop: str, eos_ids: set[int]) -> tuple[str, int]:
    """(text before the terminator, number of tokens that count towards s).

    The tokens counted are those generated up to and including the one that completes the
    terminator or is EOS — exactly what vLLM samples before it stops — so s agrees across
    backends. Padding after the end is not counted.
    """
    ids = list(token_ids)
    for j, t in enumerate(ids):
        if t in eos_ids:
            return tokenizer.decode(ids[:j], skip_special_tokens=True), j + 1
        if stop:
            text = tokenizer.decode(ids[: j + 1], skip_special_tokens=True)
            if stop in text:
                return text.split(stop, 1)[0], j + 1
    return tokenizer.decode(ids, skip_special_tokens=True), len(ids)
