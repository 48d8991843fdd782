"""The fast fallback path: a family of models on cached LLM item vectors, one module each — SASRec
(``sasrec``), LLM-ESR (``llmesr``, SPEC.md §2), AlphaRec (``alpharec``), DaRec (``darec``), PAD (``pad``) —
chosen by name (``registry``), with one trainer, one faiss top-K scorer and a popularity baseline.

Example::

    from genrec.esr import FallbackScorer

    scorer = FallbackScorer.load("runs/esr_scientific/scorer")
    scorer.recommend([12, 40, 7], k=10)        # [(item index, score), ...] best first
"""

from genrec.esr.alpharec import AlphaRec, AlphaRecConfig
from genrec.esr.darec import DaRec, DaRecConfig
from genrec.esr.embeddings import (
                                   EncoderConfig,
                                   LLMEncoder,
                                   SentenceTransformerEncoder,
                                   cached_embeddings,
                                   item_embeddings,
                                   make_encoder,
                                   user_embeddings,
)
from genrec.esr.family import FallbackModel
from genrec.esr.index import ItemIndex, similar_users
from genrec.esr.llmesr import DualViewModel, ESRConfig, pca
from genrec.esr.pad import PAD, PADConfig
from genrec.esr.registry import MODELS
from genrec.esr.scorer import FallbackScorer, PopularityScorer, UnknownHistoryError
from genrec.esr.trainer import TrainConfig, Trainer, evaluate, score_histories

__all__ = [
    "MODELS", "PAD", "AlphaRec", "AlphaRecConfig", "DaRec", "DaRecConfig", "FallbackModel", "PADConfig",
    "DualViewModel", "ESRConfig", "EncoderConfig", "FallbackScorer", "ItemIndex", "LLMEncoder", "PopularityScorer",
    "SentenceTransformerEncoder", "TrainConfig", "Trainer", "UnknownHistoryError", "cached_embeddings", "evaluate",
    "item_embeddings", "make_encoder", "pca", "score_histories", "similar_users", "user_embeddings",
]
