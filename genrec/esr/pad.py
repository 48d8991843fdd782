"""PAD (pre-train, align, disentangle; SPEC.md §7): text, ID and aligned experts gated by item frequency.

Item vectors from three sources, one SASRec encoder (:mod:`genrec.esr.sequence_encoder`) shared by all:

- text expert: the frozen LLM item vectors (pre-trained) through an adapter
  Linear(d→d/2) → Linear(d/2→hidden) (LLM-ESR's);
- ID expert: trainable ID embeddings (|V| x hidden);
- aligned expert: Linear(2 hidden → hidden) over [text : ID] of the same item.

Each expert's item sequence goes through the shared encoder and gives a user vector u_e; the
score of item j is sum_e g_e(j) u_e · e_e,j, with the gate g(j) = softmax(MLP(log(1 + count_j)))
over the three experts and count_j the item's training frequency, so cold items can lean on
text and warm items on IDs. The gate depends on the item only, so the score is one inner
product [u_text : u_id : u_al] · [g_text e_text : g_id e_id : g_al e_al] and faiss serves it.

Alignment: multi-kernel MMD between the text and ID item vectors of a sampled batch of
``sample`` items, Gaussian kernels exp(-||x-y||^2 / (m · b)) summed over the multipliers m in
``kernels``, b the mean squared distance of the pooled batch (detached; the usual bandwidth
heuristic); the biased (V-statistic) estimate. Loss = the trainer's ranking loss + λ MMD.

Differences from the paper, stated: one training stage (the paper pre-trains and aligns before
fine-tuning the experts); a SASRec sequence encoder as the user model; the trainer's ranking
loss (full softmax by default) instead of BCE; the gate sees the frequency only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrec.errors import ConfigError
from genrec.esr.family import FallbackModel
from genrec.esr.llmesr import ESRConfig, OnBackbone, prepare_llm_embeddings
from genrec.esr.losses import RankingLoss
from genrec.esr.sequence_encoder import SequenceEncoder, attention_mask

EXPERTS = ("text", "id", "aligned")


@dataclass
class PADConfig:
    """PAD's settings (the SASRec encoder's come from the ``esr`` block)."""

    lam: float = 0.1  # weight λ of the MMD alignment
    sample: int = 256  # items per step the MMD is computed on
    kernels: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0, 2.0, 4.0])  # bandwidth multipliers
    gate_hidden: int = 16  # width of the gate's hidden layer
    normalize_llm: bool = True  # centre + unit mean norm of the LLM vectors (as LLM-ESR's)

    def __post_init__(self) -> None:
        if self.lam < 0:
            raise ConfigError(f"pad.lam must be >= 0, got {self.lam}")
        if self.sample < 2:
            raise ConfigError(f"pad.sample must be at least 2, got {self.sample}")
        if not self.kernels or any(not m > 0 for m in self.kernels):
            raise ConfigError(f"pad.kernels must be positive bandwidth multipliers, got {self.kernels}")
        if self.gate_hidden < 1:
            raise ConfigError(f"pad.gate_hidden must be positive, got {self.gate_hidden}")


@dataclass
class PADModelConfig(OnBackbone):
    backbone: ESRConfig = field(default_factory=ESRConfig.sasrec)
    pad: PADConfig = field(default_factory=PADConfig)

    @classmethod
    def from_dict(cls, d: dict) -> PADModelConfig:
        return cls(ESRConfig(**d["backbone"]), PADConfig(**d["pad"]))


def mmd(x: torch.Tensor, y: torch.Tensor, bandwidths: list[float] | torch.Tensor) -> torch.Tensor:
    """Biased MMD^2 between the rows of ``x`` and ``y`` under k(a, b) = sum_w exp(-||a-b||^2 / w)."""

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d2 = torch.cdist(a, b).pow(2)
        return sum(torch.exp(-d2 / w) for w in bandwidths)

    return k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()


def multi_kernel_mmd(x: torch.Tensor, y: torch.Tensor, multipliers: list[float]) -> torch.Tensor:
    """:func:`mmd` with bandwidths m · (mean squared distance of the pooled rows, detached)."""
    z = torch.cat([x, y]).detach()
    base = torch.cdist(z, z).pow(2).sum() / max(z.shape[0] * (z.shape[0] - 1), 1)
    base = base.clamp(min=1e-8)
    return mmd(x, y, [m * base for m in multipliers])


class PAD(FallbackModel):
    """Three experts over one shared SASRec encoder, mixed per item by a frequency gate."""

    name = "pad"

    def __init__(self, cfg: PADModelConfig, num_items: int, llm_item_emb: np.ndarray,
                 item_counts: np.ndarray) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_items = num_items
        b = cfg.backbone
        d = b.hidden
        if np.shape(llm_item_emb)[0] != num_items or len(item_counts) != num_items:
            raise ValueError(f"PAD needs one LLM vector and one training count per item ({num_items})")
        x = prepare_llm_embeddings(llm_item_emb) if cfg.pad.normalize_llm else np.asarray(llm_item_emb, np.float32)
        d_llm = x.shape[1]
        table = torch.zeros(num_items + 1, d_llm)
        table[1:] = torch.from_numpy(x)
        self.register_buffer("e_llm", table)  # frozen
        freq = torch.zeros(num_items + 1)
        freq[1:] = torch.log1p(torch.as_tensor(np.asarray(item_counts, dtype=np.float32)))
        self.register_buffer("log_freq", freq)
        self.adapter = nn.Sequential(nn.Linear(d_llm, d_llm // 2), nn.Linear(d_llm // 2, d))
        self.e_id = nn.Embedding(num_items + 1, d, padding_idx=0)
        self.align = nn.Linear(2 * d, d)
        self.gate = nn.Sequential(nn.Linear(1, cfg.pad.gate_hidden), nn.ReLU(), nn.Linear(cfg.pad.gate_hidden, 3))
        self.pos = nn.Embedding(b.max_len + 1, d, padding_idx=0)
        self.emb_dropout = nn.Dropout(b.dropout)
        self.encoder = SequenceEncoder(d, b.layers, b.heads, b.dropout)
        for name, p in self.named_parameters():
            if p.dim() >= 2 and "norm" not in name:
                nn.init.xavier_normal_(p)
        with torch.no_grad():
            self.pos.weight[0] = 0
            self.e_id.weight[0] = 0

    def saved_shapes(self) -> dict[str, int]:
        return {"llm_dim": int(self.e_llm.shape[1])}

    # -- item tables ----------------------------------------------------------------------
    def item_tables(self) -> dict[str, torch.Tensor]:
        """Each expert's item vectors [N+1, hidden] (row 0 zero) and the gate [N+1, 3]."""
        keep = (torch.arange(self.num_items + 1, device=self.e_llm.device) > 0).float()[:, None]
        text = self.adapter(self.e_llm) * keep
        ids = self.e_id.weight
        aligned = self.align(torch.cat([text, ids], dim=-1)) * keep
        gate = torch.softmax(self.gate(self.log_freq[:, None]), dim=-1)
        return {"text": text, "id": ids, "aligned": aligned, "gate": gate}

    def _gated(self, tables: dict[str, torch.Tensor]) -> torch.Tensor:
        """[g_text e_text : g_id e_id : g_al e_al] for every row (row 0 = padding)."""
        return torch.cat([tables["gate"][:, k:k + 1] * tables[e] for k, e in enumerate(EXPERTS)], dim=-1)

    def output_table(self, tables: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        tables = tables if tables is not None else self.item_tables()
        return self._gated(tables)[1:]

    # -- encoding -------------------------------------------------------------------------
    def encode(self, seqs: torch.Tensor, tables: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-position [u_text : u_id : u_al] [B, L, 3 hidden]; the experts run as one stacked batch."""
        allowed, keep = attention_mask(seqs)
        real = seqs > 0
        positions = (torch.cumsum(real.long(), 1) * real).clamp(max=self.cfg.backbone.max_len)
        scale = math.sqrt(self.cfg.backbone.hidden)
        pos = self.pos(positions)
        views = [self.emb_dropout(F.embedding(seqs, tables[e]) * scale + pos) * keep for e in EXPERTS]
        b = seqs.shape[0]
        out = self.encoder(torch.cat(views, 0), allowed.repeat(3, 1, 1), keep.repeat(3, 1, 1))
        return torch.cat([out[k * b:(k + 1) * b] for k in range(3)], dim=-1)

    def loss(self, seqs: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor | None = None,
             teacher: torch.Tensor | None = None,
             ranking: RankingLoss | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        if ranking is None:
            raise ValueError("PAD trains with the trainer's ranking loss")
        tables = self.item_tables()
        rank = ranking(self.encode(seqs, tables), pos, self._gated(tables), neg)
        parts = {"rank": float(rank.detach())}
        if self.cfg.pad.lam == 0:
            return rank, parts
        items = torch.randperm(self.num_items)[:self.cfg.pad.sample] + 1  # torch's seeded, checkpointed RNG
        align = multi_kernel_mmd(tables["text"][items], tables["id"][items], self.cfg.pad.kernels)
        parts["mmd"] = float(align.detach())
        return rank + self.cfg.pad.lam * align, parts


def load_pad(config: dict, num_items: int, shapes: dict) -> PAD:
    cfg = PADModelConfig.from_dict(config)
    raw = PADModelConfig(cfg.backbone, PADConfig(**{**config["pad"], "normalize_llm": False}))
    model = PAD(raw, num_items, np.zeros((num_items, shapes["llm_dim"]), np.float32), np.zeros(num_items))
    model.cfg = cfg
    return model
