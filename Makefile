# The README's two commands: `make demo` (the main job) and `make test` (the test suite).
# Both run the set-up first; it is quick when nothing changed.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint constraints bench-quick reproduce-quick

setup:
	bash scripts/setup.sh

demo: setup
	$(VENV)/bin/genrec demo $(ARGS)

test: setup
	$(PY) -m pytest -q $(ARGS)
	$(VENV)/bin/ruff check .

lint: setup
	$(VENV)/bin/ruff check .

# Regenerate the pins from the current venv (after adding a dependency). torch is pinned without
# its +cpu local label so the same line holds on machines whose CPU wheel comes from elsewhere.
constraints:
	{ echo "# Pinned versions of a working CPU install (regenerate with \`make constraints\`)."; \
	  echo "# torchvision, torchaudio and torchcodec are absent on purpose: they break \`import vllm\` here."; \
	  $(PY) -m pip freeze --exclude-editable | grep -v '^#' \
	    | grep -viE '^(genrec|torchvision|torchaudio|torchcodec)([=@ ]|$$)' | sed -E 's/^(torch==[^+]+)\+cpu$$/\1/'; \
	} > constraints.txt

bench-quick: setup
	for b in bench/*.py; do $(PY) $$b --quick || exit 1; done

# Re-run the cheap rows of docs/results.md (popularity, SASRec, LLM-ESR on Scientific; needs ../shared)
# and fail when a number leaves the range docs/reproduce.md gives for it.
reproduce-quick: setup
	$(PY) eval/reproduce.py --config eval/configs/reproduce_quick.yaml
