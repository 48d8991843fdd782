"""Training and scoring a fallback model under the cold-item protocol (:mod:`genrec.data.cold_split`).

Two things make "training never sees a cold item" hold beyond the split itself:

* :class:`WarmOnlyRanking`: the full-softmax loss is taken over the warm items only. Otherwise
  every cold item would be a negative of every training step: its ID row would be trained (pushed
  down) and a text model's adapter would learn to score its text low, which a catalog that adds
  items later cannot have done.
* :func:`fill_cold_rows`: after training, each cold item's ID row (untrained, a random
  initialisation) is replaced by the shared unseen-item row of :mod:`genrec.esr.cold_items` —
  the mean of the trained (warm) ID rows — so no random row ever scores. What a model reads of a
  cold item's text is kept: LLM-ESR's semantic view (its adapter over the item's text vector,
  the treatment of :func:`genrec.esr.cold_items.cold_output_rows`), PAD's text expert, its aligned
  expert (recomputed from the text row and the shared ID row) and its frequency gate (count 0),
  AlphaRec's MLP over the text (no graph edge, no ID row: nothing to replace), UniSRec's adapter
  over the text (inductive: no ID row). SASRec has only the
  ID row, so every cold item gets the same shared embedding (Recformer's treatment).
  ``id_rows=text`` maps a cold item's text to an ID row after training instead (a ridge fit on the
  warm items' rows); ``id_rows=learned`` uses the map an LLM-ESR trained with item-ID dropout
  learned for exactly this (:mod:`genrec.esr.llmesr`).

The filled rows are in the saved scorer, so serving and every later reading use the same treatment.
"""

from __future__ import annotations

import numpy as np
import torch

from genrec.errors import ConfigError
from genrec.esr.cold_items import unseen_row
from genrec.esr.family import FallbackModel
from genrec.esr.losses import RankingLoss

# model name -> the attribute path of its ID embedding table (padded, row i+1 = catalog item i)
ID_TABLES: dict[str, str | None] = {"sasrec": "e_co", "llmesr": "e_co", "darec": "backbone.e_co",
                                    "pad": "e_id", "alpharec": None, "unisrec": "e_id"}


def _warm_rows(num_items: int, cold: np.ndarray) -> torch.Tensor:
    """Padded table rows of the warm items, padding row 0 first."""
    keep = np.ones(num_items + 1, dtype=bool)
    keep[np.asarray(cold, dtype=np.int64) + 1] = False
    return torch.from_numpy(np.flatnonzero(keep))


class WarmOnlyRanking:
    """A :class:`~genrec.esr.losses.RankingLoss` (full-softmax CE) over the warm items' rows only."""

    def __init__(self, inner: RankingLoss, num_items: int, cold: np.ndarray) -> None:
        if inner.kind != "ce":
            raise ConfigError(f"the cold-item protocol trains with train.loss.kind=ce; got {inner.kind!r}")
        self.inner = inner
        self.keep = _warm_rows(num_items, cold)
        self.remap = torch.full((num_items + 1,), -1, dtype=torch.long)
        self.remap[self.keep] = torch.arange(len(self.keep))

    @property
    def kind(self) -> str:
        return self.inner.kind

    def sample(self, pos: np.ndarray, seqs_full: np.ndarray, rng: np.random.Generator) -> None:
        return self.inner.sample(pos, seqs_full, rng)

    def __call__(self, states: torch.Tensor, pos: torch.Tensor, table: torch.Tensor,
                 neg: torch.Tensor | None = None) -> torch.Tensor:
        rows = self.remap.to(pos.device)[pos]
        if bool((rows < 0).any()):
            raise ValueError("a cold item is a training target: the split did not remove it")
        return self.inner(states, rows, table[self.keep.to(table.device)], neg)


def _attr(model: FallbackModel, path: str):
    obj = model
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def id_table_name(model: FallbackModel) -> str | None:
    """The model's ID table attribute (None: it has none); an error for a model not covered."""
    if model.name not in ID_TABLES:
        raise ConfigError(f"the cold-item protocol does not cover model {model.name!r} yet; "
                          f"covered: {', '.join(ID_TABLES)}")
    name = ID_TABLES[model.name]
    if name is not None and not hasattr(model, name.split(".")[0]):
        return None  # configured without ID rows (LLM-ESR's semantic view alone, inductive UniSRec)
    return name


def model_text(model: FallbackModel) -> np.ndarray | None:
    """The item text vectors [N, d] the model holds (its frozen, prepared LLM table), or None."""
    for name in ("e_se", "e_llm"):
        table = getattr(model, name, None)
        if table is not None:
            rows = table.detach().float().numpy()
            return rows[1:] if len(rows) == model.num_items + 1 else rows
    return None


def text_mapped_rows(text: np.ndarray, rows: np.ndarray, warm: np.ndarray, cold: np.ndarray,
                     ridge: float = 0.1) -> np.ndarray:
    """ID rows of ``cold`` items predicted from their text by a ridge regression fitted on the warm
    items' (text, trained ID row) pairs; ``ridge`` is relative to the mean eigenvalue of X'X."""
    x = np.asarray(text, dtype=np.float64)
    y = np.asarray(rows, dtype=np.float64)
    mx, my = x[warm].mean(0), y[warm].mean(0)
    xw = x[warm] - mx
    gram = xw.T @ xw
    lam = ridge * np.trace(gram) / len(gram)
    w = np.linalg.solve(gram + lam * np.eye(len(gram)), xw.T @ (y[warm] - my))
    return ((x[cold] - mx) @ w + my).astype(np.float32)


@torch.no_grad()
def fill_cold_rows(model: FallbackModel, cold: np.ndarray, how: str = "mean") -> int:
    """Write each cold item's ID row: ``mean``, the shared unseen row (mean of the warm items'
    trained rows); ``text``, a row mapped from the item's text (:func:`text_mapped_rows`) for a
    model that holds item text. Warm rows are untouched, so filling again with another ``how``
    gives that treatment exactly; ``learned``, the rows of the text-to-ID map the model trained with
    item-ID dropout (``esr.id_dropout``). Returns how many rows were written (0 without ID rows)."""
    name = id_table_name(model)
    if name is None or not len(cold):
        return 0
    weight = _attr(model, name).weight
    cold = np.asarray(cold, dtype=np.int64)
    warm_rows = _warm_rows(model.num_items, cold)
    if how == "mean":
        weight[torch.as_tensor(cold + 1)] = unseen_row(weight[warm_rows])
    elif how == "text":
        text = model_text(model)
        if text is None:
            raise ConfigError(f"cold.id_rows=text needs a model that reads item text; {model.name} does not")
        warm = warm_rows[1:].numpy() - 1
        mapped = text_mapped_rows(text, weight[1:].float().numpy(), warm, cold)
        weight[torch.as_tensor(cold + 1)] = torch.from_numpy(mapped).to(weight.dtype)
    elif how == "learned":
        if not hasattr(model, "co_from_text"):  # only LLM-ESR (both views) trains one
            raise ConfigError(f"cold.id_rows=learned needs a model trained with item-ID dropout (esr.id_dropout > 0); "
                              f"this {model.name} has no text-to-ID map")
        rows = torch.as_tensor(cold + 1)
        weight[rows] = model.mapped_id_rows(model.e_se[rows]).to(weight.dtype)
    else:
        raise ConfigError(f"cold.id_rows must be one of mean, text, learned, got {how!r}")
    return len(cold)


def _mean(values: list[float]) -> float:
    return round(float(np.mean(values)), 6)


def cold_ledger_keys(results: list[dict]) -> dict:
    """The ledger keys of runs under the protocol (one results dict per seed; empty without it):
    ``<metric>_cold`` / ``<metric>_warm`` — the expected value under random tie-breaking, mean over
    seeds — with ``_opt`` and ``_pes`` beside them, ``_ci95`` (the mean over seeds of each run's 95%
    half-width over its events), ``_std`` over seeds for NDCG@10, and ``n_cold`` / ``n_warm``
    (test events; a list when the seeds' cold sets give different counts)."""
    groups = [r.get("test_groups") for r in results]
    if not groups or any(g is None for g in groups):
        return {}
    out: dict = {}
    for name in ("cold", "warm"):
        for metric in ("ndcg@10", "recall@10"):
            key = f"{metric}_{name}"
            out[key] = _mean([g[name]["exp"][metric] for g in groups])
            out[f"{key}_opt"] = _mean([g[name]["opt"][metric] for g in groups])
            out[f"{key}_pes"] = _mean([g[name]["pes"][metric] for g in groups])
            out[f"{key}_ci95"] = _mean([g[name]["exp_ci95"][metric] for g in groups])
        if len(groups) > 1:
            out[f"ndcg@10_{name}_std"] = round(float(np.std([g[name]["exp"]["ndcg@10"] for g in groups], ddof=1)), 6)
            out[f"per_seed_ndcg@10_{name}"] = [round(g[name]["exp"]["ndcg@10"], 6) for g in groups]
        counts = sorted({int(g[name]["n"]) for g in groups})
        out[f"n_{name}"] = counts[0] if len(counts) == 1 else [int(g[name]["n"]) for g in groups]
    out["cold_items"] = [int(r["cold"]["items"]) for r in results][0]
    out["cold_fraction"] = results[0]["cold"]["fraction"]
    out["cold_seeds"] = [int(r["cold"]["seed"]) for r in results]
    return out
