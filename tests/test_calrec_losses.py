"""CALRec loss functions against values computed by hand (SPEC.md §1 objectives)."""

from __future__ import annotations

import math

import pytest
import torch

from genrec.training.losses import IGNORE_INDEX, combine, info_nce, last_prompt_state, mean_pool, nig_loss


def test_nig_loss_is_mean_ce_over_target_tokens_with_shift():
    # logits[:, t] predicts labels[:, t+1]; only labelled positions count.
    logits = torch.tensor([[[0.0, math.log(3.0)], [math.log(2.0), 0.0], [5.0, -5.0]]])
    labels = torch.tensor([[IGNORE_INDEX, 1, 0]])
    expected = (-math.log(3 / 4) - math.log(2 / 3)) / 2
    assert nig_loss(logits, labels).item() == pytest.approx(expected, abs=1e-6)


def test_prompt_positions_carry_no_nig_loss():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    labels = torch.tensor([[IGNORE_INDEX] * 3 + [4, 5, 6], [IGNORE_INDEX] * 4 + [1, 2]])
    base = nig_loss(logits, labels)
    # Positions whose NEXT token is a prompt token predict nothing that is trained on.
    bumped = logits.clone()
    bumped[0, :2] += torch.randn(2, 11) * 10
    bumped[1, :3] += torch.randn(3, 11) * 10
    assert torch.equal(nig_loss(bumped, labels), base)
    # ... while a position that predicts a target token does change it.
    bumped[0, 2] += torch.randn(11) * 10
    assert not torch.allclose(nig_loss(bumped, labels), base)


def test_info_nce_matches_hand_computation_on_asymmetric_3x3():
    # User-side vectors u_j and item vectors t_i (norms differ on purpose: cosine ignores them).
    u = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    tau = 0.5
    r = 1 / math.sqrt(2)
    # cos[i][j] = cos(u_j, t_i), written out by hand.
    cos = [[1.0, 0.0, r],
           [0.0, 1.0, r],
           [0.6, 0.8, (0.6 + 0.8) * r]]
    # L = -(1/N) Σ_i log( exp(cos(u_i,t_i)/τ) / Σ_j exp(cos(u_j,t_i)/τ) )   (denominator over users j)
    expected = -sum(math.log(math.exp(cos[i][i] / tau) / sum(math.exp(cos[i][j] / tau) for j in range(3)))
                    for i in range(3)) / 3
    # The other direction (for a fixed user, sum over items) gives a different number here.
    other = -sum(math.log(math.exp(cos[j][j] / tau) / sum(math.exp(cos[i][j] / tau) for i in range(3)))
                 for j in range(3)) / 3
    assert abs(expected - other) > 1e-3
    assert info_nce(u, t, tau).item() == pytest.approx(expected, abs=1e-6)


def test_info_nce_queued_vectors_join_every_denominator():
    # Two in-batch pairs plus one queued user-side vector q (unit length): by hand,
    # L = -(1/2) Σ_i log( e^{cos(u_i,t_i)/τ} / (Σ_j e^{cos(u_j,t_i)/τ} + e^{cos(q,t_i)/τ}) ).
    u = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    t = torch.tensor([[2.0, 0.0], [0.6, 0.8]])
    q = torch.tensor([[0.0, -1.0]])
    tau = 0.25
    cos = [[1.0, 0.0, 0.0],      # t_0 against u_0, u_1, q
           [0.6, 0.8, -0.8]]     # t_1 against u_0, u_1, q
    expected = -sum(math.log(math.exp(cos[i][i] / tau) / sum(math.exp(c / tau) for c in cos[i]))
                    for i in range(2)) / 2
    assert info_nce(u, t, tau, queued=q).item() == pytest.approx(expected, abs=1e-6)
    assert info_nce(u, t, tau, queued=q[:0]).item() == pytest.approx(info_nce(u, t, tau).item(), abs=0)


def test_negatives_queue_is_newest_first_and_bounded():
    from genrec.training.model import NegativesQueue

    q = NegativesQueue(size=3, dim=2)
    assert q.get("tt").shape == (0, 2)
    q.push("tt", torch.tensor([[2.0, 0.0], [0.0, 5.0]]))
    assert q.get("tt").tolist() == [[1.0, 0.0], [0.0, 1.0]] and q.get("ut").shape == (0, 2)
    q.push("tt", torch.tensor([[0.0, -1.0], [-3.0, 0.0]]))
    assert q.get("tt").tolist() == [[0.0, -1.0], [-1.0, 0.0], [1.0, 0.0]]  # the oldest fell off


def test_mean_pool_averages_only_the_span_and_empty_span_is_zero():
    h = torch.arange(12, dtype=torch.float32).reshape(2, 3, 2)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    out = mean_pool(h, mask)
    assert out[0].tolist() == [(0 + 4) / 2, (1 + 5) / 2]
    assert out[1].tolist() == [0.0, 0.0]


def test_last_prompt_state_is_the_position_before_the_first_target_token():
    h = torch.arange(24, dtype=torch.float32).reshape(3, 4, 2)
    # Row 0: left padding, target at positions 2-3 -> position 1; row 1: target from 1 -> 0;
    # row 2: no target span -> the last position.
    mask = torch.tensor([[False, False, True, True], [False, True, True, True], [False] * 4])
    out = last_prompt_state(h, mask)
    assert out.tolist() == [h[0, 1].tolist(), h[1, 0].tolist(), h[2, 3].tolist()]


def test_user_pooling_setting_is_checked():
    from genrec.errors import ConfigError
    from genrec.training.config import LossConfig

    assert LossConfig(user_pooling="last").user_pooling == "last"
    with pytest.raises(ConfigError, match="loss.user_pooling"):
        LossConfig(user_pooling="max")


def test_combine_weights_and_plain_nig_when_alpha_beta_zero():
    nig, tt, ut = torch.tensor(2.0), torch.tensor(3.0), torch.tensor(5.0)
    assert combine(nig, tt, ut, 0.125, 0.025).item() == pytest.approx(0.85 * 2 + 0.125 * 3 + 0.025 * 5)
    assert combine(nig, tt, ut, 0.0, 0.0) is nig
    assert combine(nig, None, None, 0.0, 0.0).item() == 2.0


def test_info_nce_of_scores_is_info_nce_on_cosine_scores_and_softmaxes_over_users():
    from genrec.training.losses import info_nce_of_scores

    torch.manual_seed(0)
    u, t = torch.randn(5, 7), torch.randn(5, 7)
    cos = torch.nn.functional.normalize(u, dim=-1) @ torch.nn.functional.normalize(t, dim=-1).T  # [user, item]
    assert info_nce_of_scores(cos, 0.3).item() == pytest.approx(info_nce(u, t, 0.3).item(), abs=1e-6)
    # By hand, 2 users x 2 items, tau 1: item 0 over users (2, 0), item 1 over users (1, 1).
    scores = torch.tensor([[2.0, 1.0], [0.0, 1.0]])
    expected = (-math.log(math.exp(2) / (math.exp(2) + 1)) + math.log(2)) / 2
    assert info_nce_of_scores(scores, 1.0).item() == pytest.approx(expected, abs=1e-6)
