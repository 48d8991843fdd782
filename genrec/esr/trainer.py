"""One trainer for the fallback family (SASRec, LLM-ESR and its ablations, AlphaRec, DaRec, PAD).

Each model turns a user's training sequence into (inputs, targets) (:meth:`FallbackModel.train_inputs`:
for the sequential models every position predicts the next item; AlphaRec predicts every training
item from the user's vector), under the ranking loss the settings name (:mod:`genrec.esr.losses`:
full softmax by default) plus the model's own terms. Validation ranks the full catalog for each user's
validation target with the training history masked (``genrec.metrics``); training stops when
NDCG@10 has not improved for ``patience`` epochs, and the best weights are kept.

Resumable: after every epoch ``last.pt`` holds model, optimiser, RNG states, epoch and the
early-stopping state (written atomically), so a killed run started again with the same
output folder continues where it stopped.

Deterministic on a given machine: the model is built after :func:`seed_all`, every random draw
(batch order, negatives, dropout) comes from generators seeded by ``seed`` whose states are
saved with each checkpoint, and the thread count is fixed, so two runs with the same settings,
one of them killed and resumed, give the same weights and metrics.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path

import numpy as np
import torch

from genrec.config import fill_missing
from genrec.data.dataset import Example
from genrec.errors import ConfigError
from genrec.esr.family import FallbackModel, pad_left
from genrec.esr.losses import LossConfig, RankingLoss
from genrec.hardware import torch_has_cuda
from genrec.metrics import expected_from_ranks, ranks

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Optimisation settings; defaults are the LLM-ESR reference (lr 1e-3, batch 128)."""

    lr: float = 1e-3  # Adam learning rate
    weight_decay: float = 0.0  # Adam weight decay
    batch_size: int = 128  # users per step
    epochs: int = 200  # at most this many passes over the training users
    patience: int = 10  # epochs without a better validation NDCG@10 before stopping
    eval_every: int = 1  # validate every this many epochs
    eval_batch_size: int = 512  # users per scoring batch in validation
    seed: int = 42  # seeds the initial weights, batch order, negatives and dropout
    threads: int = 2  # torch threads; results are exactly repeatable for a given count
    # Batches of similar-length sequences: faster (less padding; outputs are exact either way) but
    # they change what a step averages over, and cost quality: SASRec-CE on Scientific, seed 42,
    # validation NDCG@10 0.0903 bucketed vs 0.0969 with uniformly random batches (RecBole's and the
    # reference's). Off by default; on for quick probes where speed matters more.
    bucket: bool = False
    # Self-distillation teacher: "epoch" = every user's representation computed once per epoch
    # (eval mode) and averaged over its N similar users; "batch" = the similar users' sequences
    # encoded live in every batch (the reference; ~N times the forward cost).
    teacher_refresh: str = "epoch"
    loss: LossConfig = field(default_factory=LossConfig)  # ranking loss: ce (default) | sampled_softmax | bce
    # Where the model trains: auto = CUDA when torch sees a GPU, else the CPU. Results on another
    # device differ in the last bits; a checkpoint resumes on either.
    device: str = "auto"


def resolve_device(name: str) -> torch.device:
    """``train.device``: auto (CUDA where torch has it, else the CPU), cpu or cuda[:n]."""
    if name == "auto":
        return torch.device("cuda" if torch_has_cuda() else "cpu")
    if name == "cpu":
        return torch.device(name)
    if name.startswith("cuda"):
        if not torch_has_cuda():
            raise ConfigError(f"train.device {name!r}: torch sees no CUDA device here (use auto or cpu)")
        return torch.device(name)
    raise ConfigError(f"train.device must be auto, cpu or cuda[:n], got {name!r}")


def model_device(model: torch.nn.Module) -> torch.device:
    """The device the model's weights are on: batches are built on the CPU and moved there."""
    return next(model.parameters()).device


class ResumeMismatchError(ConfigError, ValueError):
    """``last.pt`` was written by a run with other settings (a one-line error in the scripts)."""


def seed_all(seed: int, threads: int = 0) -> None:
    """Seed every generator a run draws from (and fix torch's threads) before the model is built."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def user_vectors_of(model: FallbackModel, histories: Sequence[Sequence[int]], batch_size: int = 512) -> np.ndarray:
    """[u_se : u_co] of each history (eval mode), batched by similar length."""
    model.eval()
    device = model_device(model)
    tables = model.item_tables()
    out = None
    order = np.argsort([len(h) for h in histories], kind="stable")
    for start in range(0, len(histories), batch_size):
        idx = order[start:start + batch_size]
        seqs = torch.from_numpy(pad_left([histories[i] for i in idx], model.cfg.max_len)).to(device)
        vec = model.user_vectors(seqs, tables)
        if out is None:
            out = np.empty((len(histories), vec.shape[-1]), dtype=np.float32)
        out[idx] = vec.cpu().numpy()
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


@torch.no_grad()
def score_histories(model: FallbackModel, histories: Sequence[Sequence[int]], batch_size: int = 512) -> np.ndarray:
    """Scores [B, N] of every catalog item for each history (catalog indices)."""
    model.eval()
    device = model_device(model)
    tables = model.item_tables()
    table = model.output_table(tables)
    out = np.empty((len(histories), model.num_items), dtype=np.float32)
    order = np.argsort([len(h) for h in histories], kind="stable")  # similar lengths share a batch
    for start in range(0, len(histories), batch_size):
        idx = order[start:start + batch_size]
        seqs = torch.from_numpy(pad_left([histories[i] for i in idx], model.cfg.max_len)).to(device)
        out[idx] = (model.user_vectors(seqs, tables) @ table.T).cpu().numpy()
    return out


def evaluate(model_or_scores, examples: Sequence[Example], batch_size: int = 512,
             mask_history: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(optimistic, pessimistic) full-catalog ranks of each example's target."""
    histories = [list(e.history) for e in examples]
    targets = np.asarray([e.target for e in examples], dtype=np.int64)
    opt = np.empty(len(examples), dtype=np.int64)
    pes = np.empty(len(examples), dtype=np.int64)
    for start in range(0, len(examples), 4096):  # bounded memory: 4096 x N floats at a time
        part = slice(start, start + 4096)
        if callable(getattr(model_or_scores, "score_batch", None)):
            scores = model_or_scores.score_batch(histories[part])
        else:
            scores = score_histories(model_or_scores, histories[part], batch_size)
        opt[part], pes[part] = ranks(scores, targets[part], histories[part] if mask_history else None)
    return opt, pes


def _train_settings(cfg: TrainConfig) -> dict:
    """The training settings a checkpoint must share with the run resuming it."""
    return {k: asdict(v) if is_dataclass(v) else v for k, v in cfg.__dict__.items()
            if k not in ("epochs", "patience", "eval_batch_size", "threads", "device")}


class Trainer:
    """Trains a :class:`FallbackModel` on training sequences; keeps the best by validation NDCG@10."""

    def __init__(self, model: FallbackModel, train: dict[str, list[int]], valid: Sequence[Example],
                 cfg: TrainConfig, out_dir: str | os.PathLike, similar: dict[str, list[str]] | None = None) -> None:
        self.model = model
        self.device = model_device(model)  # the caller places the model (genrec.esr.pipeline: train.device)
        self.cfg = cfg
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.valid = list(valid)
        self.users = [u for u, s in train.items() if len(s) >= 2]
        self.train = train
        self.similar = similar
        if getattr(model.cfg, "distill", False) and similar is None:
            raise ValueError("self-distillation is on but no similar-user lists were given")
        self.opt = torch.optim.Adam(model.param_groups(cfg.lr), lr=cfg.lr, betas=(0.9, 0.98),
                                    weight_decay=cfg.weight_decay)
        self.history: list[dict] = []
        if cfg.teacher_refresh not in ("epoch", "batch"):
            raise ValueError(f"teacher_refresh must be 'epoch' or 'batch', got {cfg.teacher_refresh!r}")
        self._row = {u: i for i, u in enumerate(train)}
        lengths = [len(train[u]) for u in self.users]
        self._lengths = np.minimum(lengths, model.cfg.max_len + 1) if model.cfg.max_len else np.asarray(lengths)
        self._snapshot: torch.Tensor | None = None
        counts = np.zeros(model.num_items, dtype=np.int64)
        for u in self.users:
            np.add.at(counts, np.asarray(train[u], dtype=np.int64), 1)
        self.ranking = RankingLoss(cfg.loss, model.num_items, counts)

    # -- batches ------------------------------------------------------------------------
    def _batch(self, users: Sequence[str], rng: np.random.Generator):
        max_len = self.model.cfg.max_len
        seqs = [self.train[u] for u in users]
        inp, pos = self.model.train_inputs(seqs)
        full = pad_left(seqs, max_len + 1 if max_len else 0)
        neg = self.ranking.sample(pos, full, rng)
        teacher = None
        if self.model.distills:
            n = self.model.cfg.n_similar
            if self._snapshot is not None:
                rows = torch.as_tensor([self._row[v] for u in users for v in self.similar[u][:n]],
                                       device=self._snapshot.device)
                teacher = self._snapshot[rows].view(len(users), n, -1).mean(1)
            else:
                sims = [self.train[v] for u in users for v in self.similar[u][:n]]
                teacher = torch.from_numpy(pad_left(sims, max_len))
        device = self.device
        return (torch.from_numpy(inp).to(device), torch.from_numpy(pos).to(device),
                None if neg is None else torch.from_numpy(neg).to(device),
                None if teacher is None else teacher.to(device))

    def _refresh_teacher(self) -> None:
        """Every training user's current [u_se : u_co] (eval mode, no gradient), for the epoch's teachers."""
        self._snapshot = None
        if not self.model.distills or self.cfg.teacher_refresh != "epoch":
            return
        users = list(self._row)
        with torch.no_grad():
            vecs = user_vectors_of(self.model, [self.train[u] for u in users], self.cfg.eval_batch_size)
        self._snapshot = torch.from_numpy(vecs).to(self.device)
        self.model.train()

    def _batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        n, bs = len(self.users), self.cfg.batch_size
        if not self.cfg.bucket:
            order = rng.permutation(n)
        else:  # sort by length (random among equals), cut into batches, shuffle the batches
            order = np.lexsort((rng.random(n), self._lengths))
        batches = [order[i:i + bs] for i in range(0, n, bs)]
        if self.cfg.bucket:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    # -- state --------------------------------------------------------------------------
    def _state(self, epoch: int, best: float, best_epoch: int, bad: int, rng: np.random.Generator) -> dict:
        return {"settings": self._settings(), "model": self.model.state_dict(), "optim": self.opt.state_dict(),
                "epoch": epoch, "best": best, "best_epoch": best_epoch, "bad": bad, "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(), "history": self.history,
                "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None}

    def _settings(self) -> dict:
        """What must match for a checkpoint to be resumed (epochs and patience may grow)."""
        return {"model": self.model.cfg.to_dict(), "train": _train_settings(self.cfg),
                "num_items": self.model.num_items, "users": len(self.users)}

    def _saved_settings(self, saved: dict | None) -> dict | None:
        """A checkpoint's settings with every setting added to genrec since it was saved at its
        default: a new setting's default is the behaviour before it existed, so a run started
        by an older genrec resumes under a newer one."""
        defaults = {"model": type(self.model.cfg)().to_dict(), "train": _train_settings(type(self.cfg)())}
        return fill_missing(saved, defaults)

    def validate(self) -> dict[str, float]:
        """Validation metrics under random tie-breaking (exact; equal to the optimistic ones when
        no score ties the target, as with continuous model scores)."""
        opt, pes = evaluate(self.model, self.valid, self.cfg.eval_batch_size)
        return expected_from_ranks(opt, pes)

    def fit(self) -> dict:
        """Train to early stop (or ``epochs``); load the best weights into the model; return a summary."""
        cfg = self.cfg
        seed_all(cfg.seed, cfg.threads)
        rng = np.random.default_rng(cfg.seed)
        start_epoch, best, best_epoch, bad = 0, -1.0, -1, 0
        last, best_path = self.out / "last.pt", self.out / "best.pt"
        if last.exists():
            state = torch.load(last, weights_only=False, map_location="cpu")  # copied onto the model's device
            if self._saved_settings(state.get("settings")) != self._settings():
                raise ResumeMismatchError(f"{last}: checkpoint of a run with other settings; use another output folder "
                                 f"or delete it (saved: {state.get('settings')}, now: {self._settings()})")
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optim"])
            start_epoch, best, best_epoch, bad = state["epoch"] + 1, state["best"], state["best_epoch"], state["bad"]
            rng.bit_generator.state = state["rng"]
            torch.set_rng_state(state["torch_rng"])
            if self.device.type == "cuda" and state.get("cuda_rng") is not None:  # dropout draws there on a GPU
                torch.cuda.set_rng_state_all(state["cuda_rng"])
            self.history = state["history"]
            log.info("resumed from %s at epoch %d (best NDCG@10 %.4f at epoch %d)", last, start_epoch, best, best_epoch)
        from genrec import console

        bar = console.progress(total=cfg.epochs, initial=min(start_epoch, cfg.epochs), desc="training", unit="epoch")
        for epoch in range(start_epoch, cfg.epochs):
            if bad >= cfg.patience:
                break
            self.model.train()
            t0 = time.perf_counter()
            self._refresh_teacher()
            sums = {"loss": 0.0}  # then the model's parts, in its order (LLM-ESR: rank, distill)
            steps = 0
            for batch in self._batches(rng):
                users = [self.users[i] for i in batch]
                inp, pos, neg, teacher = self._batch(users, rng)
                loss, parts = self.model.loss(inp, pos, neg, teacher, self.ranking)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                sums["loss"] += float(loss.detach())
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
                steps += 1
            train_s = time.perf_counter() - t0
            row = {"epoch": epoch, "train_s": round(train_s, 2), **{k: v / max(steps, 1) for k, v in sums.items()}}
            if (epoch + 1) % cfg.eval_every == 0:
                t1 = time.perf_counter()
                metrics = self.validate()
                row.update({f"valid_{k}": v for k, v in metrics.items()}, eval_s=round(time.perf_counter() - t1, 2))
                if metrics["ndcg@10"] > best:
                    best, best_epoch, bad = metrics["ndcg@10"], epoch, 0
                    _atomic_save({"model": self.model.state_dict(), "epoch": epoch, "valid": metrics}, best_path)
                else:
                    bad += 1
            self.history.append(row)
            parts = ", ".join(f"{k} {row[k]:.4f}" for k in sums if k != "loss")
            log.info("epoch %d: loss %.4f (%s) %.1fs/epoch, valid NDCG@10 %.4f (best %.4f @%d)",
                     epoch, row["loss"], parts, train_s,
                     row.get("valid_ndcg@10", float("nan")), best, best_epoch)
            _atomic_save(self._state(epoch, best, best_epoch, bad, rng), last)
            bar.set_postfix_str(f"valid NDCG@10 {best:.4f} @{best_epoch}", refresh=False)
            bar.update(1)  # draws the postfix of this epoch
        bar.close()
        if best_path.exists():
            self.model.load_state_dict(torch.load(best_path, weights_only=False, map_location="cpu")["model"])
        secs = [r["train_s"] for r in self.history]
        summary = {"loss": self.ranking.kind, "best_epoch": best_epoch, "best_valid_ndcg@10": best, "epochs_run": len(self.history),
                   "seconds_per_epoch": float(np.mean(secs)) if secs else 0.0, "history": self.history}
        (self.out / "train_log.json").write_text(json.dumps(summary, indent=1))
        return summary
