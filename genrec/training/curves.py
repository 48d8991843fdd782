"""Loss curves of a CALRec run, read back from each stage's ``metrics.jsonl``.

A long CPU run is continued across invocations, so a stage's log can repeat steps (a resumed
run logs again from its checkpoint); the last record of a step wins, which is the curve the
finished adapter actually followed. Windowed means of L_NIG, L_TT and L_UT per stage make the
Markdown table a results page or closing note shows; the PNG draws the raw logged points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from genrec.data.jsonl import read_json_lines
from genrec.errors import ConfigError, DataError

from .config import LossConfig
from .stages import METRICS_FILE

TRAIN_KEYS = ("loss", "nig", "tt", "ut")
EVAL_KEYS = ("eval_loss", "eval_nig", "eval_tt", "eval_ut", "eval_ndcg@10")


@dataclass
class StageLog:
    """One stage's training records (one per logged step) and evaluation records."""

    name: str
    train: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    # InfoNCE candidates per row, when known: {objective: (training, validation)}
    negatives: dict[str, tuple[int, int]] | None = None

    def chance(self, objective: str = "tt") -> tuple[float, float] | None:
        """ln of the candidates ``objective`` (tt | ut) picks among: in training (with the queue if
        that objective used it, per the stage's saved settings) and in validation (in-batch)."""
        if self.negatives is None:
            return None
        train, valid = self.negatives[objective]
        return math.log(train), math.log(valid)

    @property
    def wall_s(self) -> float:
        """Seconds between the first and the last training record (pauses between invocations included)."""
        times = [r["time"] for r in self.train if "time" in r]
        return max(times) - min(times) if len(times) > 1 else 0.0


def read_stage_log(run_dir: str | Path, name: str | None = None) -> StageLog:
    """Read ``run_dir/metrics.jsonl``; a last line cut by a kill is skipped."""
    run_dir = Path(run_dir)
    path = run_dir / METRICS_FILE if run_dir.is_dir() else run_dir
    if not path.exists():
        raise DataError(path, "no training log here (is this a finetune/train_calrec.py output_dir?)")
    train: dict[int, dict] = {}
    evals: dict[int, dict] = {}
    for lineno, row in read_json_lines(path, "training log", allow_cut_tail=True):
        if not isinstance(row.get("step"), int):
            raise DataError(path, "a log record needs an integer 'step'", line=lineno, field="step")
        if "eval_loss" in row or "eval_ndcg@10" in row:
            evals.setdefault(row["step"], {}).update(row)  # loss and ranking are logged apart
        elif "loss" in row:
            train[row["step"]] = row
    return StageLog(name or run_dir.name, [train[s] for s in sorted(train)], [evals[s] for s in sorted(evals)],
                    _negatives(path.parent / "train_config.yaml"))


def _negatives(config: Path) -> dict[str, tuple[int, int]] | None:
    """Per objective, (batch + queue if it uses the queue, validation batch) from the stage's
    saved settings, if it has them."""
    import yaml

    if not config.exists():
        return None
    cfg = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    batch = int(cfg.get("batch_size", 0))
    loss = cfg.get("loss") or {}
    queue = int(loss.get("queue_size", 0) or 0)
    queued = loss.get("queue_for", LossConfig().queue_for)
    valid = int((cfg.get("validation") or {}).get("batch_size", 0))
    if not (batch and valid):
        return None
    return {k: (batch + (queue if k in queued else 0), valid) for k in ("tt", "ut")}


def windowed_means(rows: list[dict], window: int, keys: tuple[str, ...] = TRAIN_KEYS) -> list[dict]:
    """Mean of each key over steps (0, w], (w, 2w], ...; ``first`` and ``step`` are the first and
    last step the window can hold, ``step`` cut to the last logged step (a stage shorter than
    its last window)."""
    if window < 1:
        raise ConfigError(f"window: must be ≥ 1, got {window}")
    buckets: dict[int, list[dict]] = {}
    for r in rows:
        buckets.setdefault(math.ceil(r["step"] / window), []).append(r)
    out = []
    last = max((r["step"] for r in rows), default=0)
    for b in sorted(buckets):
        group = buckets[b]
        row: dict = {"first": (b - 1) * window + 1, "step": min(b * window, last), "records": len(group)}
        for k in keys:
            vals = [float(r[k]) for r in group if k in r]
            row[k] = sum(vals) / len(vals) if vals else None
        out.append(row)
    return out


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def curves_markdown(stages: list[StageLog], window: int) -> str:
    """A table of windowed NIG / TT / UT (and total) per stage, then the evaluation records."""
    lines = ["| stage | steps | loss | L_NIG | L_TT | L_UT |", "|---|---|---|---|---|---|"]
    for st in stages:
        for w in windowed_means(st.train, window):
            lines.append(f"| {st.name} | {w['first']}–{w['step']} | {_fmt(w['loss'])} | "
                         f"{_fmt(w['nig'])} | {_fmt(w['tt'])} | {_fmt(w['ut'])} |")
    evals = [(st.name, r) for st in stages for r in st.evals]
    if evals:
        lines += ["", "| stage | step | val loss | val L_NIG | val L_TT | val L_UT | val NDCG@10 |",
                  "|---|---|---|---|---|---|---|"]
        for name, r in evals:
            lines.append(f"| {name} | {r['step']} | " + " | ".join(_fmt(r.get(k)) for k in EVAL_KEYS) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(stages: list[StageLog], path: str | Path, marks: Sequence[tuple[int, str]] = ()) -> None:
    """L_NIG, L_TT, L_UT (training lines, validation markers, chance levels dashed) and validation
    NDCG@10 against the global step, stages drawn one after another; ``marks``: (global step,
    label) drawn as vertical lines, e.g. where a run was resumed with changed settings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8), sharex=True)
    offset = 0
    for st in stages:
        steps = [r["step"] + offset for r in st.train]
        for ax, key in zip(axes, ("nig", "tt", "ut")):
            line, = ax.plot(steps, [r.get(key) for r in st.train], label=f"{st.name} (train)", lw=1)
            points = [(r["step"] + offset, r[f"eval_{key}"]) for r in st.evals if r.get(f"eval_{key}") is not None]
            if points:
                ax.plot(*zip(*points), "o", color=line.get_color(), label=f"{st.name} (validation)")
            chance = st.chance(key) if key != "nig" else None
            if chance and steps:
                ax.hlines(chance, steps[0], steps[-1], colors=line.get_color(), linestyles=["--", ":"], lw=0.8)
        ranked = [(r["step"] + offset, r["eval_ndcg@10"]) for r in st.evals if r.get("eval_ndcg@10") is not None]
        if ranked:
            axes[3].plot(*zip(*ranked), "o-", label=st.name)
        offset = steps[-1] if steps else offset
    titles = ("L_NIG (target tokens)", "L_TT (InfoNCE; dashed: chance, train -- / valid ..)",
              "L_UT (InfoNCE; dashed: chance)", "validation NDCG@10 (QRR)")
    for step, label in marks:
        for ax in axes:
            ax.axvline(step, color="gray", lw=0.8, ls="-.")
        axes[2].annotate(label, (step, 0.98), xycoords=("data", "axes fraction"), fontsize=7, va="top", ha="right",
                         rotation=90, color="gray")
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step (stages in sequence)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
