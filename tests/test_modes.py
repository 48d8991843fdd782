"""Every generative mode and the fusion through the recommender, a bundle and the HTTP server.

Real components throughout: a tiny random Llama (SmolLM2 tokenizer) on the transformers
backend, the real BM25 index, prefix tree and popularity fallback; the server runs on
127.0.0.1. With random weights the items are arbitrary, so the tests check what must hold for
any model: only catalog items, no duplicates, history excluded, scores equal to the model's
own log-probs, and the ``mode`` each answer reports.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from genrec.data.catalog import Catalog, Item
from genrec.decoding.trie import ItemTrie
from genrec.errors import ConfigError
from genrec.fusion import FusionSettings
from genrec.generation.base import Sample
from genrec.grounding import BM25Index
from genrec.prompting import PromptTemplate
from genrec.recommender import (
    MODE_BEAM,
    MODE_EMBEDDING,
    MODE_QRR,
    MODE_RERANK,
    MODE_SAMPLE,
    MODES,
    PATH_GENERATIVE,
    PATH_POPULARITY,
    Recommender,
    RecommenderSettings,
    RequestError,
)
from tests.conftest import tiny_llama, titles_template

TITLES = ["Red Wool Scarf", "Red Wool Hat", "Red Wool Scarf", "X", "Red", "Blue Denim Jacket", "Blue",
          "Red Wool", "Green Rain Boots", "Yellow Sun Hat"]
COUNTS = np.array([5, 1, 9, 0, 3, 7, 2, 4, 6, 8], dtype=np.float64)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> PromptTemplate:
    return titles_template(tmp_path_factory.mktemp("tpl"))


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog(Item(f"i{i}", t) for i, t in enumerate(TITLES))


@pytest.fixture(scope="module")
def generator(tokenizer):
    from genrec.generation.base import GenerationConfig
    from genrec.generation.hf import HFGenerator

    model = tiny_llama(tokenizer, seed=3).eval()
    return HFGenerator(GenerationConfig(n=4, max_new_tokens=12, seed=0), model=model, tokenizer=tokenizer)


def make(catalog, template, generator, tokenizer, **settings) -> Recommender:
    from genrec.bundle import item_texts
    from genrec.esr import PopularityScorer

    return Recommender(catalog, BM25Index.build(item_texts(catalog, template)), template, generator,
                       PopularityScorer(COUNTS), RecommenderSettings(**settings), fallback_path=PATH_POPULARITY,
                       tokenizer=tokenizer, popularity=COUNTS,
                       trie=lambda: ItemTrie.from_catalog(catalog, template, tokenizer))


def check_list(answer, k: int, history: list[str]) -> list[str]:
    ids = answer.item_ids
    assert len(ids) == k and len(set(ids)) == k, ids
    assert set(ids) <= {f"i{i}" for i in range(len(TITLES))}
    assert not set(ids) & set(history)
    return ids


def test_constrained_beam_answer_is_the_beams_then_the_fallback(catalog, template, generator, tokenizer):
    rec = make(catalog, template, generator, tokenizer, n_gen=3, k=6)
    history = ["i5"]
    answer = rec.recommend(history, mode=MODE_BEAM)
    assert answer.path == PATH_GENERATIVE and answer.mode == MODE_BEAM
    ids = check_list(answer, 6, history)
    beams = generator.constrained_beam([answer.prompt], rec.trie, width=3)[0]
    from_beams = [f"i{i}" for d in beams for i in sorted(d.items) if f"i{i}" not in history]
    assert ids[:len(from_beams)] == from_beams and answer.filled == 6 - len(from_beams)
    prompt_ids = generator.prompt_ids(answer.prompt)
    for it in answer.items[:len(from_beams)]:  # the score is the model's log-prob of the item's text
        text = tokenizer(template.render_target(catalog[it.index]), add_special_tokens=False).input_ids
        assert it.score == pytest.approx(generator.score_ids(prompt_ids, text), abs=1e-4)
    assert answer.to_dict()["mode"] == MODE_BEAM


def test_constrained_sampling_and_rerank_answers(catalog, template, generator, tokenizer):
    rec = make(catalog, template, generator, tokenizer, n_gen=8, k=4, rerank_m=5)
    history = ["i0", "i3"]
    sampled = rec.recommend(history, mode=MODE_SAMPLE)
    assert sampled.mode == MODE_SAMPLE
    check_list(sampled, 4, history)
    reranked = rec.recommend(history, mode=MODE_RERANK)
    assert reranked.mode == MODE_RERANK and reranked.filled == 0
    ids = check_list(reranked, 4, history)
    # the candidates are the fallback's top 5 (popularity, history excluded): i2 i9 i5 i8 i7
    assert set(ids) <= {"i2", "i9", "i5", "i8", "i7"}
    scores = [it.score for it in reranked.items]
    assert scores == sorted(scores, reverse=True)
    prompt_ids = generator.prompt_ids(reranked.prompt)
    for it in reranked.items:
        text = tokenizer(template.render_target(catalog[it.index]), add_special_tokens=False).input_ids
        assert it.score == pytest.approx(generator.score_ids(prompt_ids, text), abs=1e-4)


def test_fusion_modes_and_weights(catalog, template, generator, tokenizer):
    rec = make(catalog, template, generator, tokenizer, n_gen=2, k=3)
    history = ["i5"]
    beams = rec.recommend(history, mode=MODE_BEAM)
    fallback_only = rec.recommend(history, mode=MODE_BEAM, fusion=FusionSettings("rrf", weight=0.0))
    assert fallback_only.mode == "constrained_beam+rrf"
    assert fallback_only.item_ids == ["i2", "i9", "i8"]  # weight 0: popularity order, history excluded
    llm_first = rec.recommend(history, mode=MODE_BEAM, fusion=FusionSettings("zsum", weight=1000.0))
    assert llm_first.item_ids[0] == beams.item_ids[0]
    check_list(llm_first, 3, history)
    for mode in MODES:
        for method in ("zsum", "rrf"):
            answer = rec.recommend(history, mode=mode, fusion=method)
            if answer.path == PATH_GENERATIVE:
                assert answer.mode == f"{mode}+{method}"
                check_list(answer, 3, history)


def test_qrr_fused_with_known_samples(catalog, template, tokenizer):
    class Fixed:
        def generate(self, prompts, n=None, seed=None):
            return [[Sample("Yellow Sun Hat", -1.0)] for _ in prompts]

    rec = make(catalog, template, Fixed(), tokenizer, k=2)
    alone = rec.recommend(["i0"], mode=MODE_QRR)
    assert alone.mode == MODE_QRR and alone.item_ids[0] == "i9"
    fused = rec.recommend(["i0"], fusion=FusionSettings("rrf", weight=5.0, rrf_c=1.0))
    assert fused.mode == "qrr+rrf" and fused.item_ids[0] == "i9"


def test_bad_mode_or_fusion_is_a_request_error(catalog, template, generator, tokenizer):
    rec = make(catalog, template, generator, tokenizer)
    with pytest.raises(RequestError) as e:
        rec.recommend(["i0"], mode="beam")
    assert e.value.field == "mode"
    with pytest.raises(RequestError) as e:
        rec.recommend(["i0"], fusion="mean")
    assert e.value.field == "fusion"


def test_no_item_within_the_budget_falls_back(catalog, template, tokenizer):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from genrec.generation.base import GenerationConfig
    from genrec.generation.hf import HFGenerator

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=32, vocab_size=len(tokenizer))).eval()
    gen = HFGenerator(GenerationConfig(n=2, max_new_tokens=1), model=model, tokenizer=tokenizer)
    answer = make(catalog, template, gen, tokenizer, k=2).recommend(["i0"], mode=MODE_BEAM)
    assert answer.path == PATH_POPULARITY and answer.mode is None
    assert "finished no item within 1 tokens" in answer.reason


# -- bundle and server -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    from genrec.bundle import Bundle, BundleConfig, BundleSettings, write_bundle
    from genrec.data.source import DatasetSource
    from genrec.training.config import LossConfig
    from genrec.training.model import CALRecModel

    tmp = tmp_path_factory.mktemp("modes-bundle")
    model = LlamaForCausalLM(LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                         intermediate_size=64, vocab_size=len(tokenizer)))
    # saved as a CALRec fine-tune saves: the model folder with its contrastive heads (the embedding mode)
    CALRecModel(model, LossConfig(projection_heads=True, projection_dim=8, tau=0.1, user_pooling="last")
                ).save(tmp / "model")
    tokenizer.save_pretrained(tmp / "model")
    settings = BundleSettings(recommender=RecommenderSettings(template="calrec_short", n_gen=2, k=5, rerank_m=8),
                              generation={"backend": "hf", "max_new_tokens": 32, "dtype": "float32"})
    out = write_bundle(BundleConfig(out=str(tmp / "b"), dataset=DatasetSource("demo", name="electronics"),
                                    model=str(tmp / "model"), settings=settings))
    return Bundle.load(out)


def test_bundle_holds_the_tree(bundle, tokenizer):
    stats = bundle.manifest["trie"]
    assert stats["file"] == "trie.npz" and stats["items"] == len(bundle.catalog)
    built = ItemTrie.from_catalog(bundle.catalog, bundle.template, tokenizer)
    assert bundle.trie.token.tolist() == built.token.tolist() and stats["nodes"] == built.num_nodes
    assert bundle.trie.meta["path"].endswith("trie.npz")  # loaded from the bundle, not rebuilt
    for i in (0, 17, len(bundle.catalog) - 1):
        ids = tokenizer(bundle.template.render_target(bundle.catalog[i]), add_special_tokens=False).input_ids
        assert i in bundle.trie.lookup(ids).tolist()
    # the tree follows the template's target: calrec_short's model writes "- <title>\n" only
    title_only = tokenizer(f"- {bundle.catalog[0].title}\n", add_special_tokens=False).input_ids
    assert 0 in bundle.trie.lookup(title_only).tolist()


def test_bundle_recommender_runs_every_mode(bundle):
    rec = bundle.recommender(backend="hf")
    history = [bundle.catalog[i].item_id for i in (3, 8, 21)]
    for mode in MODES:
        answer = rec.recommend(history, mode=mode)
        if mode != MODE_QRR:  # random weights write text BM25 may not match; decoding always ends on items
            assert answer.path == PATH_GENERATIVE and answer.mode == mode, (mode, answer.reason)
        assert len(set(answer.item_ids)) == 5 and not set(answer.item_ids) & set(history)


def test_embedding_mode_ranks_by_the_heads_cosine_and_keeps_the_item_vectors(bundle):
    import dataclasses
    import os

    from genrec.bundle import ITEM_VECTORS, Bundle

    rec = bundle.recommender(backend="hf")
    history = [bundle.catalog[i].item_id for i in (3, 8, 21)]
    answer = rec.recommend(history, k=7, mode=MODE_EMBEDDING)
    assert answer.path == PATH_GENERATIVE and answer.mode == MODE_EMBEDDING and answer.filled == 0
    # the same scores from the encoder directly: the user's prompt against every item's target text
    emb = bundle.embedding
    prompt = rec.build_prompt([3, 8, 21])
    scores = emb.encoder.users([prompt]) @ emb.encoder.items(
        [bundle.template.render_target(it) for it in bundle.catalog]).T / 0.1
    scores[0, [3, 8, 21]] = -np.inf
    best = np.argsort(-scores[0], kind="stable")[:7]
    assert answer.item_ids == [bundle.catalog[int(i)].item_id for i in best]
    np.testing.assert_allclose([it.score for it in answer.items], scores[0, best], rtol=1e-4)
    # top-M: only M items carry a signal; a list longer than M is filled from the fallback
    short = dataclasses.replace(rec.settings, embedding_m=4)
    few = bundle.recommender(backend="hf", settings=short).recommend(history, k=7, mode=MODE_EMBEDDING)
    assert few.item_ids[:4] == answer.item_ids[:4] and few.filled == 3 and len(set(few.item_ids)) == 7
    # the item vectors were saved with the bundle and are read back, not encoded again
    path = bundle.path / ITEM_VECTORS
    stamp = os.stat(path).st_mtime_ns
    again = Bundle.load(bundle.path).embedding
    np.testing.assert_array_equal(again.item_vectors, emb.item_vectors)
    assert os.stat(path).st_mtime_ns == stamp


def test_server_takes_mode_and_fusion_per_request(bundle):
    import httpx

    from tests.test_server import start_thread_server

    url, server, thread = start_thread_server(bundle)
    try:
        history = [bundle.catalog[i].item_id for i in (3, 8)]
        ids = {it.item_id for it in bundle.catalog}
        seen = {}
        for mode in (None, *MODES):
            for fusion in (None, "rrf"):
                body = {"history": history, "k": 4, "budget_ms": 60000}
                body.update({"mode": mode} if mode else {}, **({"fusion": fusion} if fusion else {}))
                r = httpx.post(url + "/recommend", json=body, timeout=120)
                assert r.status_code == 200, r.text
                data = r.json()
                got = [it["item_id"] for it in data["items"]]
                assert len(got) == 4 == len(set(got)) and set(got) <= ids and not set(got) & set(history)
                seen[(mode, fusion)] = data["mode"]
        assert seen[(None, None)] == "qrr" or seen[(None, None)] is None  # QRR may match nothing: fallback
        assert seen[(MODE_BEAM, None)] == MODE_BEAM and seen[(MODE_BEAM, "rrf")] == "constrained_beam+rrf"
        assert seen[(MODE_RERANK, "rrf")] == "rerank+rrf"
        for bad, field in (({"mode": "beam"}, "mode"), ({"fusion": "max"}, "fusion"), ({"mode": 3}, "mode")):
            r = httpx.post(url + "/recommend", json={"history": history, **bad}, timeout=30)
            assert r.status_code == 422 and r.json()["field"] == field, r.text
    finally:
        server.should_exit = True
        thread.join(30)


# -- the modes harness -------------------------------------------------------------------------
def test_mode_evaluation_tunes_on_valid_and_resumes(bundle, tmp_path):
    import json
    import shutil

    from genrec.bundle import Bundle
    from genrec.data.source import DatasetSource
    from genrec.mode_evaluation import ModeEvalConfig, run_mode_evaluation

    copy = tmp_path / "bundle"
    shutil.copytree(bundle.path, copy)
    cfg = ModeEvalConfig(dataset=DatasetSource("demo", name="electronics"), bundle=str(copy), split="valid",
                         sample_users=4, modes=[MODE_QRR, MODE_BEAM, MODE_RERANK], fusions=["rrf"],
                         backend="hf", batch_users=2, tune_fusion=True, bootstrap=200,
                         output_dir=str(tmp_path / "out"))
    result = run_mode_evaluation(cfg)
    reports, extra = result["reports"], result["extra"]
    assert set(reports) == {"fallback", "calrec_qrr", "calrec_constrained_beam", "calrec_rerank",
                            "fused_qrr_rrf", "fused_constrained_beam_rrf", "fused_rerank_rrf"}
    assert all(r["overall"]["n"] == 4 for r in reports.values())
    beam = extra["calrec_constrained_beam"]
    assert beam["invalid_rate"] == 0.0 and beam["duplicate_rate"] == 0.0
    lo, hi = extra["fused_rerank_rrf"]["delta_vs_fallback_ci95"]
    assert lo <= extra["fused_rerank_rrf"]["delta_vs_fallback"] <= hi
    # the weights chosen on these users are in the bundle now, and the recommender uses them
    tuned = Bundle.load(copy).settings.recommender.fusion
    assert set(tuned.tuned) == {"qrr/rrf", "constrained_beam/rrf", "rerank/rrf"}
    assert tuned.method == "rrf" and tuned.chosen_on.startswith("valid split, 4 users")
    assert all(v["chosen_on"] == tuned.chosen_on for v in tuned.tuned.values())
    assert all(extra[f"calrec_{m}"]["n_empty"] == reports[f"calrec_{m}"]["overall"]["n_empty"] for m in cfg.modes)
    w = tuned.tuned["rerank/rrf"]
    assert extra["fused_rerank_rrf"]["weight"] == w["weight"] == tuned.for_mode(MODE_RERANK).weight
    # a second run reads every signal from the logs: same numbers, nothing recomputed
    lines = {m: (tmp_path / "out" / f"signals_{m}.jsonl").read_text().count("\n") for m in cfg.modes}
    cfg.ledger, cfg.ledger_dataset = str(tmp_path / "summary.json"), "demo"
    again = run_mode_evaluation(cfg)
    assert json.dumps(again["reports"], sort_keys=True) == json.dumps(reports, sort_keys=True)
    assert lines == {m: (tmp_path / "out" / f"signals_{m}.jsonl").read_text().count("\n") for m in cfg.modes}
    # the ledger rows the issue names
    ledger = json.loads((tmp_path / "summary.json").read_text())["demo"]
    assert set(ledger) == {"calrec_qrr", "calrec_constrained", "calrec_rerank", "fused"}
    assert ledger["calrec_constrained"]["invalid_rate"] == 0.0 == ledger["calrec_constrained"]["duplicate_rate"]
    assert all(e["n_users"] == 4 and e["split"] == "valid" and e["ndcg@10_expected"] is not None for e in ledger.values())
    assert all(0 <= ledger[k]["n_empty"] <= 4 for k in ("calrec_qrr", "calrec_constrained", "calrec_rerank"))
    fused = ledger["fused"]
    assert fused["fallback_ndcg@10_expected"] == round(reports["fallback"]["overall"]["exp"]["ndcg@10"], 6)
    assert len(fused["delta_vs_fallback_ci95"]) == 2 and fused["fused"].startswith("fused_")
    # the row is the pair validation chose (no choice made on the users it reports); the best
    # pair on these users, when it differs, is only a diagnostic beside it
    chosen = "fused_" + max(tuned.tuned, key=lambda k: tuned.tuned[k]["ndcg@10_expected"]).replace("/", "_")
    assert fused["fused"] == chosen and fused["chosen_on"] == tuned.chosen_on  # where the weights were chosen
    assert fused["ndcg@10_expected"] == round(reports[chosen]["overall"]["exp"]["ndcg@10"], 6)
    assert fused["delta_vs_fallback"] == extra[chosen]["delta_vs_fallback"]
    best = max((k for k in reports if k.startswith("fused_")), key=lambda k: reports[k]["overall"]["exp"]["ndcg@10"])
    if round(reports[best]["overall"]["exp"]["ndcg@10"], 6) > round(reports[chosen]["overall"]["exp"]["ndcg@10"], 6):
        assert fused["best_on_these_users"]["fused"] == best
    else:
        assert "best_on_these_users" not in fused
    # the same folder under another split or masking is refused, its logs left as they were
    for change in ({"split": "test", "tune_fusion": False}, {"mask_history": False}):
        with pytest.raises(ConfigError, match=f"signal logs: logged under other settings \\({next(iter(change))}"):
            run_mode_evaluation(dataclasses.replace(cfg, **change))
    assert lines == {m: (tmp_path / "out" / f"signals_{m}.jsonl").read_text().count("\n") for m in cfg.modes}


def test_fusion_tuning_on_the_test_split_is_refused(tmp_path):
    from genrec.data.source import DatasetSource
    from genrec.mode_evaluation import ModeEvalConfig, run_mode_evaluation

    cfg = ModeEvalConfig(dataset=DatasetSource("demo", name="electronics"), bundle=str(tmp_path / "b"), split="test",
                         tune_fusion=True, output_dir=str(tmp_path / "out"))
    with pytest.raises(ConfigError, match="chosen on split=valid only, not on split=test"):
        run_mode_evaluation(cfg)


def test_warm_loads_the_tree_and_the_generator_of_the_mode(catalog, template, generator, tokenizer):
    from genrec.bundle import item_texts
    from genrec.esr import PopularityScorer

    made = []

    class QRROnly:
        def generate(self, prompts, n=None, seed=None):
            return [[] for _ in prompts]

    rec = Recommender(catalog, BM25Index.build(item_texts(catalog, template)), template, QRROnly(),
                      PopularityScorer(COUNTS), RecommenderSettings(mode=MODE_BEAM, n_gen=2, k=3),
                      tokenizer=tokenizer, popularity=COUNTS,
                      trie=lambda: ItemTrie.from_catalog(catalog, template, tokenizer),
                      constrained_generator=lambda: made.append(1) or generator)
    rec.warm()
    assert made == [1] and isinstance(rec._trie, ItemTrie)
    answer = rec.recommend(["i5"])  # the QRR-only generator cannot; the built one runs the beams
    assert answer.mode == MODE_BEAM and made == [1]


def test_validation_pick_is_the_best_tuned_pair_among_those_evaluated():
    from genrec.mode_evaluation import validation_pick

    tuned = {"qrr/zsum": {"weight": 0.02, "ndcg@10_expected": 0.10}, "rerank/zsum": {"weight": 0.2, "ndcg@10": 0.20},
             "constrained_beam/rrf": {"weight": 0.5, "ndcg@10_expected": 0.30}}  # rerank/zsum tuned before expected
    assert validation_pick(tuned, ["fused_qrr_zsum", "fused_rerank_zsum"]) == "fused_rerank_zsum"
    assert validation_pick(tuned, ["fused_constrained_beam_rrf", "fused_qrr_zsum"]) == "fused_constrained_beam_rrf"
    assert validation_pick(tuned, ["fused_rerank_rrf"]) is None  # nothing tuned for it
    assert validation_pick({}, ["fused_qrr_zsum"]) is None


def test_evaluation_engine_settings_reach_the_generator(bundle, tmp_path):
    """generative.engine: settings of this run's generation engine over the bundle's, unknown
    ones refused with the field named (a long run changes them between resumed pieces)."""
    from genrec.errors import ConfigError
    from genrec.evaluation import GenerativeEvalSettings, GenerativeRanker

    settings = GenerativeEvalSettings(bundle=str(bundle.path), backend="hf", max_new_tokens=3,
                                      engine={"enforce_eager": False, "vllm_kwargs": {"max_num_seqs": 512}})
    cfg = GenerativeRanker(settings, tmp_path / "ranks.jsonl", len(bundle.catalog)).recommender.generator.cfg
    assert (cfg.enforce_eager, cfg.vllm_kwargs, cfg.max_new_tokens, cfg.dtype) == (False, {"max_num_seqs": 512}, 3,
                                                                                   "float32")
    settings.engine = {"max_num_seqs": 512}  # a vLLM argument, which belongs in vllm_kwargs
    with pytest.raises(ConfigError, match="unknown setting.*max_num_seqs"):
        GenerativeRanker(settings, tmp_path / "ranks.jsonl", len(bundle.catalog))
