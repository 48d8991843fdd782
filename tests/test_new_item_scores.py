"""New items scored as their own source (genrec/esr/new_item_scores.py): the standardisation by hand,
the text-kNN weight chosen on validation, the saved scorer's round trip, and the experiments runner
scoring a trained cold-protocol run again without training it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genrec.config import load_config
from genrec.errors import ConfigError
from genrec.esr.experiments import Experiment, ExperimentsConfig, run_experiments
from genrec.esr.llmesr import DualViewModel, ESRConfig
from genrec.esr.new_item_scores import (
    NewItemScorer,
    calibrate,
    choose_weight,
    fused,
    weight_key,
    weight_values,
)
from genrec.esr.pipeline import FallbackSettings, load_scorer, train_and_test
from genrec.esr.scorer import FallbackScorer
from genrec.esr.text_knn import TextKNNScorer


def test_calibrate_standardises_each_group_by_hand():
    new = np.array([False, False, False, True, True])
    got = calibrate(np.array([[1.0, 2.0, 3.0, 10.0, 20.0]]), new)
    s = np.sqrt(2 / 3)  # deviation of [1, 2, 3]
    np.testing.assert_allclose(got, [[-1 / s, 0.0, 1 / s, -1.0, 1.0]])
    # a tied group (every unseen item on one shared row) becomes 0, never NaN
    np.testing.assert_allclose(calibrate(np.array([[1.0, 2.0, 3.0, 5.0, 5.0]]), new)[0, 3:], [0.0, 0.0])
    # kNN [0, 0, 0, 0, 4]: mean 0.8, deviation 1.6 -> [-0.5, -0.5, -0.5, -0.5, 2]
    np.testing.assert_allclose(fused(np.array([[1.0, 2.0, 3.0, 10.0, 20.0]]), np.array([[0.0, 0, 0, 0, 4]]), new, 2.0),
                               [[-1 / s - 1, -1.0, 1 / s - 1, -2.0, 5.0]])


def test_weight_is_the_validation_best_and_the_smallest_of_a_tie():
    new = np.array([False, False, False, True])
    model = np.array([[3.0, 2.0, 1.0, 0.0], [3.0, 2.0, 1.0, 0.0]])
    knn = np.array([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    hist = [[0], [0]]
    # warm z = [1.22, 0, -1.22], the lone new item 0; item 0 masked: target 2 ranks 3rd (NDCG 0.5).
    # kNN z = [-0.58, -0.58, 1.73, -0.58]: w 0.5 gives -0.36 against -0.29 (still 3rd), w 2 lifts it to 1st
    w, values = choose_weight(model, knn, new, hist, [2, 2], grid=(0.0, 0.5, 2.0, 3.0))
    assert values == {"0.0": 0.5, "0.5": 0.5, "2.0": 1.0, "3.0": 1.0}
    assert w == 2.0  # 0.5 is not enough; 2.0 and 3.0 tie, the smaller wins
    assert choose_weight(model, knn, new, hist, [1, 1], grid=(0.0, 2.0))[0] == 0.0
    # by group: event 0 targets item 2 (NDCG 0.5, then 1 at w 2); event 1 targets item 1, which ties with
    # the new item 3 (both z 0 at w 0: ranks 1-2; both -1.15 at w 2, below item 2: ranks 2-3), expected over the tie
    got = weight_values(model, knn, new, hist, [2, 1], grid=(0.0, 2.0), groups={"first": np.array([True, False])})
    tie12, tie23 = (1 + 1 / np.log2(3)) / 2, (1 / np.log2(3) + 0.5) / 2
    assert got["first"] == {"0.0": 0.5, "2.0": 1.0}
    assert got["all"] == {"0.0": round((0.5 + tie12) / 2, 6), "2.0": round((1.0 + tie23) / 2, 6)}


def test_per_group_weights_by_hand():
    """The trained items' and the new items' kNN weights apart: a pair (w, w) is the single w, and a
    new target is lifted by the new items' weight alone."""
    new = np.array([False, False, False, True])
    model, knn = np.array([[3.0, 2.0, 1.0, 0.0]]), np.array([[0.0, 0.0, 0.0, 1.0]])
    z = np.array([-1.0, -1.0, -1.0, 3.0]) / np.sqrt(3)  # kNN standardised: mean 0.25, deviation sqrt(3)/4
    np.testing.assert_allclose(fused(model, knn, new, 2.0, 0.0), calibrate(model, new) + 2.0 * z * ~new)
    np.testing.assert_allclose(fused(model, knn, new, 0.5, 0.5), fused(model, knn, new, 0.5))
    hist = [[0]]
    pairs = weight_values(model, knn, new, hist, [3], grid=((0.5, 0.5), (0.0, 0.0), (0.0, 1.0)))["all"]
    assert pairs["0.5/0.5"] == weight_values(model, knn, new, hist, [3], grid=(0.5,))["all"]["0.5"]
    # item 0 masked; at (0, 0) the new target (z 0) ties item 1 (z 0): ranks 1-2; at (0, 1) it is first
    assert pairs["0.0/0.0"] == round((1 + 1 / np.log2(3)) / 2, 6) and pairs["0.0/1.0"] == 1.0
    assert choose_weight(model, knn, new, hist, [3], grid=((0.0, 0.0), (0.0, 1.0), (0.0, 2.0))) == (
        (0.0, 1.0), {"0.0/0.0": pairs["0.0/0.0"], "0.0/1.0": 1.0, "0.0/2.0": 1.0})  # the first best wins a tie
    assert choose_weight(model, knn, new, hist, [1], grid=((0.0, 0.0), (0.0, 1.0)))[0] == (0.0, 0.0)
    assert weight_key(0.3) == "0.3" and weight_key((0.3, 1.0)) == "0.3/1.0"


def test_saved_scorer_round_trip_and_recommend_skips_history(tmp_path):
    torch.manual_seed(0)
    text = np.random.default_rng(0).normal(size=(9, 8)).astype(np.float32)
    inner = FallbackScorer(DualViewModel(ESRConfig(hidden=8, distill=False, cross_attention=False), 9, text))
    s = NewItemScorer(inner, [7, 2], "text_fused", TextKNNScorer(text, "last"), 0.5, meta={"chosen_on": "valid"})
    s.save(tmp_path)
    back = load_scorer(FallbackSettings(model="llmesr"), tmp_path, None)
    assert isinstance(back, NewItemScorer) and back.weight == 0.5 and back.new_items.tolist() == [2, 7]
    hist = [[0, 3], [5]]
    np.testing.assert_allclose(back.score_batch(hist), s.score_batch(hist))
    top = back.recommend_batch(hist, 9)
    assert [len(r) for r in top] == [7, 8] and not {0, 3} & {i for i, _ in top[0]}
    order = np.argsort(-s.score_batch([[5]])[0], kind="stable")
    assert [i for i, _ in top[1]] == [int(i) for i in order if i != 5]
    with pytest.raises(ConfigError, match="text-kNN"):
        NewItemScorer(inner, [1], "text_fused")
    apart = NewItemScorer(inner, [7, 2], "text_fused", TextKNNScorer(text, "last"), 0.5, weight_new=1.5)
    apart.save(tmp_path / "apart")
    again = load_scorer(FallbackSettings(model="llmesr"), tmp_path / "apart", None)
    assert again.weight == 0.5 and again.weight_new == 1.5 and back.weight_new is None
    np.testing.assert_allclose(again.score_batch(hist), apart.score_batch(hist))
    assert not np.allclose(again.score_batch(hist), s.score_batch(hist))


def test_runner_rescores_the_trained_cold_run_with_text_fused_scores(tmp_path):
    """The experiment differing only in cold.scores is the same trained model, scored again: the
    text-kNN weight comes from the validation split and the saved scorer ranks the test users so.
    With cold.weight_on=held_out a second model, trained without the held-out items too, chooses it
    on validation events some of which target those items, and keeps the choice for a resumed run."""
    base = ["encoder.kind=sentence-transformers", "encoder.model=all-MiniLM-L6-v2", "encoder.max_length=64",
            "esr.cross_attention=false", "encoder.threads=1", "cold.fraction=0.15", "train.epochs=2",
            f"cache={tmp_path / 'cache'}", "cold.id_rows=text"]
    cfg = ExperimentsConfig(dataset="demo_cold", runs_dir=str(tmp_path / "runs"), ledger=str(tmp_path / "l.json"),
                            unmasked=False, experiments=[
                                Experiment(name="llmesr", config="finetune/configs/esr_demo.yaml", overrides=base,
                                           seeds=[0], seed_keys=["train.seed", "cold.seed"]),
                                Experiment(name="fused", config="finetune/configs/esr_demo.yaml",
                                           overrides=[*base, "cold.scores=text_fused"], seeds=[0],
                                           seed_keys=["train.seed", "cold.seed"]),
                                Experiment(name="held", config="finetune/configs/esr_demo.yaml",
                                           overrides=[*base, "cold.scores=text_fused", "cold.weight_on=held_out"],
                                           seeds=[0], seed_keys=["train.seed", "cold.seed"]),
                                Experiment(name="apart", config="finetune/configs/esr_demo.yaml",
                                           overrides=[*base, "cold.scores=text_fused", "cold.weight_on=held_out",
                                                      "cold.text_weights=per_group"],
                                           seeds=[0], seed_keys=["train.seed", "cold.seed"])])
    entries = run_experiments(cfg)
    res = json.loads((tmp_path / "runs" / "demo_cold" / "fused" / "seed0" / "results.json").read_text())
    assert res["training"]["rescored_from"].endswith("llmesr/seed0")
    assert res["training"]["text_weight_chosen_on"] == "valid"
    grid = res["training"]["valid_ndcg10_by_text_weight"]
    assert res["training"]["text_weight"] == float(max(grid, key=lambda w: (grid[w], -float(w))))
    assert entries["fused"]["ndcg@10_cold"] != entries["llmesr"]["ndcg@10_cold"]
    held_dir = tmp_path / "runs" / "demo_cold" / "held" / "seed0"
    held = json.loads((held_dir / "results.json").read_text())["training"]
    assert held["rescored_from"].endswith("/seed0") and held["text_weight_chosen_on"] == "held_out"
    info = held["held_out"]
    assert info["items"] == res["cold"]["items"] and info["valid_examples"] == res["cold"]["valid_examples"]
    assert 0 < info["held_out_targets"] < info["valid_examples"]
    parts, n_held = info["ndcg10_by_text_weight"], info["held_out_targets"]
    for w, value in held["valid_ndcg10_by_text_weight"].items():  # the parts average to the whole
        mixed = (parts["held_out"][w] * n_held + parts["warm"][w] * (info["valid_examples"] - n_held))
        assert value == pytest.approx(mixed / info["valid_examples"], abs=2e-6)
    chosen = held["valid_ndcg10_by_text_weight"]
    assert held["text_weight"] == float(max(chosen, key=lambda w: (chosen[w], -float(w))))
    assert (held_dir / "held_out" / "checkpoints").is_dir()
    saved = json.loads((held_dir / "held_out" / "weight.json").read_text())
    assert saved["text_weight"] == held["text_weight"] and saved["held_out"] == info
    # per group: a pair from the 11 x 11 grid, the best over all validation events, and the scorer serves it
    apart_dir = tmp_path / "runs" / "demo_cold" / "apart" / "seed0"
    apart = json.loads((apart_dir / "results.json").read_text())["training"]
    values = apart["valid_ndcg10_by_text_weight"]
    assert len(values) == 121 and max(values.values()) >= max(chosen.values())  # the single weights are the diagonal
    w, w_new = apart["text_weight"]
    assert values[f"{w}/{w_new}"] == max(values.values())
    scorer = load_scorer(FallbackSettings(model="llmesr"), apart_dir / "scorer", None)
    assert (scorer.weight, scorer.weight_new) == (w, w_new)
    with pytest.raises(ConfigError, match="cold.scores"):
        train_and_test(load_config(FallbackSettings, "finetune/configs/esr_demo.yaml",
                                   ["cold.scores=calibrated", f"output_dir={tmp_path / 'x'}"]))
