"""Validation L_UT of SASRec / LLM-ESR on a CALRec run's own validation rows (the scale for its L_UT).

    python eval/ut_reference.py --config finetune/configs/stage2_full_scientific.yaml \
        scorers="{sasrec: runs/ledger/scientific/sasrec/seed42/scorer, llmesr: runs/ledger/scientific/llmesr/seed42/scorer}"

Prints, per scorer and temperature, the InfoNCE over each validation batch's users (chance ln of
the batch size) and, last, one JSON object.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genrec.config import parse_args  # noqa: E402
from genrec.errors import GenrecError  # noqa: E402
from genrec.training import TrainConfig  # noqa: E402


@dataclass
class UTReferenceConfig(TrainConfig):
    scorers: dict = field(default_factory=dict)  # name -> trained fallback folder (scorer)
    taus: list[float] = field(default_factory=lambda: [0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0])  # temperatures tried


def main(argv: list[str] | None = None) -> int:
    from genrec.training.validation import scorer_ut_reference

    try:
        cfg = parse_args(UTReferenceConfig, argv, description=__doc__.splitlines()[0])
        if not cfg.scorers:
            raise GenrecError("scorers: give at least one name: folder (a trained SASRec / LLM-ESR scorer)")
        result = scorer_ut_reference(cfg, cfg.scorers, cfg.taus)
    except GenrecError as e:
        print(f"ut_reference: error: {e}", file=sys.stderr)
        return 2
    print("| scorer | " + " | ".join(f"τ={t}" for t in cfg.taus) + " | best | chance |")
    print("|---" * (len(cfg.taus) + 3) + "|")
    for name, r in result.items():
        print(f"| {name} | " + " | ".join(f"{r['by_tau'][t]:.3f}" for t in cfg.taus)
              + f" | {r['best']:.3f} (τ={r['best_tau']}) | {r['chance']:.3f} |")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
