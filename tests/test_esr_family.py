"""The fallback family's new models on hand-computed cases: DaRec's four terms, PAD's MMD and gate,
AlphaRec's fold-in (= LightGCN for training users), and the registry's errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genrec.config import load_config
from genrec.errors import ConfigError
from genrec.esr.alpharec import AlphaRec, AlphaRecConfig, graph_edges
from genrec.esr.darec import (
    DaRec,
    DaRecConfig,
    DaRecModelConfig,
    global_structure,
    greedy_match,
    kmeans,
    local_structure,
    orthogonality,
    uniformity,
)
from genrec.esr.family import pad_left
from genrec.esr.losses import LossConfig, RankingLoss
from genrec.esr.pad import PAD, PADConfig, PADModelConfig, mmd, multi_kernel_mmd
from genrec.esr.pipeline import FallbackSettings
from genrec.esr.registry import entry
from genrec.esr.sasrec import sasrec_config
from genrec.esr.scorer import FallbackScorer

T = torch.tensor


# -- DaRec's terms --------------------------------------------------------------------------
def test_orthogonality_is_the_mean_squared_cosine():
    # cos([1,0],[0,1]) = 0, cos([1,1],[1,0]) = 1/sqrt(2) -> squares 0 and 1/2, mean 1/4
    assert orthogonality(T([[1.0, 0.0], [1.0, 1.0]]), T([[0.0, 1.0], [1.0, 0.0]])).item() == pytest.approx(0.25)


def test_uniformity_is_the_log_mean_gaussian_potential_over_distinct_pairs():
    # unit rows [1,0], [0,1], [-1,0] (the last scaled: rows are normalised first): squared distances 2, 4, 2
    x = T([[1.0, 0.0], [0.0, 1.0], [-3.0, 0.0]])
    expected = math.log((math.exp(-4) + math.exp(-8) + math.exp(-4)) / 3)
    assert uniformity(x).item() == pytest.approx(expected, rel=1e-6)


def test_global_structure_compares_the_similarity_matrices():
    # S_a = I, S_b = all ones: the difference has two entries of -1 out of four -> mean 1/2
    assert global_structure(T([[1.0, 0.0], [0.0, 2.0]]), T([[1.0, 0.0], [3.0, 0.0]])).item() == pytest.approx(0.5)


def test_kmeans_from_the_first_rows():
    x = T([[0.0, 0.0], [10.0, 0.0], [0.0, 1.0], [10.0, 1.0]])
    torch.testing.assert_close(kmeans(x, 2, 5), T([[0.0, 0.5], [10.0, 0.5]]))


def test_greedy_matching_takes_the_closest_pair_first():
    a = T([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
    b = T([[1.1, 0.0], [5.0, 4.0], [0.0, 3.0]])
    # 0.1 (a1, b0) first; then 1 (a2, b1); a0 is left with b2 although b0 was closer to it
    assert greedy_match(a, b) == [(1, 0), (2, 1), (0, 2)]


def test_local_structure_pushes_matched_cosines_to_one_and_the_rest_to_zero():
    ca = T([[1.0, 0.0], [0.0, 1.0]])
    cb = T([[0.6, 0.8], [3.0, 0.0]])
    # matches: (1, 0) at distance 0.632, then (0, 1); cosines [[0.6, 1], [0.8, 0]], targets [[0, 1], [1, 0]]
    assert local_structure(ca, cb).item() == pytest.approx((0.36 + 0.04) / 4)


def test_darec_loss_is_the_ranking_loss_plus_lambda_times_the_terms():
    rng = np.random.default_rng(0)
    n = 12
    model = DaRec(DaRecModelConfig(sasrec_config(hidden=8, layers=1, dropout=0.0, max_len=5),
                                   DaRecConfig(lam=0.5, sample=6, clusters=2)), n, rng.normal(size=(n, 10)))
    model.eval()
    ranking = RankingLoss(LossConfig(), n)
    seqs = torch.from_numpy(pad_left([[0, 1, 2], [3, 4]], 5))
    pos = torch.from_numpy(pad_left([[1, 2, 3], [4, 5]], 5, length=seqs.shape[1]))
    torch.manual_seed(7)
    total, parts = model.loss(seqs, pos, None, None, ranking)
    torch.manual_seed(7)
    terms = model.alignment(torch.randperm(n)[:6])
    rank = ranking(model.backbone.encode(seqs), pos, torch.cat([model.backbone.item_tables()["co"]], -1))
    assert total.item() == pytest.approx(rank.item() + 0.5 * sum(t.item() for t in terms.values()), rel=1e-5)
    assert set(parts) == {"rank", "orth", "unif", "global", "local"}


# -- PAD ------------------------------------------------------------------------------------
def test_mmd_on_a_hand_computed_case():
    x, y = T([[0.0], [1.0]]), T([[0.0], [2.0]])
    # k = exp(-d^2): Kxx = (2 + 2/e)/4, Kyy = (2 + 2/e^4)/4, Kxy = (1 + 1/e^4 + 2/e)/4  ->  (1 - 1/e)/2
    assert mmd(x, y, [1.0]).item() == pytest.approx((1 - math.exp(-1)) / 2, rel=1e-6)
    # two kernels add up
    assert mmd(x, y, [1.0, 2.0]).item() == pytest.approx(
        mmd(x, y, [1.0]).item() + mmd(x, y, [2.0]).item(), rel=1e-6)
    # the bandwidth base is the mean squared distance of the pooled rows: 22 / 12 over ordered pairs
    assert multi_kernel_mmd(x, y, [1.0, 3.0]).item() == pytest.approx(
        mmd(x, y, [11 / 6, 11 / 2]).item(), rel=1e-6)
    assert mmd(x, x, [1.0]).item() == pytest.approx(0.0, abs=1e-7)


def test_pad_score_is_the_frequency_gated_sum_of_the_experts():
    rng = np.random.default_rng(1)
    n = 7
    counts = np.array([0, 1, 2, 5, 50, 0, 3])
    model = PAD(PADModelConfig(sasrec_config(hidden=4, layers=1, dropout=0.0, max_len=6), PADConfig(sample=4)),
                n, rng.normal(size=(n, 6)), counts).eval()
    seqs = torch.from_numpy(pad_left([[0, 3], [4, 5, 6]], 6))
    with torch.no_grad():
        tables = model.item_tables()
        users = model.user_vectors(seqs, tables)
        got = users @ model.output_table(tables).T
        expected = sum(tables["gate"][1:, k] * (users[:, 4 * k:4 * (k + 1)] @ tables[e][1:].T)
                       for k, e in enumerate(("text", "id", "aligned")))
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(tables["gate"].sum(1), torch.ones(n + 1))
    # the gate is a function of the training count: items with equal counts get equal gates
    torch.testing.assert_close(tables["gate"][1], tables["gate"][6])
    assert not torch.allclose(tables["gate"][1], tables["gate"][5])


# -- AlphaRec -------------------------------------------------------------------------------
def _alpharec(train: dict[str, list[int]], n: int = 5) -> AlphaRec:
    rng = np.random.default_rng(2)
    return AlphaRec(AlphaRecConfig(hidden=3, layers=2), n, rng.normal(size=(n, 4)), graph_edges(train), len(train))


def test_alpharec_fold_in_equals_lightgcn_for_training_users():
    train = {"a": [0, 1], "b": [1, 2, 3], "c": [3, 3, 4]}  # c's repeat counts twice
    model = _alpharec(train)
    n_users, n_items = 3, 5
    r = np.zeros((n_users, n_items))
    for u, seq in enumerate(train.values()):
        for i in seq:
            r[u, i] += 1
    du, di = r.sum(1), r.sum(0)
    norm = T(r / np.sqrt(np.outer(du, di)), dtype=torch.float32)
    with torch.no_grad():
        e_llm = model.e_llm[1:]
        users0 = model.mlp(T(r / du[:, None], dtype=torch.float32) @ e_llm)  # MLP of each user's mean LLM vector
        items0 = model.mlp(e_llm)
        u, i = [users0], [items0]
        for _ in range(2):  # LightGCN: users from items, items from users, both of the previous layer
            u, i = u + [norm @ i[-1]], i + [norm.T @ u[-1]]
        users = torch.nn.functional.normalize(torch.stack(u).mean(0), dim=-1)
        items = torch.nn.functional.normalize(torch.stack(i).mean(0), dim=-1)
        tables = model.item_tables()
        torch.testing.assert_close(model.output_table(tables), items)
        folded = model.user_vectors(torch.from_numpy(pad_left(list(train.values()), 0)), tables)
        torch.testing.assert_close(folded, users)
        # not sequential: the order of a history does not change its vector
        shuffled = model.user_vectors(torch.from_numpy(pad_left([[3, 2, 1]], 0)), tables)
        torch.testing.assert_close(shuffled[0], folded[1])


def test_alpharec_scorer_round_trip(tmp_path):
    model = _alpharec({"a": [0, 1], "b": [1, 2, 3]}).eval()
    scorer = FallbackScorer(model, {"model": "alpharec"})
    scorer.save(tmp_path / "s")
    back = FallbackScorer.load(tmp_path / "s")
    assert isinstance(back.model, AlphaRec) and back.model.cfg == model.cfg
    np.testing.assert_allclose(back.score_batch([[0, 4], [2]]), scorer.score_batch([[0, 4], [2]]), rtol=1e-6)
    assert back.recommend([0, 4], k=2) == scorer.recommend([0, 4], k=2)


# -- registry and settings ------------------------------------------------------------------
def test_unknown_model_and_bad_settings_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="model must be one of sasrec, llmesr, alpharec, darec, pad, hllm, unisrec, popularity"):
        entry("bert4rec")
    config = tmp_path / "c.yaml"
    config.write_text("model: alpharec\n")
    for override, field in [("alpharec.tau=0", "alpharec.tau"), ("darec.clusters=0", "darec.clusters"),
                            ("pad.kernels=[]", "pad.kernels"), ("darec.lam=-1", "darec.lam")]:
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            load_config(FallbackSettings, str(config), [override])
