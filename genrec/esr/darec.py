"""DaRec (disentangled alignment of a collaborative model and an LLM; SPEC.md §3) as a plug-in on SASRec.

Forcing a collaborative model's representations to equal an LLM's (zero gap) costs accuracy;
DaRec splits each side into a *shared* and a *specific* part with small MLPs and aligns only
the structure of the shared parts. Here the collaborative side (C) is SASRec's ID item table and
the LLM side (L) the frozen LLM item vectors; on a sampled batch of ``sample`` items per step:

- orthogonality: mean squared cosine between each row's specific and shared parts, for C and L;
- uniformity of the specific parts: log E exp(-2 ||x - y||^2) over distinct pairs of
  L2-normalised rows (Wang & Isola's form), for C and L;
- global structure: mean over entries of (S_C - S_L)^2 with S = E_sh E_sh^T of the
  L2-normalised shared parts (SPEC's ||S_C - S_L||_F^2 divided by N̂^2, so λ does not depend
  on the batch size);
- local structure: K-means (``clusters`` centres, ``kmeans_iters`` Lloyd steps from the first K
  rows) on the shared parts of C and of L, centres matched greedily by Euclidean distance
  (closest pair first); then the mean over the K x K centre pairs of (cos - target)^2, target 1
  for matched and 0 for unmatched pairs.

Training loss = SASRec's ranking loss + λ (sum of the six terms). Serving is SASRec alone: the
heads only shape its item table during training.

Differences from the paper, stated: items only (the paper aligns user representations too);
the ranking loss is the trainer's (full softmax by default); the terms are summed with one
weight λ.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrec.errors import ConfigError
from genrec.esr.family import FallbackModel
from genrec.esr.llmesr import DualViewModel, ESRConfig, OnBackbone, prepare_llm_embeddings
from genrec.esr.losses import RankingLoss


@dataclass
class DaRecConfig:
    """DaRec's plug-in settings (the SASRec backbone's come from the ``esr`` block)."""

    lam: float = 0.1  # weight λ of the alignment terms
    shared_dim: int = 0  # width of the shared and specific parts; 0 = the backbone's hidden
    sample: int = 256  # N̂ items per step the terms are computed on
    clusters: int = 8  # K-means centres per side (local structure)
    kmeans_iters: int = 10  # Lloyd iterations
    normalize_llm: bool = True  # centre + unit mean norm of the LLM vectors (as LLM-ESR's)

    def __post_init__(self) -> None:
        if self.lam < 0:
            raise ConfigError(f"darec.lam must be >= 0, got {self.lam}")
        if self.sample < 2:
            raise ConfigError(f"darec.sample must be at least 2, got {self.sample}")
        if self.clusters < 1 or self.clusters > self.sample:
            raise ConfigError(f"darec.clusters must be in [1, darec.sample], got {self.clusters}")
        if self.shared_dim < 0 or self.kmeans_iters < 1:
            raise ConfigError("darec.shared_dim must be >= 0 and darec.kmeans_iters >= 1, got "
                              f"{self.shared_dim} and {self.kmeans_iters}")


@dataclass
class DaRecModelConfig(OnBackbone):
    backbone: ESRConfig = field(default_factory=ESRConfig.sasrec)
    darec: DaRecConfig = field(default_factory=DaRecConfig)

    @classmethod
    def from_dict(cls, d: dict) -> DaRecModelConfig:
        return cls(ESRConfig(**d["backbone"]), DaRecConfig(**d["darec"]))


# -- the losses (each on rows of a sampled batch) -------------------------------------------
def orthogonality(shared: torch.Tensor, specific: torch.Tensor) -> torch.Tensor:
    """Mean over rows of cos(shared_i, specific_i)^2."""
    return (F.cosine_similarity(shared, specific, dim=-1, eps=1e-8) ** 2).mean()


def uniformity(x: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """log of the mean over distinct pairs of exp(-t ||x_i - x_j||^2), rows L2-normalised."""
    x = F.normalize(x, dim=-1)
    n = x.shape[0]
    if n < 2:
        return x.sum() * 0.0
    d2 = (x[:, None, :] - x[None, :, :]).pow(2).sum(-1)
    i, j = torch.triu_indices(n, n, offset=1)
    return torch.logsumexp(-t * d2[i, j], dim=0) - np.log(len(i))


def global_structure(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean over entries of (Â Â^T - B̂ B̂^T)^2, Â and B̂ the L2-normalised rows."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    return (a @ a.T - b @ b.T).pow(2).mean()


def kmeans(x: torch.Tensor, k: int, iters: int) -> torch.Tensor:
    """K centres [k, d] by Lloyd's algorithm from the first ``k`` rows; assignments are chosen
    without gradient, centres are the (differentiable) means of their rows; an empty cluster
    keeps its previous centre."""
    centres = x[:k]
    for _ in range(iters):
        with torch.no_grad():
            assign = torch.cdist(x, centres).argmin(1)
        onehot = F.one_hot(assign, k).to(x.dtype)  # [n, k]
        counts = onehot.sum(0)
        means = (onehot.T @ x) / counts.clamp(min=1)[:, None]
        centres = torch.where(counts[:, None] > 0, means, centres)
    return centres


def greedy_match(a: torch.Tensor, b: torch.Tensor) -> list[tuple[int, int]]:
    """Pairs (i, j) of rows of ``a`` and ``b``, closest (Euclidean) pair first, each row used once."""
    d = torch.cdist(a.detach().double(), b.detach().double())
    pairs = []
    for _ in range(min(a.shape[0], b.shape[0])):
        flat = int(torch.argmin(d))
        i, j = divmod(flat, d.shape[1])
        pairs.append((i, j))
        d[i, :] = float("inf")
        d[:, j] = float("inf")
    return pairs


def local_structure(ca: torch.Tensor, cb: torch.Tensor) -> torch.Tensor:
    """Mean over centre pairs of (cos - target)^2, target 1 for greedily matched pairs, else 0."""
    target = torch.zeros(ca.shape[0], cb.shape[0], dtype=ca.dtype, device=ca.device)
    for i, j in greedy_match(ca, cb):
        target[i, j] = 1.0
    cos = F.normalize(ca, dim=-1) @ F.normalize(cb, dim=-1).T
    return (cos - target).pow(2).mean()


def _mlp(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.ReLU(), nn.Linear(d_out, d_out))


class DaRec(FallbackModel):
    """SASRec + DaRec's disentangled-alignment terms (training only)."""

    name = "darec"

    def __init__(self, cfg: DaRecModelConfig, num_items: int, llm_item_emb: np.ndarray) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_items = num_items
        self.backbone = DualViewModel(cfg.backbone, num_items)  # SASRec (collaborative view, random IDs)
        if np.shape(llm_item_emb)[0] != num_items:
            raise ValueError(f"LLM item vectors have {np.shape(llm_item_emb)[0]} rows for {num_items} items")
        x = prepare_llm_embeddings(llm_item_emb) if cfg.darec.normalize_llm else np.asarray(llm_item_emb, np.float32)
        self.register_buffer("e_llm", torch.from_numpy(np.ascontiguousarray(x)))  # [N, d_llm], frozen
        d, d_llm = cfg.backbone.hidden, x.shape[1]
        s = cfg.darec.shared_dim or d
        self.c_shared, self.c_specific = _mlp(d, s), _mlp(d, s)
        self.l_shared, self.l_specific = _mlp(d_llm, s), _mlp(d_llm, s)

    def saved_shapes(self) -> dict[str, int]:
        return {"llm_dim": int(self.e_llm.shape[1])}

    def item_tables(self) -> dict[str, torch.Tensor]:
        return self.backbone.item_tables()

    def output_table(self, tables: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        return self.backbone.output_table(tables)

    def user_vectors(self, seqs: torch.Tensor, tables: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        return self.backbone.user_vectors(seqs, tables)

    def alignment(self, items: torch.Tensor) -> dict[str, torch.Tensor]:
        """The six terms on catalog ``items`` (indices)."""
        c = self.backbone.e_co.weight[items + 1]
        llm = self.e_llm[items]
        c_sh, c_sp = self.c_shared(c), self.c_specific(c)
        l_sh, l_sp = self.l_shared(llm), self.l_specific(llm)
        k, iters = min(self.cfg.darec.clusters, len(items)), self.cfg.darec.kmeans_iters
        return {"orth": orthogonality(c_sh, c_sp) + orthogonality(l_sh, l_sp),
                "unif": uniformity(c_sp) + uniformity(l_sp),
                "global": global_structure(c_sh, l_sh),
                "local": local_structure(kmeans(c_sh, k, iters), kmeans(l_sh, k, iters))}

    def loss(self, seqs: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor | None = None,
             teacher: torch.Tensor | None = None,
             ranking: RankingLoss | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        rank, _ = self.backbone.loss(seqs, pos, neg, None, ranking)
        parts = {"rank": float(rank.detach())}
        if self.cfg.darec.lam == 0:
            return rank, parts
        items = torch.randperm(self.num_items)[:self.cfg.darec.sample]  # torch's seeded, checkpointed RNG
        terms = self.alignment(items)
        align = sum(terms.values())
        parts.update({k: float(v.detach()) for k, v in terms.items()})
        return rank + self.cfg.darec.lam * align, parts


def load_darec(config: dict, num_items: int, shapes: dict) -> DaRec:
    cfg = DaRecModelConfig.from_dict(config)
    raw = DaRecModelConfig(cfg.backbone, DaRecConfig(**{**config["darec"], "normalize_llm": False}))
    model = DaRec(raw, num_items, np.zeros((num_items, shapes["llm_dim"]), np.float32))
    model.cfg = cfg
    return model
