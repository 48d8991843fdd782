"""SASRec (Kang & McAuley, ICDM 2018): LLM-ESR's collaborative view alone.

SASRec is the same class as LLM-ESR (:class:`~genrec.esr.llmesr.DualViewModel`) with
``views="collaborative"``, random ID embeddings, no cross-attention and no distillation, so a
comparison of the two isolates what LLM-ESR adds (same encoder, loss and trainer).
:func:`build_sasrec` makes one.

The encoder blocks (causal pre-norm self-attention + point-wise feed-forward) are in
:mod:`genrec.esr.sequence_encoder`, below both this module and :mod:`genrec.esr.llmesr`; their
names stay importable from here.
"""

from __future__ import annotations

from genrec.esr.llmesr import DualViewModel, ESRConfig
from genrec.esr.sequence_encoder import (
    ACTIVATIONS,
    LAYOUTS,
    Attention,
    EncoderLayer,
    SequenceEncoder,
    attention_mask,
    layer_norm_eps,
)

__all__ = ["ACTIVATIONS", "LAYOUTS", "Attention", "EncoderLayer", "SequenceEncoder", "attention_mask", "build_sasrec",
           "layer_norm_eps", "sasrec_config"]


def sasrec_config(hidden: int = 64, layers: int = 2, heads: int = 1, dropout: float = 0.5,
                  max_len: int = 200, ffn: int = 0, activation: str = "relu", layout: str = "sasrec") -> ESRConfig:
    """SASRec's settings as an :class:`~genrec.esr.llmesr.ESRConfig` (IDs only)."""
    return ESRConfig.sasrec(hidden=hidden, layers=layers, heads=heads, dropout=dropout, max_len=max_len,
                            ffn=ffn, activation=activation, layout=layout)


def build_sasrec(cfg: ESRConfig, num_items: int) -> DualViewModel:
    """SASRec with the backbone settings of ``cfg`` (its LLM-ESR switches are ignored)."""
    return DualViewModel(sasrec_config(cfg.hidden, cfg.layers, cfg.heads, cfg.dropout, cfg.max_len, cfg.ffn,
                                       cfg.activation, cfg.layout), num_items)
