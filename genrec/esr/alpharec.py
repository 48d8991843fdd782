"""AlphaRec (Sheng et al., ICLR 2025; SPEC.md §7): collaborative filtering from language vectors alone.

No ID embeddings. A 2-layer MLP (LeakyReLU) maps the frozen LLM item vectors into the
recommendation space; a user's layer-0 vector is the same MLP applied to the mean LLM vector of
the user's training items; LightGCN propagation over the symmetrically normalised user–item graph
of the training split (``layers`` rounds, the final vector the mean of the layer outputs);
scores are cosine similarities, trained with a softmax over them at temperature ``tau``
(InfoNCE).

**Not sequential**: the order of a history does not matter, only its items (with their
multiplicity). It is evaluated under the same leave-one-out protocol as the sequential models:
the validation user's history is the training sequence, the test user's the training sequence plus
the validation item.

Users outside the graph (every serving request, and the test users, whose history holds the
validation item the graph has not seen) are **folded in** (ours): the user vector is computed
from the history exactly as LightGCN computes a training user's, u^0 = MLP(mean LLM vector of
the history), u^(l+1) = sum over history items of e_i^(l) / sqrt(|h| d_i), with d_i the item's
degree in the training graph, and the final vector the mean over layers. For a training user
with its training sequence this *is* the LightGCN output (the trainer relies on it), so training,
evaluation and serving compute one function. (AlphaRec's paper encodes a new user by the MLP of
its mean LLM vector alone, i.e. layer 0 only; the fold-in keeps the graph's layers too.)

Differences from the paper, stated: the ranking loss is the trainer's (``ce`` by default: the
softmax over the whole catalog at temperature ``tau``, InfoNCE with every item as a negative,
instead of the paper's sampled negatives; ``sampled_softmax`` draws negatives, with logQ
correction); batches are users with all their training items as positives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrec.errors import ConfigError
from genrec.esr.family import FallbackModel, pad_left
from genrec.esr.losses import RankingLoss


@dataclass
class AlphaRecConfig:
    """AlphaRec's settings; defaults after the paper (64 dims, 2 graph layers, tau 0.15)."""

    hidden: int = 64  # width of the recommendation space
    mlp_hidden: int = 0  # width of the MLP's hidden layer; 0 = half the LLM vector width
    layers: int = 2  # LightGCN propagation rounds (the final vector is the mean of layers 0..layers)
    tau: float = 0.15  # temperature of the softmax over cosine similarities
    max_len: int = 0  # newest items of a history the model reads; 0 = all (the graph holds all)
    normalize_llm: bool = True  # centre + unit mean norm of the LLM vectors (as LLM-ESR's)

    def __post_init__(self) -> None:
        for name in ("hidden", "layers", "max_len", "mlp_hidden"):
            if getattr(self, name) < (1 if name == "hidden" else 0):
                raise ConfigError(f"alpharec.{name} must be {'positive' if name == 'hidden' else '>= 0'}, "
                                  f"got {getattr(self, name)}")
        if not self.tau > 0:
            raise ConfigError(f"alpharec.tau must be positive, got {self.tau}")

    def to_dict(self) -> dict:
        return asdict(self)


def graph_edges(train: dict[str, list[int]]) -> np.ndarray:
    """[2, E] (user row, item index) per training interaction, users in ``train``'s order."""
    users = [np.full(len(s), u, dtype=np.int64) for u, s in enumerate(train.values())]
    items = [np.asarray(s, dtype=np.int64) for s in train.values()]
    if not users:
        return np.zeros((2, 0), dtype=np.int64)
    return np.stack([np.concatenate(users), np.concatenate(items)])


class AlphaRec(FallbackModel):
    """Language vectors → MLP → LightGCN over the training graph; cosine scores."""

    name = "alpharec"
    sequential = False

    def __init__(self, cfg: AlphaRecConfig, num_items: int, llm_item_emb: np.ndarray, edges: np.ndarray,
                 num_users: int) -> None:
        super().__init__()
        from genrec.esr.llmesr import prepare_llm_embeddings

        self.cfg = cfg
        self.num_items = num_items
        if np.shape(llm_item_emb)[0] != num_items:
            raise ValueError(f"LLM item vectors have {np.shape(llm_item_emb)[0]} rows for {num_items} items")
        x = prepare_llm_embeddings(llm_item_emb) if cfg.normalize_llm else np.asarray(llm_item_emb, np.float32)
        d_llm = x.shape[1]
        table = torch.zeros(num_items + 1, d_llm)
        table[1:] = torch.from_numpy(x)
        self.register_buffer("e_llm", table)  # frozen
        edges = torch.as_tensor(np.asarray(edges, dtype=np.int64)).reshape(2, -1)
        self.num_users = int(num_users)
        self.register_buffer("edges", edges)
        mid = cfg.mlp_hidden or max(1, d_llm // 2)
        self.mlp = nn.Sequential(nn.Linear(d_llm, mid), nn.LeakyReLU(), nn.Linear(mid, cfg.hidden))

    def saved_shapes(self) -> dict[str, int]:
        return {"llm_dim": int(self.e_llm.shape[1]), "num_users": self.num_users, "num_edges": int(self.edges.shape[1])}

    # -- the graph ------------------------------------------------------------------------
    def _degrees(self) -> tuple[torch.Tensor, torch.Tensor]:
        users, items = self.edges
        du = torch.bincount(users, minlength=self.num_users).float()
        di = torch.bincount(items, minlength=self.num_items).float()
        return du, di

    def item_tables(self) -> dict[str, torch.Tensor]:
        """Item vectors of each layer ("l0".."l{L-1}", padded; what a fold-in reads), the final
        L2-normalised mean ("out", padded) and the items' training degrees ("degree", padded)."""
        users, items = self.edges
        du, di = self._degrees()
        shape = (self.num_users, self.num_items)
        w = (du[users].clamp(min=1) * di[items].clamp(min=1)).rsqrt()  # 1/sqrt(d_u d_i) per edge
        norm = torch.sparse_coo_tensor(self.edges, w, shape, check_invariants=False).coalesce()  # duplicates add up: multiplicity
        mean = torch.sparse_coo_tensor(self.edges, 1.0 / du[users].clamp(min=1), shape,
                                       check_invariants=False).coalesce()
        item_l = self.mlp(self.e_llm[1:])
        user_l = self.mlp(torch.sparse.mm(mean, self.e_llm[1:]))  # MLP of each user's mean LLM vector
        layers = [item_l]
        norm_t = norm.t().coalesce()
        for _ in range(self.cfg.layers):
            user_l, item_l = torch.sparse.mm(norm, item_l), torch.sparse.mm(norm_t, user_l)
            layers.append(item_l)
        out = {f"l{k}": F.pad(t, (0, 0, 1, 0)) for k, t in enumerate(layers[:-1])}
        out["out"] = F.pad(F.normalize(torch.stack(layers).mean(0), dim=-1), (0, 0, 1, 0))
        out["degree"] = F.pad(di, (1, 0))
        return out

    def output_table(self, tables: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        tables = tables if tables is not None else self.item_tables()
        return tables["out"][1:]

    def user_vectors(self, seqs: torch.Tensor, tables: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """L2-normalised LightGCN vector of each history, folded into the training graph."""
        tables = tables if tables is not None else self.item_tables()
        real = (seqs > 0).float()
        n = real.sum(1, keepdim=True).clamp(min=1)
        layers = [self.mlp((self.e_llm[seqs] * real[..., None]).sum(1) / n)]
        w = (n * tables["degree"][seqs].clamp(min=1)).rsqrt() * real  # [B, L]
        for k in range(self.cfg.layers):
            layers.append((w[..., None] * tables[f"l{k}"][seqs]).sum(1))
        return F.normalize(torch.stack(layers).mean(0), dim=-1)

    # -- training -------------------------------------------------------------------------
    def train_inputs(self, seqs: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """The whole training sequence is both the input (the user's vector) and the positives."""
        rows = pad_left(seqs, self.cfg.max_len)
        return rows, rows.copy()

    def loss(self, seqs: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor | None = None,
             teacher: torch.Tensor | None = None,
             ranking: RankingLoss | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """The ranking loss over cosine / tau for every (user, training item) pair."""
        if ranking is None:
            raise ValueError("AlphaRec trains with the trainer's ranking loss")
        tables = self.item_tables()
        users = self.user_vectors(seqs, tables) / self.cfg.tau
        states = users[:, None, :].expand(-1, pos.shape[1], -1)
        rank = ranking(states, pos, tables["out"], neg)
        return rank, {"rank": float(rank.detach())}


def load_alpharec(config: dict, num_items: int, shapes: dict) -> AlphaRec:
    """An AlphaRec with zero placeholders of the saved sizes, for loading saved weights into."""
    cfg = AlphaRecConfig(**{**config, "normalize_llm": False})
    model = AlphaRec(cfg, num_items, np.zeros((num_items, shapes["llm_dim"]), np.float32),
                     np.zeros((2, shapes["num_edges"]), np.int64), shapes["num_users"])
    model.cfg = AlphaRecConfig(**config)
    return model
