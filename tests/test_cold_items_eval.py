"""The cold-item protocol (issue #31): the split on a hand-built case and on the demo data, a loss
that never sees a cold item, the shared unseen-item rows written after training, text-kNN, and a
model trained on the demo data scoring items that were absent from its training."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from genrec.config import load_config
from genrec.data.cold_split import (
    ColdConfig,
    cold_items,
    cold_split,
    cold_targets,
    held_out_items,
    remove_cold,
)
from genrec.data.dataset import Example, SequenceDataset
from genrec.data.preprocess import leave_one_out
from genrec.data.source import DatasetSource
from genrec.errors import ConfigError
from genrec.esr.cold_items import cold_output_rows
from genrec.esr.cold_protocol import WarmOnlyRanking, cold_ledger_keys, fill_cold_rows, text_mapped_rows
from genrec.esr.experiments import Experiment, ExperimentsConfig, run_experiments
from genrec.esr.llmesr import DualViewModel, ESRConfig
from genrec.esr.losses import LossConfig, RankingLoss, full_softmax_loss
from genrec.esr.pipeline import FallbackSettings, train_and_test
from genrec.esr.sasrec import build_sasrec
from genrec.esr.scorer import FallbackScorer
from genrec.esr.text_knn import TextKNNScorer

DEMO = DatasetSource(format="demo", name="electronics")


# -- the split ------------------------------------------------------------------------------
def test_remove_cold_on_a_hand_built_split():
    ds = DEMO.load()
    seqs = {"a": [0, 1, 2, 3, 4], "b": [5, 1, 5, 6, 7], "c": [1, 2, 8], "d": [1, 9], "e": [2, 1, 3]}
    split = leave_one_out(SequenceDataset(ds.catalog, seqs, name="hand"))
    got = remove_cold(split, np.array([1, 6]))
    # a: [0,1,2] -> [0,2]; b: [5,1,5] -> [5,5] -> [5] (the repeat dropped), valid target 6 is cold;
    # c: [1] -> nothing (user out of training, its validation example dropped); d (train only): [1,9] -> [9];
    # e: [2], its validation target 1 is cold
    assert got.train == {"a": [0, 2], "b": [5], "d": [9], "e": [2]}
    assert got.valid == [Example("a", (0, 2), 3)]
    assert got.test is split.test
    assert got.test == [Example("a", (0, 1, 2, 3), 4), Example("b", (5, 1, 5, 6), 7), Example("c", (1, 2), 8),
                        Example("e", (2, 1), 3)]


def test_cold_set_is_a_seeded_share_of_the_catalog():
    a = cold_items(200, ColdConfig(fraction=0.15, seed=3))
    assert len(a) == 30 and len(set(a.tolist())) == 30 and (np.diff(a) > 0).all() and a.max() < 200
    assert np.array_equal(a, cold_items(200, ColdConfig(fraction=0.15, seed=3)))
    assert not np.array_equal(a, cold_items(200, ColdConfig(fraction=0.15, seed=4)))
    assert len(cold_items(200, ColdConfig())) == 0
    with pytest.raises(ConfigError, match="cold.fraction"):
        ColdConfig(fraction=1.0)


def test_held_out_items_are_as_many_as_the_cold_set_seeded_and_warm():
    cfg = ColdConfig(fraction=0.15, seed=3, scores="text_fused", weight_on="held_out")
    cold = cold_items(200, cfg)
    held = held_out_items(200, cold, cfg)
    assert len(held) == 30 and not set(held.tolist()) & set(cold.tolist()) and (np.diff(held) > 0).all()
    assert np.array_equal(held, held_out_items(200, cold, cfg))
    other = ColdConfig(fraction=0.15, seed=4, scores="text_fused", weight_on="held_out")
    assert not np.array_equal(held, held_out_items(200, cold, other))
    assert held_out_items(5, np.array([0, 1, 2]), cfg).tolist() == [3, 4]  # never more than the warm items
    with pytest.raises(ConfigError, match="weight_on"):
        ColdConfig(fraction=0.15, weight_on="test")
    with pytest.raises(ConfigError, match="text_fused"):
        ColdConfig(fraction=0.15, scores="calibrated", weight_on="held_out")
    with pytest.raises(ConfigError, match="weight_on=held_out"):
        ColdConfig(fraction=0.15, scores="text_fused", text_weights="per_group")


def test_demo_cold_split_removes_every_cold_occurrence_and_keeps_the_test_split_exact():
    ds = DEMO.load()
    normal = leave_one_out(ds)
    split, cold = cold_split(ds, ColdConfig(fraction=0.15, seed=0))
    cold_set = set(cold.tolist())
    assert len(cold) == round(0.15 * len(ds.catalog))
    assert not any(i in cold_set for s in split.train.values() for i in s)
    assert not any(ex.target in cold_set or cold_set & set(ex.history) for ex in split.valid)
    assert json.dumps([list(map(str, (e.user, e.history, e.target))) for e in split.test]) == json.dumps(
        [list(map(str, (e.user, e.history, e.target))) for e in normal.test])
    # the protocol bites: cold items were in training, validation targets and test targets
    assert any(i in cold_set for s in normal.train.values() for i in s)
    assert any(ex.target in cold_set for ex in normal.valid)
    flags = cold_targets(split.test, cold)
    assert 0 < flags.sum() < len(flags)
    # every normal validation example with a warm target survives, on the cold-free history
    kept = {ex.user: ex for ex in split.valid}
    for ex in normal.valid:
        if ex.target not in cold_set and split.train.get(ex.user):
            assert kept[ex.user] == Example(ex.user, tuple(split.train[ex.user]), ex.target)
    assert len(kept) == len(split.valid)
    off, none = cold_split(ds, ColdConfig())
    assert len(none) == 0 and off.train == normal.train and off.valid == normal.valid


# -- training and scoring -------------------------------------------------------------------
def test_warm_only_loss_is_the_softmax_over_warm_rows_and_leaves_cold_rows_untouched():
    torch.manual_seed(0)
    n, cold = 6, np.array([1, 4])
    table = torch.randn(n + 1, 3, requires_grad=True)
    states = torch.randn(2, 2, 3)
    pos = torch.tensor([[0, 1], [3, 6]])  # rows: item 0, item 2, item 5 (0 = padding)
    loss = WarmOnlyRanking(RankingLoss(LossConfig(kind="ce"), n), n, cold)(states, pos, table)
    keep = [0, 1, 3, 4, 6]  # padding + warm items 0, 2, 3, 5
    want = full_softmax_loss(states, torch.tensor([[0, 1], [2, 4]]), table[keep])
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
    logits = states[pos > 0] @ table[[1, 3, 4, 6]].T
    by_hand = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 3]))
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-6)
    loss.backward()
    assert table.grad[[2, 5]].abs().sum().item() == 0.0 and table.grad[[1, 3, 4, 6]].abs().sum().item() > 0
    with pytest.raises(ValueError, match="cold item is a training target"):
        WarmOnlyRanking(RankingLoss(LossConfig(kind="ce"), n), n, cold)(states, torch.tensor([[0, 2], [3, 6]]), table)
    with pytest.raises(ConfigError, match="loss.kind=ce"):
        WarmOnlyRanking(RankingLoss(LossConfig(kind="bce"), n), n, cold)


def test_fill_cold_rows_gives_the_shared_unseen_row_of_cold_items():
    torch.manual_seed(0)
    model = build_sasrec(ESRConfig(hidden=8, heads=1, max_len=5), 10)
    cold = np.array([2, 7])
    before = model.e_co.weight.detach().clone()
    assert fill_cold_rows(model, cold) == 2
    warm = [i + 1 for i in range(10) if i not in (2, 7)]
    mean = before[warm].mean(0)
    torch.testing.assert_close(model.e_co.weight[3], mean)
    torch.testing.assert_close(model.e_co.weight[8], mean)
    torch.testing.assert_close(model.e_co.weight[warm], before[warm])
    assert model.e_co.weight[0].abs().sum().item() == 0.0


def test_llmesr_cold_rows_are_the_cold_items_treatment_and_differ_by_text():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = DualViewModel(ESRConfig(hidden=8, heads=1, max_len=5, cross_attention=False), 12,
                          rng.normal(size=(12, 16)).astype(np.float32))
    cold = np.array([0, 5, 9])
    fill_cold_rows(model, cold)
    scorer = FallbackScorer(model)
    rows = scorer._table.numpy()[cold]
    with torch.inference_mode():
        tables = model.item_tables()
        warm_rows = torch.as_tensor([0] + [i + 1 for i in range(12) if i not in cold])
        want = cold_output_rows(model, {k: v[warm_rows] for k, v in tables.items()}, len(cold),
                                semantic=model.e_se[torch.as_tensor(cold + 1)].numpy())
    np.testing.assert_allclose(rows, want, rtol=1e-5, atol=1e-6)
    half = rows.shape[1] // 2
    assert np.allclose(rows[:, half:], rows[0, half:])  # the ID part is shared ...
    assert not np.allclose(rows[0, :half], rows[1, :half])  # ... the text part is each item's own


def test_text_knn_scores_by_hand():
    knn = TextKNNScorer(np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), "last")
    np.testing.assert_allclose(knn.score_batch([[1, 0]]), [[1.0, 0.0, 1 / math.sqrt(2)]], rtol=1e-6)
    mean = TextKNNScorer(knn.vectors, "mean")
    np.testing.assert_allclose(mean.score_batch([[0, 1]]), [[1 / math.sqrt(2), 1 / math.sqrt(2), 1.0]], rtol=1e-6)
    both = TextKNNScorer(knn.vectors, "both")
    np.testing.assert_allclose(both.score_batch([[0, 1]]), [[1 / math.sqrt(2), 1 + 1 / math.sqrt(2),
                                                             1 / math.sqrt(2) + 1]], rtol=1e-6)
    with pytest.raises(ConfigError, match="textknn.query"):
        TextKNNScorer(knn.vectors, "first")


def test_text_knn_round_trip(tmp_path):
    knn = TextKNNScorer(np.random.default_rng(0).normal(size=(5, 4)), "mean")
    back = TextKNNScorer.load(knn.save(tmp_path / "knn"))
    assert back.query == "mean"
    np.testing.assert_array_equal(back.score_batch([[0, 3]]), knn.score_batch([[0, 3]]))


def _demo_settings(tmp_path, model: str, *extra: str) -> FallbackSettings:
    return load_config(FallbackSettings, "finetune/configs/esr_demo.yaml",
                       [f"model={model}", f"output_dir={tmp_path / model}", "cold.fraction=0.15", "cold.seed=0",
                        "train.epochs=2", f"cache={tmp_path / 'cache'}", *extra])


def test_sasrec_on_the_demo_data_scores_cold_items_with_one_shared_row(tmp_path):
    res = train_and_test(_demo_settings(tmp_path, "sasrec"))
    groups = res["test_groups"]
    assert groups["cold"]["n"] + groups["warm"]["n"] == res["test"]["overall"]["n"] == 500
    assert res["training"]["cold_rows_filled"] == res["cold"]["items"] == 21
    for g in groups.values():
        assert g["pes"]["ndcg@10"] <= g["exp"]["ndcg@10"] <= g["opt"]["ndcg@10"]
    scorer = FallbackScorer.load(tmp_path / "sasrec" / "scorer")
    _, cold = cold_split(DEMO.load(), ColdConfig(fraction=0.15, seed=0))
    scores = scorer.score_batch([[0, 1, 2], [int(cold[0]), 3]])
    assert np.isfinite(scores).all() and np.ptp(scores[:, cold], axis=1).max() == 0.0  # every cold item tied


def test_llmesr_on_the_demo_data_scores_items_absent_from_training(tmp_path):
    """Done when: a model scores an item that was absent from its training, by its text."""
    res = train_and_test(_demo_settings(tmp_path, "llmesr", "encoder.kind=sentence-transformers",
                                        "encoder.model=all-MiniLM-L6-v2", "encoder.max_length=64",
                                        "esr.cross_attention=false", "encoder.threads=1"))
    ds = DEMO.load()
    split, cold = cold_split(ds, ColdConfig(fraction=0.15, seed=0))
    assert not set(cold.tolist()) & {i for s in split.train.values() for i in s}
    scorer = FallbackScorer.load(tmp_path / "llmesr" / "scorer", ds.catalog)
    scores = scorer.score_batch([split.test[0].history])[0]
    assert np.isfinite(scores[cold]).all() and len(np.unique(scores[cold])) == len(cold)  # each by its own text
    assert res["test_groups"]["cold"]["n"] == int(cold_targets(split.test, cold).sum()) > 0


def test_ledger_rows_carry_cold_and_warm_groups(tmp_path):
    cfg = ExperimentsConfig(dataset="demo_cold", runs_dir=str(tmp_path / "runs"), ledger=str(tmp_path / "l.json"),
                            unmasked=False, experiments=[Experiment(
                                name="popularity", config="finetune/configs/esr_demo.yaml",
                                overrides=["model=popularity", "cold.fraction=0.15"],
                                seed_keys=["train.seed", "cold.seed"], seeds=[0, 1])])
    entry = run_experiments(cfg)["popularity"]
    runs = [json.loads((tmp_path / "runs" / "demo_cold" / "popularity" / f"seed{s}" / "results.json").read_text())
            for s in (0, 1)]
    assert [r["cold"]["seed"] for r in runs] == [0, 1] == entry["cold_seeds"]
    n_cold = [r["test_groups"]["cold"]["n"] for r in runs]
    assert entry["n_cold"] == (n_cold[0] if n_cold[0] == n_cold[1] else n_cold)
    assert entry["ndcg@10_warm"] == pytest.approx(np.mean([r["test_groups"]["warm"]["exp"]["ndcg@10"] for r in runs]),
                                                  abs=1e-6)
    assert entry["ndcg@10_cold"] == 0.0  # a cold item has no training count: it ranks below every counted one
    saved = json.loads((tmp_path / "l.json").read_text())["demo_cold"]["popularity"]
    assert {"ndcg@10_cold", "ndcg@10_warm", "ndcg@10", "recall@10_cold", "n_cold", "n_warm", "seeds"} <= set(saved)
    assert cold_ledger_keys([{"test": {}}]) == {}


def test_text_mapped_rows_recover_an_exact_affine_map():
    rng = np.random.default_rng(0)
    text = rng.normal(size=(30, 4))
    a, b = rng.normal(size=(4, 3)), rng.normal(size=3)
    rows = text @ a + b
    warm, cold = np.arange(0, 25), np.arange(25, 30)
    np.testing.assert_allclose(text_mapped_rows(text, rows, warm, cold, ridge=0.0), rows[cold], rtol=1e-5, atol=1e-5)
    shrunk = text_mapped_rows(text, rows, warm, cold, ridge=10.0)  # a strong ridge pulls towards the warm mean
    assert np.abs(shrunk - rows[warm].mean(0)).sum() < np.abs(rows[cold] - rows[warm].mean(0)).sum()


def test_another_cold_row_treatment_rescores_the_trained_model(tmp_path):
    common = ["model=llmesr", "cold.fraction=0.15", "train.epochs=2", f"cache={tmp_path / 'cache'}",
              "encoder.kind=sentence-transformers", "encoder.model=all-MiniLM-L6-v2", "encoder.max_length=64",
              "esr.cross_attention=false", "encoder.threads=1"]
    cfg = ExperimentsConfig(dataset="demo_cold", runs_dir=str(tmp_path / "runs"), ledger=str(tmp_path / "l.json"),
                            unmasked=False, experiments=[
                                Experiment(name="mean", config="finetune/configs/esr_demo.yaml", overrides=common,
                                           seed_keys=["train.seed", "cold.seed"], seeds=[0]),
                                Experiment(name="text", config="finetune/configs/esr_demo.yaml",
                                           overrides=[*common, "cold.id_rows=text"],
                                           seed_keys=["train.seed", "cold.seed"], seeds=[0])])
    entries = run_experiments(cfg)
    runs = tmp_path / "runs" / "demo_cold"
    res = json.loads((runs / "text" / "seed0" / "results.json").read_text())
    assert res["training"]["rescored_from"] == str(runs / "mean" / "seed0")
    assert entries["text"]["n_cold"] == entries["mean"]["n_cold"] > 0
    a = FallbackScorer.load(runs / "mean" / "seed0" / "scorer").model.e_co.weight.detach().numpy()
    b = FallbackScorer.load(runs / "text" / "seed0" / "scorer").model.e_co.weight.detach().numpy()
    _, cold = cold_split(DEMO.load(), ColdConfig(fraction=0.15, seed=0))
    warm = np.setdiff1d(np.arange(len(a)), cold + 1)
    np.testing.assert_array_equal(a[warm], b[warm])
    assert np.ptp(a[cold + 1], axis=0).max() == 0.0 and np.ptp(b[cold + 1], axis=0).max() > 0  # shared vs per item


def test_generative_training_splits_hold_the_cold_items_of_one_dataset_out():
    """CALRec's stage data (genrec.training.data.load_splits) under the protocol: the named dataset's
    cold items are out of its training and validation, the other shops are split as usual."""
    from genrec.training.data import load_splits

    sources = [DEMO, DatasetSource(format="demo", name="kitchen")]
    cold = ColdConfig(fraction=0.15, seed=0)
    splits = load_splits(sources, cold=cold, cold_dataset="electronics")
    want, cold_set = cold_split(DEMO.load(), cold)
    assert splits["electronics"].train == want.train and splits["electronics"].valid == want.valid
    assert splits["kitchen"].train == leave_one_out(sources[1].load()).train
    assert not set(cold_set.tolist()) & {i for s in splits["electronics"].train.values() for i in s}
    with pytest.raises(ConfigError, match="cold_dataset must name"):
        load_splits(sources, cold=cold, cold_dataset="scientific")
    with pytest.raises(ConfigError, match="kcore"):
        load_splits(sources, 5, cold=cold, cold_dataset="electronics")
