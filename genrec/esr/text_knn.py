"""Text-kNN: the catalog ranked by the cosine of each item's text vector to the user's history.

The baseline every text model must beat on items no training saw (issue #31): no training, no
interaction counts, so a cold item is scored exactly like a warm one. ``query`` says what the
history becomes: ``last`` (the newest item's vector), ``mean`` (the mean of the history's
unit vectors) or ``both`` (the sum of the two cosines).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genrec.errors import ConfigError, GenrecError

QUERIES = ("last", "mean", "both")
KNN_FILE = "text_knn.json"
VECTORS_FILE = "text_knn.npy"


@dataclass
class TextKNNConfig:
    query: str = "last"  # last | mean | both

    def __post_init__(self) -> None:
        if self.query not in QUERIES:
            raise ConfigError(f"textknn.query must be one of {', '.join(QUERIES)}, got {self.query!r}")


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero)."""
    x = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


class TextKNNScorer:
    """Scores [B, N] of every catalog item: cosine of item text vectors to the history's query."""

    def __init__(self, vectors: np.ndarray, query: str = "last", normalize: bool = True) -> None:
        TextKNNConfig(query)
        self.vectors = unit_rows(vectors) if normalize else np.asarray(vectors, dtype=np.float32)
        self.num_items = len(self.vectors)
        self.query = query

    def queries(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """The query vector [B, d] of each history (empty histories raise)."""
        out = np.zeros((len(histories), self.vectors.shape[1]), dtype=np.float32)
        for r, h in enumerate(histories):
            if not len(h):
                raise GenrecError(f"history {r} is empty: text-kNN needs at least one item")
            last = self.vectors[int(h[-1])]
            mean = unit_rows(self.vectors[np.asarray(h, dtype=np.int64)].mean(axis=0, keepdims=True))[0]
            out[r] = {"last": last, "mean": mean, "both": last + mean}[self.query]
        return out

    def score_batch(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        return self.queries(histories) @ self.vectors.T

    def save(self, directory: str | os.PathLike) -> Path:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / VECTORS_FILE, self.vectors)
        (out / KNN_FILE).write_text(json.dumps({"query": self.query, "num_items": self.num_items}), encoding="utf-8")
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike) -> TextKNNScorer:
        path = Path(directory)
        if not (path / KNN_FILE).exists() or not (path / VECTORS_FILE).exists():
            raise GenrecError(f"{path}: not a text-kNN scorer folder (needs {KNN_FILE} and {VECTORS_FILE})")
        info = json.loads((path / KNN_FILE).read_text(encoding="utf-8"))
        return cls(np.load(path / VECTORS_FILE), info["query"], normalize=False)  # saved as unit rows
