"""Serving the fallback: history in, top-K catalog items out in milliseconds.

:class:`FallbackScorer` wraps a trained model of the family (:mod:`genrec.esr.family`; SASRec,
LLM-ESR, AlphaRec, DaRec, PAD, rebuilt by name through :mod:`genrec.esr.registry` at load): the
item tables are computed once at load (e.g. LLM-ESR's adapter over the frozen LLM vectors and its
ID table, AlphaRec's graph propagation), the user vector comes from one forward over the
history, and the top-K is an exact faiss inner-product search over the item table. No LLM is
involved at serving time.

:class:`PopularityScorer` has the same interface and ranks by training interaction counts;
the server uses it when a bundle has no trained fallback.

Both take catalog indices. Indices the model has never seen (outside its item range) are
dropped and the answer comes from the known part; a history with nothing known raises
:class:`UnknownHistoryError` (the popularity ranking needs no history, so it never does).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from genrec.errors import GenrecError
from genrec.esr.family import FallbackModel, pad_left
from genrec.esr.index import ItemIndex

log = logging.getLogger(__name__)

SCORER_FORMAT = "genrec-esr-scorer"
CONFIG_FILE = "scorer.json"
WEIGHTS_FILE = "model.pt"
POPULARITY_FILE = "popularity.json"


class UnknownHistoryError(GenrecError):
    """None of the history's items is known to the model."""


def _check_k(k: int) -> int:
    if int(k) < 1:
        raise GenrecError(f"k must be at least 1, got {k}")
    return int(k)


class _Base:
    num_items: int

    def _known(self, history: Sequence[int]) -> list[int]:
        known = [int(i) for i in history if 0 <= int(i) < self.num_items]
        if len(known) < len(history):
            log.debug("%d of %d history items unknown to the model; answering from the rest",
                      len(history) - len(known), len(history))
        return known

    def recommend(self, history: list[int], k: int, exclude_history: bool = True) -> list[tuple[int, float]]:
        """Top-``k`` (catalog index, score), best first; the history's items left out on request."""
        return self.recommend_batch([history], k, exclude_history)[0]

    def recommend_batch(self, histories: Sequence[Sequence[int]], k: int,
                        exclude_history: bool = True) -> list[list[tuple[int, float]]]:
        raise NotImplementedError


class FallbackScorer(_Base):
    """A trained model of the fallback family as a top-K service."""

    def __init__(self, model: FallbackModel, meta: dict | None = None) -> None:
        self.model = model.eval()
        self.meta = dict(meta or {})
        self.num_items = model.num_items
        self.max_len = model.cfg.max_len
        self.chunk_size = 256  # histories per encoder call in batch scoring (sorted by length)
        with torch.inference_mode():
            self._tables = {k: v.detach().clone() for k, v in model.item_tables().items()}
            self._table = model.output_table(self._tables).contiguous()
        self.index = ItemIndex(self._table.numpy())

    # -- persistence --------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path:
        """``scorer.json`` (model name, config, sizes, catalog fingerprint) + ``model.pt`` (weights incl.
        the frozen LLM vectors and any graph)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        shapes = self.model.saved_shapes()
        info = {"format": SCORER_FORMAT, "version": 1, "config": self.model.cfg.to_dict(),
                "num_items": self.num_items, "llm_dim": shapes.get("llm_dim", 0),
                **{"model": self.model.name}, **self.meta}
        if set(shapes) - {"llm_dim"}:
            info["shapes"] = shapes
        tmp = out / (WEIGHTS_FILE + ".tmp")
        torch.save(self.model.state_dict(), tmp)
        os.replace(tmp, out / WEIGHTS_FILE)
        (out / CONFIG_FILE).write_text(json.dumps(info, indent=1), encoding="utf-8")
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike, catalog=None) -> FallbackScorer:
        """Load a saved scorer; with ``catalog``, refuse one trained on another catalog."""
        path = Path(directory)
        cfg_path = path / CONFIG_FILE
        if not cfg_path.exists():
            raise GenrecError(f"{path}: not a fallback scorer folder (no {CONFIG_FILE}); train one with "
                              "finetune/train_esr.py")
        try:
            info = json.loads(cfg_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise GenrecError(f"{cfg_path}: invalid JSON: {e}") from None
        if info.get("format") != SCORER_FORMAT:
            raise GenrecError(f"{cfg_path}: format is {info.get('format')!r}, expected {SCORER_FORMAT!r}")
        from genrec.esr.registry import load_model

        n = int(info["num_items"])
        shapes = {"llm_dim": info.get("llm_dim", 0), **info.get("shapes", {})}
        # scorers saved before the family had names: SASRec or LLM-ESR, both DualViewModel
        model = load_model(info.get("model") or "llmesr", info["config"], n, shapes)
        state = torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        meta = {k: v for k, v in info.items()
                if k not in ("format", "version", "config", "num_items", "llm_dim", "shapes")}
        if catalog is not None:
            want = catalog.fingerprint()
            have = meta.get("catalog_fingerprint")
            if len(catalog) != n or (have and have != want):
                raise GenrecError(f"{cfg_path}: trained on another catalog ({n} items, fingerprint {have}); "
                                  f"this catalog has {len(catalog)} items, fingerprint {want}")
        return cls(model, meta)

    # -- scoring ------------------------------------------------------------------------
    def user_vectors(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """The model's user vector (LLM-ESR: [u_se : u_co]) for each history (known items only) [B, width]."""
        known = [self._known(h) for h in histories]
        empty = [i for i, h in enumerate(known) if not h]
        if empty:
            raise UnknownHistoryError(
                f"history {empty[0]} has no item the model knows (item indices must be in [0, {self.num_items}); "
                f"got {list(histories[empty[0]])[:10]})")
        if len(known) == 1:  # the serving case: no sorting, no copies
            with torch.inference_mode():
                return self.model.user_vectors(torch.from_numpy(pad_left(known, self.max_len)), self._tables).numpy()
        out = np.empty((len(known), self._table.shape[1]), dtype=np.float32)
        order = np.argsort([min(len(h), self.max_len or len(h)) for h in known], kind="stable")  # little padding per chunk
        with torch.inference_mode():
            for start in range(0, len(known), self.chunk_size):
                idx = order[start:start + self.chunk_size]
                seqs = torch.from_numpy(pad_left([known[i] for i in idx], self.max_len))
                out[idx] = self.model.user_vectors(seqs, self._tables).numpy()
        return out

    def score_batch(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """Scores [B, N] of every catalog item (for evaluation: full ranking, masking left to the metric)."""
        users = torch.from_numpy(self.user_vectors(histories))
        with torch.inference_mode():
            return (users @ self._table.T).numpy()

    def recommend_batch(self, histories: Sequence[Sequence[int]], k: int,
                        exclude_history: bool = True) -> list[list[tuple[int, float]]]:
        k = _check_k(k)
        users = self.user_vectors(histories)
        extra = max((len(set(h)) for h in histories), default=0) if exclude_history else 0
        scores, ids = self.index.search(users, k + extra)
        out = []
        for h, srow, irow in zip(histories, scores, ids):
            seen = set(int(i) for i in h) if exclude_history else set()
            out.append([(int(i), float(s)) for s, i in zip(srow, irow) if i >= 0 and int(i) not in seen][:k])
        return out


class PopularityScorer(_Base):
    """Training interaction counts as a ranking (ties: lower catalog index first)."""

    def __init__(self, counts: Sequence[int] | np.ndarray) -> None:
        self.counts = np.asarray(counts, dtype=np.int64)
        if self.counts.ndim != 1:
            raise GenrecError(f"popularity counts must be one per item, got shape {self.counts.shape}")
        self.num_items = len(self.counts)
        self._order = np.lexsort((np.arange(self.num_items), -self.counts))

    @classmethod
    def from_training(cls, train: dict[str, list[int]], num_items: int) -> PopularityScorer:
        from genrec.data.groups import item_popularity

        return cls(item_popularity(train, num_items))

    def save(self, directory: str | os.PathLike) -> Path:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        (out / POPULARITY_FILE).write_text(json.dumps({"counts": self.counts.tolist()}), encoding="utf-8")
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike) -> PopularityScorer:
        path = Path(directory) / POPULARITY_FILE
        if not path.exists():
            raise GenrecError(f"{path}: popularity file not found")
        try:
            return cls(json.loads(path.read_text(encoding="utf-8"))["counts"])
        except (json.JSONDecodeError, KeyError) as e:
            raise GenrecError(f"{path}: expected {{\"counts\": [...]}}: {e}") from None

    def score_batch(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        return np.broadcast_to(self.counts.astype(np.float32), (len(histories), self.num_items)).copy()

    def recommend_batch(self, histories: Sequence[Sequence[int]], k: int,
                        exclude_history: bool = True) -> list[list[tuple[int, float]]]:
        k = _check_k(k)
        out = []
        for h in histories:
            seen = set(self._known(h)) if exclude_history else set()
            picked = []
            for i in self._order[:k + len(seen)]:  # k unseen items are among the first k + |seen|
                if int(i) not in seen:
                    picked.append((int(i), float(self.counts[i])))
                    if len(picked) == k:
                        break
            out.append(picked)
        return out
