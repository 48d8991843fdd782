"""The evaluation harness on hand-made data: ranks, groups, sampling, outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genrec.data.catalog import Catalog, Item
from genrec.data.dataset import Example, SequenceDataset
from genrec.data.preprocess import leave_one_out
from genrec.errors import ConfigError
from genrec.evaluation import EvalConfig, rank_examples, run_evaluation, sample_examples


def tiny_split():
    catalog = Catalog(Item(str(i), f"item {i}") for i in range(6))
    # item 0 is the most popular in training; targets: u1 -> 0, u2 -> 5, u3 -> 1
    seqs = {"u1": [0, 1, 0, 2, 0], "u2": [0, 3, 0, 4, 5], "u3": [2, 1, 0, 3, 1]}
    return leave_one_out(SequenceDataset(catalog, seqs, name="tiny"))


def test_popularity_ranks_by_hand(tmp_path):
    split = tiny_split()
    # training = first 3 items: counts item0: 4, item1: 2, item2: 1, item3: 1, item4/5: 0
    result = run_evaluation(EvalConfig(methods=["popularity"], output_dir=str(tmp_path), mask_history=False),
                            split=split)
    overall = result["reports"]["popularity"]["overall"]
    # u1 target 0 -> rank 1/1; u2 target 5 -> tied with item 4 at 0: opt 5, pes 6; u3 target 1 -> rank 2
    assert overall["opt"]["mrr"] == pytest.approx((1 + 1 / 5 + 1 / 2) / 3)
    assert overall["pes"]["mrr"] == pytest.approx((1 + 1 / 6 + 1 / 2) / 3)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["reports"]["popularity"]["overall"]["n"] == 3
    assert (tmp_path / "ndcg_by_group.png").stat().st_size > 1000
    assert "| popularity | 3 |" in (tmp_path / "results.md").read_text()


def test_masking_changes_ranks():
    split = tiny_split()
    ex = [Example("u3", (2, 1, 0, 3), 1)]
    scores = lambda batch: np.array([[5.0, 1.0, 4.0, 3.0, 0.0, 0.0]])  # noqa: E731
    assert rank_examples(ex, scores, mask_history=False)[0].tolist() == [4]
    assert rank_examples(ex, scores, mask_history=True)[0].tolist() == [1]  # target kept, others masked
    assert split.test[2].target == 1


def test_sampling_is_seeded_and_ordered():
    ex = [Example(str(i), (0,), 1) for i in range(100)]
    a, b = sample_examples(ex, 10, 3), sample_examples(ex, 10, 3)
    assert a == b and len(a) == 10 and [int(e.user) for e in a] == sorted(int(e.user) for e in a)
    assert sample_examples(ex, None, 0) == ex


def test_unknown_method_and_missing_model_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="unknown"):
        run_evaluation(EvalConfig(methods=["bogus"], output_dir=str(tmp_path)), split=tiny_split())
    with pytest.raises(ConfigError, match="model_dirs.sasrec"):
        run_evaluation(EvalConfig(methods=["sasrec"], output_dir=str(tmp_path)), split=tiny_split())
