"""The fallback family by name: ``model: sasrec | llmesr | alpharec | darec | pad | hllm | unisrec | popularity``.

One entry per model says whether it reads the cached LLM item vectors, how to build it from the
training settings (:class:`~genrec.esr.pipeline.FallbackSettings`) and how to rebuild it from a
saved scorer folder (config + sizes, then the weights). Popularity needs no model and is
handled by :class:`~genrec.esr.scorer.PopularityScorer`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from genrec.errors import ConfigError
from genrec.esr.alpharec import AlphaRec, graph_edges, load_alpharec
from genrec.esr.darec import DaRec, DaRecModelConfig, load_darec
from genrec.esr.embeddings import item_texts
from genrec.esr.family import FallbackModel
from genrec.esr.hllm import build_hllm, load_hllm
from genrec.esr.llmesr import DualViewModel, ESRConfig
from genrec.esr.pad import PAD, PADModelConfig, load_pad
from genrec.esr.sasrec import build_sasrec, sasrec_config
from genrec.esr.unisrec import UniSRec, load_unisrec


@dataclass(frozen=True)
class ModelEntry:
    name: str
    summary: str
    needs_llm: Callable[[Any], bool]  # settings -> whether the LLM item vectors are needed
    # (settings, num_items, LLM item vectors, training sequences, catalog) -> a model to train
    build: Callable[[Any, int, np.ndarray | None, dict[str, list[int]], Any], FallbackModel]
    load: Callable[[dict, int, dict], FallbackModel]  # (saved config, num_items, saved sizes)


def _backbone(settings) -> ESRConfig:
    e = settings.esr
    return sasrec_config(e.hidden, e.layers, e.heads, e.dropout, e.max_len, e.ffn, e.activation, e.layout)


def _load_dual_view(config: dict, num_items: int, shapes: dict) -> DualViewModel:
    cfg = ESRConfig(**config)
    dim = shapes.get("llm_dim", 0)
    placeholder = np.zeros((num_items, dim), dtype=np.float32) if dim else None
    # The PCA initialisation is overwritten by the saved weights; skip it for a zero placeholder.
    model = DualViewModel(ESRConfig(**{**cfg.to_dict(), "co_init": "random"}), num_items, placeholder)
    model.cfg = cfg
    return model


def _counts(train: dict[str, list[int]], num_items: int) -> np.ndarray:
    from genrec.data.groups import item_popularity

    return np.asarray(item_popularity(train, num_items))


MODELS: dict[str, ModelEntry] = {e.name: e for e in [
    ModelEntry("sasrec", "SASRec: item IDs through causal self-attention (Kang & McAuley 2018)",
               lambda s: False, lambda s, n, vecs, train, cat: build_sasrec(s.esr, n), _load_dual_view),
    ModelEntry("llmesr", "LLM-ESR: semantic + collaborative views, self-distillation (Liu et al. 2024)",
               lambda s: s.esr.uses_semantic or (s.esr.uses_collaborative and s.esr.co_init == "pca") or s.esr.distill,
               lambda s, n, vecs, train, cat: DualViewModel(s.esr, n, vecs), _load_dual_view),
    ModelEntry("alpharec", "AlphaRec: LLM vectors → MLP → LightGCN, no IDs, not sequential (Sheng et al. 2025)",
               lambda s: True,
               lambda s, n, vecs, train, cat: AlphaRec(s.alpharec, n, vecs, graph_edges(train), len(train)),
               load_alpharec),
    ModelEntry("darec", "DaRec: SASRec + disentangled structure alignment with the LLM vectors",
               lambda s: True,
               lambda s, n, vecs, train, cat: DaRec(DaRecModelConfig(_backbone(s), s.darec), n, vecs), load_darec),
    ModelEntry("pad", "PAD: text, ID and aligned experts, MMD alignment, frequency gate",
               lambda s: True,
               lambda s, n, vecs, train, cat: PAD(PADModelConfig(_backbone(s), s.pad), n, vecs, _counts(train, n)),
               load_pad),
    ModelEntry("hllm", "HLLM / BAHE: a trained item tower over item text, a causal LM's blocks as the user model",
               lambda s: s.hllm.item_tower == "frozen",
               # the item prompts (LLM-ESR's template): the tuned tower reads them, the LLM user model
               # measures the scale of its hidden states on them
               lambda s, n, vecs, train, cat: build_hllm(s.hllm, n, vecs, item_texts(cat), s.encoder.model),
               load_hllm),
    ModelEntry("unisrec", "UniSRec: item text through a MoE of whitening adapters, SASRec over it (Hou et al. 2022)",
               lambda s: True, lambda s, n, vecs, train, cat: UniSRec(s.unisrec, n, vecs), load_unisrec),
]}
NAMES = (*MODELS, "popularity")


def entry(name: str) -> ModelEntry:
    if name not in MODELS:
        raise ConfigError(f"model must be one of {', '.join(NAMES)}, got {name!r}")
    return MODELS[name]


def load_model(name: str, config: dict, num_items: int, shapes: dict) -> FallbackModel:
    """A model of the family with zero placeholders of the saved sizes, ready for ``load_state_dict``."""
    return entry(name).load(config, num_items, shapes)
