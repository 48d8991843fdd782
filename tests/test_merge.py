"""merge_adapter: the merged folder computes what base + adapter computes, written atomically."""

from __future__ import annotations

import pytest
import torch

from genrec.errors import GenrecError
from genrec.merge import merge_adapter


@pytest.fixture(scope="module")
def base_and_adapter(tmp_path_factory, tokenizer):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("merge")
    base_dir, adapter_dir = root / "base", root / "adapter"
    base = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4))
    base.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    with torch.no_grad():  # B starts at zero: make the adapter change the outputs
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    peft_model.save_pretrained(adapter_dir)
    return str(base_dir), adapter_dir


def test_merged_model_gives_the_logits_of_base_plus_adapter(base_and_adapter, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir, adapter_dir = base_and_adapter
    out = merge_adapter(base_dir, adapter_dir, tmp_path / "merged", dtype="float32")
    assert out == tmp_path / "merged" and (out / "model.safetensors").exists()
    ids = torch.tensor([[5, 17, 300, 4000, 12, 9]])
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
        plain = base(ids).logits
        reference = PeftModel.from_pretrained(base, str(adapter_dir)).eval()(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()(ids).logits
    assert not torch.allclose(plain, reference, atol=1e-3)  # the adapter matters ...
    torch.testing.assert_close(merged, reference, atol=1e-5, rtol=1e-5)  # ... and is merged in
    assert AutoTokenizer.from_pretrained(out).encode("Next purchase:") == AutoTokenizer.from_pretrained(
        base_dir).encode("Next purchase:")


def test_merge_replaces_an_existing_folder_and_leaves_no_temporaries(base_and_adapter, tmp_path):
    base_dir, adapter_dir = base_and_adapter
    out = tmp_path / "merged"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    merge_adapter(base_dir, adapter_dir, out)
    assert not (out / "stale.txt").exists() and (out / "config.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]


def test_merge_rejects_a_folder_that_is_not_an_adapter(base_and_adapter, tmp_path):
    base_dir, _ = base_and_adapter
    with pytest.raises(GenrecError, match="not a PEFT adapter"):
        merge_adapter(base_dir, tmp_path, tmp_path / "merged")
