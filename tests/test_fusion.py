"""Fusion of the fallback's scores with a generative signal: hand-computed values and tuning."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genrec.errors import ConfigError
from genrec.fusion import FusionSettings, candidates, fuse, tune

INF = np.inf


def test_zsum_hand_computed():
    f = np.array([3.0, 2.0, 1.0, 0.0])  # mean 1.5, std sqrt(1.25): z = [3, 1, -1, -3] / sqrt(5)
    g = np.array([-INF, -1.0, -INF, -3.0])  # absent -> -3 (lowest present): z = [-1, 3, -1, -1] / sqrt(3)
    got = fuse(f, g, FusionSettings("zsum", weight=0.5))
    want = np.array([3, 1, -1, -3]) / math.sqrt(5) + 0.5 * np.array([-1, 3, -1, -1]) / math.sqrt(3)
    assert got == pytest.approx(want, abs=1e-12)
    assert np.argsort(-got).tolist() == [1, 0, 2, 3]  # the LLM's best item overtakes the fallback's best


def test_rrf_hand_computed():
    f = np.array([3.0, 2.0, 1.0, 0.0])
    g = np.array([-INF, -1.0, -INF, -3.0])  # generative ranks: item 1 first, item 3 second
    got = fuse(f, g, FusionSettings("rrf", weight=2.0, rrf_c=1.0))
    assert got == pytest.approx([1 / 2, 1 / 3 + 2 / 2, 1 / 4, 1 / 5 + 2 / 3], abs=1e-12)


def test_none_is_the_signal_and_batches_match_rows():
    f = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    g = np.array([[-INF, 0.5, 0.1], [0.2, -INF, -INF]])
    assert fuse(f, g, FusionSettings("none")).tolist() == g.tolist()
    for s in candidates():
        both = fuse(f, g, s)
        assert both[1] == pytest.approx(fuse(f[1], g[1], s))
    with pytest.raises(ConfigError):
        fuse(f, g, FusionSettings("mean"))
    with pytest.raises(ValueError, match="shape"):
        fuse(f, g[:, :2], FusionSettings("zsum"))


def test_no_signal_leaves_the_fallback_order():
    f = np.array([0.3, 0.9, 0.1, 0.5])
    g = np.full(4, -INF)
    for s in candidates():
        assert np.argsort(-fuse(f, g, s), kind="stable").tolist() == [1, 3, 0, 2]


def test_tune_picks_the_best_grid_point():
    rng = np.random.default_rng(0)
    users, items = 40, 30
    targets = rng.integers(0, items, users)
    f = rng.normal(size=(users, items))
    f[np.arange(users), targets] += 1.0  # the fallback alone ranks the target well, not first
    g = np.full((users, items), -INF)
    g[np.arange(users), targets] = 0.0  # the generative mode finds every target
    best, table = tune(f, g, targets, split="valid")
    assert len(table) == len(candidates())
    assert max(r["ndcg@10_expected"] for r in table) == pytest.approx(1.0)  # some fusion puts every target first
    top = max(table, key=lambda r: r["ndcg@10_expected"])
    assert (best.method, best.weight, best.rrf_c) == (top["method"], top["weight"], top["rrf_c"])
    weak, _ = tune(f, g, targets, grid=[FusionSettings("zsum", 0.0)], split="valid")
    assert weak.weight == 0.0


def test_tune_scores_ties_by_their_expected_value():
    """Two items tied with the target (fallback and signal both flat): expected NDCG@10 is the mean
    over ranks 1..3, not the optimistic 1."""
    f = np.zeros((1, 3))
    g = np.full((1, 3), -INF)
    _, table = tune(f, g, [1], grid=[FusionSettings("zsum", 1.0)], split="valid")
    assert table[0]["ndcg@10_expected"] == pytest.approx(round((1 + 1 / np.log2(3) + 0.5) / 3, 5))


@pytest.mark.parametrize("split", ["test", "train", ""])
def test_tuning_on_any_split_but_validation_is_refused(split):
    f, g = np.zeros((1, 3)), np.zeros((1, 3))
    with pytest.raises(ConfigError, match=f"validation split only.*got split={split!r}"):
        tune(f, g, [0], split=split)


def test_tuned_weights_win_for_their_mode_and_method():
    s = FusionSettings("zsum", weight=1.0, rrf_c=60.0,
                       tuned={"rerank/rrf": {"weight": 4.0, "rrf_c": 10.0, "ndcg@10": 0.1}})
    got = s.for_mode("rerank", "rrf")
    assert (got.method, got.weight, got.rrf_c) == ("rrf", 4.0, 10.0)
    assert (s.for_mode("rerank").method, s.for_mode("rerank").weight) == ("zsum", 1.0)  # zsum was not tuned
    assert s.for_mode("qrr", "rrf").weight == 1.0
