"""faiss indexes for LLM-ESR: item vectors for inner-product search, and similar-user retrieval.

Exact (flat) indexes: catalogs and user sets here are thousands to a few hundred thousand
rows, where an exact inner-product scan is already sub-millisecond per query and needs no
training; approximate indexes would only add a recall knob to explain.
"""

from __future__ import annotations

import numpy as np


def _faiss():
    import faiss

    return faiss


class ItemIndex:
    """Exact inner-product search over item vectors (rows = catalog indices)."""

    def __init__(self, vectors: np.ndarray) -> None:
        faiss = _faiss()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"item vectors must be [N, d], got shape {vectors.shape}")
        self.vectors = vectors
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        self.index.add(vectors)

    def __len__(self) -> int:
        return self.vectors.shape[0]

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores [B, k], ids [B, k]) best first; ids are -1 where fewer than k items exist."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(int(k), len(self)))
        return self.index.search(queries, k)


def normalize_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def similar_users(vectors: np.ndarray, n: int, batch_size: int = 4096) -> np.ndarray:
    """For each user (row), the rows of its ``n`` most cosine-similar OTHER users, most similar first.

    Retrieves n+1 neighbours and drops the user itself (wherever it lands, also among exact
    duplicates of its vector); with fewer than n+1 users, the list is padded with the user's
    own neighbours repeated, so the result is always [U, n].
    """
    faiss = _faiss()
    x = np.ascontiguousarray(normalize_rows(vectors))
    u = x.shape[0]
    if u < 2:
        raise ValueError("similar-user retrieval needs at least two users")
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    k = min(n + 1, u)
    out = np.empty((u, n), dtype=np.int64)
    for start in range(0, u, batch_size):
        _, ids = index.search(x[start:start + batch_size], k)
        for r, row in enumerate(ids):
            me = start + r
            others = [int(j) for j in row if j != me and j >= 0][:n]
            while len(others) < n:  # tiny user sets only
                others.append(others[len(others) % max(1, len(others))] if others else (me + 1) % u)
            out[me] = others
    return out
