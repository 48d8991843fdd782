"""The results ledger ``docs/results/summary.json``: one entry per (dataset, method), from real runs.

Format: ``{dataset: {method: {"ndcg@10_expected": .., "ndcg@10": .., "ndcg@10_pes": .., "recall@10": ..,
"recall@1": .., "mrr@10": .., "mrr": .., "tail_items_ndcg@10": .., "n_users": .., "seeds": [..],
"config": "path", "command": "..", "date": "YYYY-MM-DD", "commit": ".."}}}``.

Each metric is a mean over the seeds in three readings (SPEC.md §12): ``<metric>_expected``, the
expected value under random tie-breaking and the row's headline; ``<metric>`` with optimistic
ranks; ``<metric>_pes`` with pessimistic ones. ``mrr`` is the full-ranking MRR, ``mrr@10``
RecBole's truncated one. Generative rows also count ``n_empty``, the users whose generation
grounded to nothing (every item tied: optimistic rank 1). A row run with several seeds holds
``"<metric>_std"`` (sample standard deviation over seeds) for NDCG@10 (each reading) and the
tail-item NDCG@10. Other keys (loss, encoder, wall time, the run folders) say how the number was made.

Rows written before the expected reading existed kept no per-user ranks: where their optimistic
and pessimistic means agree the expected value is that same number (``expected_from: "opt ==
pes"``, filled by :func:`backfill_expected`); elsewhere it is ``null`` with its bounds
``[pes, opt]`` until the row is measured again.

Entries are merged into the file: writing one method never drops another's.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from genrec.run_record import git_state

METRICS = ("ndcg@10", "recall@10", "recall@1", "mrr@10", "mrr")
GROUP_METRICS = (("tail_items", "ndcg@10"), ("head_items", "ndcg@10"), ("tail_users", "ndcg@10"),
                 ("head_users", "ndcg@10"))
SUFFIX = {"exp": "_expected", "opt": "", "pes": "_pes"}
HEADLINE = "ndcg@10_expected"
STD_KEYS = (HEADLINE, "ndcg@10", "tail_items_ndcg@10")
REMEASURE = ("measured before the expected (random tie-breaking) value was kept, with ties (opt != pes) and "
             "without per-user ranks: re-run the row to get it")


def _values(report: Mapping, side: str) -> dict[str, float | None]:
    """The ledger's metrics of one test report (``genrec.metrics.evaluate_ranking``), one side.

    A report from before the ``exp`` side (a finished run that is reused) gives its expected
    value only where opt == pes (then exactly that number), else None."""
    suffix = SUFFIX[side]
    cells = [("overall", m) for m in METRICS] + list(GROUP_METRICS)
    out: dict[str, float | None] = {}
    for group, m in cells:
        key = f"{m}{suffix}" if group == "overall" else f"{group}_{m}{suffix}"
        g = report[group]
        if side in g:
            out[key] = float(g[side][m]) if m in g[side] else None
        else:
            opt, pes = g["opt"].get(m), g["pes"].get(m)
            out[key] = float(opt) if opt is not None and opt == pes else None
    return out


def _mean(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else round(float(np.mean(values)), 6)


def provenance() -> dict[str, str]:
    """When and from which commit a row was written (``-dirty``: with uncommitted changes)."""
    out = {"date": datetime.datetime.now(datetime.UTC).date().isoformat()}
    git = git_state()
    if git and git.get("commit"):
        out["commit"] = git["commit"][:12] + ("-dirty" if git.get("dirty") else "")
    return out


def entry_from_reports(reports: Sequence[Mapping], seeds: Sequence[int], config: str, command: str,
                       **extra) -> dict:
    """One ledger entry: the mean over seeds of each metric (expected, opt and pes), stds where
    seeds > 1, ``n_empty`` where the reports count it, and the date and commit it was written at."""
    if not reports:
        raise ValueError("a ledger entry needs at least one test report")
    per_seed = [{**_values(r, "exp"), **_values(r, "opt"), **_values(r, "pes")} for r in reports]
    entry: dict = {k: _mean([p[k] for p in per_seed]) for k in per_seed[0]}
    entry = {k: v for k, v in entry.items() if v is not None or k.endswith("_expected")}
    if len(reports) > 1:
        for k in STD_KEYS:
            if entry.get(k) is not None:
                entry[f"{k}_std"] = round(float(np.std([p[k] for p in per_seed], ddof=1)), 6)
        entry["per_seed_ndcg@10"] = [round(p["ndcg@10"], 6) for p in per_seed]
    users = {int(r["overall"]["n"]) for r in reports}
    if len(users) != 1:
        raise ValueError(f"seeds were evaluated on different user counts: {sorted(users)}")
    empty = [r["overall"]["n_empty"] for r in reports if "n_empty" in r["overall"]]
    if empty:
        entry["n_empty"] = empty[0] if len(empty) == 1 else round(float(np.mean(empty)), 2)
    entry.update(n_users=users.pop(), seeds=[int(s) for s in seeds], config=config, command=command,
                 **provenance(), **extra)
    return entry


def backfill_expected(entry: Mapping, generative: bool = False) -> dict:
    """A row written before the expected reading, with what its means can say exactly.

    Per user a metric is non-increasing in the rank, so a mean whose optimistic and pessimistic
    values agree has every user's agree, and its expected value is that number: such a row gets
    every ``<metric>_expected`` and ``expected_from: "opt == pes"``. A row where they differ
    (ties) gets ``ndcg@10_expected`` and ``recall@10_expected`` null with their ``[pes, opt]``
    bounds and a note to re-measure it; ``generative`` rows also get ``n_empty`` null. Values
    are never invented: a row that already has ``ndcg@10_expected`` is returned unchanged."""
    out = dict(entry)
    if HEADLINE in out:
        return out
    pairs = [k for k in out if f"{k}_pes" in out and isinstance(out[k], (int, float))]
    if pairs and all(out[k] == out[f"{k}_pes"] for k in pairs):
        out.update({f"{k}_expected": out[k] for k in pairs}, expected_from="opt == pes")
        # each seed's opt >= pes too, so every seed agreed: the spread over seeds is the same
        out.update({f"{k}_expected_std": out[f"{k}_std"] for k in pairs if f"{k}_std" in out})
    else:
        for k in ("ndcg@10", "recall@10"):
            out[f"{k}_expected"] = None
            out[f"{k}_expected_bounds"] = [out[f"{k}_pes"], out[k]]
        out["expected_note"] = REMEASURE
    if generative and "n_empty" not in out:
        out["n_empty"] = None
    return out


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


def _num(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def _headline(e: Mapping) -> str:
    """The expected NDCG@10 (± std over seeds), or, for a row that must be measured again, its bounds."""
    if e.get(HEADLINE) is not None:
        return _num(e[HEADLINE], e.get(f"{HEADLINE}_std"))
    bounds = e.get(f"{HEADLINE}_bounds")
    return f"— (in [{bounds[0]:.4f}, {bounds[1]:.4f}], re-measure)" if bounds else "—"


def format_entries(entries: Mapping[str, Mapping]) -> str:
    """A Markdown table of ledger entries whose first metric column is the expected NDCG@10 (random
    tie-breaking, the headline), then the optimistic and pessimistic NDCG@10, expected Recall@10 and
    MRR@10, users and seeds; ``n_empty`` where a row has it, and the date and commit where rows
    have them. Means over seeds, ± the std where several seeds ran."""
    rows = list(entries.values())
    empty = any("n_empty" in e for e in rows)
    dated = any("date" in e or "commit" in e for e in rows)
    head = ["method", "NDCG@10 (expected)", "NDCG@10 opt", "NDCG@10 pes", "R@10 (expected)", "MRR@10 (expected)",
            "users", "seeds"] + (["n_empty"] if empty else []) + (["date", "commit"] if dated else [])
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, e in entries.items():
        cells = [name, _headline(e), _num(e.get("ndcg@10"), e.get("ndcg@10_std")), _num(e.get("ndcg@10_pes")),
                 _num(e.get("recall@10_expected")), _num(e.get("mrr@10_expected")), str(e.get("n_users", "")),
                 str(len(e.get("seeds", [])))]
        if empty:
            cells.append("—" if e.get("n_empty") is None else str(e["n_empty"]))
        if dated:
            cells += [str(e.get("date", "")), str(e.get("commit", ""))]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def format_groups(entries: Mapping[str, Mapping]) -> str:
    """Expected NDCG@10 (random tie-breaking; mean over seeds) overall and for head/tail users and
    items; "—" where a row kept no expected value (ties, measured before it was kept)."""
    groups = ("", "head_users_", "tail_users_", "head_items_", "tail_items_")
    rows = ["| method | overall | head users | tail users | head items | tail items |", "|---|---|---|---|---|---|"]
    for name, e in entries.items():
        rows.append(f"| {name} | " + " | ".join(_num(e.get(f"{g}ndcg@10_expected")) for g in groups) + " |")
    return "\n".join(rows)


def format_cold(entries: Mapping[str, Mapping]) -> str:
    """The cold-item protocol's table (rows with ``ndcg@10_cold``; :mod:`genrec.esr.cold_protocol`):
    expected NDCG@10 on cold-target, warm-target and all test events (means over the cold-set seeds,
    ± the mean 95% half-width over a run's events for cold and warm), expected Recall@10 on cold
    events, the event counts and the seeds. Rows without the keys are left out; a row measured on
    the cold-target events only (``targets: cold``) shows "—" for the rest."""
    head = ["method", "NDCG@10 cold ± 95%", "NDCG@10 warm ± 95%", "NDCG@10 all", "R@10 cold", "n cold", "n warm", "seeds",
            "date", "commit"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, e in entries.items():
        if "ndcg@10_cold" not in e:
            continue
        n = {k: "—" if k not in e else e[k] if isinstance(e[k], int) else
             "–".join(str(x) for x in (min(e[k]), max(e[k]))) for k in ("n_cold", "n_warm")}
        part = e.get("targets", "all") != "all"  # a row measured on one side only (the generative path's cold users)
        out.append("| " + " | ".join([
            name, _num(e["ndcg@10_cold"], e.get("ndcg@10_cold_ci95")),
            _num(e.get("ndcg@10_warm"), e.get("ndcg@10_warm_ci95")),
            "—" if part else _num(e.get(HEADLINE)), _num(e.get("recall@10_cold")), str(n["n_cold"]), str(n["n_warm"]),
            str(len(e.get("seeds", []))), str(e.get("date", "")), str(e.get("commit", ""))]) + " |")
    return "\n".join(out)
