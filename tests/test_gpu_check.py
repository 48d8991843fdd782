"""scripts/gpu_check.sh / genrec.gpu_check: the step code run for real on the CPU (``--device cpu``)
on a model built in the run, as on a GPU machine without vLLM, bitsandbytes and faiss; one JSON
line on stdout; CUDA-only steps skipped with their reason; a failing step recorded, not raised."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genrec.gpu_check import NO_CUDA, STEPS, Context, Sizes, Skip, require, run_step

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.sh"

# The CUDA machine the check is for has none of these: each is made unimportable in the run.
ABSENT = ("vllm", "bitsandbytes", "faiss")
RUNNER = ("import sys\n"
          f"for m in {ABSENT!r}:\n"
          "    sys.modules[m] = None\n"
          "from genrec.gpu_check import main\n"
          "sys.exit(main(sys.argv[1:]))\n")


def one_json_line(stdout: str) -> dict:
    lines = stdout.splitlines()
    assert len(lines) == 1, f"stdout must be the JSON line alone, got {len(lines)} lines"
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("gpu-check")
    r = subprocess.run([sys.executable, "-c", RUNNER, "--device", "cpu", "--work", str(work)], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return one_json_line(r.stdout)


def test_every_cpu_runnable_step_runs_and_the_cuda_ones_say_why_not(cpu_run):
    status = {s["step"]: (s["status"], s.get("reason")) for s in cpu_run["steps"]}
    cuda_only = ("skipped", "runs on CUDA only (this run: --device cpu)")
    assert status == {"build_model": ("ok", None), "calrec_lora": ("ok", None), "calrec_full": ("ok", None),
                      "calrec_lora_4bit": cuda_only, "sasrec": ("ok", None), "llmesr": ("ok", None),
                      "generate_hf": ("ok", None), "vllm_bundle": cuda_only}
    assert [s["step"] for s in cpu_run["steps"]] == [name for name, _ in STEPS]
    assert (cpu_run["device"], cpu_run["gpu"], cpu_run["ok"], cpu_run["skipped"], cpu_run["failed"]) == \
        ("cpu", None, 6, 2, 0)


def test_the_steps_report_their_work_and_throughput(cpu_run):
    steps = {s["step"]: s for s in cpu_run["steps"]}
    for name in ("calrec_lora", "calrec_full"):
        assert steps[name]["steps"] == 2 and steps[name]["precision"] == "fp32"
        assert steps[name]["rows_per_s"] > 0 and steps[name]["last_loss"] > 0
    for name in ("sasrec", "llmesr"):
        assert steps[name]["epochs"] == 1 and steps[name]["users_per_s"] > 0
        assert 0 <= steps[name]["valid_ndcg@10"] <= 1
    # faiss is absent: LLM-ESR trains without its self-distillation and says so
    assert steps["llmesr"]["note"] == "self-distillation off: needs faiss (not installed)"
    gen = steps["generate_hf"]
    assert (gen["device"], gen["prompts"], gen["samples"]) == ("cpu", 2, 4) and gen["tokens_per_s"] > 0
    assert all(s["seconds"] >= 0 for s in cpu_run["steps"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_without_cuda_the_default_run_skips_every_step_with_the_reason():
    r = subprocess.run([sys.executable, "-m", "genrec.gpu_check"], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    out = one_json_line(r.stdout)
    assert [(s["step"], s["status"], s["reason"]) for s in out["steps"]] == \
        [(name, "skipped", NO_CUDA) for name, _ in STEPS]
    assert (out["ok"], out["skipped"], out["failed"]) == (0, len(STEPS), 0)


def test_the_wrapper_parses_and_hands_its_arguments_to_the_module():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True, timeout=60)
    r = subprocess.run(["bash", str(SCRIPT), "--steps", "no_such_step"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "unknown step(s) ['no_such_step']" in r.stderr


def test_a_failing_step_is_recorded_and_a_missing_library_skips(tmp_path):
    ctx = Context(device="cpu", work=tmp_path, sizes=Sizes(8, 1, 1, 1, 1, 1, 1, 1, 1))

    def broken(_ctx):
        raise RuntimeError("first line\nsecond line")

    def needs_missing(_ctx):
        require("torch", "surely_not_a_module_xyz")
        return {}

    def imports_missing(_ctx):
        import surely_not_a_module_abc  # noqa: F401

    def skips(_ctx):
        raise Skip("no reason at all")

    failed = run_step("broken", broken, ctx)
    assert {k: failed[k] for k in ("step", "status", "reason")} == \
        {"step": "broken", "status": "failed", "reason": "RuntimeError: first line"}
    assert run_step("missing", needs_missing, ctx)["reason"] == "needs surely_not_a_module_xyz (not installed)"
    assert run_step("imports", imports_missing, ctx)["reason"] == "needs surely_not_a_module_abc (not installed)"
    assert run_step("skips", skips, ctx)["status"] == "skipped"
    assert run_step("fine", lambda _ctx: {"x": 1}, ctx)["x"] == 1


def test_what_a_step_and_its_child_processes_print_goes_to_stderr(tmp_path, capfd):
    ctx = Context(device="cpu", work=tmp_path, sizes=Sizes(8, 1, 1, 1, 1, 1, 1, 1, 1))

    def noisy(_ctx):
        print("from python")
        os.write(1, b"from the descriptor\n")
        subprocess.run(["echo", "from a child process"], check=True)
        return {}

    assert run_step("noisy", noisy, ctx)["status"] == "ok"
    print("after the step")
    out, err = capfd.readouterr()
    assert out == "after the step\n"
    for line in ("from python", "from the descriptor", "from a child process"):
        assert line in err
