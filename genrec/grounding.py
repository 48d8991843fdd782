"""Quasi-round-robin BM25 grounding (SPEC.md §1): generated item texts → a full catalog ranking.

Engine: bm25s builds the index. It stores BM25 weights as a sparse term × item matrix, so a
query is a sparse row and scoring many queries (all samples of many users) is one sparse
matrix product — orders of magnitude faster than rank-bm25's per-query Python loop over
items, and it is actively maintained. rank-bm25 stays as the reference the tests check
against (BM25Okapi with epsilon=0: bm25s ``method="atire"`` gives the (k1+1)·tf/(tf+K) term
part and ``idf_method="robertson"`` the log((N-n+.5)/(n+.5)) idf floored at 0, the same
formula).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from genrec.generation.base import Sample

_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    "a an and are as at be but by for from has have in is it its of on or that the this to was were will "
    "with".split())


def tokenize(text: str, stopwords: bool = True) -> list[str]:
    """Lowercased alphanumeric words, optionally without English stopwords (shared by both engines)."""
    words = _WORD.findall(text.lower())
    return [w for w in words if w not in _STOPWORDS] if stopwords else words


@dataclass
class BM25Index:
    """BM25 weights of every catalog item, as a CSR matrix [vocabulary, items]."""

    weights: sp.csr_matrix
    vocab: dict[str, int]
    k1: float = 1.5
    b: float = 0.75
    stopwords: bool = True

    @property
    def num_items(self) -> int:
        return self.weights.shape[1]

    @classmethod
    def build(cls, texts: Sequence[str], k1: float = 1.5, b: float = 0.75, stopwords: bool = True,
              show_progress: bool = False) -> "BM25Index":
        import bm25s

        corpus = [tokenize(t, stopwords) or [""] for t in texts]
        engine = bm25s.BM25(k1=k1, b=b, method="atire", idf_method="robertson")
        engine.index(corpus, show_progress=show_progress)
        s = engine.scores
        weights = sp.csr_matrix((s["data"], s["indices"], s["indptr"]),
                                shape=(len(s["indptr"]) - 1, s["num_docs"]), dtype=np.float32)
        vocab = {tok: int(i) for tok, i in engine.vocab_dict.items() if tok != ""}
        return cls(weights, vocab, k1, b, stopwords)

    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        sp.save_npz(d / "weights.tmp.npz", self.weights)
        (d / "weights.tmp.npz").replace(d / "weights.npz")
        meta = {"k1": self.k1, "b": self.b, "stopwords": self.stopwords, "vocab": self.vocab}
        (d / "bm25.json.tmp").write_text(json.dumps(meta))
        (d / "bm25.json.tmp").replace(d / "bm25.json")

    @classmethod
    def load(cls, directory: str | Path) -> "BM25Index":
        from genrec.errors import GenrecError

        d = Path(directory)
        if not (d / "weights.npz").exists() or not (d / "bm25.json").exists():
            raise GenrecError(f"{d}: not a BM25 index folder (weights.npz / bm25.json missing)")
        meta = json.loads((d / "bm25.json").read_text())
        return cls(sp.load_npz(d / "weights.npz").tocsr(), meta["vocab"], meta["k1"], meta["b"], meta["stopwords"])

    def query_matrix(self, queries: Sequence[str]) -> sp.csr_matrix:
        """Term counts of each query [Q, vocabulary]; unknown words are ignored."""
        rows, cols = [], []
        for r, q in enumerate(queries):
            for tok in tokenize(q, self.stopwords):
                j = self.vocab.get(tok)
                if j is not None:
                    rows.append(r)
                    cols.append(j)
        data = np.ones(len(rows), dtype=np.float32)
        return sp.csr_matrix((data, (rows, cols)), shape=(len(queries), self.weights.shape[0]))

    def score_matrix(self, queries: Sequence[str]) -> sp.csr_matrix:
        """BM25 score of every (query, item) pair as a sparse [Q, items] matrix."""
        return (self.query_matrix(queries) @ self.weights).tocsr()

    def scores(self, query: str) -> np.ndarray:
        return self.score_matrix([query]).toarray()[0]


def select_samples(samples: Sequence[Sample], n_preds: int) -> list[Sample]:
    """Step 1 of QRR: by score descending (stable), duplicates of a text dropped, the top n_preds."""
    seen: set[str] = set()
    kept = []
    for s in sorted(samples, key=lambda s: -s.score):
        key = s.text.strip()
        if not key or key in seen:
            continue
        seen.add(key)
        kept.append(s)
        if len(kept) == n_preds:
            break
    return kept


def _minmax_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    """Scale each row to [0, 1] over ALL items (implicit zeros included); constant rows → 0."""
    m = m.tocsr(copy=True)
    n = m.shape[1]
    for r in range(m.shape[0]):
        lo_, hi_ = m.indptr[r], m.indptr[r + 1]
        vals = m.data[lo_:hi_]
        if len(vals) == 0:
            continue
        lo = float(vals.min()) if hi_ - lo_ == n else min(0.0, float(vals.min()))
        hi = max(float(vals.max()), 0.0)
        if hi - lo <= 0:
            m.data[lo_:hi_] = 0.0
        else:
            m.data[lo_:hi_] = (vals - lo) / (hi - lo)
    m.eliminate_zeros()
    return m


def qrr_batch(samples_per_user: Sequence[Sequence[Sample]], index: BM25Index, n_preds: int = 10,
              eps: float = 0.01) -> np.ndarray:
    """QRR scores [users, items] for many users with one sparse product over all their samples.

    Per user: select samples (:func:`select_samples`), BM25-score each against every item,
    min-max scale each sample's column, multiply it by exp(eps · s), and max-pool. Items
    no sample matches score 0 (ties), so a user whose samples match nothing still gets a
    full — all-tied — ranking.
    """
    kept = [select_samples(s, n_preds) for s in samples_per_user]
    texts = [s.text for ks in kept for s in ks]
    factors = np.array([math.exp(eps * s.score) for ks in kept for s in ks], dtype=np.float32)
    out = np.zeros((len(kept), index.num_items), dtype=np.float32)
    if not texts:
        return out
    scaled = _minmax_rows(index.score_matrix(texts))
    scaled = sp.diags(factors) @ scaled
    scaled = scaled.tocsr()
    start = 0
    for u, ks in enumerate(kept):
        if ks:
            block = scaled[start:start + len(ks)]
            if block.nnz:
                out[u] = block.max(axis=0).toarray().ravel()
            start += len(ks)
    return out


def qrr_scores(samples: Sequence[Sample], index: BM25Index, n_preds: int = 10, eps: float = 0.01) -> np.ndarray:
    """QRR scores over the catalog for one user's samples."""
    return qrr_batch([samples], index, n_preds, eps)[0]


def top_k(scores: np.ndarray, k: int, exclude: Sequence[int] | None = None) -> list[tuple[int, float]]:
    """The k best (index, score) pairs by partial selection; ties broken by lower index."""
    scores = np.asarray(scores, dtype=np.float64).copy()
    if exclude is not None and len(exclude):
        scores[np.asarray(exclude, dtype=np.int64)] = -np.inf
    n = len(scores)
    k = min(k, n)
    if k <= 0:
        return []
    kth = np.partition(scores, n - k)[n - k]
    above = np.flatnonzero(scores > kth)
    tied = np.flatnonzero(scores == kth)[: k - len(above)]
    cand = np.concatenate([above, tied])
    order = np.lexsort((cand, -scores[cand]))
    return [(int(cand[i]), float(scores[cand[i]])) for i in order if np.isfinite(scores[cand[i]])]
