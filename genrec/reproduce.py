"""Re-run ledger rows and check their numbers against expected ranges (``make reproduce-quick``).

A reproduce file names, per row, an experiments file and experiment (:mod:`genrec.esr.experiments`),
the seeds to re-run (a subset of the ledger's, to keep it quick), and for each checked metric the
range ``[low, high]`` the fresh value must fall in: the spread seen over seeds, widened for other
machines. Runs go to their own folder (``runs/reproduce``) so nothing is reused from the runs that
made the ledger, and the ledger itself is not written. A value outside its range fails the check
loudly (exit status 1), naming the row, the metric, the value and the range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from genrec.config import load_config
from genrec.errors import ConfigError
from genrec.esr.experiments import ExperimentsConfig, run_experiments


@dataclass
class Check:
    experiments: str = ""  # an experiments file (eval/configs/experiments_*.yaml)
    name: str = ""  # the experiment in it
    seeds: list[int] = field(default_factory=list)  # seeds to re-run (default: the experiment's)
    expect: dict[str, list[float]] = field(default_factory=dict)  # metric -> [low, high]


@dataclass
class ReproduceConfig:
    checks: list[Check] = field(default_factory=list)
    runs_dir: str = "runs/reproduce"


@dataclass
class Outcome:
    name: str
    metric: str
    value: float
    low: float
    high: float

    @property
    def ok(self) -> bool:
        return self.low <= self.value <= self.high


def run_checks(cfg: ReproduceConfig) -> list[Outcome]:
    """Re-run each check's experiment (fresh folders, ledger untouched) and compare its metrics."""
    outcomes = []
    for check in cfg.checks:
        if not check.expect:
            raise ConfigError(f"check {check.name}: no expected ranges")
        for metric, bounds in check.expect.items():
            if len(bounds) != 2 or bounds[0] > bounds[1]:
                raise ConfigError(f"check {check.name}.{metric}: expected [low, high], got {bounds}")
        exps = load_config(ExperimentsConfig, check.experiments)
        chosen = [e for e in exps.experiments if e.name == check.name]
        if not chosen:
            raise ConfigError(f"{check.experiments}: no experiment named {check.name!r}")
        if check.seeds:
            chosen[0].seeds = list(check.seeds)
        run = ExperimentsConfig(dataset=exps.dataset, experiments=chosen, runs_dir=str(Path(cfg.runs_dir)),
                                write_ledger=False, config_path=check.experiments)
        entry = run_experiments(run)[check.name]
        for metric, (low, high) in check.expect.items():
            if metric not in entry:
                raise ConfigError(f"check {check.name}: the run reports no {metric!r}")
            outcomes.append(Outcome(check.name, metric, float(entry[metric]), float(low), float(high)))
    return outcomes


def format_outcomes(outcomes: list[Outcome]) -> str:
    rows = ["| row | metric | value | expected | |", "|---|---|---|---|---|"]
    for o in outcomes:
        rows.append(f"| {o.name} | {o.metric} | {o.value:.4f} | [{o.low:.4f}, {o.high:.4f}] | "
                    f"{'ok' if o.ok else 'OUTSIDE'} |")
    return "\n".join(rows)
