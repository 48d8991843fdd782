"""QRR BM25 grounding: bm25s index vs rank-bm25, SPEC §1 QRR vs a literal transcription, edge cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from genrec.errors import GenrecError
from genrec.generation import Sample
from genrec.grounding import BM25Index, qrr_batch, qrr_scores, select_samples, tokenize, top_k
from tests.conftest import shared

K1, B = 1.5, 0.75


# -- a literal transcription of SPEC.md §1, written with plain loops -----------------------------

def qrr_reference(samples: list[Sample], item_texts: list[str], n_preds: int, eps: float) -> list[float]:
    """SPEC §1 step by step; BM25 from rank-bm25 (not our engine), one item at a time."""
    reference = BM25Okapi([tokenize(t) for t in item_texts], k1=K1, b=B, epsilon=0)
    # 1. sort samples by s, descending; drop duplicate texts; keep the top N_preds
    #    (ours: texts compared with whitespace normalised; an empty text is no prediction)
    ordered = sorted(samples, key=lambda s: s.score, reverse=True)
    kept, seen = [], []
    for s in ordered:
        text = " ".join(s.text.split())
        if text == "" or text in seen:
            continue
        seen.append(text)
        kept.append(s)
    kept = kept[:n_preds]
    columns = []
    for s in kept:
        # 2. BM25-score the sample against every catalog item -> a column
        column = []
        for j in range(len(item_texts)):
            column.append(float(reference.get_batch_scores(tokenize(s.text), [j])[0]))
        # 3. min-max scale the column to [0, 1]; a constant column becomes all zeros
        lo, hi = min(column), max(column)
        column = [0.0 if hi == lo else (x - lo) / (hi - lo) for x in column]
        # 4. multiply column i by exp(eps * s_i)
        column = [x * math.exp(eps * s.score) for x in column]
        columns.append(column)
    # 5. candidate score = max over the columns
    return [max(col[j] for col in columns) if columns else 0.0 for j in range(len(item_texts))]


# -- hand-made catalog ----------------------------------------------------------------------------

ITEMS = [
    "red pipette tips box",            # 0
    "red glass beaker",                # 1
    "blue pipette",                    # 2
    "blue nitrile gloves large box",   # 3
    "green beaker lid",                # 4
    "green safety goggles",            # 5
]
# red / blue / green each occur in exactly 2 of 6 items: idf log(4.5/2.5) > 0, so the query
# "red blue green" matches EVERY item (a column with no zero: its min is not 0).


@pytest.fixture(scope="module")
def small_index() -> BM25Index:
    return BM25Index.build(ITEMS, k1=K1, b=B)


def test_tokenize_lowercases_splits_and_drops_stopwords():
    assert tokenize("The Red-Pipette, 10mL (of 2)!") == ["red", "pipette", "10ml", "2"]
    assert tokenize("The Red", stopwords=False) == ["the", "red"]
    assert tokenize("") == []


def test_select_samples_sorts_dedups_and_cuts():
    samples = [Sample("a", -3.0), Sample("b", -1.0), Sample(" b ", -0.5), Sample("", -0.1),
               Sample("c", -2.0), Sample("d", -2.0), Sample("b", -4.0)]
    kept = select_samples(samples, 3)
    assert [(s.text, s.score) for s in kept] == [(" b ", -0.5), ("c", -2.0), ("d", -2.0)]


@pytest.mark.parametrize("kernel", ["scipy", "numba"])
@pytest.mark.parametrize("case", [
    "dedup", "cut", "full_column", "constant_column", "modulation", "max_pool", "nothing"])
def test_qrr_equals_literal_spec(case, kernel, small_index):
    if kernel == "numba":
        pytest.importorskip("numba")
    cases = {
        # duplicates of the best text (one with extra spaces) must not take N_preds slots
        "dedup": ([Sample("red beaker", -1.0), Sample("red  beaker", -1.5), Sample("red beaker", -2.0),
                   Sample("blue gloves", -3.0)], 2, 0.1),
        # more distinct samples than N_preds: the lowest-s ones are cut
        "cut": ([Sample("goggles", -0.5), Sample("pipette tips", -1.0), Sample("beaker lid", -2.0),
                 Sample("gloves", -4.0), Sample("box", -6.0)], 3, 0.2),
        # a column where every item scores > 0 (min-max uses the true minimum, not 0)
        "full_column": ([Sample("red blue green pipette", -1.0), Sample("gloves", -2.0)], 5, 0.5),
        # the best sample matches no item: a constant (all-zero) column, scaled to zeros
        "constant_column": ([Sample("zzz unknown", -0.1), Sample("beaker", -3.0)], 5, 0.1),
        # same match strength, different s: the more confident sample's items rank first
        "modulation": ([Sample("goggles", -1.0), Sample("gloves", -5.0)], 5, 0.05),
        # overlapping columns: max, not sum or mean
        "max_pool": ([Sample("red pipette", -1.0), Sample("pipette box", -1.2), Sample("beaker", -2.5)], 5, 0.3),
        # nothing matches: all zeros, a full tied ranking
        "nothing": ([Sample("zzz", -1.0), Sample("", -0.5), Sample("qqq www", -2.0)], 5, 0.1),
    }
    samples, n_preds, eps = cases[case]
    if case == "full_column":
        assert np.all(small_index.scores("red blue green pipette") > 0)
    got = qrr_batch([samples], small_index, n_preds=n_preds, eps=eps, kernel=kernel)[0]
    want = qrr_reference(samples, ITEMS, n_preds, eps)
    assert got.shape == (len(ITEMS),)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_qrr_constant_nonzero_column_scales_to_zero():
    # every item has exactly one distinctive word with the same df and the same length: the
    # query made of all of them scores every item the same non-zero value -> constant -> zeros
    items = ["alpha x1", "alpha x2", "beta x3", "beta x4", "gamma x5", "gamma x6"]
    index = BM25Index.build(items, k1=K1, b=B)
    col = index.scores("alpha beta gamma")
    assert np.all(col > 0) and np.ptp(col) == 0
    got = qrr_scores([Sample("alpha beta gamma", -1.0), Sample("x3", -2.0)], index, n_preds=5, eps=0.1)
    want = qrr_reference([Sample("alpha beta gamma", -1.0), Sample("x3", -2.0)], items, 5, 0.1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert got[2] == pytest.approx(math.exp(-0.2)) and np.count_nonzero(got) == 1


def test_modulation_orders_equal_matches_by_sample_score(small_index):
    got = qrr_scores([Sample("gloves", -5.0), Sample("goggles", -1.0)], small_index, n_preds=5, eps=0.05)
    assert got[5] == pytest.approx(math.exp(-0.05)) and got[3] == pytest.approx(math.exp(-0.25))
    assert [i for i, _ in top_k(got, 2)] == [5, 3]


def test_nothing_matching_still_gives_a_full_tied_ranking(small_index):
    for samples in ([Sample("zzz", -1.0)], [], [Sample("", 0.0)], [Sample("the of and", -1.0)]):
        scores = qrr_scores(samples, small_index, n_preds=10, eps=0.01)
        assert scores.shape == (len(ITEMS),) and not scores.any()
        assert top_k(scores, 3) == [(0, 0.0), (1, 0.0), (2, 0.0)]


def test_batch_equals_one_user_at_a_time(small_index):
    users = [[Sample("red pipette", -1.0), Sample("gloves", -2.0)], [], [Sample("zzz", -1.0)],
             [Sample("beaker lid", -0.3), Sample("beaker lid", -0.4), Sample("blue", -1.0)]]
    batch = qrr_batch(users, small_index, n_preds=2, eps=0.1)
    assert batch.shape == (4, len(ITEMS))
    for u, samples in enumerate(users):
        np.testing.assert_array_equal(batch[u], qrr_scores(samples, small_index, n_preds=2, eps=0.1))


def test_top_k_partial_selection_ties_and_exclusion():
    s = np.array([0.5, 0.9, 0.5, 0.1, 0.9, 0.5])
    assert top_k(s, 3) == [(1, 0.9), (4, 0.9), (0, 0.5)]
    assert top_k(s, 4, exclude=[1, 0]) == [(4, 0.9), (2, 0.5), (5, 0.5), (3, 0.1)]
    assert [i for i, _ in top_k(s, 10)] == [1, 4, 0, 2, 5, 3]
    assert top_k(s, 10, exclude=[0, 1, 2]) == [(4, 0.9), (5, 0.5), (3, 0.1)]
    assert top_k(s, 0) == [] and top_k(s, -1) == []


def test_save_load_round_trip(tmp_path, small_index):
    small_index.save(tmp_path / "bm25")
    loaded = BM25Index.load(tmp_path / "bm25")
    assert loaded.vocab == small_index.vocab and (loaded.k1, loaded.b) == (K1, B)
    q = ["red pipette", "green zzz", ""]
    np.testing.assert_array_equal(loaded.score_matrix(q).toarray(), small_index.score_matrix(q).toarray())
    with pytest.raises(GenrecError, match="not a BM25 index"):
        BM25Index.load(tmp_path / "nowhere")
    (tmp_path / "bm25" / "bm25.json").write_text("{not json")
    with pytest.raises(GenrecError, match="unreadable"):
        BM25Index.load(tmp_path / "bm25")


def test_build_refuses_an_empty_catalog():
    with pytest.raises(GenrecError):
        BM25Index.build([])
    with pytest.raises(GenrecError):
        BM25Index.build(["", "the of"])


# -- the real Scientific catalog: bm25s vs rank-bm25 ------------------------------------------------

@pytest.fixture(scope="module")
def scientific_texts() -> list[str]:
    path = shared("amazon18_industrial_scientific_lcrec") / "Scientific.item.json"
    items = json.loads(path.read_text(encoding="utf-8"))
    return [" ".join(filter(None, (v.get("title"), v.get("brand"), v.get("categories"))))
            for _, v in sorted(items.items(), key=lambda kv: int(kv[0]))]


@pytest.fixture(scope="module")
def scientific_index(scientific_texts) -> BM25Index:
    return BM25Index.build(scientific_texts, k1=K1, b=B)


def test_bm25s_matches_rank_bm25_on_scientific(scientific_texts, scientific_index):
    index = scientific_index
    reference = BM25Okapi([tokenize(t) for t in scientific_texts], k1=K1, b=B, epsilon=0)
    rng = np.random.default_rng(0)
    # queries like generated text: item titles, truncated, with a word the catalog never uses
    queries = []
    for j in rng.choice(len(scientific_texts), 100, replace=False):
        words = scientific_texts[j].split()
        queries.append(" ".join(words[: rng.integers(2, 12)]) + (" qwertyzz" if j % 3 == 0 else ""))
    ours = index.score_matrix(queries).toarray()
    assert ours.shape == (100, len(scientific_texts))
    for q, query in enumerate(queries):
        want = reference.get_scores(tokenize(query))
        np.testing.assert_allclose(ours[q], want, rtol=1e-4, atol=1e-4)
        # the same top-10 up to ties: the scores at each rank agree, and every item we return
        # is at least as good as the reference's 10th
        got = top_k(ours[q], 10)
        ref_sorted = np.sort(want)[::-1][:10]
        np.testing.assert_allclose([s for _, s in got], ref_sorted, rtol=1e-4, atol=1e-4)
        assert all(want[i] >= ref_sorted[-1] - 1e-4 for i, _ in got)


def test_vectorised_builder_equals_bm25s(scientific_texts, scientific_index):
    import scipy.sparse as sp

    index = scientific_index
    rows, cols = [], []
    for i, text in enumerate(scientific_texts):
        for tok in tokenize(text):
            rows.append(i)
            cols.append(index.vocab[tok])
    counts = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(scientific_texts), len(index.vocab)))
    fast = BM25Index.from_counts(counts, index.vocab, k1=K1, b=B)
    assert fast.weights.shape == index.weights.shape and fast.weights.nnz == index.weights.nnz
    assert abs(fast.weights - index.weights).max() < 1e-5


def test_numba_and_scipy_kernels_agree_on_scientific(scientific_texts, scientific_index):
    pytest.importorskip("numba")
    rng = np.random.default_rng(1)
    users = []
    for _ in range(20):
        picks = rng.choice(len(scientific_texts), 12)
        users.append([Sample(" ".join(scientific_texts[j].split()[: rng.integers(3, 15)]), float(-rng.random() * 10))
                      for j in picks])
    # both paths of the compiled kernel: samples that hit a handful of items (rare words) and
    # samples that hit a large part of the catalog (common words)
    df = np.diff(scientific_index.weights.indptr)
    words = {i: w for w, i in scientific_index.vocab.items()}
    rare = [words[i] for i in np.flatnonzero(df == 2)[:30]]
    common = [words[i] for i in np.argsort(-df)[:40]]
    users.append([Sample(w, -float(i)) for i, w in enumerate(rare[:12])])
    users.append([Sample(" ".join(common[i:i + 5]), -float(i)) for i in range(0, 40, 5)])
    users.append([Sample(rare[i] + " " + common[i], -float(i)) for i in range(12)])
    assert (df[[scientific_index.vocab[w] for w in common[:5]]] * 8 >= scientific_index.num_items).all()
    fast = qrr_batch(users, scientific_index, n_preds=10, eps=0.05, kernel="numba")
    plain = qrr_batch(users, scientific_index, n_preds=10, eps=0.05, kernel="scipy")
    np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-6)
    assert (fast > 0).sum(axis=1).min() > 0
