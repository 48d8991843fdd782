"""Same seed, same numbers: two runs of the SASRec script agree exactly, and so does a run killed and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "finetune" / "train_esr.py"
ARGS = ["--config", str(REPO / "finetune/configs/esr_demo.yaml"), "model=sasrec", "train.epochs=6",
        "train.patience=100"]


def _run(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONHASHSEED": "random"}  # string hashing must not matter
    return subprocess.Popen([sys.executable, str(SCRIPT), *ARGS, f"output_dir={out}", *extra], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]


def _outcome(out: Path) -> tuple[dict, list[dict]]:
    res = json.loads((out / "results.json").read_text())
    log = json.loads((out / "checkpoints" / "train_log.json").read_text())
    history = [{k: v for k, v in row.items() if not k.endswith("_s")} for row in log["history"]]
    return res["test"], history


def test_two_runs_and_a_killed_and_resumed_run_give_identical_metrics(tmp_path):
    _finish(_run(tmp_path / "a"))
    _finish(_run(tmp_path / "b"))
    # the third run is killed (SIGKILL, no clean-up) once it has saved an epoch, then started again
    proc = _run(tmp_path / "c")
    last = tmp_path / "c" / "checkpoints" / "last.pt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if last.exists():
            try:
                if torch.load(last, weights_only=False)["epoch"] >= 1:
                    break
            except Exception:  # caught mid-rename: try again
                pass
        time.sleep(0.05)
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert killed, "the run ended before it could be killed; give it more epochs"
    assert not (tmp_path / "c" / "results.json").exists()
    _finish(_run(tmp_path / "c"))
    test_a, hist_a = _outcome(tmp_path / "a")
    test_b, hist_b = _outcome(tmp_path / "b")
    test_c, hist_c = _outcome(tmp_path / "c")
    assert test_a == test_b and hist_a == hist_b
    assert test_a == test_c and hist_a == hist_c
    assert len(hist_a) == 6 and test_a["overall"]["opt"]["ndcg@10"] > 0
