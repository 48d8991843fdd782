"""CALRec preprocessing on hand-made sequences."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from genrec.data.catalog import Catalog, Item
from genrec.data.dataset import Example, SequenceDataset
from genrec.data.preprocess import (
    CategoryMixer,
    augment_example,
    category_probabilities,
    dedup_consecutive,
    kcore,
    leave_one_out,
    training_examples,
    truncate_history,
)


def ds(seqs, n=10):
    return SequenceDataset(Catalog(Item(str(i), f"t{i}") for i in range(n)), seqs)


def test_dedup_keeps_later_repurchase():
    assert dedup_consecutive([1, 1, 2, 1, 1, 1, 3, 2]) == [1, 2, 1, 3, 2]
    assert dedup_consecutive([]) == []


def test_leave_one_out_after_dedup():
    split = leave_one_out(ds({"a": [1, 2, 2, 3, 4], "b": [5, 5, 6], "c": [7, 8, 9]}))
    assert split.train == {"a": [1, 2], "b": [5, 6], "c": [7]}
    assert split.test == [Example("a", (1, 2, 3), 4), Example("c", (7, 8), 9)]
    assert split.valid == [Example("a", (1, 2), 3), Example("c", (7,), 8)]
    assert split.dataset.dropped == {"consecutive_repeat": 2}


def test_truncate_keeps_newest():
    assert truncate_history([1, 2, 3, 4], 2) == (3, 4)
    assert truncate_history([1, 2], 5) == (1, 2)
    assert truncate_history([1, 2], 0) == ()


def test_augmentation_range_and_uniformity():
    rng = np.random.default_rng(0)
    seq = [10, 11, 12, 13, 14, 15, 16]  # n = 7: k in {0..4}
    targets = Counter(augment_example("u", seq, rng).target for _ in range(5000))
    assert set(targets) == {12, 13, 14, 15, 16}
    assert all(abs(c / 5000 - 0.2) < 0.03 for c in targets.values())
    # n = 3: k < n-1 = 2, so k in {0, 1}; the history is never empty
    short = {augment_example("u", [1, 2, 3], rng) for _ in range(200)}
    assert short == {Example("u", (1, 2), 3), Example("u", (1,), 2)}


def test_training_examples_one_per_user():
    split = leave_one_out(ds({"a": [1, 2, 3, 4, 5], "b": [6, 7, 8, 9]}))
    ex = training_examples(split, np.random.default_rng(0))
    assert sorted(e.user for e in ex) == ["a", "b"]
    assert all(len(e.history) >= 1 for e in ex)


def test_kcore_iterates():
    # item 9 occurs once; removing it leaves user c with 1 item -> c removed -> item 3 count drops
    out = kcore(ds({"a": [1, 2, 3], "b": [1, 2, 3], "c": [3, 9]}), 2)
    assert out.sequences == {"a": [1, 2, 3], "b": [1, 2, 3]}


def test_category_probabilities_and_mixer():
    counts = {"big": 10000, "small": 10}
    p = category_probabilities(counts)
    expected_big = 10000 ** 0.3 / (10000 ** 0.3 + 10 ** 0.3)
    assert p["big"] == pytest.approx(expected_big)
    mixer = CategoryMixer(counts, seed=1)
    draws = Counter(mixer.draw() for _ in range(20000))
    assert draws["big"] / 20000 == pytest.approx(expected_big, abs=0.015)


def test_dedup_dataset_counts_removed():
    from genrec.data.preprocess import dedup_dataset

    out = dedup_dataset(ds({"a": [1, 1, 1, 2], "b": [3, 4, 3]}))
    assert out.sequences == {"a": [1, 2], "b": [3, 4, 3]}
    assert out.dropped == {"consecutive_repeat": 2}


def test_kcore_counts_what_it_removes_and_keeps_catalog():
    # k=2. Round 1: item 4 (count 1) goes; d = [4] is left empty and goes.
    # Round 2: nothing else changes: a,b,c hold items 1,2,3 with counts 3,2,2.
    out = kcore(ds({"a": [1, 2, 3], "b": [1, 2], "c": [1, 3], "d": [4]}), 2)
    assert out.sequences == {"a": [1, 2, 3], "b": [1, 2], "c": [1, 3]}
    assert out.dropped == {"kcore_interactions": 1, "kcore_users": 1}
    assert len(out.catalog) == 10  # catalog kept whole: indices stay valid
    same = kcore(ds({"a": [1]}), 1)
    assert same.sequences == {"a": [1]} and same.dropped == {}


def test_leave_one_out_short_users_train_only():
    from genrec.data.preprocess import train_only_users

    split = leave_one_out(ds({"a": [1, 2, 3], "b": [4, 4, 5], "c": [6]}))  # b dedups to [4, 5]
    assert split.train == {"a": [1], "b": [4, 5], "c": [6]}
    assert [e.user for e in split.test] == ["a"] and [e.user for e in split.valid] == ["a"]
    assert train_only_users(split) == ["b", "c"]
    no_dedup = leave_one_out(ds({"b": [4, 4, 5]}), dedup=False)
    assert no_dedup.test == [Example("b", (4, 4), 5)] and no_dedup.train == {"b": [4]}


def test_augmentation_edges():
    rng = np.random.default_rng(3)
    # n = 2: k < 1, so always the whole sequence
    assert {augment_example("u", [1, 2], rng) for _ in range(50)} == {Example("u", (1,), 2)}
    # max_drop = 0: never drops
    assert {augment_example("u", [1, 2, 3, 4], rng, max_drop=0) for _ in range(50)} == {Example("u", (1, 2, 3), 4)}
    with pytest.raises(ValueError, match="at least 2 items"):
        augment_example("u", [1], rng)


def test_training_examples_truncate_history_to_newest():
    split = leave_one_out(ds({"a": [1, 2, 3, 4, 5, 6, 7, 8, 9], "b": [1, 2, 3], "c": [5, 6, 7, 8]}))
    # train: a = [1..7], b = [1] (skipped: one item), c = [5, 6]
    ex = training_examples(split, np.random.default_rng(0), max_history=2, max_drop=0)
    assert ex == [Example("a", (5, 6), 7), Example("c", (5,), 6)]


def test_mixer_from_datasets_and_splits_matches_formula():
    from genrec.data.preprocess import training_sequence_count

    d1 = SequenceDataset(Catalog([Item("0", "x")]), {str(u): [0, 0, 0] for u in range(100)}, name="one")
    d2 = SequenceDataset(Catalog([Item("0", "x")]), {str(u): [0, 0, 0] for u in range(1000)}, name="two")
    d3 = SequenceDataset(Catalog([Item("0", "x")]), {str(u): [0, 0, 0] for u in range(8)}, name="three")
    assert training_sequence_count(leave_one_out(d1, dedup=False)) == 0  # train = [0]: one item each
    mixer = CategoryMixer([d1, d2, d3], power=0.3, seed=7)
    assert mixer.counts == {"one": 100, "two": 1000, "three": 8}
    z = 100 ** 0.3 + 1000 ** 0.3 + 8 ** 0.3
    expected = {"one": 100 ** 0.3 / z, "two": 1000 ** 0.3 / z, "three": 8 ** 0.3 / z}
    assert mixer.probabilities == pytest.approx(expected)
    n = 60000
    freq = Counter(mixer.draw_many(n))
    for name, p in expected.items():  # 5 standard errors
        assert abs(freq[name] / n - p) < 5 * (p * (1 - p) / n) ** 0.5
    again = CategoryMixer({"one": d1, "two": 1000, "three": 8}, seed=7)
    assert again.draw_many(20) == CategoryMixer([d1, d2, d3], seed=7).draw_many(20)  # seeded: replays
    assert category_probabilities({"a": 5, "empty": 0}) == {"a": 1.0}
