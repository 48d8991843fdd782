"""Ranking losses (SPEC.md §5): exact values on hand-computed cases, chunking, sampling, settings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genrec.errors import ConfigError
from genrec.esr.losses import (
    LossConfig,
    RankingLoss,
    bce_loss,
    full_softmax_loss,
    sampled_softmax_loss,
)

# three items with 2-d vectors; row 0 is padding
TABLE = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])


def _one_position(state=(1.0, 0.0), target_row=1):
    """A batch of one user with a padding position and one real position."""
    states = torch.tensor([[[9.0, 9.0], list(state)]])  # the padding state must not matter
    pos = torch.tensor([[0, target_row]])
    return states, pos


def test_full_softmax_value_by_hand():
    states, pos = _one_position()
    # logits of items 1, 2, 3: 1, 0, 2; target item 1
    expected = math.log(math.e + 1 + math.e ** 2) - 1  # 1.40760...
    assert full_softmax_loss(states, pos, TABLE).item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(1.407606, abs=1e-6)


def test_full_softmax_chunked_equals_one_pass_in_value_and_gradient():
    g = torch.Generator().manual_seed(0)
    table = torch.randn(50, 8, generator=g, requires_grad=True)
    states = torch.randn(3, 7, 8, generator=g, requires_grad=True)
    pos = torch.randint(1, 50, (3, 7), generator=g)
    pos[0, :3] = 0  # left padding
    one = full_softmax_loss(states, pos, table)
    one.backward()
    g_states, g_table = states.grad.clone(), table.grad.clone()
    states.grad, table.grad = None, None
    chunked = full_softmax_loss(states, pos, table, chunk_logits=49 * 4)  # 4 positions per chunk, checkpointed
    chunked.backward()
    torch.testing.assert_close(chunked, one)
    torch.testing.assert_close(states.grad, g_states)
    torch.testing.assert_close(table.grad, g_table)


def test_sampled_softmax_with_logq_correction_by_hand():
    states, pos = _one_position()
    neg = torch.tensor([[[1, 1], [2, 3]]])  # K = 2 negatives: items 2 and 3 (rows 2, 3)
    q = 1 / 3  # uniform over 3 items
    log_kq = torch.tensor([0.0] + [math.log(2 * q)] * 3)
    # corrected negative logits: s_j - log(K q) = s_j + log(1.5)
    expected = math.log(math.e + math.exp(0 + math.log(1.5)) + math.exp(2 + math.log(1.5))) - 1
    got = sampled_softmax_loss(states, pos, TABLE, neg, log_kq).item()
    assert got == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(1.727970, abs=1e-5)


def test_sampled_softmax_drops_accidental_hits():
    states, pos = _one_position()
    log_kq = torch.tensor([0.0] + [math.log(2 / 3)] * 3)
    hit = sampled_softmax_loss(states, pos, TABLE, torch.tensor([[[1, 1], [1, 3]]]), log_kq).item()
    # the negative equal to the target (row 1) is left out: only item 3 competes
    expected = math.log(math.e + math.exp(2 + math.log(1.5))) - 1
    assert hit == pytest.approx(expected, abs=1e-6)


def test_bce_value_by_hand():
    states, pos = _one_position()
    neg = torch.tensor([[0, 3]])  # positive logit 1, negative logit 2
    softplus = lambda x: math.log1p(math.exp(x))  # noqa: E731
    expected = softplus(-1) + softplus(2)  # 0.313262 + 2.126928
    assert bce_loss(states, pos, TABLE, neg).item() == pytest.approx(expected, abs=1e-6)


def test_samplers_draw_from_their_proposal_and_are_seeded():
    pos = np.ones((4, 50), dtype=np.int64)
    counts = np.array([0, 9, 99])  # Q ∝ (count+1): 1/111, 10/111, 100/111
    loss = RankingLoss(LossConfig(kind="sampled_softmax", negatives=64, sampler="popularity"), 3, counts)
    a = loss.sample(pos, pos, np.random.default_rng(3))
    b = loss.sample(pos, pos, np.random.default_rng(3))
    assert a.shape == (4, 50, 64) and np.array_equal(a, b)
    freq = np.bincount(a.ravel(), minlength=4)[1:] / a.size
    np.testing.assert_allclose(freq, [1 / 111, 10 / 111, 100 / 111], atol=0.01)
    uni = RankingLoss(LossConfig(kind="sampled_softmax", negatives=64), 3).sample(pos, pos, np.random.default_rng(0))
    np.testing.assert_allclose(np.bincount(uni.ravel(), minlength=4)[1:] / uni.size, [1 / 3] * 3, atol=0.01)
    # bce: one negative per real position, never an item of the sequence, none on padding
    seqs = np.array([[0, 1, 2], [1, 2, 3]])
    bpos = np.array([[0, 0, 2], [0, 2, 3]])
    neg = RankingLoss(LossConfig(kind="bce"), 4).sample(bpos, seqs, np.random.default_rng(0))
    assert neg[0, 0] == 0 and neg[1, 0] == 0
    assert neg[0, 2] not in (1, 2) and set(neg[1, 1:]) == {4}
    assert RankingLoss(LossConfig(), 3).sample(pos, pos, np.random.default_rng(0)) is None


def test_loss_settings_are_checked():
    with pytest.raises(ConfigError, match="train.loss.kind"):
        LossConfig(kind="bpr")
    with pytest.raises(ConfigError, match="sampler"):
        LossConfig(kind="sampled_softmax", sampler="zipf")
