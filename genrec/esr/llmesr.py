"""LLM-ESR (Liu et al., NeurIPS 2024; SPEC.md §2): the dual-view sequential model, and SASRec as its
collaborative view alone.

Item indices inside the model are shifted by one: row 0 is padding, catalog item i is row i+1.
Sequences are left-padded; a pad key is never attended to, so padding a batch to its own
longest sequence or to ``max_len`` gives the same outputs (the trainer and the scorer rely on
this to pad only as far as needed).

Parts and their switches (each removes exactly what it names):

- semantic view: frozen E_se (the cached LLM item vectors, a buffer) → adapter
  Linear(d→d/2) → Linear(d/2→hidden), as in the reference code.  ``views="collaborative"``
  drops E_se and the adapter.
- collaborative view: trainable E_co (|V| x hidden), initialised by PCA of E_se to ``hidden``
  dims (``co_init="pca"``) or randomly (plain SASRec).  ``views="semantic"`` drops it.
- sequence-level fusion: two cross-attentions before the encoder, se attending over co and co
  over se, each added to its own input (a residual, **ours**: the paper does not say how the
  attended sequence is merged).  ``cross_attention=False`` drops both modules.
- one SASRec encoder shared by the two views (``shared_encoder=False``: one per view).
- logit-level fusion: score(u, j) = [u_se : u_co] · [e_se_j : e_co_j].
- item-ID dropout (training only, **ours**, after DropoutNet, Volkovs et al. NeurIPS 2017;
  ``id_dropout`` > 0, both views): at each training step a random share of the items have their
  collaborative row replaced, in the history and in the output table alike, by one mapped from
  their text (``co_from_text``, a linear map of E_se trained with the rest). An item added after
  training has no trained ID row; a model trained so has learned to rank an item through the
  mapped row, which :func:`genrec.esr.cold_protocol.fill_cold_rows` (``id_rows=learned``) and
  :func:`genrec.esr.cold_items.cold_output_rows` give every new item.
- retrieval-augmented self-distillation (training only): teacher = mean of the N most similar
  users' [u_se : u_co], detached; loss alpha * MSE(student, teacher).  ``distill=False`` sets
  the term to zero and skips the teacher forward.

SASRec (IDs only) is the same class with ``views="collaborative"``, ``co_init="random"`` and no
distillation: same encoder, loss and trainer, so comparisons isolate what LLM-ESR adds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrec.esr.family import FallbackModel
from genrec.esr.losses import RankingLoss, bce_loss
from genrec.esr.sequence_encoder import LAYOUTS, Attention, SequenceEncoder, attention_mask, layer_norm_eps

VIEWS = ("both", "semantic", "collaborative")


@dataclass
class ESRConfig:
    """Model hyper-parameters; defaults are the paper's reference settings (SASRec backbone)."""

    hidden: int = 64  # width of each view (the score uses both: 2 x hidden)
    layers: int = 2  # SASRec blocks
    heads: int = 1  # attention heads
    dropout: float = 0.5  # dropout on embeddings, attention and feed-forward
    max_len: int = 200  # newest items of a history the model reads
    ffn: int = 0  # feed-forward width of a block (0 = hidden, the paper's; RecBole's SASRec: 4 x hidden)
    activation: str = "relu"  # relu (the paper's) | gelu (RecBole's)
    layout: str = "sasrec"  # sasrec (the paper's code: pre-norm) | recbole (post-norm); see esr.sequence_encoder
    views: str = "both"  # both | semantic | collaborative
    cross_attention: bool = True  # sequence-level fusion of the two views (LLM-ESR)
    shared_encoder: bool = True  # one SASRec encoder for both views (the paper's)
    distill: bool = True  # retrieval-augmented self-distillation from similar users
    alpha: float = 0.1  # weight of the self-distillation MSE
    n_similar: int = 10  # N most similar users form the teacher
    co_init: str = "pca"  # pca | random (random = SASRec's ID embeddings)
    normalize_llm: bool = True  # centre + unit mean norm of E_se before use (see prepare_llm_embeddings)
    id_dropout: float = 0.0  # share of items whose ID row a training step replaces by one mapped from their text (needs views=both)

    def __post_init__(self) -> None:
        if self.views not in VIEWS:
            raise ValueError(f"views must be one of {VIEWS}, got {self.views!r}")
        if self.co_init not in ("pca", "random"):
            raise ValueError(f"co_init must be 'pca' or 'random', got {self.co_init!r}")
        if self.activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {self.activation!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if not 0.0 <= self.id_dropout < 1.0:
            raise ValueError(f"id_dropout must be in [0, 1), got {self.id_dropout}")
        if self.id_dropout > 0 and self.views != "both":
            raise ValueError(f"id_dropout maps an item's text to its ID row: it needs views=both, got {self.views!r}")

    @classmethod
    def sasrec(cls, **kw) -> ESRConfig:
        return cls(views="collaborative", co_init="random", cross_attention=False, distill=False, **kw)

    @property
    def uses_semantic(self) -> bool:
        return self.views in ("both", "semantic")

    @property
    def uses_collaborative(self) -> bool:
        return self.views in ("both", "collaborative")

    @property
    def uses_cross_attention(self) -> bool:
        return self.cross_attention and self.views == "both"

    def to_dict(self) -> dict:
        return asdict(self)


class OnBackbone:
    """Settings of a model built on the SASRec/LLM-ESR backbone (DaRec, PAD): what the shared
    trainer and scorer read, ``max_len`` and ``to_dict()``, come from the ``backbone`` field."""

    backbone: ESRConfig

    @property
    def max_len(self) -> int:
        return self.backbone.max_len

    def to_dict(self) -> dict:
        return asdict(self)


def prepare_llm_embeddings(x: np.ndarray) -> np.ndarray:
    """Centre the LLM item vectors and scale them to unit mean row norm (**ours**).

    Mean-pooled hidden states of a causal LM share one large common direction and a few
    outlier dimensions with values in the tens; the paper's reference used unit-norm API
    embeddings. Centring and one global scale keep the geometry (angles between centred
    vectors, PCA directions) and give inputs of the size the adapter and E_co expect.
    """
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    scale = np.linalg.norm(x, axis=1).mean()
    return (x / (scale if scale > 0 else 1.0)).astype(np.float32)


def pca(x: np.ndarray, dims: int) -> np.ndarray:
    """Rows of ``x`` projected onto their top ``dims`` principal components (centred; via SVD).

    Component signs are fixed so that each component's largest-magnitude loading is positive,
    which makes the result deterministic across LAPACK builds.
    """
    x = np.asarray(x, dtype=np.float64)
    if dims > min(x.shape):
        raise ValueError(f"PCA to {dims} dims needs at least {dims} rows and columns, got {x.shape}")
    centred = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    comps = vt[:dims]
    signs = np.sign(comps[np.arange(dims), np.abs(comps).argmax(axis=1)])
    comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
    return (centred @ comps.T).astype(np.float32)


class DualViewModel(FallbackModel):
    """LLM-ESR (or, configured so, SASRec); see the module docstring for the parts."""

    name = "llmesr"

    def __init__(self, cfg: ESRConfig, num_items: int, llm_item_emb: np.ndarray | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_items = num_items
        d = cfg.hidden
        needs_llm = cfg.uses_semantic or (cfg.uses_collaborative and cfg.co_init == "pca")
        if needs_llm:
            if llm_item_emb is None:
                raise ValueError("this configuration needs the LLM item embeddings (E_se)")
            if np.shape(llm_item_emb)[0] != num_items:
                raise ValueError(f"E_se has {np.shape(llm_item_emb)[0]} rows for {num_items} items")
            llm_item_emb = prepare_llm_embeddings(llm_item_emb) if cfg.normalize_llm else np.asarray(
                llm_item_emb, dtype=np.float32)
        if cfg.uses_semantic:
            d_llm = llm_item_emb.shape[1]
            table = torch.zeros(num_items + 1, d_llm)
            table[1:] = torch.from_numpy(llm_item_emb)
            self.register_buffer("e_se", table)  # frozen: a buffer, never a parameter
            self.adapter = nn.Sequential(nn.Linear(d_llm, d_llm // 2), nn.Linear(d_llm // 2, d))
        if cfg.uses_collaborative:
            self.e_co = nn.Embedding(num_items + 1, d, padding_idx=0)
        self.pos = nn.Embedding(cfg.max_len + 1, d, padding_idx=0)
        self.emb_dropout = nn.Dropout(cfg.dropout)
        if cfg.layout == "recbole":  # LayerNorm over item + position embeddings, before the dropout
            self.emb_norm = nn.LayerNorm(d, eps=layer_norm_eps(cfg.layout))
        if cfg.uses_cross_attention:
            self.se_over_co = Attention(d, cfg.heads, cfg.dropout)
            self.co_over_se = Attention(d, cfg.heads, cfg.dropout)
        self.encoder = SequenceEncoder(d, cfg.layers, cfg.heads, cfg.dropout, cfg.ffn, cfg.activation, cfg.layout)
        if cfg.views == "both" and not cfg.shared_encoder:
            self.encoder_co = SequenceEncoder(d, cfg.layers, cfg.heads, cfg.dropout, cfg.ffn, cfg.activation, cfg.layout)
        self._init_weights()
        if cfg.uses_collaborative and cfg.co_init == "pca":
            with torch.no_grad():
                k = min(d, *llm_item_emb.shape)  # a catalog smaller than ``hidden``: the rest stays zero
                self.e_co.weight.zero_()
                self.e_co.weight[1:, :k] = torch.from_numpy(pca(llm_item_emb, k))
                self.e_co.weight[0] = 0
        if cfg.id_dropout > 0:  # made last: every other parameter draws the initial values it has without it
            self.co_from_text = nn.Linear(llm_item_emb.shape[1], d)
            self._init_weights(self.co_from_text)

    def _init_weights(self, module: nn.Module | None = None) -> None:
        """Initialise the parameters of ``module`` (default: the whole model) as the layout's code does."""
        recbole = self.cfg.layout == "recbole"
        for name, p in (module or self).named_parameters():
            if p.dim() >= 2 and "norm" not in name:
                if recbole:
                    nn.init.normal_(p, std=0.02)
                else:
                    nn.init.xavier_normal_(p)
            elif recbole and name.endswith("bias") and "norm" not in name:
                nn.init.zeros_(p)
        with torch.no_grad():
            self.pos.weight[0] = 0
            if self.cfg.uses_collaborative:
                self.e_co.weight[0] = 0

    def saved_shapes(self) -> dict[str, int]:
        e_se = getattr(self, "e_se", None)
        return {"llm_dim": int(e_se.shape[1]) if e_se is not None else 0}

    # -- item tables --------------------------------------------------------------------
    def item_tables(self) -> dict[str, torch.Tensor]:
        """The per-view item vectors [N+1, hidden] (row 0 = padding) the model reads and scores with."""
        out = {}
        if self.cfg.uses_semantic:
            out["se"] = self.adapter(self.e_se)
            out["se"] = out["se"] * (torch.arange(out["se"].shape[0], device=out["se"].device) > 0)[:, None]
        if self.cfg.uses_collaborative:
            out["co"] = self.e_co.weight
            if self.training and self.cfg.id_dropout > 0:
                drop = torch.rand(out["co"].shape[0], device=out["co"].device) < self.cfg.id_dropout
                drop[0] = False  # padding stays padding
                out["co"] = torch.where(drop[:, None], self.mapped_id_rows(self.e_se), out["co"])
        return out

    def mapped_id_rows(self, semantic: torch.Tensor) -> torch.Tensor:
        """ID rows [m, hidden] mapped from semantic inputs [m, d_llm] (rows in ``e_se``'s space) by
        the map item-ID dropout trained; an error for a model trained without it."""
        if not hasattr(self, "co_from_text"):
            raise ValueError("this model was trained without item-ID dropout (esr.id_dropout=0): it has no text-to-ID map")
        return self.co_from_text(semantic)

    def output_table(self, tables: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """[e_se : e_co] for every catalog item, [N, width] (padding row dropped)."""
        tables = tables if tables is not None else self.item_tables()
        return torch.cat([tables[v][1:] for v in ("se", "co") if v in tables], dim=-1)

    # -- encoding -----------------------------------------------------------------------
    def encode(self, seqs: torch.Tensor, tables: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Left-padded shifted item rows [B, L] → per-position user states [B, L, width]."""
        tables = tables if tables is not None else self.item_tables()
        allowed, keep = attention_mask(seqs)
        real = seqs > 0
        lengths = real.sum(1, keepdim=True)
        # positions 1..len from the oldest kept item, 0 on padding (as the reference code)
        positions = (torch.cumsum(real.long(), 1) * real).clamp(max=self.cfg.max_len)
        del lengths
        scale = math.sqrt(self.cfg.hidden) if self.cfg.layout == "sasrec" else 1.0
        views = {}
        for v, table in tables.items():
            x = F.embedding(seqs, table) * scale + self.pos(positions)
            if self.cfg.layout == "recbole":
                x = self.emb_norm(x)
            views[v] = self.emb_dropout(x) * keep
        if self.cfg.uses_cross_attention:
            se, co = views["se"], views["co"]
            views = {"se": (se + self.se_over_co(se, co, allowed)) * keep,
                     "co": (co + self.co_over_se(co, se, allowed)) * keep}
        if len(views) == 2 and not hasattr(self, "encoder_co"):
            # one shared encoder: run both views as one stacked batch (same result, half the calls)
            b = seqs.shape[0]
            both = self.encoder(torch.cat([views["se"], views["co"]], 0), allowed.repeat(2, 1, 1), keep.repeat(2, 1, 1))
            return torch.cat([both[:b], both[b:]], dim=-1)
        states = []
        for v in ("se", "co"):
            if v in views:
                enc = self.encoder_co if (v == "co" and hasattr(self, "encoder_co")) else self.encoder
                states.append(enc(views[v], allowed, keep))
        return torch.cat(states, dim=-1)

    # -- training loss ------------------------------------------------------------------
    @torch.no_grad()
    def teacher_vectors(self, teacher_seqs: torch.Tensor, batch: int) -> torch.Tensor:
        """Mean [u_se : u_co] of each user's N similar users; ``teacher_seqs`` is [batch*N, L]."""
        tables = {k: t.detach() for k, t in self.item_tables().items()}
        teacher = self.user_vectors(teacher_seqs, tables)
        return teacher.view(batch, -1, teacher.shape[-1]).mean(1)

    def loss(self, seqs: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor | None = None,
             teacher: torch.Tensor | None = None,
             ranking: RankingLoss | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Ranking loss at every real position + alpha * distillation MSE.

        ``ranking``: the configured loss (:mod:`genrec.esr.losses`); without one, the reference's
        pairwise BCE against the one negative per position in ``neg``.
        ``teacher``: [B, width] mean representation of each user's N most similar users (see
        :meth:`teacher_vectors`), or [B*N, L] sequences of those users, encoded here without
        gradient. Ignored (and never computed) when distillation is off.
        """
        tables = self.item_tables()
        states = self.encode(seqs, tables)
        full = torch.cat([tables[v] for v in ("se", "co") if v in tables], dim=-1)  # [N+1, width]
        rank_loss = ranking(states, pos, full, neg) if ranking is not None else bce_loss(states, pos, full, neg)
        distill = torch.zeros((), device=seqs.device)
        if self.cfg.distill and self.cfg.alpha > 0 and teacher is not None:
            if teacher.dtype == torch.long:  # sequences: encode them now (the reference's live teacher)
                teacher = self.teacher_vectors(teacher, seqs.shape[0])
            distill = F.mse_loss(states[:, -1], teacher.detach())
        total = rank_loss + self.cfg.alpha * distill
        return total, {"rank": float(rank_loss.detach()), "distill": float(distill.detach())}
