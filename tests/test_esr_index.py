"""faiss search against brute force, and similar-user retrieval."""

from __future__ import annotations

import numpy as np

from genrec.esr.index import ItemIndex, normalize_rows, similar_users


def test_item_index_search_equals_brute_force_top_k():
    rng = np.random.default_rng(1)
    items = rng.normal(size=(500, 24)).astype(np.float32)
    queries = rng.normal(size=(30, 24)).astype(np.float32)
    scores, ids = ItemIndex(items).search(queries, 10)
    brute = queries @ items.T
    for q in range(len(queries)):
        expected = np.argsort(-brute[q], kind="stable")[:10]
        np.testing.assert_array_equal(ids[q], expected)
        np.testing.assert_allclose(scores[q], brute[q, expected], rtol=1e-5, atol=1e-5)


def test_k_larger_than_catalog_is_capped():
    items = np.eye(3, dtype=np.float32)
    scores, ids = ItemIndex(items).search(np.array([[0, 2, 1]], dtype=np.float32), 10)
    assert ids.tolist() == [[1, 2, 0]] and scores.tolist() == [[2.0, 1.0, 0.0]]


def test_similar_users_are_top_cosine_excluding_self():
    rng = np.random.default_rng(2)
    users = rng.normal(size=(60, 8)).astype(np.float32) * rng.uniform(0.1, 10, size=(60, 1))  # norms differ
    got = similar_users(users, 5)
    x = normalize_rows(users)
    cos = x @ x.T
    np.fill_diagonal(cos, -np.inf)
    for u in range(60):
        expected = np.argsort(-cos[u], kind="stable")[:5]
        assert u not in got[u]
        np.testing.assert_allclose(np.sort(cos[u, got[u]]), np.sort(cos[u, expected]), atol=1e-5)


def test_user_with_an_exact_duplicate_still_excludes_itself():
    users = np.array([[1, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float32)
    got = similar_users(users, 2)
    assert got[0, 0] == 1 and got[1, 0] == 0
    assert all(u not in got[u] for u in range(4))
