"""The self-attentive sequence encoder (Kang & McAuley, ICDM 2018) that every sequential model of
the fallback family is built on: causal self-attention + point-wise feed-forward blocks, padding
never attended.

It lives apart from :mod:`genrec.esr.sasrec` (SASRec the model) and :mod:`genrec.esr.llmesr`
(the dual-view model SASRec is a configuration of) so that both, DaRec and PAD import it from
below instead of from each other. Sequences are left-padded item rows (0 = padding, catalog item
i is row i+1); padding a batch further on the left never changes an output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention with a boolean allowed-mask [B, Lq, Lk] (True = may attend)."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(hidden, hidden)
        self.k = nn.Linear(hidden, hidden)
        self.v = nn.Linear(hidden, hidden)
        self.o = nn.Linear(hidden, hidden)
        self.dropout = dropout

    def forward(self, query: torch.Tensor, kv: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, lq, d = query.shape
        h = self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, -1, h, d // h).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q(query)), split(self.k(kv)), split(self.v(kv)),
                                             attn_mask=allowed.unsqueeze(1),
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.o(out.transpose(1, 2).reshape(b, lq, d))


ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}
# Block layouts of the two reference implementations (``ESRConfig.layout``):
# * ``sasrec``: Kang & McAuley's code (and LLM-ESR's): pre-norm blocks, a final LayerNorm, item
#   embeddings scaled by sqrt(hidden), Xavier-normal weights, LayerNorm eps 1e-8;
# * ``recbole``: RecBole's SASRec (BERT's layout): LayerNorm over item + position embeddings,
#   post-norm blocks (LayerNorm(x + sublayer(x))) with dropout on each sublayer's output, no final
#   LayerNorm, unscaled embeddings, N(0, 0.02) weights and zero biases, LayerNorm eps 1e-12.
#   RecBole's SASRec-CE is the baseline genrec is measured against, so its layout is a setting.
LAYOUTS = ("sasrec", "recbole")


def layer_norm_eps(layout: str) -> float:
    return 1e-12 if layout == "recbole" else 1e-8


class EncoderLayer(nn.Module):
    """SASRec block: self-attention with residual, then a point-wise feed-forward, normalised
    before each sublayer (``layout="sasrec"``) or after each residual sum (``"recbole"``).

    The feed-forward is ``hidden -> ffn -> hidden``: the paper's is ``ffn = hidden`` with ReLU,
    RecBole's default 4 x hidden (256) with GELU.
    """

    def __init__(self, hidden: int, heads: int, dropout: float, ffn: int = 0, activation: str = "relu",
                 layout: str = "sasrec") -> None:
        super().__init__()
        inner = ffn or hidden
        self.post_norm = layout == "recbole"
        eps = layer_norm_eps(layout)
        self.attn_norm = nn.LayerNorm(hidden, eps=eps)
        self.attn = Attention(hidden, heads, dropout)
        self.ffn_norm = nn.LayerNorm(hidden, eps=eps)
        if self.post_norm:
            self.attn_dropout = nn.Dropout(dropout)
        # RecBole's FeedForward has no dropout between the two linear maps; the paper's code has one
        inner_dropout = [] if self.post_norm else [nn.Dropout(dropout)]
        self.ffn = nn.Sequential(nn.Linear(hidden, inner), ACTIVATIONS[activation](), *inner_dropout,
                                 nn.Linear(inner, hidden), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        if self.post_norm:
            x = self.attn_norm(x + self.attn_dropout(self.attn(x, x, allowed)))
            return self.ffn_norm(x + self.ffn(x)) * keep
        q = self.attn_norm(x)
        x = q + self.attn(q, x, allowed)
        x = self.ffn_norm(x)
        x = (x + self.ffn(x)) * keep
        return x


class SequenceEncoder(nn.Module):
    """A stack of SASRec blocks (causal, padding never attended), with a final LayerNorm in the
    pre-norm layout (the post-norm blocks end in one already)."""

    def __init__(self, hidden: int, layers: int, heads: int, dropout: float, ffn: int = 0,
                 activation: str = "relu", layout: str = "sasrec") -> None:
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.layers = nn.ModuleList(EncoderLayer(hidden, heads, dropout, ffn, activation, layout)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(hidden, eps=1e-8) if layout == "sasrec" else nn.Identity()

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, allowed, keep)
        return self.norm(x)


def attention_mask(seqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(allowed [B, L, L], keep [B, L, 1]) for left-padded ``seqs`` (0 = padding).

    Causal, pad keys excluded; a pad query may see itself only (so no row is empty and its
    output, zeroed by ``keep`` anyway, stays finite).
    """
    b, length = seqs.shape
    real = seqs > 0
    causal = torch.ones(length, length, dtype=torch.bool, device=seqs.device).tril()
    eye = torch.eye(length, dtype=torch.bool, device=seqs.device)
    allowed = (causal & real[:, None, :]) | eye
    return allowed, real.unsqueeze(-1).to(torch.float32)
