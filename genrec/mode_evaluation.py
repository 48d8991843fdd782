"""Every generative mode, alone and fused with the fallback, on the same sampled users.

Why a harness of its own beside ``genrec.evaluation``: comparing modes is only fair on the
same users, and fusion needs each mode's per-user signal together with the fallback's scores.
So each mode's signal is computed once per user and logged sparsely (``signals_<mode>.jsonl``:
the items the mode scored and their scores), a killed run resumes from the logs, and every
fusion — and, on the validation split, the choice of its weights — is computed from the logs
without running the LLM again.

Reported per mode (``calrec_<mode>``) and per fusion (``fused_<mode>_<method>``) with the
fallback alone on the same users (``fallback``): expected (random tie-breaking, the headline),
opt and pes metrics overall and by head/tail group; for each mode ``n_empty``, the users whose
signal singled out no item (every item tied);
for the constrained modes ``invalid_rate`` (decoded paths that are not a catalog item's target
tokens, checked against the catalog itself, not the tree) and ``duplicate_rate`` (users whose
decoded items repeat); for fusions the paired NDCG@10 difference to the fallback with a 95%
bootstrap interval over users (expected NDCG@10). ``tune_fusion=true`` (only with ``split=valid``:
any other split is refused) chooses each (mode, method)'s weights by expected NDCG@10 and writes
them to the bundle's settings (``recommender.fusion.tuned``) with where they were chosen, the best
pair as the bundle's fusion. The signal logs are keyed to the dataset, split, masking, bundle and
generation settings (``signals.settings.json``): a log from another setting is refused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from genrec import console
from genrec.config import to_dict
from genrec.data.dataset import Example
from genrec.data.source import DatasetSource
from genrec.errors import ConfigError
from genrec.fusion import TUNING_SPLIT, FusionSettings, candidates, fuse, tune
from genrec.log_key import check_settings_file
from genrec.metrics import (
    evaluate_ranking,
    expected_metrics,
    format_group_table,
    format_table,
    paired_ci,
    ranks,
)

log = logging.getLogger(__name__)


@dataclass
class ModeEvalConfig:
    """What ``eval/evaluate_modes.py`` reads (YAML + ``key=value`` overrides)."""

    dataset: DatasetSource = field(default_factory=lambda: DatasetSource(format="demo", name="electronics"))
    bundle: str = ""                    # the bundle: model, tree, index, fallback, settings
    split: str = "test"                 # valid (for tune_fusion) | test
    sample_users: int | None = 500      # seeded sample of the split's users (None: all)
    seed: int = 0                       # seed of the user sample
    mask_history: bool = True           # history items excluded from the ranking
    modes: list[str] = field(default_factory=lambda: ["qrr", "constrained_beam", "constrained_sample", "rerank"])
    fusions: list[str] = field(default_factory=lambda: ["zsum", "rrf"])  # methods fused with every mode
    backend: str | None = None          # the generator of qrr (vllm | hf; None: the bundle's)
    n: int | None = None                # N_gen (samples, beams) override
    max_new_tokens: int | None = None   # token budget override
    rerank_m: int | None = None         # M override
    batch_users: int = 8                # users per generation call (and per log flush)
    threads: int | None = None          # torch threads of the transformers modes (1 is steadier on a busy CPU)
    tune_fusion: bool = False           # choose fusion weights on these users and store them in the bundle
    bootstrap: int = 2000               # resamples of the 95% interval of fused - fallback
    output_dir: str = "runs/modes"      # signals_*.jsonl, results.json, results.md, run.json
    ledger: str = ""                    # write calrec_qrr / calrec_constrained / calrec_rerank / fused here
    ledger_dataset: str = ""            # its dataset key (default: the dataset's name)


def _log_path(out: Path, mode: str) -> Path:
    return out / f"signals_{mode}.jsonl"


LOG_KEY = "signals.settings.json"


def check_log_key(out: Path, key: dict) -> None:
    """Refuse signal logs in ``out`` written under another setting (``key``: dataset, split,
    masking, bundle, generation settings), or without a key at all: their signals would be read
    back as this run's. The first run writes the key beside its logs."""
    logs = sorted(p.name for p in out.glob("signals_*.jsonl") if p.stat().st_size)
    check_settings_file(out / LOG_KEY, key, logs, f"{out}: signal logs", f"its signals_*.jsonl and {LOG_KEY}")


def _read_log(path: Path) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill: that user is redone
            rows[row["user"]] = row
    return rows


def target_paths(rec) -> dict[tuple[int, ...], set[int]]:
    """Every catalog item's target token ids, from the catalog and tokenizer directly (so the
    invalid rate does not trust the tree it checks)."""
    ids = rec.target_token_ids(range(len(rec.catalog)))
    out: dict[tuple[int, ...], set[int]] = {}
    for i, t in enumerate(ids):
        out.setdefault(tuple(t), set()).add(i)
    return out


def collect(rec, examples: list[Example], mode: str, path: Path, seed: int | None, batch: int,
            mask_history: bool, paths: dict | None = None) -> dict[str, dict]:
    """The mode's sparse signal for every example (resuming from ``path``)."""
    from genrec.recommender import MODE_QRR, Prepared

    done = _read_log(path)
    todo = [e for e in examples if e.user not in done]
    if todo:  # one-time loads (tree, generator, item vectors) are not a user's time
        rec.warm(mode)
    with open(path, "a", encoding="utf-8") as f, \
            console.progress(total=len(todo), desc=f"{mode}", unit="user") as bar:
        for start in range(0, len(todo), max(1, batch)):
            chunk = todo[start:start + batch]
            prepared = [Prepared(list(e.history), [], rec.build_prompt(list(e.history)), 10, mask_history)
                        for e in chunk]
            t0 = time.perf_counter()
            out = rec.mode_signals(prepared, mode, seed)
            seconds = (time.perf_counter() - t0) / len(chunk)
            for e, (signal, samples, reason) in zip(chunk, out):
                row: dict = {"user": e.user, "target": int(e.target), "seconds": round(seconds, 3), "reason": reason}
                if signal is not None:
                    keep = np.flatnonzero(signal > 0) if mode == MODE_QRR else np.flatnonzero(np.isfinite(signal))
                    row["idx"] = keep.tolist()
                    row["val"] = [round(float(v), 6) for v in signal[keep]]
                else:
                    row["idx"], row["val"] = [], []
                if paths is not None:  # a constrained mode: check what it decoded
                    items = [i for d in samples for i in d.items]
                    row["paths"] = len(samples)
                    row["invalid"] = sum(1 for d in samples if set(d.items) != paths.get(tuple(d.token_ids), set()))
                    row["duplicates"] = len(items) - len(set(items))
                f.write(json.dumps(row) + "\n")
                done[e.user] = row
            f.flush()
            os.fsync(f.fileno())
            bar.update(len(chunk))
    return done


def dense(rows: list[dict], n: int, absent: float) -> np.ndarray:
    out = np.full((len(rows), n), absent)
    for r, row in enumerate(rows):
        if row["idx"]:
            out[r, np.asarray(row["idx"], dtype=np.int64)] = row["val"]
    return out


def _ndcg(opt: np.ndarray, pes: np.ndarray) -> np.ndarray:
    """Each user's expected NDCG@10 under random tie-breaking (what fusions are compared by)."""
    return expected_metrics(opt, pes)["ndcg@10"]


def run_mode_evaluation(cfg: ModeEvalConfig) -> dict:
    """Collect every mode's signals, rank alone and fused, write results (and tuned weights)."""
    from genrec.bundle import SETTINGS, Bundle
    from genrec.data.groups import head_items, head_users
    from genrec.data.preprocess import leave_one_out
    from genrec.evaluation import sample_examples
    from genrec.recommender import MODE_BEAM, MODE_QRR, MODE_SAMPLE, MODES
    from genrec.run_record import run_record

    unknown = [m for m in cfg.modes if m not in MODES]
    if unknown:
        raise ConfigError(f"modes: unknown {unknown}; choose from {', '.join(MODES)}")
    if not cfg.bundle:
        raise ConfigError("bundle: the bundle to evaluate is required")
    if cfg.split not in ("valid", "test"):
        raise ConfigError(f"split must be 'valid' or 'test', got {cfg.split!r}")
    if cfg.tune_fusion and cfg.split != TUNING_SPLIT:
        raise ConfigError(f"tune_fusion: fusion weights are chosen on split={TUNING_SPLIT} only, not on "
                          f"split={cfg.split}; tune on {TUNING_SPLIT}, then evaluate {cfg.split} with the stored weights")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    with run_record(out, cfg, [cfg.dataset, cfg.bundle], {"seed": cfg.seed}) as record:
        split = leave_one_out(cfg.dataset.load())
        n_items = len(split.dataset.catalog)
        examples = sample_examples(split.valid if cfg.split == "valid" else split.test, cfg.sample_users, cfg.seed)
        bundle = Bundle.load(cfg.bundle)
        if len(bundle.catalog) != n_items:
            raise ConfigError(f"{cfg.bundle}: bundle catalog has {len(bundle.catalog)} items, the dataset {n_items}")
        settings = bundle.settings.recommender
        if cfg.n is not None:
            settings = dataclasses.replace(settings, n_gen=cfg.n)
        if cfg.rerank_m is not None:
            settings = dataclasses.replace(settings, rerank_m=cfg.rerank_m)
        overrides = {k: v for k, v in (("n", cfg.n), ("max_new_tokens", cfg.max_new_tokens)) if v is not None}
        rec = bundle.recommender(backend=cfg.backend, settings=settings, **overrides)
        check_log_key(out, {"dataset": to_dict(cfg.dataset), "split": cfg.split, "mask_history": cfg.mask_history,
                            "catalog_size": n_items, "bundle": cfg.bundle, "backend": cfg.backend,
                            "n_gen": settings.n_gen, "rerank_m": settings.rerank_m, "seed": settings.seed,
                            "max_new_tokens": cfg.max_new_tokens})
        paths = None
        logs: dict[str, list[dict]] = {}
        tree_info: dict = {}
        for mode in cfg.modes:
            if mode in (MODE_BEAM, MODE_SAMPLE) and paths is None:
                paths = target_paths(rec)
                budget = int(rec.decoder("constrained_beam").cfg.max_new_tokens)
                lengths = np.array([len(p) for p, items in paths.items() for _ in items])
                tree_info = {"depth": int(lengths.max()), "max_new_tokens": budget,
                             "items_within_budget": round(float(np.mean(lengths <= budget)), 4)}
                if tree_info["items_within_budget"] < 1.0:
                    console.say(f"  note: {1 - tree_info['items_within_budget']:.1%} of the items' target texts are "
                                f"longer than max_new_tokens={budget}: constrained decoding cannot reach them")
            done = collect(rec, examples, mode, _log_path(out, mode), settings.seed, cfg.batch_users,
                           cfg.mask_history, paths if mode in (MODE_BEAM, MODE_SAMPLE) else None)
            logs[mode] = [done[e.user] for e in examples]

        targets = np.array([e.target for e in examples], dtype=np.int64)
        exclude = [list(e.history) for e in examples] if cfg.mask_history else None
        users = [e.user for e in examples]
        hu, hi = head_users(split.train), head_items(split.train, n_items)
        fallback = np.asarray(bundle.fallback_scorer.score_batch([list(e.history) for e in examples]),
                              dtype=np.float64)
        reports, extra, per_user = {}, {}, {}

        def add(name: str, scores: np.ndarray, empty: list[bool] | None = None) -> None:
            opt, pes = ranks(scores, targets, exclude=exclude)
            reports[name] = evaluate_ranking(opt, pes, users, targets, hu, hi, empty=empty)
            per_user[name] = _ndcg(opt, pes)

        add("fallback", fallback)
        tuned: dict[str, dict] = {}
        where = f"{cfg.split} split, {len(examples)} users (seed {cfg.seed})"
        for mode in cfg.modes:
            rows = logs[mode]
            signal = dense(rows, n_items, 0.0 if mode == MODE_QRR else -np.inf)
            empty = [not r["idx"] for r in rows]  # no item scored: every item ties with the target
            add(f"calrec_{mode}", signal, empty)
            info: dict = {"users": len(rows), "seconds_per_user": round(float(np.mean([r["seconds"] for r in rows])), 3),
                          "n_empty": sum(empty)}
            if mode in (MODE_BEAM, MODE_SAMPLE):
                n_paths = sum(r["paths"] for r in rows)
                info["invalid_rate"] = sum(r["invalid"] for r in rows) / max(1, n_paths)
                info["duplicate_rate"] = sum(1 for r in rows if r["duplicates"]) / max(1, len(rows))
            extra[f"calrec_{mode}"] = info
            g = np.where(signal > 0, signal, -np.inf) if mode == MODE_QRR else signal
            for method in cfg.fusions:
                if cfg.tune_fusion:
                    best, table = tune(fallback, g, targets, exclude,
                                       grid=[c for c in candidates() if c.method == method], split=cfg.split)
                    tuned[f"{mode}/{method}"] = {"weight": best.weight, "rrf_c": best.rrf_c,
                                                 "ndcg@10_expected": max(r["ndcg@10_expected"] for r in table),
                                                 "chosen_on": where}
                    fs = best
                    extra.setdefault("grids", {})[f"{mode}/{method}"] = table
                else:
                    fs = settings.fusion.for_mode(mode, method)
                name = f"fused_{mode}_{method}"
                add(name, fuse(fallback, g, fs))
                mean, ci = paired_ci(per_user[name], per_user["fallback"], cfg.bootstrap, cfg.seed)
                extra[name] = {"method": fs.method, "weight": fs.weight, "rrf_c": fs.rrf_c,
                               "delta_vs_fallback": round(mean, 6), "delta_vs_fallback_ci95": [round(x, 6) for x in ci],
                               "fallback_ndcg@10_expected": round(float(per_user["fallback"].mean()), 6)}
        if cfg.tune_fusion and tuned:
            _store_tuned(bundle.path / SETTINGS, tuned, where)
        if tree_info:
            extra["tree"] = tree_info
        result = {"dataset": split.dataset.name, "split": cfg.split, "mask_history": cfg.mask_history,
                  "catalog_size": n_items, "n_users": len(examples), "bundle": cfg.bundle,
                  "n_gen": settings.n_gen, "rerank_m": settings.rerank_m, "reports": reports, "extra": extra,
                  "tuned": tuned, "validation_tuned": tuned or settings.fusion.tuned,
                  "fusion_chosen_on": where if tuned else settings.fusion.chosen_on, "config": to_dict(cfg)}
        if cfg.ledger:
            _write_ledger(cfg, result)
        (out / "results.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
        (out / "results.md").write_text(results_markdown(result), encoding="utf-8")
        record.extra.update(results="results.json")
    return result


def _store_tuned(settings_path: Path, tuned: dict[str, dict], where: str) -> None:
    """Write the tuned weights into the bundle's settings.yaml; the best pair becomes the
    bundle's fusion (its mode stays what it was unless that mode was not tuned)."""
    raw = yaml.safe_load(settings_path.read_text(encoding="utf-8")) or {}
    rec = raw.setdefault("recommender", {})
    fusion = rec.setdefault("fusion", {})
    fusion["tuned"] = {**(fusion.get("tuned") or {}), **tuned}
    mode = rec.get("mode", "qrr")
    pairs = {k: v for k, v in tuned.items() if k.startswith(f"{mode}/")} or tuned
    best_key = max(pairs, key=lambda k: tuned_value(pairs[k]))
    best_mode, method = best_key.split("/")
    fusion.update(method=method, weight=pairs[best_key]["weight"], rrf_c=pairs[best_key]["rrf_c"], chosen_on=where)
    rec["mode"] = best_mode
    tmp = settings_path.with_name(settings_path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    tmp.replace(settings_path)
    console.say(f"  fusion weights stored in {settings_path}: {best_key} {pairs[best_key]}")


def _write_ledger(cfg: ModeEvalConfig, result: dict) -> None:
    """The issue's ledger rows: calrec_qrr, calrec_constrained (beam), calrec_rerank, calrec_embedding, and as
    ``fused`` the fused pair chosen on validation (the best on these users when none was tuned)."""
    from genrec.ledger import entry_from_reports, script_argv, update_ledger

    dataset = cfg.ledger_dataset or result["dataset"]
    command = "python " + " ".join(script_argv("eval/evaluate_modes.py"))
    reports, extra = result["reports"], result["extra"]
    names = {"calrec_qrr": "calrec_qrr", "calrec_constrained_beam": "calrec_constrained",
             "calrec_constrained_sample": "calrec_constrained_sample", "calrec_rerank": "calrec_rerank",
             "calrec_embedding": "calrec_embedding"}
    for name, key in names.items():
        if name in reports:
            info = {k: v for k, v in extra[name].items() if k in ("invalid_rate", "duplicate_rate", "seconds_per_user")}
            info.update(split=result["split"], mask_history=result["mask_history"])
            update_ledger(cfg.ledger, dataset, key, entry_from_reports([reports[name]], [cfg.seed], cfg.bundle, command,
                                                                       n_gen=result["n_gen"], **info))
    fused = [k for k in reports if k.startswith("fused_")]
    if fused:
        def ndcg(k: str) -> float:
            return round(reports[k]["overall"]["exp"]["ndcg@10"], 6)

        # The headline is the pair validation chose, so no choice is made on these test users;
        # the best pair on them is kept beside it as a diagnostic (a ceiling, not a result).
        best = max(fused, key=ndcg)
        tuned = result.get("validation_tuned") or {}
        pick = validation_pick(tuned, fused)
        row = pick or best
        if pick:  # where the weights were chosen, copied from the tuning run
            pair = next(k for k in tuned if f"fused_{k.replace('/', '_')}" == pick)
            chosen_on = tuned[pair].get("chosen_on") or result.get("fusion_chosen_on") or "validation"
        else:
            chosen_on = "these users (nothing tuned on validation): a ceiling, not a result"
        info = {**extra[row], "chosen_on": chosen_on, "split": result["split"], "mask_history": result["mask_history"]}
        if pick and ndcg(best) > ndcg(pick):  # a tie is no better pair
            info["best_on_these_users"] = {"fused": best, "ndcg@10_expected": ndcg(best),
                                           **{k: extra[best][k] for k in ("delta_vs_fallback", "delta_vs_fallback_ci95")}}
        update_ledger(cfg.ledger, dataset, "fused", entry_from_reports(
            [reports[row]], [cfg.seed], cfg.bundle, command, fused=row, **info))


def tuned_value(entry: dict) -> float | None:
    """A tuned pair's validation value: expected NDCG@10, or, for pairs tuned before it was kept,
    the NDCG@10 they stored (the mean of opt and pes; fused scores rarely tie, so nearly the same)."""
    value = entry.get("ndcg@10_expected", entry.get("ndcg@10"))
    return None if value is None else float(value)


def validation_pick(tuned: dict[str, dict], fused: list[str]) -> str | None:
    """The fused pair (``fused_<mode>_<method>``) with the best validation NDCG@10 among those
    evaluated; ``tuned`` is the bundle's ``fusion.tuned`` ("mode/method" -> {"ndcg@10_expected", ...})."""
    scored = {f"fused_{k.replace('/', '_')}": tuned_value(v) for k, v in tuned.items() if tuned_value(v) is not None}
    candidates = [k for k in fused if k in scored]
    return max(candidates, key=lambda k: scored[k]) if candidates else None


def results_markdown(result: dict) -> str:
    reports, extra = result["reports"], result["extra"]
    lines = [f"## {result['dataset']} — {result['split']} split, {result['n_users']} sampled users, full ranking "
             f"over {result['catalog_size']} items, history {'masked' if result['mask_history'] else 'not masked'}, "
             f"N_gen {result['n_gen']}, rerank M {result['rerank_m']}", "", format_table(reports), "",
             *([f"Prefix tree: {extra['tree']}", ""] if "tree" in extra else []),
             "NDCG@10 expected under random tie-breaking (opt / pes) by group:", "", format_group_table(reports), ""]
    for name, info in extra.items():
        if name in ("grids", "tree"):
            continue
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in info.items()}
        lines.append(f"- {name}: {shown}")
    return "\n".join(lines) + "\n"


__all__ = ["ModeEvalConfig", "run_mode_evaluation", "FusionSettings"]
