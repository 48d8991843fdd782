"""Same seed, same numbers: two runs of the training script agree exactly, and so does a run killed and
resumed, for SASRec and for HLLM (its tuned item tower and pretrained LLM user blocks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import kill_after_first_epoch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "finetune" / "train_esr.py"
BASE = ["--config", str(REPO / "finetune/configs/esr_demo.yaml"), "train.patience=100"]
MODELS = {
    "sasrec": ["model=sasrec", "train.epochs=6"],
    "hllm": ["model=hllm", "hllm.item_tower=tuned", "hllm.hidden=16", "hllm.item_max_tokens=24",
             "encoder.kind=sentence-transformers", "encoder.model=all-MiniLM-L6-v2", "train.epochs=4"],
}


def _run(out: Path, model: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONHASHSEED": "random"}  # string hashing must not matter
    return subprocess.Popen([sys.executable, str(SCRIPT), *BASE, *MODELS[model], f"output_dir={out}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]


def _outcome(out: Path) -> tuple[dict, list[dict]]:
    res = json.loads((out / "results.json").read_text())
    log = json.loads((out / "checkpoints" / "train_log.json").read_text())
    history = [{k: v for k, v in row.items() if not k.endswith("_s")} for row in log["history"]]
    return res["test"], history


@pytest.mark.parametrize("model", sorted(MODELS))
def test_two_runs_and_a_killed_and_resumed_run_give_identical_metrics(tmp_path, model):
    _finish(_run(tmp_path / "a", model))
    _finish(_run(tmp_path / "b", model))
    # the third run is killed (SIGKILL, no clean-up) once it has saved an epoch, then started again
    proc = _run(tmp_path / "c", model)
    last = tmp_path / "c" / "checkpoints" / "last.pt"
    kill_after_first_epoch(proc, last)
    assert not (tmp_path / "c" / "results.json").exists()
    _finish(_run(tmp_path / "c", model))
    test_a, hist_a = _outcome(tmp_path / "a")
    test_b, hist_b = _outcome(tmp_path / "b")
    test_c, hist_c = _outcome(tmp_path / "c")
    assert test_a == test_b and hist_a == hist_b
    assert test_a == test_c and hist_a == hist_c
    epochs = int(next(a for a in MODELS[model] if a.startswith("train.epochs=")).split("=")[1])
    assert len(hist_a) == epochs and test_a["overall"]["opt"]["ndcg@10"] > 0
