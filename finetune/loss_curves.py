"""Print the loss curves (NIG, TT, UT) of CALRec stages as a Markdown table, and draw them.

    python finetune/loss_curves.py runs=[runs/calrec_stage1,runs/calrec_stage2_scientific] png=docs/calrec_loss_curves.png
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genrec.config import parse_args  # noqa: E402
from genrec.errors import ConfigError, GenrecError  # noqa: E402
from genrec.training.curves import curves_markdown, plot_curves, read_stage_log  # noqa: E402


@dataclass
class CurvesConfig:
    runs: list[str] = field(default_factory=list)  # stage output_dirs, in training order
    window: int = 25                                # steps averaged per table row
    png: str = ""                                   # also draw the curves here
    marks: list[str] = field(default_factory=list)  # "STEP:label" vertical lines at global steps (settings changed)


def _mark(text: str) -> tuple[int, str]:
    step, _, label = text.partition(":")
    if not step.strip().isdigit():
        raise ConfigError(f"marks: {text!r} is not STEP:label (a global step, a colon, a label)")
    return int(step), label


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_args(CurvesConfig, argv, description=__doc__.splitlines()[0])
        if not cfg.runs:
            raise ConfigError("runs: give the stage output_dirs, e.g. runs=runs/calrec_stage1,runs/calrec_stage2_scientific")
        marks = [_mark(m) for m in cfg.marks]
        stages = [read_stage_log(r) for r in cfg.runs]
        table = curves_markdown(stages, cfg.window)
    except GenrecError as e:
        print(f"loss_curves: error: {e}", file=sys.stderr)
        return 2
    print(table)
    for st in stages:
        print(f"{st.name}: {st.train[-1]['step'] if st.train else 0} steps logged, "
              f"{st.wall_s:.0f} s from first to last record")
    if cfg.png:
        plot_curves(stages, cfg.png, marks)
        print(f"plot: {cfg.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
