"""Evaluate recommender paths (popularity, SASRec, LLM-ESR, CALRec) on a split.

    python eval/evaluate.py --config eval/configs/scientific.yaml [key=value ...]

Writes results.json, results.md and ndcg_by_group.png to ``output_dir`` and prints the table.
The CALRec path streams every sampled user through one vLLM engine (``generative.window`` users
inside it at once; ``generative.stream=false`` feeds ``generative.batch_users`` at a time as
before), grounding and logging each user as it finishes, so it resumes from its per-user log
after a kill: run the same command again.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from genrec import console  # noqa: E402
from genrec.config import parse_args  # noqa: E402
from genrec.errors import GenrecError  # noqa: E402
from genrec.evaluation import EvalConfig, results_markdown, run_evaluation  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(EvalConfig, argv, description=__doc__.splitlines()[0])
    log_file = console.setup(Path(cfg.output_dir) / "logs", "evaluate", capture_fds=argv is None)
    try:
        with console.step(None, None, f"evaluation of {', '.join(cfg.methods)} on the {cfg.split} split "
                                      f"-> {cfg.output_dir}") as st:
            console.say(f"  logs: {log_file}")
            result = run_evaluation(cfg)
            st.done(f"results.json, results.md, ndcg_by_group.png and run.json in {cfg.output_dir}")
    except GenrecError as e:
        console.error(f"evaluate: {e}")
        return 2
    console.say()
    console.say(results_markdown(result).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
