#!/usr/bin/env bash
# A few steps of every GPU path genrec has, on this machine, as one JSON line on stdout
# (logs and progress on stderr): CALRec LoRA / full / 4-bit fine-tuning, SASRec and LLM-ESR
# training, transformers generation, a bundle under a short load on vLLM. Needs no network and no weights (the
# model is built in the run); a step whose needs are missing is skipped with the reason.
# Fits in 10 minutes on one GPU. The logic is genrec/gpu_check.py; record a run in docs/gpu.md.
#
#   bash scripts/gpu_check.sh                 # on a CUDA machine
#   bash scripts/gpu_check.sh --device cpu    # the same steps on the CPU (what the tests run)
#   bash scripts/gpu_check.sh --steps calrec_lora,generate_hf
set -euo pipefail
cd "$(dirname "$0")/.."
# The project's venv where there is one, else the machine's own Python (with its CUDA torch).
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY="$(command -v python3)"; fi
fi
if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "gpu_check: $PY has no torch; set PYTHON to a Python with (CUDA) torch" >&2
    exit 2
fi
exec "$PY" -m genrec.gpu_check "$@"
