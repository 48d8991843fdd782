"""Evaluation harness (RecBole's evaluator role): any recommender path, full-catalog ranking.

Every method turns a batch of (history → target) examples into scores over the whole catalog;
ranks are optimistic and pessimistic (SPEC.md §1) and the headline of every report is the
expected metric under random tie-breaking between them (SPEC.md §12); history masking is a
setting, and metrics are reported overall and for head/tail users and items (SPEC.md §2, groups
from training interactions only). The generative path is slow on CPU, so it can run on a seeded
sample of users (reported with 95% confidence half-widths) and resumes from its per-user log
(each user's opt and pes ranks and whether the generation grounded to nothing), which is keyed
to everything that changes the ranks (dataset, split, masking, bundle, sampling): a log made
under another setting is refused, never read back.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genrec import console
from genrec.config import to_dict
from genrec.data.cold_split import ColdConfig, cold_items, cold_targets
from genrec.data.dataset import Example, Split
from genrec.data.groups import head_items, head_users, item_popularity
from genrec.data.preprocess import leave_one_out
from genrec.data.source import DatasetSource
from genrec.errors import ConfigError
from genrec.log_key import check_settings_file
from genrec.metrics import (
    evaluate_parts,
    evaluate_ranking,
    expected_metrics,
    format_group_table,
    format_table,
    paired_ci,
    ranks,
)

log = logging.getLogger(__name__)

METHODS = ("popularity", "sasrec", "llmesr", "calrec")


@dataclass
class GenerativeEvalSettings:
    """How the CALRec path is run: a bundle (model, index, template) plus overrides."""

    bundle: str | None = None           # the bundle whose model, index and template the calrec path uses
    backend: str | None = None          # vllm | hf | None (the bundle's setting)
    n: int | None = None                # N_gen override
    max_new_tokens: int | None = None   # longest generated item text (None: the bundle's setting)
    temperature: float | None = None    # sampling temperature override (None: the bundle's setting)
    engine: dict = field(default_factory=dict)  # engine settings for this run (enforce_eager, vllm_kwargs)
    batch_users: int = 8                # users per generate call when not streaming (transformers, stream: false)
    stream: bool = True                 # vllm: all users through one engine, each logged as it finishes
    window: int = 64                    # users inside the engine at once when streaming


@dataclass
class EvalConfig:
    dataset: DatasetSource = field(default_factory=lambda: DatasetSource(format="demo", name="electronics"))  # data
    split: str = "test"                 # valid | test
    methods: list[str] = field(default_factory=lambda: ["popularity"])  # popularity, sasrec, llmesr, calrec
    sample_users: int | None = None     # seeded random sample for the generative path
    sample_all_methods: bool = False    # evaluate every method on that sample (else all users)
    seed: int = 0                       # seed of the user sample
    mask_history: bool = True           # history items excluded from the ranking
    cold: ColdConfig = field(default_factory=ColdConfig)  # the cold set the run's models were trained without
    targets: str = "all"                # all | cold | warm: the events evaluated, by their target (needs cold)
    output_dir: str = "runs/eval"       # results.json, results.md, ndcg_by_group.png, run.json
    model_dirs: dict = field(default_factory=dict)  # method -> trained fallback folder (sasrec, llmesr)
    generative: GenerativeEvalSettings = field(default_factory=GenerativeEvalSettings)  # the calrec path
    ledger: str | None = None           # results ledger (docs/results/summary.json) to write the calrec row to
    ledger_dataset: str | None = None   # its dataset key (None: the dataset's name)
    ledger_method: str = "calrec"       # its method key (another name keeps a second setup's row beside it)


def _examples(split: Split, which: str) -> list[Example]:
    if which not in ("valid", "test"):
        raise ConfigError(f"split must be 'valid' or 'test', got {which!r}")
    return split.valid if which == "valid" else split.test


def sample_examples(examples: list[Example], n: int | None, seed: int) -> list[Example]:
    """A seeded random sample of users (all when n is None or not smaller), in original order."""
    if n is None or n >= len(examples):
        return list(examples)
    idx = np.sort(np.random.default_rng(seed).choice(len(examples), size=n, replace=False))
    return [examples[i] for i in idx]


ScoreFn = Callable[[list[Example]], np.ndarray]


def rank_examples(examples: Sequence[Example], score_fn: ScoreFn, mask_history: bool,
                  batch_size: int = 512, desc: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Opt/pes ranks of each example's target under ``score_fn`` (batched)."""
    opt, pes = [], []
    for start in console.progress(range(0, len(examples), batch_size), desc=desc, unit="batch", leave=False,
                                  disable=len(examples) <= batch_size):
        batch = list(examples[start:start + batch_size])
        scores = score_fn(batch)
        o, p = ranks(scores, np.array([e.target for e in batch]),
                     exclude=[e.history for e in batch] if mask_history else None)
        opt.append(o)
        pes.append(p)
    if not opt:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(opt), np.concatenate(pes)


def popularity_scores(split: Split) -> ScoreFn:
    counts = item_popularity(split.train, len(split.dataset.catalog)).astype(np.float32)
    return lambda batch: np.broadcast_to(counts, (len(batch), len(counts)))


def fallback_model_scores(model_dir: str) -> ScoreFn:
    from genrec.esr import FallbackScorer

    scorer = FallbackScorer.load(model_dir)
    return lambda batch: np.asarray(scorer.score_batch([list(e.history) for e in batch]))


def _sampling(settings: GenerativeEvalSettings) -> dict:
    """The overrides that change what is sampled (None: the bundle's setting), in one place for
    the generator and for the check that a resumed log was made with them."""
    return {"n": settings.n, "max_new_tokens": settings.max_new_tokens, "temperature": settings.temperature}


class GenerativeRanker:
    """The CALRec path: prompt → N_gen samples → QRR BM25 scores, logged per user so a killed
    run resumes where it stopped."""

    def __init__(self, settings: GenerativeEvalSettings, log_path: Path, catalog_size: int,
                 log_key: dict | None = None) -> None:
        """``log_key``: what else fixes the ranks in the log (dataset, split; masking is added by
        :meth:`run`), so a log from another setting is refused."""
        from genrec.bundle import Bundle

        if not settings.bundle:
            raise ConfigError("generative.bundle: the calrec method needs a bundle (genrec bundle ...)")
        self.bundle = Bundle.load(settings.bundle)
        if len(self.bundle.catalog) != catalog_size:
            raise ConfigError(f"{settings.bundle}: bundle catalog has {len(self.bundle.catalog)} items, "
                              f"the dataset {catalog_size}")
        overrides = {k: v for k, v in _sampling(settings).items() if v is not None}
        # Meant for engine settings (enforce_eager, vllm_kwargs: speed, not what is sampled), so a
        # long run may change them between resumed pieces without mixing two setups' outputs.
        overrides.update(settings.engine)
        self.recommender = self.bundle.recommender(backend=settings.backend, **overrides)
        self.settings = settings
        self.log_path = log_path
        self.log_key = {"catalog_size": catalog_size, **(log_key or {})}

    def _check_key(self, mask_history: bool) -> None:
        """Refuse to add to, or read back, a log written under another setting: other sampling
        (bundle, backend, N_gen, token budget, temperature) would mix two setups' users, and
        another dataset, split or masking would report ranks of other examples or of another
        ranking. The key sits next to the log; engine settings (speed only) may change between
        pieces. A log without its key (written before logs were keyed) is refused too."""
        s = self.settings
        now = {"bundle": s.bundle, "backend": s.backend, **_sampling(s),
               **self.log_key, "mask_history": bool(mask_history)}
        logs = [self.log_path.name] if self.log_path.exists() and self.log_path.stat().st_size else []
        check_settings_file(self.log_path.with_name(self.log_path.stem + ".settings.json"), now, logs,
                      str(self.log_path), "the log and its settings file")

    def done(self) -> dict[str, dict]:
        out = {}
        if self.log_path.exists():
            with open(self.log_path, encoding="utf-8") as f:
                for line in f:
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut by a kill: that user is simply redone
                    out[row["user"]] = row
        return out

    def run(self, examples: list[Example], mask_history: bool) -> GenerativeRun:
        """Streams every user not yet logged through the engine (vLLM; chunks of ``batch_users``
        otherwise) and grounds, ranks and logs each one as its samples arrive: the engine never
        waits for grounding or for a batch's slowest user, and a kill loses only the users still
        in flight (the log is flushed per user, fsynced at least every 2 s). Returns opt and pes
        ranks of every example, which users' generations grounded to nothing (every item tied),
        and the seconds and user count of what this call generated."""
        from genrec.generation.streaming import stream_samples

        _drop_partial_line(self.log_path)
        self._check_key(mask_history)
        done = self.done()
        todo = [e for e in examples if e.user not in done]
        started = time.time()
        bs = max(1, self.settings.batch_users)
        generator = self.recommender.generator
        if not self.settings.stream:  # the old feeding: one generate call per batch_users users
            generator = _NoStream(generator)
        prompts = [self.recommender.build_prompt(list(e.history)) for e in todo]
        synced = time.time()
        with open(self.log_path, "a", encoding="utf-8") as f, \
                console.progress(total=len(todo), desc="calrec: generate + ground", unit="user") as bar:
            for i, ss in stream_samples(generator, prompts, chunk=bs, window=max(1, self.settings.window)):
                e = todo[i]
                scores = self.recommender.grounded_scores([ss])
                o, p = ranks(scores, np.array([e.target]), exclude=[e.history] if mask_history else None)
                row = {"user": e.user, "target": e.target, "opt": int(o[0]), "pes": int(p[0]),
                       "empty": grounded_to_nothing(scores[0]),
                       "samples": [[s.text, round(float(s.score), 4)] for s in ss[:5]]}
                f.write(json.dumps(row) + "\n")
                f.flush()
                if time.time() - synced > 2.0:
                    os.fsync(f.fileno())
                    synced = time.time()
                done[e.user] = row
                bar.update(1)
        elapsed = time.time() - started
        rows = [done[e.user] for e in examples]
        return GenerativeRun(np.array([r["opt"] for r in rows], dtype=np.int64),
                             np.array([r["pes"] for r in rows], dtype=np.int64),
                             np.array([bool(r.get("empty", False)) for r in rows]), elapsed, len(todo))


@dataclass
class GenerativeRun:
    """What :meth:`GenerativeRanker.run` measured: per-user ranks and empty outputs, and the time
    and user count of the generation this call did (the rest came from the log)."""

    opt: np.ndarray
    pes: np.ndarray
    empty: np.ndarray      # the user's generation grounded to nothing: every item tied
    seconds: float
    generated: int


def grounded_to_nothing(scores: np.ndarray) -> bool:
    """True when a user's grounded scores single out no item (all equal over the catalog), so
    every item ties with the target: optimistic rank 1, pessimistic the whole catalog."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    s = np.where(np.isnan(s), -np.inf, s)
    return bool(s.size == 0 or s.max() == s.min())


def _drop_partial_line(path: Path) -> None:
    """A kill while a line was being written leaves it without its newline: cut it off, so the
    next row starts on a line of its own (that user is redone)."""
    if not path.exists():
        return
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)


class _NoStream:
    """A generator seen without its ``generate_stream`` (``generative.stream: false``)."""

    def __init__(self, generator) -> None:
        self.generator = generator

    def generate(self, prompts, n=None, seed=None):
        return self.generator.generate(prompts, n=n, seed=seed)


def plot_groups(reports: dict[str, dict], path: Path, metric: str = "ndcg@10") -> None:
    """A grouped bar chart of one metric (expected under random tie-breaking) by user and item group,
    one bar per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = ["overall", "head_users", "tail_users", "head_items", "tail_items"]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(1, len(reports))
    for m, (method, report) in enumerate(reports.items()):
        values = [report[g]["exp"][metric] for g in groups]
        ax.bar(np.arange(len(groups)) + m * width, values, width, label=method)
    ax.set_xticks(np.arange(len(groups)) + width * (len(reports) - 1) / 2, groups)
    ax.set_ylabel(f"{metric} (expected, random tie-breaking)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_evaluation(cfg: EvalConfig, split: Split | None = None) -> dict:
    """Evaluate ``cfg.methods``; writes results.json, results.md, ndcg_by_group.png and the run
    record run.json (which results.json names under ``run_record``)."""
    from genrec.run_record import RUN_RECORD, run_record

    unknown = [m for m in cfg.methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"methods: unknown {unknown}; choose from {', '.join(METHODS)}")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    inputs = [cfg.dataset, *cfg.model_dirs.values(), cfg.generative.bundle]
    with run_record(out, cfg, inputs, {"seed": cfg.seed}) as rec:
        result = _evaluate(cfg, split, out)
        result["run_record"] = RUN_RECORD  # relative to results.json's folder
        (out / "results.json").write_text(json.dumps(result, indent=2))
        (out / "results.md").write_text(results_markdown(result))
        plot_groups(result["reports"], out / "ndcg_by_group.png")
        rec.extra.update(results="results.json", methods=result["methods"])
    if cfg.ledger and "calrec" in result["reports"]:
        write_ledger_row(cfg, result)
    return result


def write_ledger_row(cfg: EvalConfig, result: dict) -> dict:
    """The ledger's ``<dataset>.<ledger_method>`` row: expected (the headline), opt and pes metrics
    of the generative path, its users with empty output (``n_empty``), its user count and 95%
    half-widths (a sampled run), seconds per user, the split and masking, and the other methods'
    expected NDCG@10 on the same users where they ran on them."""
    from genrec.ledger import entry_from_reports, script_argv, update_ledger

    reports, meta = result["reports"], result["methods"]
    report = reports["calrec"]
    argv = script_argv("eval/evaluate.py")
    overall = report["overall"]
    extra: dict = {"ndcg@10_expected_ci95": round(overall["exp_ci95"]["ndcg@10"], 6),
                   "ndcg@10_ci95": round(overall["opt_ci95"]["ndcg@10"], 6),
                   "ndcg@10_pes_ci95": round(overall["pes_ci95"]["ndcg@10"], 6),
                   "sampled": meta["calrec"]["sampled"], "bundle": cfg.generative.bundle,
                   "split": result.get("split", cfg.split), "mask_history": result.get("mask_history", cfg.mask_history)}
    if "seconds_per_user" in meta["calrec"]:
        extra["seconds_per_user"] = meta["calrec"]["seconds_per_user"]
    # The cold-item protocol's keys (genrec.esr.cold_protocol.cold_ledger_keys): of the one side
    # evaluated (targets: cold | warm), or of both parts of a whole run under a cold set.
    parts = {cfg.targets: overall} if cfg.targets != "all" else report.get("by_target", {})
    for name, part in parts.items():
        for side, suffix in (("exp", ""), ("opt", "_opt"), ("pes", "_pes")):
            for metric in ("ndcg@10", "recall@10"):
                extra[f"{metric}_{name}{suffix}"] = round(part[side][metric], 6)
        extra[f"ndcg@10_{name}_ci95"] = round(part["exp_ci95"]["ndcg@10"], 6)
        extra[f"n_{name}"] = part["n"]
    if parts:
        extra.update(cold_fraction=cfg.cold.fraction, cold_seeds=[cfg.cold.seed], targets=cfg.targets)
    same = {m: round(r["overall"]["exp"]["ndcg@10"], 6) for m, r in reports.items()
            if m != "calrec" and meta[m]["users"] == meta["calrec"]["users"]}
    if same:
        extra["same_users_ndcg@10_expected"] = same
    config = argv[argv.index("--config") + 1] if "--config" in argv[:-1] else ""
    entry = entry_from_reports([report], [cfg.seed], config, "python " + " ".join(argv), **extra)
    update_ledger(cfg.ledger, cfg.ledger_dataset or result["dataset"], cfg.ledger_method, entry)
    return entry


TARGETS = ("all", "cold", "warm")


def _by_target(examples: list[Example], cfg: EvalConfig, cold: np.ndarray | None) -> list[Example]:
    """The events whose target is cold (or warm) under ``cfg.cold`` (``targets: all``: every one);
    the test split is the same under the cold-item protocol, so this is its cold-target part.
    ``cold``: the cold items (None without a cold set)."""
    if cfg.targets not in TARGETS:
        raise ConfigError(f"targets must be one of {', '.join(TARGETS)}, got {cfg.targets!r}")
    if cfg.targets == "all":
        return examples
    if cold is None:
        raise ConfigError(f"targets: {cfg.targets} needs the cold set the models were trained without (cold.fraction)")
    flags = cold_targets(examples, cold)
    return [e for e, f in zip(examples, flags) if f == (cfg.targets == "cold")]


def _evaluate(cfg: EvalConfig, split: Split | None, out: Path) -> dict:
    if split is None:
        split = leave_one_out(cfg.dataset.load())
    catalog_size = len(split.dataset.catalog)
    cold = cold_items(catalog_size, cfg.cold) if cfg.cold.enabled else None
    all_examples = _by_target(_examples(split, cfg.split), cfg, cold)
    sampled = sample_examples(all_examples, cfg.sample_users, cfg.seed)
    hu = head_users(split.train)
    hi = head_items(split.train, catalog_size)
    reports: dict[str, dict] = {}
    meta: dict[str, dict] = {}
    for method in cfg.methods:
        examples = sampled if (method == "calrec" or cfg.sample_all_methods) else all_examples
        t0 = time.time()
        if method == "calrec":
            console.say("  calrec: loading the bundle and starting its generation engine (a minute or two on CPU)")
            key = {"dataset": to_dict(cfg.dataset), "split": cfg.split}
            ranker = GenerativeRanker(cfg.generative, out / f"ranks_{method}.jsonl", catalog_size, key)
            run = ranker.run(examples, cfg.mask_history)
            opt, pes, empty, gen_seconds, generated = run.opt, run.pes, run.empty, run.seconds, run.generated
        else:
            empty = None
            if method == "popularity":
                fn = popularity_scores(split)
            else:
                if method not in cfg.model_dirs:
                    raise ConfigError(f"model_dirs.{method}: a trained model folder is needed for {method}")
                fn = fallback_model_scores(cfg.model_dirs[method])
            opt, pes = rank_examples(examples, fn, cfg.mask_history, desc=method)
        users, targets = [e.user for e in examples], [e.target for e in examples]
        reports[method] = evaluate_ranking(opt, pes, users, targets, hu, hi, empty=empty)
        if cfg.targets == "all" and cold is not None:  # a whole run under a cold set: its two parts too
            is_cold = cold_targets(examples, cold)
            parts = {name: m for name, m in (("cold", is_cold), ("warm", ~is_cold)) if m.any()}
            reports[method]["by_target"] = evaluate_parts(opt, pes, users, targets, parts, hu, hi, empty)
        meta[method] = {"users": len(examples), "seconds": round(time.time() - t0, 2),
                        "sampled": len(examples) < len(all_examples)}
        if method == "calrec" and generated:
            # Generation and grounding only (engine start excluded), over the users this call ran.
            meta[method]["seconds_per_user"] = round(gen_seconds / generated, 3)
    return {"dataset": split.dataset.name, "split": cfg.split, "mask_history": cfg.mask_history,
            "targets": cfg.targets, "catalog_size": catalog_size, "users_in_split": len(all_examples), "methods": meta,
            "reports": reports, "config": to_dict(cfg)}


def results_markdown(result: dict) -> str:
    reports = result["reports"]
    lines = [f"## {result['dataset']} — {result['split']} split, full ranking over {result['catalog_size']} items, "
             f"history {'masked' if result['mask_history'] else 'not masked'}", "",
             format_table(reports), ""]
    sampled = [m for m, v in result["methods"].items() if v["sampled"]]
    if sampled:
        lines.append("95% confidence half-widths of the expected values (sampled users): " + "; ".join(
            f"{m}: NDCG@10 ±{reports[m]['overall']['exp_ci95']['ndcg@10']:.4f}, "
            f"R@10 ±{reports[m]['overall']['exp_ci95']['recall@10']:.4f}" for m in sampled))
        lines.append("")
    lines += ["NDCG@10 expected under random tie-breaking (opt / pes) by group:", "", format_group_table(reports), ""]
    lines.append("Users and time: " + "; ".join(f"{m}: {v['users']} users, {v['seconds']} s"
                                                for m, v in result["methods"].items()))
    if result.get("run_record"):
        where = Path(result["config"]["output_dir"]) / result["run_record"]
        lines.append(f"Run record (settings, data fingerprints, versions, seeds): {where}")
    return "\n".join(lines) + "\n"


def compare_generative_runs(a: str | Path, b: str | Path, resamples: int = 2000, seed: int = 0) -> dict:
    """Two generative evaluations of the same users, paired: NDCG@10 of each (expected under random
    tie-breaking, optimistic and pessimistic) and the mean difference b - a with its 95% bootstrap
    interval over users.
    ``a`` and ``b`` are evaluation output folders or their ``ranks_calrec.jsonl`` logs."""

    def rows(p: str | Path) -> dict[str, dict]:
        p = Path(p)
        log = p / "ranks_calrec.jsonl" if p.is_dir() else p
        if not log.exists():
            raise ConfigError(f"{log}: no generative log (ranks_calrec.jsonl) there")
        out = {}
        for n, line in enumerate(log.read_text(encoding="utf-8").splitlines(), 1):
            try:
                row = json.loads(line)
                out[row["user"]] = row
            except (json.JSONDecodeError, KeyError) as e:
                raise ConfigError(f"{log}, line {n}: not a generative log row ({e})") from None
        return out

    ra, rb = rows(a), rows(b)
    users = sorted(set(ra) & set(rb))
    if not users:
        raise ConfigError(f"{a} and {b} share no users")
    out: dict = {"users": len(users), "only_a": len(ra) - len(users), "only_b": len(rb) - len(users)}
    def ndcg(rows: dict[str, dict], side: str) -> np.ndarray:
        opt = np.array([rows[u]["opt"] for u in users])
        pes = np.array([rows[u]["pes"] for u in users])
        lo, hi = {"exp": (opt, pes), "opt": (opt, opt), "pes": (pes, pes)}[side]
        return expected_metrics(lo, hi)["ndcg@10"]

    for side in ("exp", "opt", "pes"):
        na, nb = ndcg(ra, side), ndcg(rb, side)
        mean, ci = paired_ci(nb, na, resamples, seed)
        out[side] = {"a": float(na.mean()), "b": float(nb.mean()), "delta": mean, "ci95": ci}
    return out
