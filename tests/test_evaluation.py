"""The evaluation harness on hand-made data: ranks, groups, sampling, outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genrec.data.catalog import Catalog, Item
from genrec.data.dataset import Example, SequenceDataset
from genrec.data.preprocess import leave_one_out
from genrec.errors import ConfigError
from genrec.evaluation import EvalConfig, rank_examples, run_evaluation, sample_examples, write_ledger_row


def tiny_split():
    catalog = Catalog(Item(str(i), f"item {i}") for i in range(6))
    # item 0 is the most popular in training; targets: u1 -> 0, u2 -> 5, u3 -> 1
    seqs = {"u1": [0, 1, 0, 2, 0], "u2": [0, 3, 0, 4, 5], "u3": [2, 1, 0, 3, 1]}
    return leave_one_out(SequenceDataset(catalog, seqs, name="tiny"))


def test_popularity_ranks_by_hand(tmp_path):
    split = tiny_split()
    # training = first 3 items: counts item0: 4, item1: 2, item2: 1, item3: 1, item4/5: 0
    result = run_evaluation(EvalConfig(methods=["popularity"], output_dir=str(tmp_path), mask_history=False),
                            split=split)
    overall = result["reports"]["popularity"]["overall"]
    # u1 target 0 -> rank 1/1; u2 target 5 -> tied with item 4 at 0: opt 5, pes 6; u3 target 1 -> rank 2
    assert overall["opt"]["mrr"] == pytest.approx((1 + 1 / 5 + 1 / 2) / 3)
    assert overall["pes"]["mrr"] == pytest.approx((1 + 1 / 6 + 1 / 2) / 3)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["reports"]["popularity"]["overall"]["n"] == 3
    assert (tmp_path / "ndcg_by_group.png").stat().st_size > 1000
    assert "| popularity | 3 |" in (tmp_path / "results.md").read_text()


def test_masking_changes_ranks():
    split = tiny_split()
    ex = [Example("u3", (2, 1, 0, 3), 1)]
    scores = lambda batch: np.array([[5.0, 1.0, 4.0, 3.0, 0.0, 0.0]])  # noqa: E731
    assert rank_examples(ex, scores, mask_history=False)[0].tolist() == [4]
    assert rank_examples(ex, scores, mask_history=True)[0].tolist() == [1]  # target kept, others masked
    assert split.test[2].target == 1


def test_sampling_is_seeded_and_ordered():
    ex = [Example(str(i), (0,), 1) for i in range(100)]
    a, b = sample_examples(ex, 10, 3), sample_examples(ex, 10, 3)
    assert a == b and len(a) == 10 and [int(e.user) for e in a] == sorted(int(e.user) for e in a)
    assert sample_examples(ex, None, 0) == ex


def test_unknown_method_and_missing_model_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="unknown"):
        run_evaluation(EvalConfig(methods=["bogus"], output_dir=str(tmp_path)), split=tiny_split())
    with pytest.raises(ConfigError, match="model_dirs.sasrec"):
        run_evaluation(EvalConfig(methods=["sasrec"], output_dir=str(tmp_path)), split=tiny_split())


def _ranker(tmp_path, gen, key: dict):
    """A GenerativeRanker over six named items with a stand-in generator (bundle loading is not under test)."""
    from genrec.bundle import item_texts
    from genrec.esr import PopularityScorer
    from genrec.evaluation import GenerativeEvalSettings, GenerativeRanker
    from genrec.grounding import BM25Index
    from genrec.prompting import PromptTemplate
    from genrec.recommender import Recommender, RecommenderSettings

    names = ["Red Hat", "Blue Shoe", "Green Scarf", "Gray Glove", "Pink Sock", "Gold Ring"]
    catalog = Catalog(Item(str(i), name) for i, name in enumerate(names))
    t = PromptTemplate.load("calrec")
    ranker = GenerativeRanker.__new__(GenerativeRanker)
    ranker.recommender = Recommender(catalog, BM25Index.build(item_texts(catalog, t)), t, gen,
                                     PopularityScorer(np.ones(6)), RecommenderSettings(n_gen=2, n_preds=2))
    ranker.settings = GenerativeEvalSettings(bundle="unused")
    ranker.log_path = tmp_path / "ranks_calrec.jsonl"
    ranker.log_key = {"catalog_size": 6, **key}
    return ranker


class _Streams:
    """A stand-in LLM that streams users back last-first: the first prompt 'writes' Gold Ring, the
    others a text that matches no item (their generation grounds to nothing)."""

    def __init__(self):
        self.streams = []

    def generate_stream(self, prompts, n=None, seed=None, window=64):
        from genrec.generation.base import Sample

        self.streams.append(len(prompts))
        for i in reversed(range(len(prompts))):
            text = "Gold Ring" if i == 0 else "Zzyzx"
            yield i, [Sample(text, -1.0), Sample(text, -2.0)]


def test_generative_ranker_streams_logs_each_user_and_resumes(tmp_path):
    """The calrec path's loop (GenerativeRanker.run): ranks by hand, one log row per user with its
    opt and pes ranks and whether it grounded to nothing, resume after a cut."""
    gen = _Streams()
    key = {"dataset": {"format": "demo", "name": "tiny"}, "split": "test"}
    ranker = _ranker(tmp_path, gen, key)
    split = tiny_split()
    # u1: history (0,1,0,2) -> target 0; u2: (0,3,0,4) -> 5; u3: (2,1,0,3) -> 1.
    # The log so far (u2 logged before, u1 cut by a kill) and its key, as a run would have left them:
    (tmp_path / "ranks_calrec.settings.json").write_text(json.dumps(
        {"bundle": "unused", "backend": None, "n": None, "max_new_tokens": None, "temperature": None,
         "catalog_size": 6, **key, "mask_history": True}))
    ranker.log_path.write_text(json.dumps({"user": "u2", "target": 5, "opt": 7, "pes": 7}) + "\n"
                               + '{"user": "u1", "tar')
    run = ranker.run(split.test, mask_history=True)
    assert gen.streams == [2] and run.generated == 2  # u1 and u3 only, one stream
    # u1 writes Gold Ring: candidates 0,3,4,5 (1,2 masked): 5 above, 0 tied with 3,4 -> opt 2, pes 4.
    # u3 grounds to nothing: candidates 1,4,5 (0,2,3 masked) all tied -> opt 1, pes 3; u2 from the log.
    assert run.opt.tolist() == [2, 7, 1] and run.pes.tolist() == [4, 7, 3]
    assert run.empty.tolist() == [False, False, True]
    rows = [json.loads(line) for line in ranker.log_path.read_text().splitlines()]
    assert [r["user"] for r in rows] == ["u2", "u3", "u1"]  # the order they finished in
    assert rows[2]["samples"] == [["Gold Ring", -1.0], ["Gold Ring", -2.0]]
    assert (rows[1]["empty"], rows[1]["opt"], rows[1]["pes"]) == (True, 1, 3)
    again = ranker.run(split.test, mask_history=True)
    assert again.opt.tolist() == [2, 7, 1] and again.empty.tolist() == [False, False, True] and gen.streams == [2, 0]


@pytest.mark.parametrize("change, named", [
    ({"mask": False}, "mask_history"),
    ({"split": "valid"}, "split"),
    ({"dataset": {"format": "demo", "name": "other"}}, "dataset"),
    ({"temperature": 0.1}, "temperature"),
])
def test_a_log_from_another_setting_is_refused_not_read_back(tmp_path, change, named):
    """The resumable log is keyed to what fixes its ranks: the same folder under another masking,
    split, dataset or sampling is refused with the differing setting named, never mixed in."""
    key = {"dataset": {"format": "demo", "name": "tiny"}, "split": "test"}
    split = tiny_split()
    _ranker(tmp_path, _Streams(), key).run(split.test, mask_history=True)
    ranker = _ranker(tmp_path, _Streams(), {**key, **{k: v for k, v in change.items() if k in key}})
    if "temperature" in change:
        ranker.settings.temperature = change["temperature"]
    before = ranker.log_path.read_text()
    with pytest.raises(ConfigError, match=f"logged under other settings \\({named}: .*ranks_calrec.settings.json"):
        ranker.run(split.test, mask_history=change.get("mask", True))
    assert ranker.log_path.read_text() == before


def test_a_log_without_its_key_is_refused(tmp_path):
    ranker = _ranker(tmp_path, _Streams(), {"split": "test"})
    ranker.log_path.write_text(json.dumps({"user": "u2", "target": 5, "opt": 7, "pes": 7}) + "\n")
    with pytest.raises(ConfigError, match="without their settings file ranks_calrec.settings.json"):
        ranker.run(tiny_split().test, mask_history=True)


def test_ledger_row_of_the_generative_path(tmp_path):
    """write_ledger_row: expected, opt and pes NDCG@10 of calrec, its empty outputs, user count,
    half-widths, seconds per user, and the methods that ran on the same users, by hand on three users."""
    from genrec.metrics import evaluate_ranking

    users, targets = ["a", "b", "c"], [0, 1, 2]
    # calrec: ranks 1, 3 (pes 4), 20 -> NDCG@10 opt (1 + 1/log2(4)) / 3 = 0.5, pes (1 + 1/log2(5)) / 3
    # expected: b's rank is 3 or 4 at random -> (1 + (1/log2(4) + 1/log2(5)) / 2) / 3
    calrec = evaluate_ranking(np.array([1, 3, 20]), np.array([1, 4, 20]), users, targets, {"a"},
                              np.array([True, False, False]), empty=[False, False, False])
    pop = evaluate_ranking(np.array([2, 2, 2]), np.array([2, 2, 2]), users, targets, {"a"}, np.array([True, False, False]))
    result = {"dataset": "toy", "reports": {"popularity": pop, "calrec": calrec},
              "methods": {"popularity": {"users": 3, "sampled": True},
                          "calrec": {"users": 3, "sampled": True, "seconds_per_user": 0.8}}}
    cfg = EvalConfig(ledger=str(tmp_path / "summary.json"), seed=7)
    cfg.generative.bundle = "runs/bundles/toy"
    write_ledger_row(cfg, result)
    row = json.loads((tmp_path / "summary.json").read_text())["toy"]["calrec"]
    assert row["ndcg@10"] == pytest.approx(0.5, abs=1e-6)
    assert row["ndcg@10_pes"] == pytest.approx((1 + 1 / np.log2(5)) / 3, abs=1e-6)
    assert row["ndcg@10_expected"] == pytest.approx((1 + (0.5 + 1 / np.log2(5)) / 2) / 3, abs=1e-6)
    assert row["mrr@10_expected"] == pytest.approx((1 + (1 / 3 + 1 / 4) / 2 + 0) / 3, abs=1e-6)
    assert row["mrr_expected"] == pytest.approx((1 + (1 / 3 + 1 / 4) / 2 + 1 / 20) / 3, abs=1e-6)
    assert row["n_empty"] == 0 and row["split"] == "test" and row["mask_history"] is True and row["date"]
    assert row["n_users"] == 3 and row["seeds"] == [7] and row["seconds_per_user"] == 0.8
    assert row["same_users_ndcg@10_expected"] == {"popularity": pytest.approx(1 / np.log2(3), abs=1e-6)}
    assert row["ndcg@10_ci95"] > 0 and row["bundle"] == "runs/bundles/toy" and row["config"] == ""
    # a second setup's row under its own name leaves the first one as it was
    cfg.ledger_method = "calrec_all_users"
    result["methods"]["calrec"]["seconds_per_user"] = 0.5
    write_ledger_row(cfg, result)
    rows = json.loads((tmp_path / "summary.json").read_text())["toy"]
    assert rows["calrec"] == row and rows["calrec_all_users"]["seconds_per_user"] == 0.5
    # measured on the cold-target events only: the cold-item protocol's keys beside the usual ones
    from genrec.data.cold_split import ColdConfig

    cfg.ledger_method, cfg.targets, cfg.cold = "calrec_cold", "cold", ColdConfig(fraction=0.15, seed=0)
    write_ledger_row(cfg, result)
    cold_row = json.loads((tmp_path / "summary.json").read_text())["toy"]["calrec_cold"]
    assert cold_row["ndcg@10_cold"] == round(row["ndcg@10_expected"], 6) and cold_row["n_cold"] == 3
    assert cold_row["ndcg@10_cold_pes"] == round(row["ndcg@10_pes"], 6) and cold_row["targets"] == "cold"
    assert "ndcg@10_warm" not in cold_row and cold_row["cold_seeds"] == [0]


def test_compare_generative_runs_pairs_users_by_hand(tmp_path):
    """Two logs of the same users: NDCG@10 by hand, the paired difference b - a, users only in one
    log counted, and a broken line named by file and line."""
    from genrec.evaluation import compare_generative_runs

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    rows_a = [{"user": "u1", "opt": 1, "pes": 1}, {"user": "u2", "opt": 3, "pes": 4}]
    rows_b = [{"user": "u2", "opt": 1, "pes": 1}, {"user": "u1", "opt": 2, "pes": 20}, {"user": "u3", "opt": 1, "pes": 1}]
    (a / "ranks_calrec.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows_a))
    (b / "ranks_calrec.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows_b))
    r = compare_generative_runs(a, b / "ranks_calrec.jsonl", resamples=200)
    assert (r["users"], r["only_a"], r["only_b"]) == (2, 0, 1)
    # opt: a = (1 + 1/log2 4) / 2 = 0.75, b = (1/log2 3 + 1) / 2; pes: a = (1 + 1/log2 5) / 2, b = 1 / 2
    assert r["opt"]["a"] == pytest.approx(0.75) and r["opt"]["b"] == pytest.approx((1 / np.log2(3) + 1) / 2)
    assert r["opt"]["delta"] == pytest.approx(r["opt"]["b"] - 0.75)
    assert r["pes"]["delta"] == pytest.approx(0.5 - (1 + 1 / np.log2(5)) / 2)
    # expected: a's u2 is rank 3 or 4, b's u1 anywhere in 2..20 (ranks 2..10 count)
    b_u1 = sum(1 / np.log2(k + 1) for k in range(2, 11)) / 19
    assert r["exp"]["a"] == pytest.approx((1 + (0.5 + 1 / np.log2(5)) / 2) / 2) and r["exp"]["b"] == pytest.approx((1 + b_u1) / 2)
    lo, hi = r["opt"]["ci95"]
    assert 1 / np.log2(3) - 1 <= lo <= r["opt"]["delta"] <= hi <= 0.5  # within the per-user differences
    (b / "ranks_calrec.jsonl").write_text('{"user": "u1", "opt": 1}\nnot json\n')
    with pytest.raises(ConfigError, match="line 2"):
        compare_generative_runs(a, b)


def test_events_by_cold_or_warm_target(tmp_path):
    """targets: cold / warm evaluate the test events whose target is in (out of) the cold set, the two
    parts adding up to the whole split; without a cold set the filter is refused."""
    from genrec.data.cold_split import ColdConfig, cold_items

    split = tiny_split()
    cold = ColdConfig(fraction=0.5, seed=1)
    cold_set = set(cold_items(6, cold).tolist())
    want = {e.user for e in split.test if e.target in cold_set}
    assert 0 < len(want) < 3  # this seed's cold set holds some test targets, not all
    n = {}
    for targets in ("cold", "warm"):
        result = run_evaluation(EvalConfig(methods=["popularity"], output_dir=str(tmp_path / targets), cold=cold,
                                           targets=targets), split=split)
        n[targets] = result["reports"]["popularity"]["overall"]["n"]
        assert result["targets"] == targets and result["users_in_split"] == n[targets]
    assert n == {"cold": len(want), "warm": 3 - len(want)}
    # a whole run under the cold set carries both parts, each the same as its own run, into the ledger
    whole = run_evaluation(EvalConfig(methods=["popularity"], output_dir=str(tmp_path / "all"), cold=cold),
                           split=split)
    parts = whole["reports"]["popularity"]["by_target"]
    for targets in ("cold", "warm"):
        alone = json.loads((tmp_path / targets / "results.json").read_text())["reports"]["popularity"]["overall"]
        assert parts[targets]["n"] == n[targets]
        assert parts[targets]["exp"]["ndcg@10"] == pytest.approx(alone["exp"]["ndcg@10"])
        assert parts[targets]["pes"]["recall@10"] == pytest.approx(alone["pes"]["recall@10"])
    whole["reports"] = {"calrec": whole["reports"]["popularity"]}
    whole["methods"] = {"calrec": whole["methods"]["popularity"]}
    write_ledger_row(EvalConfig(ledger=str(tmp_path / "summary.json"), cold=cold), whole)
    row = json.loads((tmp_path / "summary.json").read_text())["tiny"]["calrec"]
    assert (row["n_cold"], row["n_warm"], row["targets"]) == (n["cold"], n["warm"], "all")
    assert row["ndcg@10_cold"] == round(parts["cold"]["exp"]["ndcg@10"], 6)
    assert row["ndcg@10_warm_pes"] == round(parts["warm"]["pes"]["ndcg@10"], 6)
    with pytest.raises(ConfigError, match="needs the cold set"):
        run_evaluation(EvalConfig(methods=["popularity"], output_dir=str(tmp_path / "x"), targets="cold"), split=split)
