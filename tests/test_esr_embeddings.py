"""The embedding cache: reused when nothing changed, rebuilt when the template, catalog or encoder did."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from genrec.data.catalog import Catalog, Item
from genrec.esr.embeddings import (
    LLMEncoder,
    cache_entry,
    item_embeddings,
    user_embeddings,
    user_embeddings_from_items,
)

PROMPTS = __import__("pathlib").Path(__file__).resolve().parents[1] / "prompts"


@pytest.fixture(scope="module")
def tiny_encoder(tokenizer):
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                      intermediate_size=64, vocab_size=len(tokenizer))
    return LLMEncoder(model=LlamaModel(cfg), tokenizer=tokenizer, max_length=64, batch_size=4, encoder_id="tiny-llama")


def _catalog(n=7, suffix=""):
    return Catalog(Item(f"i{i}", f"Widget number {i}{suffix}", brand="Acme", categories=("Tools", "Hand"),
                        description="A sturdy widget." if i % 2 else None) for i in range(n))


def test_mean_pooling_ignores_padding(tiny_encoder):
    short, long = "Widget", "Widget with a considerably longer title than the other one"
    alone = tiny_encoder.encode([short], progress=False)
    batched = tiny_encoder.encode([long, short], progress=False)  # short is padded here
    np.testing.assert_allclose(batched[1], alone[0], atol=1e-5)
    assert alone.shape == (1, 32)


def test_cache_is_reused_when_nothing_changed(tiny_encoder, tmp_path):
    cat = _catalog()
    before = tiny_encoder.calls
    a = item_embeddings(cat, tiny_encoder, tmp_path, progress=False)
    assert tiny_encoder.calls - before == len(cat)
    b = item_embeddings(cat, tiny_encoder, tmp_path, progress=False)
    assert tiny_encoder.calls - before == len(cat)  # second call: no encoder work
    np.testing.assert_array_equal(a, b)
    man = json.loads(cache_entry(tmp_path, "items", "tiny-llama")[1].read_text())
    assert man["encoder"] == "tiny-llama" and man["dim"] == 32 and man["count"] == 7
    assert man["catalog"] == cat.fingerprint() and man["template_hash"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_cache_is_rebuilt_when_the_catalog_changes(tiny_encoder, tmp_path):
    item_embeddings(_catalog(), tiny_encoder, tmp_path, progress=False)
    before = tiny_encoder.calls
    other = _catalog(suffix=" v2")
    vec = item_embeddings(other, tiny_encoder, tmp_path, progress=False)
    assert tiny_encoder.calls - before == len(other)
    assert json.loads(cache_entry(tmp_path, "items", "tiny-llama")[1].read_text())["catalog"] == other.fingerprint()
    np.testing.assert_allclose(vec, tiny_encoder.encode([__import__("genrec.prompting", fromlist=["x"])
                                                         .esr_item_text(i) for i in other], progress=False), atol=1e-5)


def test_cache_is_rebuilt_when_the_template_changes(tiny_encoder, tmp_path):
    template = tmp_path / "esr_item.yaml"
    shutil.copy(PROMPTS / "esr_item.yaml", template)
    cache = tmp_path / "cache"
    cat = _catalog()
    item_embeddings(cat, tiny_encoder, cache, template=str(template), progress=False)
    before = tiny_encoder.calls
    item_embeddings(cat, tiny_encoder, cache, template=str(template), progress=False)
    assert tiny_encoder.calls == before
    text = template.read_text()
    assert "The item has following attributes" in text
    template.write_text(text.replace("The item has following attributes", "Attributes"))
    item_embeddings(cat, tiny_encoder, cache, template=str(template), progress=False)
    assert tiny_encoder.calls - before == len(cat)


def test_cache_from_another_encoder_is_rebuilt_not_used(tiny_encoder, tmp_path, tokenizer):
    from transformers import LlamaConfig, LlamaModel

    cat = _catalog()
    item_embeddings(cat, tiny_encoder, tmp_path, progress=False)
    cfg = LlamaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                      intermediate_size=32, vocab_size=len(tokenizer))
    other = LLMEncoder(model=LlamaModel(cfg), tokenizer=tokenizer, max_length=64, encoder_id="other-llama")
    vec = item_embeddings(cat, other, tmp_path, progress=False)
    assert other.calls == len(cat) and vec.shape == (7, 16)
    # each encoder keeps its own entry: going back to the first one costs no encoding
    before = tiny_encoder.calls
    item_embeddings(cat, tiny_encoder, tmp_path, progress=False)
    assert tiny_encoder.calls == before
    assert len(list(tmp_path.glob("items-*.npy"))) == 2


def test_user_prompts_use_training_items_only_and_are_cached(tiny_encoder, tmp_path):
    cat = _catalog()
    train = {"u1": [0, 1, 2], "u2": [3, 4]}
    before = tiny_encoder.calls
    users, vec = user_embeddings(cat, train, tiny_encoder, tmp_path, progress=False)
    assert users == ["u1", "u2"] and vec.shape == (2, 32) and tiny_encoder.calls - before == 2
    user_embeddings(cat, train, tiny_encoder, tmp_path, progress=False)
    assert tiny_encoder.calls - before == 2
    user_embeddings(cat, {"u1": [0, 1, 2], "u2": [3, 4, 5]}, tiny_encoder, tmp_path, progress=False)  # new data
    assert tiny_encoder.calls - before == 4


def test_user_vectors_from_item_means():
    items = np.arange(12, dtype=np.float32).reshape(4, 3)
    users, vec = user_embeddings_from_items({"a": [0, 2], "b": [3]}, items)
    assert users == ["a", "b"]
    np.testing.assert_allclose(vec, [[3, 4, 5], [9, 10, 11]])


def _tiny_llama(tokenizer, layers=3):
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=32, num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                      intermediate_size=64, vocab_size=len(tokenizer))
    return LlamaModel(cfg).eval()


TEXTS = ["Widget", "A very long widget title with many words in it, brand Acme, price 9.99",
         "Hand tools", "Widget number seven", "Screwdriver set with twelve bits and a case"]


def test_token_budget_batches_give_the_vectors_of_texts_encoded_alone(tokenizer):
    enc = LLMEncoder(model=_tiny_llama(tokenizer), tokenizer=tokenizer, max_length=64, token_budget=40,
                     encoder_id="t")
    lengths = [len(x) for x in tokenizer(TEXTS)["input_ids"]]
    batches = enc.batches(lengths)
    assert sorted(i for b in batches for i in b) == list(range(len(TEXTS)))
    assert all(len(b) * max(lengths[i] for i in b) <= 40 or len(b) == 1 for b in batches)
    assert [lengths[b[0]] for b in batches] == sorted((lengths[b[0]] for b in batches), reverse=True)
    together = enc.encode(TEXTS, progress=False)
    alone = np.concatenate([enc.encode([t], progress=False) for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert enc.tokens == 2 * sum(lengths) and enc.seconds > 0


def test_last_token_and_middle_layer_pooling_match_the_full_models_hidden_states(tokenizer):
    full = _tiny_llama(tokenizer, layers=3)
    ids = tokenizer(TEXTS[1], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        states = full(input_ids=ids, output_hidden_states=True).hidden_states  # embeddings, block 1..3 (normed)
    last = LLMEncoder(model=_tiny_llama(tokenizer), tokenizer=tokenizer, pooling="last", encoder_id="t")
    np.testing.assert_allclose(last.encode([TEXTS[1]], progress=False)[0], states[3][0, -1].numpy(), atol=1e-5)
    middle = LLMEncoder(model=_tiny_llama(tokenizer), tokenizer=tokenizer, layer=1, encoder_id="t")
    assert len(middle.model.layers) == 1  # the blocks above never run
    np.testing.assert_allclose(middle.encode([TEXTS[1]], progress=False)[0], states[1][0].mean(0).numpy(), atol=1e-5)
    with pytest.raises(Exception, match="only 3 blocks"):
        LLMEncoder(model=_tiny_llama(tokenizer), tokenizer=tokenizer, layer=4, encoder_id="t")


def test_compiled_encoder_gives_the_eager_vectors(tokenizer):
    """encoder.compile: torch.compile with dynamic shapes, every batch shape through the one
    compiled model (budget 40 gives batches of 1-4 texts), the vectors of the eager model."""
    eager = LLMEncoder(model=_tiny_llama(tokenizer), tokenizer=tokenizer, token_budget=40, encoder_id="t")
    compiled = LLMEncoder(model=_tiny_llama(tokenizer), tokenizer=tokenizer, token_budget=40, encoder_id="t",
                          compile=True)
    assert isinstance(compiled.model, torch._dynamo.eval_frame.OptimizedModule) and compiled.dim == eager.dim
    np.testing.assert_allclose(compiled.encode(TEXTS, progress=False), eager.encode(TEXTS, progress=False), atol=1e-5)


def test_pca_and_whitening_by_hand():
    from genrec.esr.embeddings import postprocess

    x = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, -1.0]])  # centred; variances 8/3 and 2/3
    pca1 = postprocess(x, "pca", 1)
    np.testing.assert_allclose(np.abs(pca1[:, 0]), [2, 2, 0, 0], atol=1e-6)
    white = postprocess(x + 5.0, "whiten")  # an offset is removed first
    np.testing.assert_allclose(np.cov(white.T), np.eye(2), atol=1e-6)
    np.testing.assert_allclose(np.abs(white), np.abs(x) / np.sqrt([8 / 3, 2 / 3]), atol=1e-6)
    assert postprocess(x, "none") is x
    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(200, 16)) @ rng.normal(size=(16, 16)) + 3.0
    w = postprocess(cloud, "whiten", 8)
    assert w.shape == (200, 8)
    np.testing.assert_allclose(np.cov(w.T), np.eye(8), atol=1e-6)


def test_a_lora_adapter_folder_is_encoded_through_its_merged_model(tokenizer, tmp_path, monkeypatch):
    """The CALRec-fine-tuned encoder: an adapter folder is merged into its base once and cached."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from genrec.esr.embeddings import EncoderConfig, make_encoder

    monkeypatch.setenv("GENREC_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                      intermediate_size=64, vocab_size=len(tokenizer))
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    base = LlamaForCausalLM.from_pretrained(tmp_path / "base")  # the adapter records this folder as its base
    peft = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft.save_pretrained(tmp_path / "adapter")
    enc = make_encoder(EncoderConfig(model=str(tmp_path / "adapter"), threads=1))
    ids = tokenizer(TEXTS[3], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        tuned = peft.model.model(input_ids=ids).last_hidden_state[0].mean(0).numpy()  # base + adapter
        plain = LlamaForCausalLM.from_pretrained(tmp_path / "base").model(input_ids=ids).last_hidden_state[0].mean(0)
    got = enc.encode([TEXTS[3]], progress=False)[0]

    def cos(a, b):
        return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))

    # the merged folder is stored in bf16 (merge_adapter's default), so equal up to its rounding
    assert cos(got, tuned) > 0.999 and cos(got, plain.numpy()) < cos(got, tuned)
    np.testing.assert_allclose(got, tuned, atol=0.05 * np.abs(tuned).max())
    assert "adapter" in enc.encoder_id
    assert len(list((tmp_path / "cache" / "merged").iterdir())) == 1  # merged once, cached
