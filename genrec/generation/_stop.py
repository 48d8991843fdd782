"""Cutting a sampled token sequence at the terminator, the same way for every backend."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path


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


def eos_token_ids(model_dir: str | Path | None, tokenizer) -> set[int]:
    """Every id that ends generation: the tokenizer's EOS and the model's generation_config ones."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    for name in ("generation_config.json", "config.json"):
        path = Path(model_dir) / name if model_dir else None
        if path is not None and path.exists():
            eos = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
            ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    return ids
