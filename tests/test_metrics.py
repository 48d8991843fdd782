"""Ranking metrics on hand-computed cases with ties, masking and groups."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genrec.metrics import (
    evaluate_ranking,
    expected_from_ranks,
    expected_metrics,
    format_group_table,
    format_report,
    format_table,
    harmonic,
    metrics_from_ranks,
    per_user_metrics,
    ranks,
)


def test_all_scores_equal():
    opt, pes = ranks(np.zeros((2, 5)), np.array([3, 0]))
    assert opt.tolist() == [1, 1] and pes.tolist() == [5, 5]


def test_target_tied_with_others():
    scores = np.array([[0.9, 0.5, 0.5, 0.5, 0.1]])
    opt, pes = ranks(scores, np.array([2]))
    assert (opt[0], pes[0]) == (2, 4)


def test_unique_target_opt_equals_pes_only_without_tie():
    scores = np.array([[0.9, 0.7, 0.5, 0.3], [0.9, 0.5, 0.5, 0.3]])
    opt, pes = ranks(scores, np.array([2, 2]))
    assert opt[0] == pes[0] == 3  # no tie: one number
    assert (opt[1], pes[1]) == (2, 3)  # tie with item 1: they differ


def test_masking_history_but_never_target():
    scores = np.array([[0.9, 0.8, 0.5, 0.5], [0.9, 0.8, 0.5, 0.1]])
    opt, pes = ranks(scores, np.array([2, 0]), exclude=[[0, 1], [0, 1]])
    assert (opt[0], pes[0]) == (1, 2)  # items 0 and 1 masked; item 3 still ties
    assert (opt[1], pes[1]) == (1, 1)  # target 0 is in the history but stays rankable
    # Unmasked, the same rows rank lower.
    opt, pes = ranks(scores, np.array([2, 0]))
    assert opt.tolist() == [3, 1] and pes.tolist() == [4, 1]


def test_masking_a_tied_item_and_repeated_history():
    scores = np.array([[0.2, 0.5, 0.5, 0.5, 0.7]])
    opt, pes = ranks(scores, np.array([1]), exclude=[(2, 2, 4, 2)])  # repeats are masked once
    assert (opt[0], pes[0]) == (1, 2)  # 4 (higher) and 2 (tied) gone, 3 still tied


def test_zero_target_with_mostly_zero_scores():
    """The QRR case: most items score exactly 0, like the target."""
    scores = np.zeros((1, 1000))
    scores[0, [5, 6, 7]] = [1.0, 0.5, 0.25]
    opt, pes = ranks(scores, np.array([500]), exclude=[[6, 10, 11]])
    assert (opt[0], pes[0]) == (3, 1000 - 3 - 2 + 2)  # 5 and 7 above; 10, 11 leave the tie


def test_nan_scores_count_as_minus_inf():
    opt, pes = ranks(np.array([[np.nan, 0.2, 0.1]]), np.array([2]))
    assert (opt[0], pes[0]) == (2, 2)
    # A NaN target ties with the other NaN and -inf items, below every real score.
    opt, pes = ranks(np.array([[np.nan, 0.2, np.nan, -np.inf]]), np.array([2]))
    assert (opt[0], pes[0]) == (2, 4)
    # A target at -inf ties with masked items.
    opt, pes = ranks(np.array([[0.3, 0.2, -np.inf, 0.1]]), np.array([2]), exclude=[[0, 1]])
    assert (opt[0], pes[0]) == (2, 4)  # 0.1 above; masked 0 and 1 tie with the target


def _reference_ranks(scores, targets, exclude):
    """The definition, written out naively: copy, mask, count."""
    opt, pes = [], []
    for b, row in enumerate(np.array(scores, dtype=np.float64)):
        row = np.where(np.isnan(row), -np.inf, row)
        t = row[targets[b]]
        if exclude is not None:
            row[list(exclude[b])] = -np.inf
            row[targets[b]] = t
        opt.append(1 + int((row > t).sum()))
        pes.append(int((row >= t).sum()))
    return opt, pes


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunks_masks_and_nans_agree_with_the_definition(dtype):
    rng = np.random.default_rng(0)
    b, n = 257, 40
    scores = rng.integers(0, 5, size=(b, n)).astype(dtype) / 4  # many ties
    scores[rng.random((b, n)) < 0.05] = np.nan
    scores[rng.random((b, n)) < 0.05] = -np.inf
    targets = rng.integers(0, n, b)
    exclude = [rng.integers(0, n, rng.integers(0, 8)).tolist() for _ in range(b)]
    for ex in (None, exclude):
        want = _reference_ranks(scores, targets, ex)
        for chunk in (1, 7, 1024):
            opt, pes = ranks(scores, targets, ex, chunk_size=chunk)
            assert opt.tolist() == want[0] and pes.tolist() == want[1]
            assert (opt <= pes).all()


def test_read_only_broadcast_scores():
    counts = np.array([3.0, 1.0, 3.0, 0.0])
    scores = np.broadcast_to(counts, (2, 4))
    opt, pes = ranks(scores, np.array([2, 1]), exclude=[[0], []])
    assert opt.tolist() == [1, 3] and pes.tolist() == [1, 3]
    assert scores.base is not None and (counts == [3.0, 1.0, 3.0, 0.0]).all()


def test_bad_shapes_and_indices_are_errors():
    with pytest.raises(ValueError, match="out of range"):
        ranks(np.zeros((1, 3)), np.array([3]))
    with pytest.raises(ValueError, match="B = len"):
        ranks(np.zeros((2, 3)), np.array([0]))
    with pytest.raises(ValueError, match="exclude\\[0\\]"):
        ranks(np.zeros((1, 3)), np.array([0]), exclude=[[5]])
    with pytest.raises(ValueError, match="one entry per row"):
        ranks(np.zeros((1, 3)), np.array([0]), exclude=[[], []])


def test_empty_batch():
    opt, pes = ranks(np.zeros((0, 4)), np.zeros(0, dtype=int), exclude=[])
    assert opt.shape == pes.shape == (0,)
    assert metrics_from_ranks(opt) == {"ndcg@10": 0.0, "recall@1": 0.0, "recall@10": 0.0, "mrr@10": 0.0, "mrr": 0.0}
    assert expected_from_ranks(opt, pes) == metrics_from_ranks(opt)


def test_metric_values_by_hand():
    per = per_user_metrics(np.array([1, 3, 10, 11]))
    assert per["ndcg@10"].tolist() == pytest.approx([1.0, 0.5, 1 / math.log2(11), 0.0])
    assert per["recall@1"].tolist() == [1, 0, 0, 0]
    assert per["recall@10"].tolist() == [1, 1, 1, 0]
    assert per["mrr"].tolist() == pytest.approx([1, 1 / 3, 1 / 10, 1 / 11])  # full: rank 11 still counts
    assert per["mrr@10"].tolist() == pytest.approx([1, 1 / 3, 1 / 10, 0])  # RecBole's: cut after 10
    m = metrics_from_ranks(np.array([1, 3, 10, 11]))
    assert m["ndcg@10"] == pytest.approx((1 + 0.5 + 1 / math.log2(11)) / 4)
    assert m["recall@10"] == 0.75 and m["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 10 + 1 / 11) / 4)
    assert set(metrics_from_ranks(np.array([2]), ks=(5,))) == {"ndcg@10", "recall@5", "mrr@10", "mrr"}
    with pytest.raises(ValueError, match="1-based"):
        per_user_metrics(np.array([0]))


def test_groups_and_tables():
    opt, pes = np.array([1, 2, 20, 3]), np.array([1, 5, 20, 3])
    head_items = np.array([True, False, False, True])
    report = evaluate_ranking(opt, pes, ["a", "b", "c", "d"], [0, 1, 2, 3], head_users={"a", "d"},
                              head_items=head_items)
    assert [report[g]["n"] for g in ("overall", "head_users", "tail_users", "head_items", "tail_items")] == \
        [4, 2, 2, 2, 2]
    assert report["head_users"]["opt"]["recall@1"] == 0.5
    assert report["head_users"]["opt"]["ndcg@10"] == pytest.approx((1 + 0.5) / 2)
    assert report["tail_users"]["opt"]["recall@10"] == 0.5
    assert report["tail_users"]["opt"]["ndcg@10"] == pytest.approx((1 / math.log2(3)) / 2)
    assert report["tail_items"]["pes"]["ndcg@10"] == pytest.approx((1 / math.log2(6)) / 2)
    assert report["overall"]["pes"]["mrr"] == pytest.approx((1 + 1 / 5 + 1 / 20 + 1 / 3) / 4)
    assert report["overall"]["opt_ci95"]["recall@1"] > 0

    # user b ties over ranks 2..5: expected NDCG@10 the mean of 1/log2(3..6); the others are untied
    b = (1 / math.log2(3) + 1 / math.log2(4) + 1 / math.log2(5) + 1 / math.log2(6)) / 4
    assert report["overall"]["exp"]["ndcg@10"] == pytest.approx((1 + b + 0 + 0.5) / 4)  # 0.4968
    assert report["overall"]["exp"]["mrr"] == pytest.approx((1 + (1 / 2 + 1 / 3 + 1 / 4 + 1 / 5) / 4 + 1 / 20 + 1 / 3) / 4)
    assert report["overall"]["exp"]["mrr@10"] == pytest.approx((1 + (1 / 2 + 1 / 3 + 1 / 4 + 1 / 5) / 4 + 0 + 1 / 3) / 4)
    assert report["head_users"]["exp"] == report["head_users"]["opt"]  # no tie there: the same numbers
    assert "n_empty" not in report["overall"]

    table = format_table({"pop": report})
    assert table.splitlines()[0].startswith("| method | n | ndcg@10 exp (opt/pes) | recall@1 exp (opt/pes)")
    assert "| MRR@10 exp (opt/pes) | MRR (full) exp (opt/pes) |" in table
    assert "| pop | 4 | **0.4968** (0.5327 / 0.4717) | **0.2500** (0.2500 / 0.2500) |" in table
    one = format_report(report).splitlines()
    assert one[0].startswith("| metric | overall (n=4) exp | overall (n=4) opt | overall (n=4) pes | head_users (n=2) exp")
    assert one[2].startswith("| ndcg@10 | 0.4968 | 0.5327 | 0.4717 | 0.7500 | 0.7500 | 0.7500 |")
    assert len(one) == 2 + 5 and one[-1].startswith("| MRR (full) |")
    assert "0.4968 (0.5327 / 0.4717, n=4)" in format_group_table({"pop": report})


def test_expected_metrics_on_an_empty_output_a_short_list_and_an_untied_user():
    """Random tie-breaking by hand over a catalog of N = 20 items: an empty generation ties every
    item (ranks 1..20), a 3-item list with the target below it leaves ranks 4..20, and an untied
    user at rank 2 keeps its point value exactly."""
    n = 20
    opt, pes = np.array([1, 4, 2]), np.array([n, n, 2])
    e = expected_metrics(opt, pes)
    d = [1 / math.log2(r + 1) for r in range(1, 11)]  # the NDCG discounts of ranks 1..10
    assert e["ndcg@10"][0] == pytest.approx(sum(d) / 20, abs=1e-15)      # 10 of the 20 ranks count
    assert e["ndcg@10"][1] == pytest.approx(sum(d[3:]) / 17, abs=1e-15)  # ranks 4..10 of 4..20
    assert e["ndcg@10"][2] == 1 / math.log2(3)                           # bit for bit the point value
    assert e["recall@10"].tolist() == [10 / 20, 7 / 17, 1.0]
    assert e["recall@1"].tolist() == [1 / 20, 0.0, 0.0]
    h = [sum(1 / i for i in range(1, m + 1)) for m in range(21)]  # harmonic numbers H(0..20)
    assert e["mrr"].tolist() == pytest.approx([h[20] / 20, (h[20] - h[3]) / 17, 1 / 2], abs=1e-15)
    assert e["mrr@10"].tolist() == pytest.approx([h[10] / 20, (h[10] - h[3]) / 17, 1 / 2], abs=1e-15)
    # optimistic would give the empty output a perfect score; the expected value is far below it
    assert per_user_metrics(opt)["ndcg@10"][0] == 1.0 and e["ndcg@10"][0] < 0.23
    means = expected_from_ranks(opt, pes)
    assert means["ndcg@10"] == pytest.approx((sum(d) / 20 + sum(d[3:]) / 17 + 1 / math.log2(3)) / 3, abs=1e-15)
    with pytest.raises(ValueError, match="opt <= pes"):
        expected_metrics(np.array([3]), np.array([2]))


def test_expected_metrics_match_the_mean_over_the_range_on_a_large_catalog():
    """The closed forms (O(K) per user, harmonic numbers by series above 64) against the plain mean
    over every rank of the range, catalogs up to 100,000 items."""
    rng = np.random.default_rng(0)
    opt = rng.integers(1, 40, 200)
    pes = opt + rng.integers(0, 100_000, 200)
    e = expected_metrics(opt, pes)
    for i in range(0, 200, 20):
        r = np.arange(opt[i], pes[i] + 1, dtype=np.float64)
        assert e["ndcg@10"][i] == pytest.approx(np.mean(np.where(r <= 10, 1 / np.log2(r + 1), 0)), abs=1e-14)
        assert e["mrr"][i] == pytest.approx(np.mean(1 / r), abs=1e-14)
        assert e["mrr@10"][i] == pytest.approx(np.mean(np.where(r <= 10, 1 / r, 0)), abs=1e-14)
    assert harmonic(np.array([0, 1, 63, 64, 100])).tolist() == pytest.approx(
        [0, 1, sum(1 / i for i in range(1, 64)), sum(1 / i for i in range(1, 65)), sum(1 / i for i in range(1, 101))],
        abs=1e-14)


def test_n_empty_is_counted_per_group():
    report = evaluate_ranking(np.array([1, 2, 1]), np.array([5, 2, 5]), ["a", "b", "c"], [0, 1, 0],
                              head_users={"a"}, head_items=np.array([True, False]), empty=[True, False, True])
    assert [report[g]["n_empty"] for g in ("overall", "head_users", "tail_users", "tail_items")] == [2, 1, 1, 0]
    assert "| n_empty |" in format_table({"qrr": report}).splitlines()[0]
    with pytest.raises(ValueError, match="2 flags for 3 users"):
        evaluate_ranking(np.array([1, 2, 1]), np.array([5, 2, 5]), ["a", "b", "c"], [0, 1, 0], set(),
                         np.array([True, False]), empty=[True, False])


def test_group_inputs_must_line_up():
    with pytest.raises(ValueError, match="differ in length"):
        evaluate_ranking(np.array([1]), np.array([1]), ["a", "b"], [0], set(), np.array([True]))
