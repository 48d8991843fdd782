"""How the fallback family scores an item no training saw: a catalog item added after training.

An item row of the family has two kinds of parts: a *semantic* one computed from the item's text
vector (LLM-ESR's adapter over the frozen encoder vector), which a new item can get through the
model's own text path, and an *ID* (collaborative) one, a trained embedding row that does not exist
for an id the model never saw. The treatment here is the one shared by every unseen item:

* ID part: **the mean of the trained ID rows** (padding row 0 left out); for an LLM-ESR trained
  with item-ID dropout, the row its learned text-to-ID map gives the item's text (what training
  taught it to rank a row-less item by; see :mod:`genrec.esr.llmesr`). Not zeros: an item's score
  is u · e, so a zero ID row scores every new item exactly 0 on that part, which puts it above every
  trained item with a negative ID score and below every positive one, whatever the user; the mean
  is the least-squares guess of an unknown row, so a new item gets the ID score of an average
  trained item and its text (the semantic part) decides how it ranks against the others.
* semantic part: the model's adapter over the item's semantic input (the encoder vector mapped the
  way the trained table was, see :func:`semantic_rows`), when the model has a semantic view and
  that input is known; otherwise the mean of the trained semantic rows, like the ID part.
* a model without that split (a pure-ID SASRec, AlphaRec's propagated table, PAD's gated experts):
  the mean of its trained output rows, i.e. the same shared unseen embedding for every new item.

A later cold-start evaluation can call :func:`cold_output_rows` on held-out items to measure the
treatment itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from genrec.config import from_dict
from genrec.data.catalog import Catalog
from genrec.esr.embeddings import EncoderConfig, item_texts, make_encoder
from genrec.esr.family import FallbackModel


def unseen_row(table: torch.Tensor) -> torch.Tensor:
    """The shared row of an unseen item: the mean of a padded table's trained rows (row 0 skipped)."""
    return table[1:].mean(dim=0)


def _has_semantic_view(model: FallbackModel) -> bool:
    return hasattr(model, "adapter") and hasattr(model, "e_se") and getattr(model.cfg, "views", "") in (
        "both", "semantic")


@torch.inference_mode()
def semantic_rows(model: FallbackModel, semantic: np.ndarray) -> torch.Tensor:
    """The semantic view's item rows [m, hidden] of ``semantic`` inputs (rows in the space of the
    model's frozen ``e_se`` table): the model's own adapter over them."""
    return model.adapter(torch.as_tensor(np.asarray(semantic, dtype=np.float32)))


@torch.inference_mode()
def cold_output_rows(model: FallbackModel, tables: dict[str, torch.Tensor], count: int,
                     semantic: np.ndarray | None = None) -> np.ndarray:
    """Output-table rows [count, W] for ``count`` items no training saw (module docstring).

    ``semantic``: their semantic inputs [count, d_llm] when known (LLM-ESR only)."""
    if _has_semantic_view(model) and set(tables) <= {"se", "co"}:
        parts = []
        for view in ("se", "co"):
            if view not in tables:
                continue
            if view == "se" and semantic is not None:
                parts.append(semantic_rows(model, semantic))
            elif view == "co" and semantic is not None and hasattr(model, "co_from_text"):
                parts.append(model.mapped_id_rows(torch.as_tensor(np.asarray(semantic, dtype=np.float32))))
            else:
                parts.append(unseen_row(tables[view]).expand(count, -1))
        return torch.cat(parts, dim=-1).float().numpy().reshape(count, -1)
    out = model.output_table(tables)
    return out.mean(dim=0).expand(count, -1).float().numpy().copy()


@torch.inference_mode()
def retexted_output_rows(model: FallbackModel, tables: dict[str, torch.Tensor], indices: np.ndarray,
                         semantic: np.ndarray) -> np.ndarray | None:
    """Output rows of trained items (catalog ``indices``) whose text changed: the new semantic
    part beside their own trained ID rows; None when the model reads no text (nothing changes)."""
    if not _has_semantic_view(model) or not set(tables) <= {"se", "co"}:
        return None
    parts = [semantic_rows(model, semantic)]
    if "co" in tables:
        parts.append(tables["co"][torch.as_tensor(np.asarray(indices, dtype=np.int64) + 1)])
    return torch.cat(parts, dim=-1).float().numpy()


ENCODER_RECORD = "item_encoder.json"
ENCODER_MAP = "item_encoder.npz"


class ItemTextEncoder:
    """The item-text encoder a fallback was trained with, and the affine map from its raw vectors
    to the model's semantic inputs (the trained ``e_se`` rows: raw vectors after the run's
    post-processing and the model's centring and scaling), fitted by least squares on the training
    catalog when the scorer was saved (exact when the catalog has more items than the encoder has
    dimensions; otherwise the map of the span the catalog covers)."""

    def __init__(self, encoder_config: dict, template: str, mean: np.ndarray, weights: np.ndarray,
                 bias: np.ndarray) -> None:
        self.encoder_config = encoder_config
        self.template = template
        self.mean, self.weights, self.bias = mean, weights, bias
        self._encoder = None

    @staticmethod
    def fit(raw: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mean, weights, bias) with (raw - mean) @ weights + bias ≈ target."""
        raw = np.asarray(raw, dtype=np.float64)
        mean = raw.mean(axis=0)
        bias = np.asarray(target, dtype=np.float64).mean(axis=0)
        weights, *_ = np.linalg.lstsq(raw - mean, np.asarray(target, dtype=np.float64) - bias, rcond=None)
        return mean.astype(np.float32), weights.astype(np.float32), bias.astype(np.float32)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        np.savez(directory / ENCODER_MAP, mean=self.mean, weights=self.weights, bias=self.bias)
        (directory / ENCODER_RECORD).write_text(json.dumps({"encoder": self.encoder_config,
                                                            "template": self.template}, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> ItemTextEncoder | None:
        """The record in a scorer folder, or None (scorers saved before records existed)."""
        directory = Path(directory)
        if not (directory / ENCODER_RECORD).exists() or not (directory / ENCODER_MAP).exists():
            return None
        key = str(directory.resolve())
        if key not in _LOADED:
            info = json.loads((directory / ENCODER_RECORD).read_text(encoding="utf-8"))
            with np.load(directory / ENCODER_MAP) as z:
                _LOADED[key] = cls(info["encoder"], info["template"], z["mean"], z["weights"], z["bias"])
        return _LOADED[key]

    def semantic_inputs(self, items: list) -> np.ndarray:
        """Semantic inputs [len(items), d] of catalog items (genrec.data.catalog.Item)."""
        if self._encoder is None:
            self._encoder = make_encoder(from_dict(EncoderConfig, self.encoder_config, ENCODER_RECORD))
        raw = np.asarray(self._encoder.encode(item_texts(Catalog(items), self.template), progress=False),
                         dtype=np.float32)
        return (raw - self.mean) @ self.weights + self.bias


_LOADED: dict[str, ItemTextEncoder] = {}
