"""Compatibility names: the fallback family now has one module per model.

SASRec's encoder blocks are in :mod:`genrec.esr.sequence_encoder`, LLM-ESR's dual-view model in
:mod:`genrec.esr.llmesr`; AlphaRec, DaRec and PAD in their own modules; the registry that picks
one by name in :mod:`genrec.esr.registry`. Old imports from here keep working.
"""

from genrec.esr.llmesr import VIEWS, DualViewModel, ESRConfig, pca, prepare_llm_embeddings
from genrec.esr.sequence_encoder import Attention, EncoderLayer, SequenceEncoder, attention_mask

__all__ = ["VIEWS", "Attention", "DualViewModel", "ESRConfig", "EncoderLayer", "SequenceEncoder", "attention_mask",
           "pca", "prepare_llm_embeddings"]
