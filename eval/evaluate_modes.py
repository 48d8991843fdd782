"""Every generative mode (QRR, constrained beam, constrained sampling, rerank), alone and fused
with the fallback, on the same sampled users; ``tune_fusion=true`` on the validation split
chooses the fusion weights and stores them in the bundle.

    python eval/evaluate_modes.py --config eval/configs/modes_scientific.yaml split=valid tune_fusion=true \\
        output_dir=runs/modes/scientific_valid                      # 1. weights, on validation users
    python eval/evaluate_modes.py --config eval/configs/modes_scientific.yaml   # 2. the test table

Writes signals_<mode>.jsonl (per-user signals; a killed run resumes from them), results.json,
results.md and run.json to ``output_dir`` and prints the table.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from genrec import console  # noqa: E402
from genrec.config import parse_args  # noqa: E402
from genrec.errors import GenrecError  # noqa: E402
from genrec.mode_evaluation import ModeEvalConfig, results_markdown, run_mode_evaluation  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(ModeEvalConfig, argv, description=__doc__.splitlines()[0])
    log_file = console.setup(Path(cfg.output_dir) / "logs", "evaluate_modes", capture_fds=argv is None)
    try:
        with console.step(None, None, f"modes {', '.join(cfg.modes)} (fused: {', '.join(cfg.fusions) or 'none'}) "
                                      f"on the {cfg.split} split -> {cfg.output_dir}") as st:
            console.say(f"  logs: {log_file}")
            result = run_mode_evaluation(cfg)
            st.done(f"results.json, results.md and run.json in {cfg.output_dir}")
    except GenrecError as e:
        console.error(f"evaluate_modes: {e}")
        return 2
    console.say()
    console.say(results_markdown(result).rstrip())
    return 0


if __name__ == "__main__":  # vLLM spawns its engine processes
    sys.exit(main())
