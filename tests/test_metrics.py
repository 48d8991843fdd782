"""Ranking metrics on hand-computed cases with ties."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genrec.metrics import evaluate_ranking, format_table, metrics_from_ranks, per_user_metrics, ranks


def test_all_scores_equal():
    opt, pes = ranks(np.zeros((1, 5)), np.array([3]))
    assert (opt[0], pes[0]) == (1, 5)


def test_target_tied_with_others():
    scores = np.array([[0.9, 0.5, 0.5, 0.5, 0.1]])
    opt, pes = ranks(scores, np.array([2]))
    assert (opt[0], pes[0]) == (2, 4)


def test_unique_target_opt_equals_pes():
    scores = np.array([[0.9, 0.7, 0.5, 0.3]])
    opt, pes = ranks(scores, np.array([2]))
    assert opt[0] == pes[0] == 3


def test_masking_history_but_never_target():
    scores = np.array([[0.9, 0.8, 0.5, 0.5], [0.9, 0.8, 0.5, 0.1]])
    opt, pes = ranks(scores, np.array([2, 0]), exclude=[[0, 1], [0, 1]])
    assert (opt[0], pes[0]) == (1, 2)  # items 0 and 1 masked; item 3 still ties
    assert (opt[1], pes[1]) == (1, 1)  # target 0 is in the history but stays rankable


def test_nan_scores_rank_last():
    opt, pes = ranks(np.array([[np.nan, 0.2, 0.1]]), np.array([2]))
    assert (opt[0], pes[0]) == (2, 2)


def test_metric_values_by_hand():
    per = per_user_metrics(np.array([1, 3, 11]))
    assert per["ndcg@10"].tolist() == pytest.approx([1.0, 1 / math.log2(4), 0.0])
    assert per["recall@1"].tolist() == [1, 0, 0]
    assert per["recall@10"].tolist() == [1, 1, 0]
    assert per["mrr"].tolist() == pytest.approx([1, 1 / 3, 1 / 11])
    m = metrics_from_ranks(np.array([1, 3, 11]))
    assert m["ndcg@10"] == pytest.approx((1 + 0.5) / 3)


def test_groups_and_table():
    opt, pes = np.array([1, 2, 20]), np.array([1, 5, 20])
    head_items = np.array([True, False, False])
    report = evaluate_ranking(opt, pes, ["a", "b", "c"], [0, 1, 2], head_users={"a"}, head_items=head_items)
    assert report["overall"]["n"] == 3
    assert report["head_users"]["opt"]["recall@1"] == 1.0 and report["head_users"]["n"] == 1
    assert report["tail_users"]["opt"]["recall@10"] == 0.5
    assert report["tail_items"]["pes"]["ndcg@10"] == pytest.approx((1 / math.log2(6)) / 2)
    assert report["head_items"]["n"] == 1
    table = format_table({"pop": report})
    assert "| pop | 3 |" in table


def test_out_of_range_target_is_an_error():
    with pytest.raises(ValueError, match="out of range"):
        ranks(np.zeros((1, 3)), np.array([3]))
