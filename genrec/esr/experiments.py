"""Named experiments over the fallback family, run per seed and recorded in the results ledger.

An experiments file lists, for one dataset, what each ledger row is: a training config of
``finetune/train_esr.py``, overrides on top of it and the seeds. Each (experiment, seed) runs
into its own folder under ``runs_dir`` and is reused when its ``results.json`` holds the same
settings, so a killed session re-runs only what is missing (a run itself resumes from its last
epoch). The mean over seeds goes to the ledger (:mod:`genrec.ledger`) with the command that
reproduces it.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genrec.config import fill_missing, load_config, to_dict
from genrec.errors import ConfigError
from genrec.esr.cold_protocol import cold_ledger_keys
from genrec.esr.pipeline import UNTRAINED, FallbackSettings, rescore_cold, test_report, train_and_test
from genrec.ledger import entry_from_reports, format_entries, update_ledger

log = logging.getLogger(__name__)


@dataclass
class Experiment:
    name: str = ""  # the ledger's method name
    config: str = ""  # a finetune/train_esr.py YAML file
    overrides: list[str] = field(default_factory=list)  # key=value on top of the config
    seeds: list[int] = field(default_factory=lambda: [42])
    note: str = ""  # one line for the results page: what the row changes
    seed_keys: list[str] = field(default_factory=lambda: ["train.seed"])  # settings each seed sets (cold.seed too)


@dataclass
class ExperimentsConfig:
    dataset: str = "scientific"  # the ledger's dataset key
    experiments: list[Experiment] = field(default_factory=list)
    only: list[str] = field(default_factory=list)  # run just these names (default: all)
    runs_dir: str = "runs/ledger"
    ledger: str = "docs/results/summary.json"
    write_ledger: bool = True
    config_path: str = ""  # the experiments file itself (set by the script; goes into each command)
    unmasked: bool = True  # also rank the test split with history items left in (``<metric>_unmasked`` keys)


def settings_for(exp: Experiment, seed: int, runs_dir: Path) -> FallbackSettings:
    out = runs_dir / exp.name / f"seed{seed}"
    seeded = [f"{key}={seed}" for key in exp.seed_keys]
    return load_config(FallbackSettings, exp.config, [*exp.overrides, *seeded, f"output_dir={out}"])


# cold-item settings applied after training (genrec.esr.cold_protocol, genrec.esr.new_item_scores)
COLD_TREATMENT = ("id_rows", "scores", "weight_on", "text_weights")

# what a run made before a setting existed did: each default is the behaviour from before its setting
_DEFAULTS = to_dict(FallbackSettings())

# Settings sections added after some runs were made, each read only by its own model: a saved run
# without one was made with settings that did not have it, not with other values of it.
LATER_SECTIONS = ("alpharec", "darec", "pad", "hllm", "textknn", "unisrec")


def _same_settings(saved: dict, want: dict, ignore: tuple[str, ...] = ()) -> bool:
    """``saved`` (a finished run's settings) equals ``want``, except the keys in ``ignore``, the
    model sections (:data:`LATER_SECTIONS`) that its model does not read, the training settings
    of a model that trains nothing and ``train.device``."""
    # a model section another model's run carries is not read by it: a change there is no change of the run
    skip = set(ignore) | {k for k in LATER_SECTIONS if saved.get("model") != k}
    if saved.get("model") in UNTRAINED:
        skip.add("train")  # popularity and text-kNN train nothing: the optimiser's settings are not part of them
    # a run from before some setting or section existed (cold items, transfer, ...) ran as its default,
    # e.g. every item warm, trained on its own shop (``want`` is whole already, but is filled alike)
    saved, want = fill_missing(saved, _DEFAULTS), fill_missing(want, _DEFAULTS)
    saved, want = _without_device(saved), _without_device(want)
    return {k: v for k, v in saved.items() if k not in skip} == {k: v for k, v in want.items() if k not in skip}


def _without_device(settings: dict) -> dict:
    """``settings`` less ``train.device``: where a run trained is not what it trained (the trainer's
    resume check leaves it out too; a CPU run and a CUDA run differ only in the last bits)."""
    if not isinstance(settings.get("train"), dict) or "device" not in settings["train"]:
        return settings
    return {**settings, "train": {k: v for k, v in settings["train"].items() if k != "device"}}


def _same_run(a: dict, b: dict) -> bool:
    """Settings equal in everything but the output folder (so the same trained model)."""
    return _same_settings(a, b, ignore=("output_dir",))


def run_one(settings: FallbackSettings, runs_dir: Path | None = None) -> dict:
    """``results.json`` of a finished run with these settings, else a new run's results.

    A finished run of another experiment under ``runs_dir`` with the same settings (an encoder
    study's row that became the headline row, say) is copied instead of trained again: runs are
    deterministic, so training it again would only repeat the same numbers.
    """
    out = Path(settings.output_dir)
    path = out / "results.json"
    want = json.loads(json.dumps(to_dict(settings)))
    if path.exists():
        done = json.loads(path.read_text())
        if _same_settings(done.get("settings", {}), want):
            log.info("%s: reusing the finished run", path)
            return done
        aside = out.with_name(f"{out.name}.replaced-{int(time.time())}")
        log.warning("%s: written with other settings; moved to %s, training again", path, aside)
        out.rename(aside)  # its checkpoints belong to those settings: the trainer must not resume them
    for other in sorted(runs_dir.glob("*/seed*/results.json")) if runs_dir else []:
        done = json.loads(other.read_text())
        if other != path and _same_run(done.get("settings", {}), want):
            log.info("%s: same settings as %s; copying that run", out, other.parent)
            if out.exists():
                shutil.rmtree(out)
            shutil.copytree(other.parent, out)
            done.update(settings=want, scorer_dir=str(out / "scorer"), copied_from=str(other.parent))
            (out / "results.json").write_text(json.dumps(done, indent=1))
            return done
    source = _other_cold_rows(want, runs_dir)
    if source is not None:
        log.info("%s: the run %s with cold settings %s; scoring it again", out, source["scorer_dir"],
                 {k: getattr(settings.cold, k) for k in COLD_TREATMENT})
        return rescore_cold(settings, source)
    return train_and_test(settings)


def _other_cold_rows(want: dict, runs_dir: Path | None) -> dict | None:
    """A finished run under ``runs_dir`` that differs from ``want`` only in how cold items are
    treated after training (:data:`COLD_TREATMENT`), or None: the same trained model."""
    cold = want.get("cold") or {}
    if not runs_dir or not cold.get("fraction"):
        return None
    for other in sorted(runs_dir.glob("*/seed*/results.json")):
        done = json.loads(other.read_text())
        saved = fill_missing(done.get("settings", {}), _DEFAULTS)["cold"]
        treatment = {k: saved[k] for k in COLD_TREATMENT}
        if treatment != {k: cold.get(k) for k in COLD_TREATMENT} and _same_run(
                done.get("settings", {}), {**want, "cold": {**cold, **treatment}}):
            return done
    return None


def _describe(settings: FallbackSettings) -> dict:
    """What the ledger says about how a row was made, beyond its config file."""
    out = {"model": settings.model}
    if settings.model not in UNTRAINED:
        out["loss"] = settings.train.loss.kind
    if settings.model not in ("sasrec", "popularity"):  # the models that read the item vectors
        e = settings.encoder
        out["encoder"] = {"kind": e.kind, "model": e.model, "pooling": e.pooling, "layer": e.layer,
                          "max_length": e.max_length, "postprocess": e.postprocess, "dims": e.dims}
    return out


def _expected(report: dict, metric: str) -> float:
    """A test report's overall expected value of ``metric`` (random tie-breaking)."""
    return float(report["overall"]["exp"][metric])


def run_experiments(cfg: ExperimentsConfig) -> dict[str, dict]:
    """Run the selected experiments (every seed); returns {name: ledger entry}."""
    names = [e.name for e in cfg.experiments]
    if len(set(names)) != len(names) or not all(names):
        raise ConfigError(f"experiments need distinct non-empty names, got {names}")
    unknown = sorted(set(cfg.only) - set(names))
    if unknown:
        raise ConfigError(f"only: unknown experiment(s) {', '.join(unknown)}; known: {', '.join(names)}")
    runs_dir = Path(cfg.runs_dir) / cfg.dataset
    entries: dict[str, dict] = {}
    for exp in cfg.experiments:
        if cfg.only and exp.name not in cfg.only:
            continue
        if not exp.seeds:
            raise ConfigError(f"experiment {exp.name}: no seeds")
        results = []
        for seed in exp.seeds:
            settings = settings_for(exp, seed, runs_dir)
            log.info("experiment %s, seed %d -> %s", exp.name, seed, settings.output_dir)
            results.append(run_one(settings, runs_dir))
        command = f"python eval/run_experiments.py --config {cfg.config_path or '<experiments file>'} only={exp.name}"
        train_s = [r["training"].get("train_total_s", 0.0) for r in results]
        valid = [r["training"]["best_valid_ndcg@10"] for r in results if "best_valid_ndcg@10" in r["training"]]
        entry = entry_from_reports([r["test"] for r in results], exp.seeds, exp.config, command,
                                   overrides=list(exp.overrides), **_describe(settings),
                                   train_s_mean=round(sum(train_s) / len(train_s), 1),
                                   **({"valid_ndcg@10": round(sum(valid) / len(valid), 6)} if valid else {}),
                                   runs=[str(Path(r["scorer_dir"]).parent) for r in results])
        entry.update(cold_ledger_keys(results))
        if exp.note:
            entry["note"] = exp.note
        epoch_s = [r["training"]["seconds_per_epoch"] for r in results if r["training"].get("seconds_per_epoch")]
        if epoch_s:
            entry["seconds_per_epoch"] = round(sum(epoch_s) / len(epoch_s), 1)
        if cfg.unmasked:  # the same scorers with history items left in the ranking (published rows' way)
            unmasked = [test_report(settings_for(exp, seed, runs_dir), mask_history=False) for seed in exp.seeds]
            for k in ("ndcg@10", "recall@10"):
                entry[f"{k}_unmasked"] = round(float(np.mean([_expected(r, k) for r in unmasked])), 6)
        enc = results[0]["training"].get("item_encoding")
        if enc:
            entry["item_encoding"] = enc
        entries[exp.name] = entry
        if cfg.write_ledger:
            update_ledger(cfg.ledger, cfg.dataset, exp.name, entry)
        print(format_entries({exp.name: entry}).splitlines()[-1], flush=True)
    return entries
