"""Evaluate recommender paths (popularity, SASRec, LLM-ESR, CALRec) on a split.

    python eval/evaluate.py --config eval/configs/scientific.yaml [key=value ...]

Writes results.json, results.md and ndcg_by_group.png to ``output_dir`` and prints the table.
The CALRec path resumes from its per-user log after a kill: run the same command again.
"""

from __future__ import annotations

import sys

from genrec.config import parse_args
from genrec.errors import GenrecError
from genrec.evaluation import EvalConfig, results_markdown, run_evaluation


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(EvalConfig, argv, description=__doc__.splitlines()[0])
    try:
        result = run_evaluation(cfg)
    except GenrecError as e:
        print(f"evaluate: error: {e}", file=sys.stderr)
        return 2
    print(results_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
