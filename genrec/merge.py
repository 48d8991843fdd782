"""Merge a LoRA adapter into its base model: what vLLM on CPU serves fastest.

Shared by fine-tuning (a merged folder after stage 2) and serving (merging on load).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from genrec.errors import GenrecError


def merge_adapter(base_model: str, adapter_dir: str | Path, out_dir: str | Path, dtype: str = "bfloat16") -> Path:
    """Write base + adapter merged (safetensors + tokenizer) to ``out_dir``, atomically.

    The folder is written beside ``out_dir`` and renamed into place, so a reader never sees
    a half-written model; an existing ``out_dir`` is replaced. The tokenizer is the
    adapter's when it has one (the training script saves it there), else the base model's.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from genrec.model_store import resolve_model

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").exists():
        raise GenrecError(f"{adapter_dir}: not a PEFT adapter folder (no adapter_config.json)")
    out_dir = Path(out_dir)
    base = resolve_model(base_model)
    # Merge in float32, then cast once: W + BA is rounded a single time to the output dtype.
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload().to(getattr(torch, dtype))
    tokenizer = AutoTokenizer.from_pretrained(adapter_dir if (adapter_dir / "tokenizer_config.json").exists()
                                              else base)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def merged_model_for(base_model: str, adapter_dir: str | Path) -> Path:
    """A cached merged folder for (base, adapter), rebuilt when the adapter's weights change."""
    from genrec.cache import cache_dir

    adapter_dir = Path(adapter_dir)
    weights = sorted(adapter_dir.glob("adapter_model.*"))
    if not weights:
        raise GenrecError(f"{adapter_dir}: no adapter weights")
    h = hashlib.sha256(str(base_model).encode())
    for w in weights:
        h.update(w.read_bytes())
    out = cache_dir() / "merged" / h.hexdigest()[:16]
    if not (out / "config.json").exists():
        merge_adapter(base_model, adapter_dir, out)
    return out
