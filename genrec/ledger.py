"""The results ledger ``docs/results/summary.json``: one entry per (dataset, method), from real runs.

Format: ``{dataset: {method: {"ndcg@10": .., "recall@10": .., "recall@1": .., "mrr": ..,
"tail_items_ndcg@10": .., "n_users": .., "seeds": [..], "config": "path", "command": ".."}}}``.
Metric values are optimistic ranks averaged over the seeds; pessimistic values carry the
suffix ``_pes``; a row run with several seeds also holds ``"<metric>_std"`` (sample standard
deviation over seeds) for NDCG@10 and the tail-item NDCG@10. Other keys (loss, encoder, wall
time, the run folders) say how the number was made.

Entries are merged into the file: writing one method never drops another's.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

METRICS = ("ndcg@10", "recall@10", "recall@1", "mrr")
GROUP_METRICS = (("tail_items", "ndcg@10"), ("head_items", "ndcg@10"), ("tail_users", "ndcg@10"),
                 ("head_users", "ndcg@10"))
STD_KEYS = ("ndcg@10", "tail_items_ndcg@10")


def _values(report: Mapping, side: str) -> dict[str, float]:
    """The ledger's metrics of one test report (``genrec.metrics.evaluate_ranking``), one side."""
    suffix = "" if side == "opt" else "_pes"
    out = {f"{m}{suffix}": float(report["overall"][side][m]) for m in METRICS}
    for group, m in GROUP_METRICS:
        out[f"{group}_{m}{suffix}"] = float(report[group][side][m])
    return out


def entry_from_reports(reports: Sequence[Mapping], seeds: Sequence[int], config: str, command: str,
                       **extra) -> dict:
    """One ledger entry: the mean over seeds of each metric (opt and pes), stds where seeds > 1."""
    if not reports:
        raise ValueError("a ledger entry needs at least one test report")
    per_seed = [{**_values(r, "opt"), **_values(r, "pes")} for r in reports]
    entry: dict = {k: round(float(np.mean([p[k] for p in per_seed])), 6) for k in per_seed[0]}
    if len(reports) > 1:
        for k in STD_KEYS:
            entry[f"{k}_std"] = round(float(np.std([p[k] for p in per_seed], ddof=1)), 6)
        entry["per_seed_ndcg@10"] = [round(p["ndcg@10"], 6) for p in per_seed]
    users = {int(r["overall"]["n"]) for r in reports}
    if len(users) != 1:
        raise ValueError(f"seeds were evaluated on different user counts: {sorted(users)}")
    entry.update(n_users=users.pop(), seeds=[int(s) for s in seeds], config=config, command=command, **extra)
    return entry


def script_argv(script: str) -> list[str]:
    """The command line writing a ledger row: ``sys.argv`` when ``script`` (e.g.
    ``eval/evaluate.py``) is what runs, else the bare script (a call from a test or a tool)."""
    return sys.argv if sys.argv and sys.argv[0].endswith(Path(script).name) else [script]


def read_ledger(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def update_ledger(path: str | os.PathLike, dataset: str, method: str, entry: Mapping) -> dict:
    """Write ``entry`` under ``dataset`` → ``method`` (replacing that entry only), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Two experiment runs (one per core, say) may finish rows at the same moment: the lock keeps
    # one's read-modify-write from dropping the other's row. The folder is what is locked: the file
    # itself is replaced on every write, and a lock file would be left behind.
    lock = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ledger = read_ledger(path)
        ledger.setdefault(dataset, {})[method] = dict(entry)
        ledger = {d: dict(sorted(m.items())) for d, m in sorted(ledger.items())}
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(ledger, indent=1) + "\n")
        os.replace(tmp, path)
    finally:
        os.close(lock)  # releases the lock
    return ledger


def format_entries(entries: Mapping[str, Mapping]) -> str:
    """A Markdown table of ledger entries (mean ± std where several seeds ran)."""
    head = ("| method | seeds | NDCG@10 (pes where ties) | R@10 | R@1 | MRR | tail-item NDCG@10 | head-item NDCG@10 "
            "| users |\n|---|---|---|---|---|---|---|---|---|")
    rows = [head]
    for name, e in entries.items():
        def cell(key: str, e=e) -> str:
            std = e.get(f"{key}_std")
            return f"{e[key]:.4f}" + (f" ± {std:.4f}" if std is not None else "")

        # Generative rows rank with ties (QRR's unmatched items, a constrained mode's undecoded
        # ones), where the optimistic value alone can flatter a mode: show the pessimistic too.
        pes = e.get("ndcg@10_pes")
        ndcg = cell("ndcg@10") + (f" (pes {pes:.4f})" if pes is not None and round(pes, 4) != round(e["ndcg@10"], 4)
                                  else "")
        rows.append(f"| {name} | {len(e['seeds'])} | {ndcg} | {e['recall@10']:.4f} | "
                    f"{e['recall@1']:.4f} | {e['mrr']:.4f} | {cell('tail_items_ndcg@10')} | "
                    f"{e['head_items_ndcg@10']:.4f} | {e['n_users']} |")
    return "\n".join(rows)


def format_groups(entries: Mapping[str, Mapping]) -> str:
    """NDCG@10 (optimistic, mean over seeds) overall and for head/tail users and items."""
    rows = ["| method | overall | head users | tail users | head items | tail items |", "|---|---|---|---|---|---|"]
    for name, e in entries.items():
        rows.append(f"| {name} | {e['ndcg@10']:.4f} | {e['head_users_ndcg@10']:.4f} | {e['tail_users_ndcg@10']:.4f} | "
                    f"{e['head_items_ndcg@10']:.4f} | {e['tail_items_ndcg@10']:.4f} |")
    return "\n".join(rows)
