"""The default model: converted once from the packaged GGUF, atomically, and faithful to it."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import pytest
import torch

from genrec.errors import GenrecError
from genrec.model_store import builtin_gguf, resolve_model


def test_converted_folder_reproduces_gguf_logits(smollm2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(smollm2_dir)
    assert not list(folder.glob("*.gguf")) and (folder / "model.safetensors").exists()
    gguf = builtin_gguf("smollm2-135m")
    tok = AutoTokenizer.from_pretrained(folder)
    ids = tok("Purchases, oldest first:\n- Nordvik Camera Bag | Brand: Nordvik\nNext purchase:\n",
              return_tensors="pt").input_ids
    with torch.no_grad():
        ref = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        conv = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        a, b = ref(ids).logits[0], conv(ids).logits[0]
    # The folder stores bf16 weights; the GGUF's Q4_1 values are exact in neither, so compare
    # next-token distributions: same argmax everywhere, and close log-probabilities.
    assert torch.equal(a.argmax(-1), b.argmax(-1))
    lp_a, lp_b = a.log_softmax(-1), b.log_softmax(-1)
    top = lp_a.topk(20, dim=-1).indices
    assert (lp_a.gather(-1, top) - lp_b.gather(-1, top)).abs().max().item() < 0.1


def _convert(cache: str, out: mp.Queue) -> None:
    os.environ["GENREC_CACHE"] = cache
    out.put(resolve_model("smollm2-135m"))


def test_concurrent_conversion_is_safe_and_stale_folders_are_rebuilt(tmp_path):
    cache = tmp_path / "cache"
    stale = cache / "models" / "smollm2-135m"
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{half written")  # no completion marker
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_convert, args=(str(cache), q)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    results = {q.get(timeout=5) for _ in procs}
    assert len(results) == 1 and all(p.exitcode == 0 for p in procs)
    folder = Path(results.pop())
    assert (folder / ".genrec-complete").exists()
    assert (folder / "config.json").read_text().startswith("{\n")  # the stale file was replaced
    leftovers = [p.name for p in (cache / "models").iterdir() if p.name.startswith(".smollm2-135m-")]
    assert leftovers == []


def test_local_folder_and_hub_id_pass_through(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model("Org/some-model") == "Org/some-model"
    (tmp_path / "empty").mkdir()
    with pytest.raises(GenrecError, match="no config.json"):
        resolve_model(str(tmp_path / "empty"))
