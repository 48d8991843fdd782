"""Re-run the cheap rows of docs/results.md and fail loudly when a number leaves its expected range.

    python eval/reproduce.py --config eval/configs/reproduce_quick.yaml     # = make reproduce-quick

Each check re-trains an experiment of an experiments file in ``runs/reproduce`` (never reusing the
ledger's runs) and compares the fresh metrics with the ranges in the reproduce file. Exit status 1
when any value is outside its range, 0 when all are inside.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genrec import console  # noqa: E402
from genrec.config import parse_args  # noqa: E402
from genrec.errors import GenrecError  # noqa: E402
from genrec.reproduce import ReproduceConfig, format_outcomes, run_checks  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(ReproduceConfig, argv, description=__doc__.splitlines()[0])
    console.setup(Path(cfg.runs_dir) / "logs", "reproduce", capture_fds=argv is None)  # library logs to a file
    outcomes = run_checks(cfg)
    print(format_outcomes(outcomes))
    bad = [o for o in outcomes if not o.ok]
    for o in bad:
        print(f"REPRODUCTION FAILED: {o.name} {o.metric} = {o.value:.4f}, expected within [{o.low:.4f}, {o.high:.4f}]",
              file=sys.stderr)
    if not bad:
        print(f"reproduced: {len(outcomes)} value(s) inside their expected ranges")
    return 1 if bad else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except GenrecError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
