"""Bundles: written atomically by one command, loaded back identically, clear errors."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from genrec.bundle import Bundle, BundleConfig, BundleSettings, build_bundle_cli, item_texts, write_bundle
from genrec.config import from_dict
from genrec.data.demo import demo_datasets
from genrec.data.preprocess import leave_one_out
from genrec.data.source import DatasetSource
from genrec.errors import ConfigError, GenrecError
from genrec.grounding import BM25Index
from genrec.recommender import PATH_POPULARITY, RecommenderSettings


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, tokenizer):
    """A tiny random Llama folder (copying it into bundles is instant)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny-llama")
    cfg = LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                      vocab_size=len(tokenizer), max_position_embeddings=512)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def demo_config(out, model, **kw) -> BundleConfig:
    settings = BundleSettings(recommender=RecommenderSettings(n_gen=3, k=5),
                              generation={"backend": "hf", "max_new_tokens": 8, "dtype": "float32"})
    return BundleConfig(out=str(out), dataset=DatasetSource("demo", name="electronics"), model=model,
                        settings=settings, **kw)


def test_write_and_load_round_trip(tmp_path, tiny_model):
    out = write_bundle(demo_config(tmp_path / "b", tiny_model))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temporary folders left behind
    b = Bundle.load(out)
    ds = demo_datasets()["electronics"]
    assert [it.to_dict() for it in b.catalog] == [it.to_dict() for it in ds.catalog]
    # popularity = training interactions only (leave-one-out: last two items of a user held out)
    counts = Counter(i for seq in leave_one_out(ds).train.values() for i in seq)
    assert b.popularity.tolist() == [counts.get(i, 0) for i in range(len(ds.catalog))]
    # the saved index scores like one built afresh from the same item texts
    fresh = BM25Index.build(item_texts(ds.catalog, b.template))
    q = "Title: Lumina Mirrorless Camera | Brand: Lumina"
    np.testing.assert_allclose(b.index.scores(q), fresh.scores(q), rtol=1e-6)
    assert b.settings.recommender.n_gen == 3 and b.settings.recommender.k == 5
    assert (out / "model" / "config.json").exists() and b.model_path == str(out / "model")
    assert b.template.source_text == (out / "template.yaml").read_text()
    assert b.fallback_path == PATH_POPULARITY
    gen = b.generation_config()
    assert gen.model == str(out / "model") and gen.stop == b.template.terminator and gen.n == 3
    # the popularity fallback ranks by training counts
    top = b.fallback_scorer.recommend([0], 3, exclude_history=True)
    expected = [i for i in np.argsort(-b.popularity, kind="stable") if i != 0][:3]
    assert [i for i, _ in top] == [int(i) for i in expected]


def test_a_trainer_checkpoint_is_bundled_without_its_resume_state(tmp_path, tiny_model):
    ckpt = tmp_path / "checkpoint-40"
    shutil.copytree(tiny_model, ckpt)
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "training_args.bin"):
        (ckpt / name).write_bytes(b"state")
    out = write_bundle(demo_config(tmp_path / "b", str(ckpt)))
    assert sorted(p.name for p in (out / "model").iterdir()) == sorted(p.name for p in Path(tiny_model).iterdir())


def test_existing_out_needs_overwrite(tmp_path, tiny_model):
    cfg = demo_config(tmp_path / "b", tiny_model)
    write_bundle(cfg)
    (tmp_path / "b" / "marker").write_text("old")
    with pytest.raises(ConfigError, match="already exists"):
        write_bundle(cfg)
    assert (tmp_path / "b" / "marker").exists()
    cfg.overwrite = True
    write_bundle(cfg)
    assert not (tmp_path / "b" / "marker").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_model_by_reference_and_cli(tmp_path, tiny_model):
    config = tmp_path / "bundle.yaml"
    config.write_text(yaml.safe_dump({"dataset": {"format": "demo", "name": "kitchen"}, "model": tiny_model,
                                      "copy_model": False, "settings": {"recommender": {"k": 7}}}))
    assert build_bundle_cli(str(config), [f"out={tmp_path / 'cli'}", "settings.recommender.eps=0.05"]) == 0
    b = Bundle.load(tmp_path / "cli")
    assert not (tmp_path / "cli" / "model").exists() and b.model_path == tiny_model
    assert b.settings.recommender.k == 7 and b.settings.recommender.eps == 0.05
    assert len(b.catalog) == len(demo_datasets()["kitchen"].catalog)


def test_bad_configs(tmp_path, tiny_model):
    with pytest.raises(ConfigError, match="exactly one of"):
        write_bundle(BundleConfig(out=str(tmp_path / "x"), model=tiny_model))
    with pytest.raises(ConfigError, match="fallback"):
        write_bundle(demo_config(tmp_path / "x", tiny_model, fallback=str(tmp_path / "missing")))
    with pytest.raises(ConfigError, match="unknown setting"):
        from_dict(BundleConfig, {"out": "x", "modle": "y"})
    assert not (tmp_path / "x").exists()


def test_load_errors_name_what_is_missing(tmp_path, tiny_model):
    with pytest.raises(GenrecError, match="not found"):
        Bundle.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GenrecError, match="no bundle.json"):
        Bundle.load(tmp_path / "empty")
    out = write_bundle(demo_config(tmp_path / "b", tiny_model))
    shutil.rmtree(out / "bm25")
    (out / "popularity.json").unlink()
    with pytest.raises(GenrecError, match="missing: bm25, popularity.json"):
        Bundle.load(out)
    out = write_bundle(demo_config(tmp_path / "c", tiny_model))
    rows = (out / "catalog.jsonl").read_text().splitlines()
    row = json.loads(rows[0])
    row["title"] = "edited"
    (out / "catalog.jsonl").write_text("\n".join([json.dumps(row)] + rows[1:]) + "\n")
    with pytest.raises(GenrecError, match="fingerprint"):
        Bundle.load(out)
    (out / "settings.yaml").write_text("recommender: {n_gen: many}\n")
    with pytest.raises(GenrecError, match="n_gen"):
        Bundle.load(out)


def test_bundle_recommender_answers(tmp_path, tiny_model):
    out = write_bundle(demo_config(tmp_path / "b", tiny_model))
    rec = Bundle.load(out).recommender()
    ids = [it.item_id for it in rec.catalog][:3]
    answer = rec.recommend(ids + ["not-an-item"], k=5)
    assert answer.unknown_ids == ["not-an-item"]
    assert len(answer.items) == 5 and len(set(answer.item_ids)) == 5 and not set(ids) & set(answer.item_ids)
    assert answer.path in ("generative", PATH_POPULARITY)


def test_embedding_mode_without_heads_is_answered_by_the_fallback_saying_why(tmp_path, tiny_model):
    from genrec.recommender import MODE_EMBEDDING

    rec = Bundle.load(write_bundle(demo_config(tmp_path / "b", tiny_model))).recommender(backend="hf")
    answer = rec.recommend(["ele-0003"], mode=MODE_EMBEDDING)
    assert answer.path == PATH_POPULARITY and len(answer.items) == 5
    assert answer.reason.startswith("embedding failed: GenrecError:") and "no CALRec projection heads" in answer.reason


def test_adapter_merged_or_kept_apart(tmp_path, tiny_model):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        expected = peft_model(ids).logits

    merged = Bundle.load(write_bundle(demo_config(tmp_path / "m", tiny_model, adapter=str(tmp_path / "adapter"))))
    assert merged.adapter_path is None and merged.manifest["model"]["merged_from"]["adapter"]
    with torch.no_grad():
        got = AutoModelForCausalLM.from_pretrained(merged.model_path, dtype=torch.float32)(ids).logits
    torch.testing.assert_close(got, expected, atol=5e-2, rtol=0)  # bf16 merge

    apart = Bundle.load(write_bundle(demo_config(tmp_path / "a", tiny_model, adapter=str(tmp_path / "adapter"),
                                                 merge_adapter=False)))
    assert apart.adapter_path == str(tmp_path / "a" / "adapter")
    assert (tmp_path / "a" / "adapter" / "adapter_config.json").exists()
    assert apart.generation_config().adapter == apart.adapter_path
