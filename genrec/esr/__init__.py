"""LLM-ESR, the fast fallback path (SPEC.md §2): cached LLM embeddings, a dual-view sequential model
with retrieval-augmented self-distillation, and a faiss top-K scorer (plus SASRec and popularity baselines).

Example::

    from genrec.esr import FallbackScorer

    scorer = FallbackScorer.load("runs/esr_scientific/scorer")
    scorer.recommend([12, 40, 7], k=10)        # [(item index, score), ...] best first
"""

from genrec.esr.embeddings import (
                                   EncoderConfig,
                                   LLMEncoder,
                                   SentenceTransformerEncoder,
                                   cached_embeddings,
                                   item_embeddings,
                                   make_encoder,
                                   user_embeddings,
)
from genrec.esr.index import ItemIndex, similar_users
from genrec.esr.model import DualViewModel, ESRConfig, pca
from genrec.esr.scorer import FallbackScorer, PopularityScorer, UnknownHistoryError
from genrec.esr.trainer import TrainConfig, Trainer, evaluate, score_histories

__all__ = [
    "DualViewModel", "ESRConfig", "EncoderConfig", "FallbackScorer", "ItemIndex", "LLMEncoder", "PopularityScorer",
    "SentenceTransformerEncoder", "TrainConfig", "Trainer", "UnknownHistoryError", "cached_embeddings", "evaluate",
    "item_embeddings", "make_encoder", "pca", "score_histories", "similar_users", "user_embeddings",
]
