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
