"""Train and test one fallback model (SASRec, LLM-ESR, AlphaRec, DaRec, PAD or popularity) on a dataset's split.

The logic behind ``finetune/train_esr.py`` and the main job's fallback step: leave-one-out
split, cached LLM embeddings, early-stopped training, a servable scorer saved to
``<output_dir>/scorer``, and test metrics (full ranking, overall and head/tail) in
``<output_dir>/results.json``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genrec.cache import cache_dir
from genrec.config import to_dict
from genrec.data.cold_split import ColdConfig, cold_split, cold_targets, held_out_items, remove_cold
from genrec.data.groups import head_items, head_users
from genrec.data.mixed import mix_datasets
from genrec.data.preprocess import leave_one_out
from genrec.data.source import DatasetSource
from genrec.errors import ConfigError
from genrec.esr.alpharec import AlphaRecConfig
from genrec.esr.cold_items import ItemTextEncoder
from genrec.esr.cold_protocol import WarmOnlyRanking, fill_cold_rows
from genrec.esr.darec import DaRecConfig
from genrec.esr.embeddings import (
    EncoderConfig,
    item_embeddings,
    make_encoder,
    postprocess,
    user_embeddings,
    user_embeddings_from_items,
)
from genrec.esr.hllm import HLLMConfig
from genrec.esr.index import similar_users
from genrec.esr.llmesr import ESRConfig
from genrec.esr.new_item_scores import (
    PAIRS,
    WEIGHTS,
    NewItemScorer,
    best_weight,
    choose_weight,
    weight_values,
)
from genrec.esr.pad import PADConfig
from genrec.esr.registry import entry
from genrec.esr.scorer import FallbackScorer, PopularityScorer
from genrec.esr.text_knn import TextKNNConfig, TextKNNScorer
from genrec.esr.trainer import TrainConfig, Trainer, evaluate, resolve_device, seed_all
from genrec.esr.unisrec import UniSRecConfig
from genrec.esr.zero_shot import TransferConfig, check_transferable, transfer
from genrec.metrics import evaluate_parts, evaluate_ranking
from genrec.run_record import run_record

log = logging.getLogger(__name__)


@dataclass
class FallbackSettings:
    dataset: DatasetSource = field(default_factory=lambda: DatasetSource(format="demo", name="electronics"))
    model: str = "llmesr"  # sasrec | llmesr | alpharec | darec | pad | hllm | unisrec | popularity | textknn (genrec.esr.registry)
    esr: ESRConfig = field(default_factory=ESRConfig)  # LLM-ESR's architecture; its backbone part is SASRec's, DaRec's and PAD's
    alpharec: AlphaRecConfig = field(default_factory=AlphaRecConfig)  # AlphaRec's settings (model=alpharec)
    darec: DaRecConfig = field(default_factory=DaRecConfig)  # DaRec's alignment terms (model=darec)
    pad: PADConfig = field(default_factory=PADConfig)  # PAD's MMD and gate (model=pad)
    hllm: HLLMConfig = field(default_factory=HLLMConfig)  # item tower and LLM user model (model=hllm)
    unisrec: UniSRecConfig = field(default_factory=UniSRecConfig)  # MoE text adapter, inductive or transductive (model=unisrec)
    textknn: TextKNNConfig = field(default_factory=TextKNNConfig)  # the text-kNN baseline's query (model=textknn)
    train: TrainConfig = field(default_factory=TrainConfig)  # optimisation, ranking loss, early stopping
    encoder: EncoderConfig = field(default_factory=EncoderConfig)  # item (and user) text encoder
    user_embeddings: str = "prompt"  # prompt (LLM-ESR user prompt) | item_mean (mean of training-item vectors)
    cache: str = ""  # embedding cache folder; default <genrec cache>/esr/<dataset>-<catalog fingerprint>
    output_dir: str = "runs/esr"
    mask_history: bool = True  # history items excluded from the ranking (stated in every report)
    cold: ColdConfig = field(default_factory=ColdConfig)  # cold-item protocol (genrec.data.cold_split); off at 0
    transfer: TransferConfig = field(default_factory=TransferConfig)  # zero-shot: train on other shops (genrec.esr.zero_shot)


UNTRAINED = ("popularity", "textknn")  # no model of the registry: nothing to train


def load_scorer(cfg: FallbackSettings, directory: Path, catalog) -> FallbackScorer | PopularityScorer | TextKNNScorer:
    """The scorer a finished run saved in ``directory``."""
    if cfg.model == "popularity":
        return PopularityScorer.load(directory)
    if NewItemScorer.saved_in(directory):
        return NewItemScorer.load(directory, catalog)
    if cfg.model == "textknn":
        return TextKNNScorer.load(directory)
    return FallbackScorer.load(directory, catalog)


def cold_reports(opt, pes, examples, cold, train: dict[str, list[int]], n_items: int) -> dict:
    """``{"cold": report, "warm": report}`` of the test events by their target (cold-item protocol):
    each the ``overall`` group of :func:`~genrec.metrics.evaluate_ranking` on those events (n,
    expected / optimistic / pessimistic means and 95% half-widths)."""
    flags = cold_targets(examples, cold)
    return evaluate_parts(opt, pes, [e.user for e in examples], [e.target for e in examples],
                          {"cold": flags, "warm": ~flags}, head_users(train), head_items(train, n_items))


def train_and_test(cfg: FallbackSettings) -> dict:
    """Train ``cfg.model``, save its scorer, test it; returns the results dict (also written).

    ``<output_dir>/run.json`` records the settings, code version, data fingerprint and times.
    """
    if cfg.model not in UNTRAINED:
        entry(cfg.model)  # a ConfigError naming the known models
    elif cfg.transfer.enabled:
        raise ConfigError(f"model={cfg.model} trains nothing to transfer: run it on the tested shop itself "
                          "(without transfer.sources)")
    if cfg.cold.scores != "raw" and (not cfg.cold.enabled or cfg.model in UNTRAINED):
        raise ConfigError(f"cold.scores={cfg.cold.scores} scores new items beside a trained model's: it needs "
                          "cold.fraction > 0 and a trained model")
    if cfg.cold.enabled and cfg.cold.id_rows == "learned" and (cfg.model != "llmesr" or cfg.esr.id_dropout <= 0):
        raise ConfigError("cold.id_rows=learned reads the text-to-ID map that item-ID dropout trains: it needs "
                          f"model=llmesr and esr.id_dropout > 0 (got model={cfg.model}, esr.id_dropout={cfg.esr.id_dropout})")
    if cfg.transfer.enabled and cfg.cold.enabled:
        raise ConfigError("transfer.sources (zero-shot) and cold.fraction (cold items) are separate protocols; set one")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with run_record(out, cfg, [*cfg.transfer.sources, cfg.dataset], {"train.seed": cfg.train.seed}) as rec:
        result = _train_and_test(cfg, out)
        rec.extra.update(test_ndcg10=result["test"]["overall"]["opt"]["ndcg@10"])
    result["run_record"] = str(out / "run.json")
    (out / "results.json").write_text(json.dumps(result, indent=1))
    return result


def _cache(cfg: FallbackSettings, ds) -> Path:
    return Path(cfg.cache) if cfg.cache else cache_dir() / "esr" / f"{ds.name}-{ds.catalog.fingerprint()}"


def _text_vectors(cfg: FallbackSettings, shops: list, encoder) -> np.ndarray:
    """The cached text vectors of each shop's items, concatenated in the shops' order (one shop:
    its own; several: the rows of :func:`~genrec.data.mixed.mix_datasets`'s catalog)."""
    return np.concatenate([item_embeddings(shop.catalog, encoder, _cache(cfg, shop)) for shop in shops])


@dataclass
class Fitted:
    """A trained model of the registry and what was read to train it."""
    model: object  # genrec.esr.base.FallbackModel, on the CPU, cold rows filled
    summary: dict  # encoding and training times, the trainer's summary
    item_vecs: np.ndarray | None = None  # the prepared item vectors the model read (None: it reads no text)
    raw_item_vecs: np.ndarray | None = None  # the same before postprocessing
    encoder: object = None  # the text encoder (None: no text read)


def _fit_model(cfg: FallbackSettings, ds, split, cold: np.ndarray, sources: list, checkpoints: Path) -> Fitted:
    """Build ``cfg.model`` and train it on ``split`` (early stopped, resumable from
    ``checkpoints``) with the items of ``cold`` out of the loss; their ID rows are filled after
    (``cfg.cold.id_rows``). ``sources``: the shops ``ds`` mixes for zero-shot transfer (empty:
    ``ds`` is the tested shop), whose item texts it reads and to which the model must not be tied."""
    spec = entry(cfg.model)
    summary: dict = {}
    item_vecs = raw_item_vecs = encoder = similar = None
    if spec.needs_llm(cfg):
        encoder = make_encoder(cfg.encoder)
        t_emb = time.perf_counter()
        item_vecs = raw_item_vecs = _text_vectors(cfg, sources or [ds], encoder)
        summary["item_embedding_s"] = round(time.perf_counter() - t_emb, 1)
        if getattr(encoder, "tokens", 0):  # 0 on a cache hit
            summary["item_encoding"] = {"texts": encoder.calls, "tokens": encoder.tokens,
                                        "seconds": round(encoder.seconds, 1),
                                        "tokens_per_s": round(encoder.tokens / max(encoder.seconds, 1e-9), 1)}
        item_vecs = postprocess(item_vecs, cfg.encoder.postprocess, cfg.encoder.dims)
        if cfg.model == "llmesr" and cfg.esr.distill:
            t_emb = time.perf_counter()
            if cfg.user_embeddings == "prompt":
                users, user_vecs = user_embeddings(ds.catalog, split.train, encoder, _cache(cfg, ds))
            elif cfg.user_embeddings == "item_mean":
                users, user_vecs = user_embeddings_from_items(split.train, item_vecs)
            else:
                raise ConfigError(f"user_embeddings must be prompt or item_mean, got {cfg.user_embeddings!r}")
            nn = similar_users(user_vecs, cfg.esr.n_similar)
            similar = {u: [users[j] for j in row] for u, row in zip(users, nn)}
            summary["user_embedding_s"] = round(time.perf_counter() - t_emb, 1)
    n_items = len(ds.catalog)
    seed_all(cfg.train.seed, cfg.train.threads)  # the initial weights are part of a seeded run
    model = spec.build(cfg, n_items, item_vecs, split.train, ds.catalog)
    if sources:
        check_transferable(model)  # before any training: a model with ID rows cannot move
    log.info("%s: %d trainable parameters", cfg.model, sum(p.numel() for p in model.parameters() if p.requires_grad))
    device = resolve_device(cfg.train.device)
    trainer = Trainer(model.to(device), split.train, split.valid, cfg.train, checkpoints, similar)
    if len(cold):  # the loss never sees a cold item, not even as a negative (genrec.esr.cold_protocol)
        trainer.ranking = WarmOnlyRanking(trainer.ranking, n_items, cold)
    fit = trainer.fit()
    model.cpu()  # what follows (cold rows, transfer, the saved scorer) reads the weights as numpy
    summary["device"] = str(device)
    summary.update({k: v for k, v in fit.items() if k != "history"})
    if len(cold):  # no untrained random ID row ever scores (genrec.esr.cold_protocol)
        summary["cold_rows_filled"] = fill_cold_rows(model, cold, cfg.cold.id_rows)
    return Fitted(model, summary, item_vecs, raw_item_vecs, encoder)


def _train_and_test(cfg: FallbackSettings, out: Path) -> dict:
    target = cfg.dataset.load()
    sources = [s.load() for s in cfg.transfer.sources]
    ds = mix_datasets(sources) if sources else target  # what the model is trained on
    split, cold = cold_split(ds, cfg.cold)
    if sources:
        log.info("zero-shot: trained on %s, tested on %s", ds.name, target.name)
    log.info("%s; %d validation and %d test users", ds.stats_line(), len(split.valid), len(split.test))
    if len(cold):
        log.info("cold-item protocol: %d cold items (fraction %s, seed %d) out of training and validation",
                 len(cold), cfg.cold.fraction, cfg.cold.seed)
    n_items = len(ds.catalog)
    summary: dict = {}
    t0 = time.perf_counter()
    sequential = False  # popularity and AlphaRec ignore the order of a history
    if cfg.model == "popularity":
        scorer = PopularityScorer.from_training(split.train, n_items)
        scorer.save(out / "scorer")
    elif cfg.model == "textknn":
        encoder = make_encoder(cfg.encoder)
        vecs = postprocess(_text_vectors(cfg, [ds], encoder), cfg.encoder.postprocess, cfg.encoder.dims)
        scorer = TextKNNScorer(vecs, cfg.textknn.query)
        scorer.save(out / "scorer")
        sequential = cfg.textknn.query != "mean"
    else:
        fitted = _fit_model(cfg, ds, split, cold, sources, out / "checkpoints")
        model, item_vecs, raw_item_vecs, encoder = fitted.model, fitted.item_vecs, fitted.raw_item_vecs, fitted.encoder
        sequential = model.sequential
        summary.update(fitted.summary)
        if sources:  # the trained model, over the tested shop's item texts (genrec.esr.zero_shot)
            raw_item_vecs = _text_vectors(cfg, [target], encoder)
            transfer(model, postprocess(raw_item_vecs, cfg.encoder.postprocess, cfg.encoder.dims))
            summary["transfer"] = {"trained_on": ds.name, "train_users": len(split.train),
                                   "train_items": len(ds.catalog), "valid_examples": len(split.valid)}
            ds, split = target, leave_one_out(target)
        scorer = FallbackScorer(model, meta={"model": cfg.model, "loss": cfg.train.loss.kind, "dataset": ds.name,
                                             "sequential": model.sequential,
                                             "catalog_fingerprint": ds.catalog.fingerprint()})
        scorer = _new_item_scores(cfg, ds, split, cold, scorer, summary, out, item_vecs)
        scorer.save(out / "scorer")
        e_se = getattr(model, "e_se", None)
        if e_se is not None:  # how a new item's text reaches the model's semantic view (genrec.esr.cold_items)
            ItemTextEncoder(to_dict(cfg.encoder), "esr_item",
                            *ItemTextEncoder.fit(raw_item_vecs, e_se[1:].detach().numpy())).save(out / "scorer")
    summary["train_total_s"] = round(time.perf_counter() - t0, 1)
    return _test_result(cfg, ds, split, cold, scorer, summary, sequential, out)


def _new_item_scores(cfg: FallbackSettings, ds, split, cold, scorer: FallbackScorer, summary: dict, out: Path,
                     text: np.ndarray | None = None):
    """``scorer`` with the cold items scored as their own source (``cold.scores``;
    :mod:`genrec.esr.new_item_scores`), text-kNN's weight chosen on the validation split
    (``cold.weight_on``); the choice goes into ``summary``. ``raw``: the scorer itself. ``text``:
    the catalog's prepared item vectors where the caller holds them (else read from the cache)."""
    if cfg.cold.scores == "raw":
        return scorer
    knn = None
    if cfg.cold.scores == "text_fused":
        if text is None:
            text = postprocess(_text_vectors(cfg, [ds], make_encoder(cfg.encoder)), cfg.encoder.postprocess,
                               cfg.encoder.dims)
        knn = TextKNNScorer(text, "last")
    fused = NewItemScorer(scorer, cold, cfg.cold.scores, knn, 0.0, meta={"chosen_on": cfg.cold.weight_on})
    if knn is None:
        return fused
    grid = PAIRS if cfg.cold.text_weights == "per_group" else WEIGHTS
    if cfg.cold.weight_on == "held_out":
        choice = _held_out_weight(cfg, ds, split, cold, knn, grid, out / "held_out")
    else:
        hist = [list(e.history) for e in split.valid]
        w, values = choose_weight(scorer.score_batch(hist), knn.score_batch(hist), fused.new, hist,
                                  [e.target for e in split.valid], grid)
        choice = {"text_weight": w, "valid_ndcg10_by_text_weight": values}
    w = choice["text_weight"]
    fused.weight, fused.weight_new = (float(w[0]), float(w[1])) if isinstance(w, (list, tuple)) else (float(w), None)
    summary.update(choice, text_weight_chosen_on=cfg.cold.weight_on)
    log.info("new-item scores: text-kNN weight %s (new items: %s) chosen on %s", fused.weight,
             "the same" if fused.weight_new is None else fused.weight_new, cfg.cold.weight_on)
    return fused


def _held_out_weight(cfg: FallbackSettings, ds, split, cold: np.ndarray, knn: TextKNNScorer, grid, out: Path) -> dict:
    """text-kNN's weight chosen where new items are targets (``cold.weight_on=held_out``,
    :func:`~genrec.data.cold_split.held_out_items`): a second model, trained as the first but
    without the held-out items too, ranks the validation split with the cold and the held-out
    items as its new items; w is the best of the grid over all validation events, as the test
    split mixes cold and warm targets. Written to ``out/weight.json``, which a rerun reads."""
    done = out / "weight.json"
    if done.exists():
        return json.loads(done.read_text())
    held = held_out_items(len(ds.catalog), cold, cfg.cold)
    new = np.union1d(cold, held)
    log.info("new-item weight: training a second %s without %d held-out items too", cfg.model, len(held))
    fitted = _fit_model(cfg, ds, remove_cold(split, held), new, [], out / "checkpoints")
    hist = [list(e.history) for e in split.valid]
    targets = [e.target for e in split.valid]
    mask = np.zeros(len(ds.catalog), dtype=bool)
    mask[new] = True
    on_held = cold_targets(split.valid, held)
    values = weight_values(FallbackScorer(fitted.model).score_batch(hist), knn.score_batch(hist), mask, hist, targets,
                           grid, groups={"held_out": on_held, "warm": ~on_held})
    choice = {"text_weight": best_weight(values["all"], grid), "valid_ndcg10_by_text_weight": values["all"],
              "held_out": {"items": int(len(held)), "valid_examples": len(targets), "held_out_targets": int(on_held.sum()),
                           "ndcg10_by_text_weight": {k: v for k, v in values.items() if k != "all"},
                           "training": {k: v for k, v in fitted.summary.items() if k in (
                               "best_epoch", "best_valid_ndcg@10", "epochs_run", "seconds_per_epoch", "device")}}}
    out.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(choice, indent=1))
    return choice


def _rank_test(scorer, split, n_items: int, mask_history: bool) -> tuple[np.ndarray, np.ndarray, dict]:
    """(optimistic ranks, pessimistic ranks, report overall and by head/tail group) of the test split."""
    opt, pes = evaluate(scorer, split.test, mask_history=mask_history)
    report = evaluate_ranking(opt, pes, [e.user for e in split.test], [e.target for e in split.test],
                              head_users(split.train), head_items(split.train, n_items))
    return opt, pes, report


def _test_result(cfg: FallbackSettings, ds, split, cold, scorer, summary: dict, sequential: bool, out: Path) -> dict:
    """The results dict of a saved scorer: test ranking overall, by user and item group, and by
    cold / warm target under the cold-item protocol."""
    n_items = len(ds.catalog)
    t_eval = time.perf_counter()
    opt, pes, report = _rank_test(scorer, split, n_items, cfg.mask_history)
    summary["test_eval_s"] = round(time.perf_counter() - t_eval, 1)
    result = {"model": cfg.model, "loss": cfg.train.loss.kind if cfg.model not in UNTRAINED else None,
              "sequential": sequential,
              "seed": cfg.train.seed, "dataset": ds.name, "mask_history": cfg.mask_history, "split": "leave_one_out",
              "ranking": "full catalog", "test": report, "training": summary, "settings": to_dict(cfg),
              "scorer_dir": str(out / "scorer")}
    if len(cold):
        result["split"] = "leave_one_out, cold items"
        result["cold"] = {"fraction": cfg.cold.fraction, "seed": cfg.cold.seed, "items": int(len(cold)),
                          "valid_examples": len(split.valid), "train_users": len(split.train)}
        result["test_groups"] = cold_reports(opt, pes, split.test, cold, split.train, n_items)
    return result


def rescore_cold(cfg: FallbackSettings, source: dict) -> dict:
    """A finished cold-protocol run (``source``, its results dict) with another cold-row treatment
    (``cfg.cold.id_rows``): the treatments only write cold rows from the warm ones, so the trained
    model is the same and nothing is trained again. Written like a trained run."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with run_record(out, cfg, [cfg.dataset], {"train.seed": cfg.train.seed}) as rec:
        ds = cfg.dataset.load()
        split, cold = cold_split(ds, cfg.cold)
        src = Path(source["scorer_dir"])
        old = FallbackScorer.load(src, ds.catalog)
        summary = {**source["training"], "rescored_from": str(src.parent),
                   "cold_rows_filled": fill_cold_rows(old.model, cold, cfg.cold.id_rows)}
        scorer = _new_item_scores(cfg, ds, split, cold, FallbackScorer(old.model, meta=old.meta), summary, out)
        scorer.save(out / "scorer")
        if ItemTextEncoder.load(src) is not None:
            ItemTextEncoder.load(src).save(out / "scorer")
        result = _test_result(cfg, ds, split, cold, scorer, summary, old.model.sequential, out)
        rec.extra.update(test_ndcg10=result["test"]["overall"]["opt"]["ndcg@10"])
    result["run_record"] = str(out / "run.json")
    (out / "results.json").write_text(json.dumps(result, indent=1))
    return result


def test_report(cfg: FallbackSettings, mask_history: bool) -> dict:
    """The saved scorer of a finished run ranked over the test split again, with the history masked
    or not: published rows from RecBole-style evaluators leave history items in the ranking, so the
    ledger carries the unmasked reading beside ours to compare like with like (SPEC.md §12)."""
    ds = cfg.dataset.load()
    split, _ = cold_split(ds, cfg.cold)
    scorer = load_scorer(cfg, Path(cfg.output_dir) / "scorer", ds.catalog)
    return _rank_test(scorer, split, len(ds.catalog), mask_history)[2]

