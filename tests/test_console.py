"""genrec.console in a real process: what reaches the terminal, what goes to the log file.

Each case runs a small program in a subprocess (the set-up redirects the process's file
descriptors, which pytest's own capture must not see) and reads its real stdout/stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROGRAM = textwrap.dedent('''
    import logging, os, subprocess, sys, warnings
    from genrec import console

    log_file = console.setup(sys.argv[1], "job")
    with console.step(1, 2, "first step") as st:
        print("plain print reaches the terminal")
        logging.getLogger("genrec.training").info("genrec INFO line")
        logging.getLogger("genrec.training").warning("the length guard cut 3 rows")
        logging.getLogger("genrec.training").warning("the length guard cut 3 rows")
        logging.getLogger("vllm.engine").warning("engine WARNING line")
        logging.getLogger("uvicorn.access").info("GET / 200 access line")
        from transformers.utils import logging as tlog
        tlog.get_logger("transformers.modeling_utils").warning("transformers WARNING line")
        warnings.warn("a library DeprecationWarning", DeprecationWarning, stacklevel=1)
        os.write(2, b"C-level write to fd 2\\n")
        os.write(1, b"C-level write to fd 1\\n")
        subprocess.run([sys.executable, "-c", "import sys; print('child stdout'); print('child stderr', file=sys.stderr)"])
        for _ in console.progress(range(3), desc="work", unit="it"):
            pass
        st.done("3 things")
    console.warn("a plain-words warning")
    console.warn("a plain-words warning")
    print("log file:", log_file)
''')

LIBRARY_LINES = ["genrec INFO line", "engine WARNING line", "GET / 200 access line", "transformers WARNING line",
                 "a library DeprecationWarning", "C-level write to fd 2", "C-level write to fd 1", "child stdout",
                 "child stderr"]


def run(tmp_path: Path, **env: str) -> tuple[str, str, Path]:
    script = tmp_path / "job.py"
    script.write_text(PROGRAM)
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **env}
    full_env.pop("GENREC_LOG", None) if "GENREC_LOG" not in env else None
    logs = tmp_path / "logs"
    done = subprocess.run([sys.executable, str(script), str(logs)], capture_output=True, text=True, env=full_env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr, logs / "job.log"


def test_terminal_shows_steps_and_warnings_library_logs_go_to_the_file(tmp_path):
    stdout, stderr, log = run(tmp_path)
    terminal = stdout + stderr
    assert "[1/2] first step" in stdout and "done in 0 s: 3 things" in stdout
    assert "plain print reaches the terminal" in stdout
    assert terminal.count("warning: the length guard cut 3 rows") == 1  # genrec's warning, once
    assert terminal.count("warning: a plain-words warning") == 1
    assert "work" in stderr or "work" in stdout  # the progress bar
    for line in LIBRARY_LINES:
        assert line not in terminal, line
    text = log.read_text()
    for line in LIBRARY_LINES:
        assert line in text, line
    assert "[1/2] first step" in text and "the length guard cut 3 rows" in text  # the log tells the whole story
    lines = [ln for ln in stdout.split("\n") if ln.strip() and "%|" not in ln]  # bar redraws aside
    assert len(lines) == 6, lines  # header, print, warning, summary, warning, log file


def test_verbose_shows_library_logs_on_the_terminal(tmp_path):
    stdout, stderr, log = run(tmp_path, GENREC_LOG="debug")
    terminal = stdout + stderr
    for line in ["genrec INFO line", "engine WARNING line", "transformers WARNING line", "C-level write to fd 2",
                 "child stdout"]:
        assert line in terminal, line
    assert "genrec INFO line" in log.read_text()  # and still in the file


def test_uncaught_error_is_one_line_with_the_log_path(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(textwrap.dedent('''
        import sys
        from genrec import console
        console.setup(sys.argv[1], "fail")
        console.install_excepthook()
        def deep():
            raise ValueError("bad value in settings")
        deep()
    '''))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("GENREC_LOG", None)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "logs")], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: ValueError: bad value in settings (details in {tmp_path / 'logs' / 'fail.log'})"]
    assert "Traceback" in (tmp_path / "logs" / "fail.log").read_text()
