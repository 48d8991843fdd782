"""UniSRec (Hou et al., KDD 2022): item vectors from text alone, through a mixture of
parametric-whitening adapters, read by a SASRec encoder; cosine scores at a temperature.

The model of the family built for items and shops that training never saw (issue #31). An item
is its frozen text vector x through the MoE adapter, sum_k g_k(x) (x - b_k) W_k, with the gate
g = softmax(x W_g + noise) (Gaussian noise of learned scale while training). The adapter is one
affine map per expert shared by the whole catalog, so a new item's text reaches the same space
as a trained item's, and nothing of an item is learned that its text does not carry; that is
what lets a model trained on some shops rank another's items (:mod:`genrec.esr.zero_shot`).
A sequence is its items' adapted vectors plus position embeddings, LayerNorm, dropout and
post-norm (RecBole-layout) SASRec blocks; the user vector is the newest position's output.
Scores are the cosine of user and item vectors divided by the temperature (0.07).

``stage``:

* ``inductive`` — text only (the paper's inductive fine-tuning; every item, trained or not, is
  scored the same way);
* ``transductive`` — an ID embedding is added to each item's adapted text vector (the paper's
  transductive setting); under the cold-item protocol a cold item's ID row is filled like every
  other model's (:mod:`genrec.esr.cold_protocol`).

Defaults are the paper's (``props/UniSRec.yaml``): 300 dims, 2 blocks of 2 heads, feed-forward
256, GELU, dropout 0.5, adapter dropout 0.2, 8 experts, temperature 0.07, 50 newest items.
Differences, stated: the text vectors are the family's cached item vectors (all-MiniLM-L6-v2 in
the ledger's configs; the paper's BERT [CLS]); trained by the family's trainer, with the ranking
loss at every position of a sequence (RecBole's at the last); the paper's pre-training on other
shops (sequence-item plus lambda=0.001 sequence-sequence contrast) is replaced by training on
the union of those shops with the same loss (:mod:`genrec.esr.zero_shot`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrec.errors import ConfigError
from genrec.esr.family import FallbackModel
from genrec.esr.losses import RankingLoss
from genrec.esr.sequence_encoder import SequenceEncoder, attention_mask, layer_norm_eps

STAGES = ("inductive", "transductive")


@dataclass
class UniSRecConfig:
    """UniSRec's settings; defaults after the paper's ``props/UniSRec.yaml``."""

    hidden: int = 300  # width of the adapted item vectors and of the encoder
    layers: int = 2  # SASRec blocks
    heads: int = 2  # attention heads
    ffn: int = 256  # feed-forward width of a block
    dropout: float = 0.5  # on embeddings, attention and feed-forward
    max_len: int = 50  # newest items of a history the model reads
    n_exps: int = 8  # experts of the MoE adapter
    adaptor_dropout: float = 0.2  # dropout on the text vector inside each expert
    noisy_gating: bool = True  # Gaussian noise (learned scale) on the gate logits while training
    temperature: float = 0.07  # scores are cosine / temperature
    stage: str = "inductive"  # inductive (text only) | transductive (text + ID rows)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"unisrec.stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        for name in ("hidden", "layers", "heads", "n_exps", "max_len"):
            if getattr(self, name) < 1:
                raise ConfigError(f"unisrec.{name} must be positive, got {getattr(self, name)}")
        if self.hidden % self.heads:
            raise ConfigError(f"unisrec.hidden ({self.hidden}) must be divisible by unisrec.heads ({self.heads})")
        if not self.temperature > 0:
            raise ConfigError(f"unisrec.temperature must be positive, got {self.temperature}")

    def to_dict(self) -> dict:
        return asdict(self)


class MoEAdaptor(nn.Module):
    """sum_k g_k(x) (dropout(x) - b_k) W_k with g = softmax(x W_g [+ noise]); the paper's
    parametric-whitening experts, computed as one matmul over the stacked experts."""

    def __init__(self, n_exps: int, d_in: int, d_out: int, dropout: float, noisy: bool) -> None:
        super().__init__()
        self.n_exps, self.d_out, self.noisy = n_exps, d_out, noisy
        self.bias = nn.Parameter(torch.zeros(n_exps, d_in))
        self.weight = nn.Parameter(torch.randn(n_exps, d_in, d_out) * 0.02)
        self.w_gate = nn.Parameter(torch.zeros(d_in, n_exps))
        self.w_noise = nn.Parameter(torch.zeros(d_in, n_exps))
        self.dropout = nn.Dropout(dropout)

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        logits = x @ self.w_gate
        if self.noisy and self.training:
            logits = logits + torch.randn_like(logits) * (F.softplus(x @ self.w_noise) + 1e-2)
        return logits.softmax(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.gates(x)  # [..., K]
        # (dropout(x) - b_k) W_k = dropout(x) W_k - b_k W_k: one [d_in, K*d_out] product for every expert
        xw = (self.dropout(x) @ self.weight.permute(1, 0, 2).reshape(x.shape[-1], -1)).view(
            *x.shape[:-1], self.n_exps, self.d_out)
        bw = torch.einsum("kd,kdo->ko", self.bias, self.weight)
        return (g.unsqueeze(-1) * (xw - bw)).sum(-2)


class UniSRec(FallbackModel):
    """Text → MoE adapter → SASRec (post-norm); cosine / temperature scores."""

    name = "unisrec"

    def __init__(self, cfg: UniSRecConfig, num_items: int, llm_item_emb: np.ndarray) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_items = num_items
        if np.shape(llm_item_emb)[0] != num_items:
            raise ValueError(f"item text vectors have {np.shape(llm_item_emb)[0]} rows for {num_items} items")
        d_llm = int(np.shape(llm_item_emb)[1])
        self.register_buffer("e_llm", text_table(llm_item_emb))  # frozen, row 0 = padding
        self.adaptor = MoEAdaptor(cfg.n_exps, d_llm, cfg.hidden, cfg.adaptor_dropout, cfg.noisy_gating)
        if cfg.stage == "transductive":
            self.e_id = nn.Embedding(num_items + 1, cfg.hidden, padding_idx=0)
        self.pos = nn.Embedding(cfg.max_len + 1, cfg.hidden, padding_idx=0)
        self.emb_norm = nn.LayerNorm(cfg.hidden, eps=layer_norm_eps("recbole"))
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.encoder = SequenceEncoder(cfg.hidden, cfg.layers, cfg.heads, cfg.dropout, cfg.ffn, "gelu", "recbole")
        for mod in self.modules():  # RecBole's initialisation: N(0, 0.02) weights, zero biases
            if isinstance(mod, nn.Linear | nn.Embedding):
                nn.init.normal_(mod.weight, std=0.02)
                if isinstance(mod, nn.Linear) and mod.bias is not None:
                    nn.init.zeros_(mod.bias)
        with torch.no_grad():
            self.pos.weight[0] = 0
            if cfg.stage == "transductive":
                self.e_id.weight[0] = 0

    def saved_shapes(self) -> dict[str, int]:
        return {"llm_dim": int(self.e_llm.shape[1])}

    def item_tables(self) -> dict[str, torch.Tensor]:
        """``items``: adapted text (+ ID row) of every item, the encoder's input; ``out``: the same
        L2-normalised, what users are scored against (row 0 = padding, zero in both)."""
        items = self.adaptor(self.e_llm)
        if self.cfg.stage == "transductive":
            items = items + self.e_id.weight
        items = items * (torch.arange(items.shape[0], device=items.device) > 0)[:, None]
        return {"items": items, "out": F.normalize(items, dim=-1)}

    def output_table(self, tables: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        tables = tables if tables is not None else self.item_tables()
        return tables["out"][1:]

    def encode(self, seqs: torch.Tensor, tables: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-position user vectors [B, L, hidden], L2-normalised and divided by the temperature."""
        allowed, keep = attention_mask(seqs)
        real = seqs > 0
        positions = (torch.cumsum(real.long(), 1) * real).clamp(max=self.cfg.max_len)
        x = self.emb_norm(F.embedding(seqs, tables["items"]) + self.pos(positions))
        states = self.encoder(self.emb_dropout(x) * keep, allowed, keep)
        return F.normalize(states, dim=-1) / self.cfg.temperature

    def loss(self, seqs: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor | None = None,
             teacher: torch.Tensor | None = None,
             ranking: RankingLoss | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """The ranking loss (softmax over cosine / temperature) at every real position."""
        if ranking is None:
            raise ValueError("UniSRec trains with the trainer's ranking loss")
        tables = self.item_tables()
        rank = ranking(self.encode(seqs, tables), pos, tables["out"], neg)
        return rank, {"rank": float(rank.detach())}


def text_table(vectors: np.ndarray) -> torch.Tensor:
    """[N+1, d] float32 rows of the item text vectors, row 0 (padding) zero."""
    x = torch.from_numpy(np.asarray(vectors, dtype=np.float32))
    return F.pad(x, (0, 0, 1, 0))


def load_unisrec(config: dict, num_items: int, shapes: dict) -> UniSRec:
    """A UniSRec with a zero text table of the saved size, for loading saved weights into."""
    return UniSRec(UniSRecConfig(**config), num_items, np.zeros((num_items, shapes["llm_dim"]), np.float32))
