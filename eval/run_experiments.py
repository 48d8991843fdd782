"""Run named fallback-family experiments over seeds and record their means in the results ledger.

    python eval/run_experiments.py --config eval/configs/experiments_scientific.yaml
    python eval/run_experiments.py --config eval/configs/experiments_scientific.yaml only=sasrec,llmesr

Each experiment is a ``finetune/train_esr.py`` config plus overrides; every seed trains into
``runs/ledger/<dataset>/<name>/seed<k>`` (finished runs are reused, killed ones resume), is
tested on all test users (full ranking, history masked) and the mean over seeds is written to
``docs/results/summary.json``. The table of the runs' means is printed last.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genrec import console  # noqa: E402
from genrec.config import parse_args  # noqa: E402
from genrec.errors import GenrecError  # noqa: E402
from genrec.esr.experiments import ExperimentsConfig, run_experiments  # noqa: E402
from genrec.ledger import format_entries  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    in_process = argv is not None
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = parse_args(ExperimentsConfig, argv, description=__doc__.splitlines()[0])
    console.setup(Path(cfg.runs_dir) / cfg.dataset / "logs", "run_experiments", capture_fds=not in_process)
    if not cfg.config_path and "--config" in argv:
        cfg.config_path = argv[argv.index("--config") + 1]
    entries = run_experiments(cfg)
    print(format_entries(entries))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except GenrecError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
