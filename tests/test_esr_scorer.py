"""Serving scorer (faiss top-K = brute force, unknown ids, save/load), popularity, and trainer resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genrec.data.dataset import Example
from genrec.esr.model import DualViewModel, ESRConfig
from genrec.esr.scorer import FallbackScorer, PopularityScorer, UnknownHistoryError
from genrec.esr.trainer import TrainConfig, Trainer, evaluate
from genrec.metrics import ranks

N = 120


@pytest.fixture(scope="module")
def scorer() -> FallbackScorer:
    torch.manual_seed(0)
    emb = np.random.default_rng(0).normal(size=(N, 48)).astype(np.float32)
    return FallbackScorer(DualViewModel(ESRConfig(hidden=16, max_len=20), N, emb))


def test_recommend_equals_brute_force_top_k_with_history_excluded(scorer):
    hist = [5, 17, 3, 17, 99]
    got = scorer.recommend(hist, k=10)
    full = scorer.score_batch([hist])[0]
    full[list(set(hist))] = -np.inf
    expected = np.argsort(-full, kind="stable")[:10]
    assert [i for i, _ in got] == expected.tolist()
    np.testing.assert_allclose([s for _, s in got], full[expected], rtol=1e-4, atol=1e-4)
    kept = scorer.recommend(hist, k=N, exclude_history=False)
    assert len(kept) == N and {5, 17, 3, 99} <= {i for i, _ in kept}


def test_batch_equals_single_requests(scorer):
    hists = [[1, 2, 3], [40], list(range(30))]  # the last one is longer than max_len
    batch = scorer.recommend_batch(hists, k=5)
    for h, b in zip(hists, batch):
        single = scorer.recommend(h, k=5)
        assert [i for i, _ in b] == [i for i, _ in single]
        np.testing.assert_allclose([s for _, s in b], [s for _, s in single], rtol=1e-4, atol=1e-4)


def test_unknown_ids_are_answered_from_the_known_part(scorer):
    assert scorer.recommend([7, 8, N + 5, -1], k=4) == scorer.recommend([7, 8], k=4)
    with pytest.raises(UnknownHistoryError, match="no item the model knows"):
        scorer.recommend([N + 1, 10_000], k=3)
    with pytest.raises(UnknownHistoryError):
        scorer.recommend([], k=3)


def test_save_load_round_trip(scorer, tmp_path):
    scorer.save(tmp_path / "s")
    info = json.loads((tmp_path / "s" / "scorer.json").read_text())
    assert info["num_items"] == N and info["config"]["hidden"] == 16
    loaded = FallbackScorer.load(tmp_path / "s")
    hists = [[1, 2, 3], [50, 60]]
    np.testing.assert_allclose(loaded.score_batch(hists), scorer.score_batch(hists), rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception, match="not a fallback scorer folder"):
        FallbackScorer.load(tmp_path)


def test_load_refuses_a_scorer_from_another_catalog(tmp_path):
    from genrec.data.catalog import Catalog, Item
    from genrec.errors import GenrecError

    cat = Catalog(Item(f"i{i}", f"item {i}") for i in range(N))
    emb = np.random.default_rng(0).normal(size=(N, 48)).astype(np.float32)
    s = FallbackScorer(DualViewModel(ESRConfig(hidden=16, max_len=20), N, emb),
                       meta={"catalog_fingerprint": cat.fingerprint()})
    s.save(tmp_path)
    assert FallbackScorer.load(tmp_path, catalog=cat).num_items == N
    other = Catalog(Item(f"i{i}", f"other {i}") for i in range(N))
    with pytest.raises(GenrecError, match="another catalog"):
        FallbackScorer.load(tmp_path, catalog=other)


def test_popularity_scorer():
    pop = PopularityScorer([3, 9, 9, 0, 5])
    assert pop.recommend([], k=3) == [(1, 9.0), (2, 9.0), (4, 5.0)]
    assert pop.recommend([1, 4], k=2) == [(2, 9.0), (0, 3.0)]
    assert pop.recommend([1], k=2, exclude_history=False) == [(1, 9.0), (2, 9.0)]
    assert pop.score_batch([[0], [1]]).shape == (2, 5)
    pop2 = PopularityScorer.from_training({"a": [1, 2, 1], "b": [4]}, 5)
    assert pop2.counts.tolist() == [0, 2, 1, 0, 1]


def _toy_split(n_users=60, n_items=30, seed=0):
    """Users walk i, i+1, i+2, ... (mod n): the next item is predictable from the last one."""
    rng = np.random.default_rng(seed)
    train, valid = {}, []
    for u in range(n_users):
        start, length = int(rng.integers(0, n_items)), int(rng.integers(4, 9))
        seq = [(start + j) % n_items for j in range(length)]
        train[str(u)] = seq[:-1]
        valid.append(Example(str(u), tuple(seq[:-1]), seq[-1]))
    return train, valid


def test_trainer_learns_saves_best_and_resumes_after_a_kill(tmp_path):
    train, valid = _toy_split()
    cfg = TrainConfig(lr=5e-3, batch_size=16, epochs=4, patience=100, threads=1)
    torch.manual_seed(0)
    m1 = DualViewModel(ESRConfig.sasrec(hidden=16, dropout=0.1, max_len=20), 30)
    Trainer(m1, train, valid, cfg, tmp_path / "a").fit()
    # "killed" after 2 epochs, then resumed with the same folder up to 4
    torch.manual_seed(0)
    m2 = DualViewModel(ESRConfig.sasrec(hidden=16, dropout=0.1, max_len=20), 30)
    Trainer(m2, train, valid, TrainConfig(**{**cfg.__dict__, "epochs": 2}), tmp_path / "b").fit()
    m3 = DualViewModel(ESRConfig.sasrec(hidden=16, dropout=0.1, max_len=20), 30)
    summary = Trainer(m3, train, valid, cfg, tmp_path / "b").fit()
    assert summary["epochs_run"] == 4 and (tmp_path / "b" / "best.pt").exists()
    for p1, p3 in zip(m1.state_dict().values(), m3.state_dict().values()):
        torch.testing.assert_close(p1, p3)
    with pytest.raises(ValueError, match="other settings"):
        m4 = DualViewModel(ESRConfig.sasrec(hidden=16, dropout=0.2, max_len=20), 30)
        Trainer(m4, train, valid, cfg, tmp_path / "b").fit()
    # the best weights beat an untrained model on the toy task
    opt, _ = evaluate(m1, valid)
    untrained = DualViewModel(ESRConfig.sasrec(hidden=16, dropout=0.1, max_len=20), 30)
    opt0, _ = evaluate(untrained, valid)
    assert (1.0 / opt).mean() > (1.0 / opt0).mean()


def test_a_checkpoint_saved_before_a_setting_existed_resumes_at_its_default(tmp_path):
    """A run started by an older genrec (its saved settings lack ``ffn`` and ``activation``,
    added later with the old behaviour as default) resumes; the same run with the new setting
    changed does not."""
    train, valid = _toy_split()
    cfg = TrainConfig(lr=5e-3, batch_size=16, epochs=2, patience=100, threads=1)
    torch.manual_seed(0)
    model = DualViewModel(ESRConfig.sasrec(hidden=16, dropout=0.1, max_len=20), 30)
    Trainer(model, train, valid, cfg, tmp_path).fit()
    state = torch.load(tmp_path / "last.pt", weights_only=False)
    for key in ("ffn", "activation"):
        del state["settings"]["model"][key]
    del state["settings"]["train"]["loss"]["pop_power"]
    torch.save(state, tmp_path / "last.pt")
    resumed = Trainer(DualViewModel(ESRConfig.sasrec(hidden=16, dropout=0.1, max_len=20), 30), train, valid,
                      TrainConfig(**{**cfg.__dict__, "epochs": 3}), tmp_path).fit()
    assert resumed["epochs_run"] == 3
    torch.save(state, tmp_path / "last.pt")
    with pytest.raises(ValueError, match="other settings"):
        Trainer(DualViewModel(ESRConfig.sasrec(hidden=16, dropout=0.1, max_len=20, activation="gelu"), 30),
                train, valid, TrainConfig(**{**cfg.__dict__, "epochs": 3}), tmp_path).fit()


def test_evaluate_masks_history_like_the_shared_metric(scorer):
    examples = [Example("a", (1, 2, 3), 4), Example("b", (9, 4), 4)]
    opt, pes = evaluate(scorer, examples)
    scores = scorer.score_batch([[1, 2, 3], [9, 4]])
    ref = ranks(scores, np.array([4, 4]), [[1, 2, 3], [9, 4]])
    assert opt.tolist() == ref[0].tolist() and pes.tolist() == ref[1].tolist()


def test_distillation_trains_with_similar_users(tmp_path):
    train, valid = _toy_split(n_users=30)
    emb = np.random.default_rng(1).normal(size=(30, 24)).astype(np.float32)
    similar = {u: [v for v in train if v != u][:3] for u in train}
    model = DualViewModel(ESRConfig(hidden=16, max_len=20, n_similar=3, dropout=0.1), 30, emb)
    for refresh in ("epoch", "batch"):
        summary = Trainer(model, train, valid, TrainConfig(batch_size=8, epochs=1, threads=1, teacher_refresh=refresh),
                          tmp_path / refresh, similar).fit()
        assert summary["history"][0]["distill"] > 0
    with pytest.raises(ValueError, match="similar-user"):
        Trainer(model, train, valid, TrainConfig(), tmp_path / "x", None)
