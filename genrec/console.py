"""What a person sees in the terminal, and where everything else goes.

Scripts and the main job show a header per step, one progress bar per long step (rate and
ETA), a one-line summary per step and their final table. Everything the libraries say —
vLLM's engine log (also from its engine processes), transformers and torch warnings and
weight-loading bars, uvicorn's access lines, the ``logging`` INFO lines of genrec's own
modules — goes to a log file in the run's folder. ``--verbose`` (or ``GENREC_LOG=debug``)
shows all of it on the console instead. Warnings of genrec's own modules stay visible, once
each, as ``warning: ...``.

How: :func:`setup` points file descriptors 1 and 2 at the log file, so C-level output and
child processes (vLLM's engine core inherits them) write there, while ``sys.stdout`` and
``sys.stderr`` are re-opened on copies of the terminal's descriptors, so Python-level output
(``print``, tracebacks, our bars) still reaches the terminal. Loggers go to the file through
the root logger; vLLM (``VLLM_LOGGING_CONFIG_PATH``) and transformers, which install
handlers of their own, are pointed there too.

Usage::

    from genrec import console

    log_file = console.setup("runs/x/logs", "train")
    with console.step(1, 2, "fine-tuning") as st:
        for _ in console.progress(range(10), desc="stage 1", unit="step"):
            ...
        st.done("10 steps, loss 2.31 -> 1.87")
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

LOG_ENV = "GENREC_LOG"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _State:
    log_path: Path | None = None
    console: TextIO | None = None          # the terminal, whatever fds 1/2 now point at
    saved_fds: tuple[int, int] | None = None
    saved_streams: tuple[TextIO, TextIO] | None = None
    handlers: list[logging.Handler] = []
    seen: set[str] = set()


_state = _State()


def is_verbose() -> bool:
    """``GENREC_LOG=debug`` (set by ``--verbose``): library logs on the console too."""
    return os.environ.get(LOG_ENV, "").strip().lower() in ("debug", "verbose", "info", "1", "true")


def out() -> TextIO:
    """The terminal stream (stdout as it was before :func:`setup`)."""
    return _state.console or sys.stdout


def log_path() -> Path | None:
    """The log file of this process, once :func:`setup` has run with a folder."""
    return _state.log_path


# -- set-up ----------------------------------------------------------------------------------
class _GenrecWarnings(logging.Filter):
    """genrec's own warnings, each distinct message once (a repeated cut or fallback is one line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not (record.name.startswith("genrec") or record.name == "__main__"):
            return False
        key = record.getMessage()
        if key in _state.seen:
            return False
        _state.seen.add(key)
        return True


class _NoEcho(logging.Filter):
    """Lines :func:`say` / :func:`warn` already printed are logged for the file only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != "genrec.console"


class _ConsoleHandler(logging.StreamHandler):
    """Writes to the current terminal stream (looked up per record: tests swap sys.stdout)."""

    def __init__(self) -> None:
        super().__init__(io.StringIO())

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = out()
        super().emit(record)


def quiet_library_env(log_file: Path | None, verbose: bool) -> None:
    """Environment read by libraries at import (and by vLLM's engine processes)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if verbose:
        return
    os.environ["VLLM_LOGGING_LEVEL"] = os.environ.get("VLLM_LOGGING_LEVEL", "INFO")
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if log_file is not None:
        # vLLM installs its own handler (stdout by default) in every process that imports it;
        # this config gives it a file handler on our log instead, in the engine processes too.
        config = {
            "version": 1, "disable_existing_loggers": False,
            "formatters": {"plain": {"format": _FORMAT}},
            "handlers": {"file": {"class": "logging.FileHandler", "filename": str(log_file), "mode": "a",
                                  "formatter": "plain", "level": os.environ["VLLM_LOGGING_LEVEL"]}},
            "loggers": {"vllm": {"handlers": ["file"], "level": os.environ["VLLM_LOGGING_LEVEL"],
                                 "propagate": False}},
        }
        cfg_path = log_file.parent / ".vllm_logging.json"
        cfg_path.write_text(json.dumps(config))
        os.environ["VLLM_CONFIGURE_LOGGING"] = "1"
        os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(cfg_path)
    else:
        os.environ["VLLM_CONFIGURE_LOGGING"] = "0"  # then its records reach our root logger


def _route_transformers(verbose: bool) -> None:
    """transformers keeps a stderr handler of its own: send its records to ours instead, and
    turn its progress bars (weight loading) off unless verbose."""
    try:
        from transformers.utils import logging as tlog
    except Exception:  # noqa: BLE001 - transformers absent or broken: nothing to route
        return
    tlog.disable_default_handler()
    tlog.enable_propagation()
    tlog.set_verbosity(logging.INFO)
    if not verbose:
        tlog.disable_progress_bar()


def _capture_fds(log_file: Path) -> None:
    """fds 1 and 2 → the log file; sys.stdout / sys.stderr → copies of the terminal's fds."""
    if _state.saved_fds is not None:
        fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        return
    for s in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            s.flush()
    saved = (os.dup(1), os.dup(2))
    _state.saved_fds = saved
    _state.saved_streams = (sys.stdout, sys.stderr)
    enc = getattr(sys.stdout, "encoding", None) or "utf-8"
    term_out = open(os.dup(saved[0]), "w", encoding=enc, errors="replace", buffering=1, closefd=True)  # noqa: SIM115
    term_err = open(os.dup(saved[1]), "w", encoding=enc, errors="replace", buffering=1, closefd=True)  # noqa: SIM115
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout, sys.stderr = term_out, term_err
    _state.console = term_out


def setup(log_dir: str | Path | None = None, name: str = "genrec", capture_fds: bool = True) -> Path | None:
    """Route library logs to ``<log_dir>/<name>.log`` (appended); returns its path.

    ``capture_fds=False`` leaves the process's file descriptors alone (in-process use, tests):
    then only Python loggers are routed. Without ``log_dir`` nothing goes to a file and library
    INFO lines are dropped. Calling it again moves the log to the new file.
    """
    verbose = is_verbose()
    log_file = None
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        log_file = Path(log_dir).resolve() / f"{name}.log"
        with open(log_file, "a", encoding="utf-8") as f:
            f.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}\n")
    quiet_library_env(log_file, verbose)

    root = logging.getLogger()
    for h in _state.handlers:
        root.removeHandler(h)
        h.close()
    _state.handlers = []
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if log_file is not None:
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setFormatter(logging.Formatter(_FORMAT))
        _state.handlers.append(fh)
    ch = _ConsoleHandler()
    ch.addFilter(_NoEcho())
    if verbose:
        ch.setLevel(logging.INFO)
        ch.setFormatter(logging.Formatter(_FORMAT))
    else:
        ch.setLevel(logging.WARNING)
        ch.addFilter(_GenrecWarnings())
        ch.setFormatter(logging.Formatter("  warning: %(message)s"))
    _state.handlers.append(ch)
    for h in _state.handlers:
        root.addHandler(h)
    logging.captureWarnings(True)  # warnings.warn → the py.warnings logger → the log file
    for noisy in ("httpx", "httpcore", "urllib3", "filelock", "matplotlib", "PIL", "numba", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _route_transformers(verbose)
    if log_file is not None and capture_fds and not verbose:
        _capture_fds(log_file)
    _state.log_path = log_file
    return log_file


def restore() -> None:
    """Undo :func:`setup`'s descriptor redirection and handlers (tests, embedding callers)."""
    root = logging.getLogger()
    for h in _state.handlers:
        root.removeHandler(h)
        h.close()
    _state.handlers = []
    if _state.saved_fds is not None:
        for s in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                s.flush()
        os.dup2(_state.saved_fds[0], 1)
        os.dup2(_state.saved_fds[1], 2)
        for fd in _state.saved_fds:
            os.close(fd)
        term_out, term_err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _state.saved_streams
        for s in (term_out, term_err):
            with contextlib.suppress(Exception):
                s.close()
        _state.saved_fds = None
        _state.saved_streams = None
    _state.console = None
    _state.log_path = None
    _state.seen = set()


# -- what the console shows ------------------------------------------------------------------
def say(text: str = "") -> None:
    """A line on the console (and in the log, so the log tells the whole story)."""
    print(text, file=out(), flush=True)
    if text.strip():
        logging.getLogger("genrec.console").info(text.strip())


def warn(text: str) -> None:
    """A warning a person should act on, in plain words, shown once per distinct text."""
    if text in _state.seen:
        return
    _state.seen.add(text)
    print(f"  warning: {text}", file=out(), flush=True)
    logging.getLogger("genrec.console").warning(text)


def error(text: str) -> None:
    """A one-line error on the terminal's stderr, pointing at the log for the details."""
    where = f" (details in {_state.log_path})" if _state.log_path is not None else ""
    print(f"error: {text}{where}", file=sys.stderr, flush=True)
    logging.getLogger("genrec.console").error(text)


def progress(iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "it",
             initial: int = 0, leave: bool = True, **kwargs: Any):
    """A tqdm bar on the console with a rate and an ETA; with ``leave`` it stays as one line."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=f"  {desc}", unit=unit, initial=initial, file=out(),
                ncols=_width(), nrows=50, mininterval=0.5, leave=leave, **kwargs)


def _width() -> int:
    """The terminal's width, capped at 120; 100 where it reports none (a pipe, or a pty of width 0,
    on which tqdm would draw an empty bar)."""
    try:
        columns = os.get_terminal_size(out().fileno()).columns
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        columns = 0
    if columns <= 0:
        columns = int(os.environ.get("COLUMNS", "0") or 0) or 100
    return min(columns, 120)


class Step:
    """A step of a run: a header when it starts, one summary line with its time when it ends."""

    def __init__(self, index: int | None, total: int | None, title: str) -> None:
        self.index, self.total, self.title = index, total, title
        self.summary: str | None = None
        self.started = time.time()

    def done(self, summary: str) -> None:
        self.summary = summary

    @property
    def seconds(self) -> float:
        return time.time() - self.started


@contextlib.contextmanager
def step(index: int | None, total: int | None, title: str) -> Iterator[Step]:
    """``[i/n] title`` now, ``  done in N s: summary`` (or ``failed``) at the end."""
    number = f"[{index}/{total}] " if index is not None and total is not None else ""
    say(f"\n{number}{title}")
    st = Step(index, total, title)
    try:
        yield st
    except BaseException:
        say(f"  failed after {st.seconds:.0f} s")
        raise
    say(f"  done in {st.seconds:.0f} s" + (f": {st.summary}" if st.summary else ""))


def install_excepthook() -> None:
    """An uncaught exception: its traceback to the log, one line (and where to look) on the console."""
    previous = sys.excepthook

    def hook(tp, value, tb):
        if _state.log_path is None or is_verbose() or issubclass(tp, KeyboardInterrupt):
            previous(tp, value, tb)
            return
        logging.getLogger("genrec").error("uncaught exception", exc_info=(tp, value, tb))
        error(f"{tp.__name__}: {value}")

    sys.excepthook = hook
