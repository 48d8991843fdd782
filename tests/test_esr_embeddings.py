"""The embedding cache: reused when nothing changed, rebuilt when the template, catalog or encoder did."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from genrec.data.catalog import Catalog, Item
from genrec.esr.embeddings import LLMEncoder, item_embeddings, user_embeddings, user_embeddings_from_items

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
    man = json.loads((tmp_path / "items.manifest.json").read_text())
    assert man["encoder"] == "tiny-llama" and man["dim"] == 32 and man["count"] == 7
    assert man["catalog"] == cat.fingerprint() and man["template_hash"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_cache_is_rebuilt_when_the_catalog_changes(tiny_encoder, tmp_path):
    item_embeddings(_catalog(), tiny_encoder, tmp_path, progress=False)
    before = tiny_encoder.calls
    other = _catalog(suffix=" v2")
    vec = item_embeddings(other, tiny_encoder, tmp_path, progress=False)
    assert tiny_encoder.calls - before == len(other)
    assert json.loads((tmp_path / "items.manifest.json").read_text())["catalog"] == other.fingerprint()
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
