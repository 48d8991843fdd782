"""The default model: converted once from the packaged GGUF, atomically, and faithful to it."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import pytest
import torch

from genrec import model_store
from genrec.errors import GenrecError
from genrec.model_store import builtin_gguf, load_model_and_tokenizer, resolve_model

PROMPT = ("Purchases, oldest first:\n- Nordvik Camera Bag | Brand: Nordvik\n"
          "- Nordvik 64GB SD Card | Brand: Nordvik\nNext purchase:\n")


def test_converted_folder_reproduces_gguf_model(smollm2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(smollm2_dir)
    # Self-contained: no GGUF inside, no quantisation flag left in the config.
    assert not list(folder.glob("*.gguf")) and (folder / "model.safetensors").exists()
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    assert (folder / "chat_template.jinja").exists() or "chat_template" in (folder / "tokenizer_config.json").read_text()
    gguf = builtin_gguf("smollm2-135m")
    tok = AutoTokenizer.from_pretrained(folder)
    assert tok.vocab_size == 49152 and tok.eos_token
    ids = tok(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        ref = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        conv = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        # Every stored tensor is the GGUF's dequantised value rounded to bf16: the best a bf16 folder can hold.
        ref_sd, conv_sd = ref.state_dict(), conv.state_dict()
        assert ref_sd.keys() == conv_sd.keys()
        for name, value in ref_sd.items():
            assert torch.equal(value.to(torch.bfloat16).float(), conv_sd[name]), name
        a, b = ref(ids).logits[0], conv(ids).logits[0]
    # What bf16 rounding leaves (measured on this prompt, logits of magnitude ~33): max |Δlogit| 0.16,
    # top-20 |Δlog-prob| 0.071, total variation 0.012 per position; bounds are about twice that.
    assert torch.equal(a.argmax(-1), b.argmax(-1))
    lp_a, lp_b = a.log_softmax(-1), b.log_softmax(-1)
    top = lp_a.topk(20, dim=-1).indices
    assert (lp_a.gather(-1, top) - lp_b.gather(-1, top)).abs().max().item() < 0.15
    assert 0.5 * (lp_a.exp() - lp_b.exp()).abs().sum(-1).max().item() < 0.03


def _convert(cache: str, out: mp.Queue) -> None:
    os.environ["GENREC_CACHE"] = cache
    out.put(resolve_model("smollm2-135m"))


def test_concurrent_conversion_is_safe_and_stale_folders_are_rebuilt(tmp_path):
    from transformers import AutoConfig

    cache = tmp_path / "cache"
    models = cache / "models"
    stale = models / "smollm2-135m"
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{half written")  # no completion marker: must not be used
    dead_tmp = models / ".smollm2-135m-dead0001"  # temp folder of a conversion that was killed
    dead_tmp.mkdir()
    (dead_tmp / "model.safetensors").write_bytes(b"\0" * 16)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_convert, args=(str(cache), q)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(600)
    assert all(p.exitcode == 0 for p in procs)
    results = {q.get(timeout=5) for _ in procs}
    assert results == {str(stale)}
    assert (stale / ".genrec-complete").exists()
    assert AutoConfig.from_pretrained(stale).vocab_size == 49152  # the stale file was replaced
    assert [p.name for p in models.iterdir() if p.name.startswith(".smollm2-135m-")] == []
    assert oct(stale.stat().st_mode & 0o777) == oct(0o755)


def test_local_folder_and_hub_id_pass_through(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model("Org/some-model") == "Org/some-model"
    (tmp_path / "empty").mkdir()
    with pytest.raises(GenrecError, match="no config.json"):
        resolve_model(str(tmp_path / "empty"))


def test_unloadable_specs_name_the_spec(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(GenrecError, match="'Org/not-a-model'.*not a local folder"):
        load_model_and_tokenizer("Org/not-a-model")
    with pytest.raises(GenrecError, match="unknown dtype 'bf17'"):
        load_model_and_tokenizer("Org/not-a-model", dtype="bf17")
    with pytest.raises(GenrecError, match="unknown built-in model 'nope'"):
        model_store.builtin_model_dir("nope")


def test_missing_model_package_says_run_make_setup(monkeypatch):
    monkeypatch.setitem(model_store.BUILTIN_MODELS, "ghost-1m", ("genrec_no_such_package", "ghost.gguf"))
    with pytest.raises(GenrecError, match="genrec-no-such-package.*make setup"):
        resolve_model("ghost-1m")
