"""Validation L_UT of SASRec / LLM-ESR on a CALRec run's own validation rows (the scale for its L_UT).

    python eval/ut_reference.py --config finetune/configs/stage2_full_scientific.yaml \
        scorers="{sasrec: runs/ledger/scientific/sasrec/seed42/scorer, llmesr: runs/ledger/scientific/llmesr/seed42/scorer}"
    python eval/ut_reference.py --config finetune/configs/stage2_full_scientific_last.yaml \
        calrec="{step390: runs/calrec_last_stage2_scientific/checkpoint-390}"

Prints, per scorer and temperature, the InfoNCE over each validation batch's users (chance ln of
the batch size) and, last, one JSON object. ``calrec`` reads the fine-tuned LLM's own v_U and v_T
(cosines, so its temperatures are smaller) the same way, so it too gets its best τ.
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
    calrec: dict = field(default_factory=dict)   # name -> this run's checkpoint (model folder or adapter)
    calrec_taus: list[float] = field(default_factory=lambda: [0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5])  # its τs


def main(argv: list[str] | None = None) -> int:
    from genrec.training.validation import calrec_ut_by_tau, scorer_ut_reference

    try:
        cfg = parse_args(UTReferenceConfig, argv, description=__doc__.splitlines()[0])
        if not cfg.scorers and not cfg.calrec:
            raise GenrecError("scorers / calrec: give at least one name: folder (a trained SASRec / LLM-ESR "
                              "scorer, or a checkpoint of this CALRec run)")
        result = scorer_ut_reference(cfg, cfg.scorers, cfg.taus) if cfg.scorers else {}
        result.update({name: calrec_ut_by_tau(cfg, folder, cfg.calrec_taus) for name, folder in cfg.calrec.items()})
    except GenrecError as e:
        print(f"ut_reference: error: {e}", file=sys.stderr)
        return 2
    for name, r in result.items():
        cells = ", ".join(f"τ={t}: {loss:.3f}" for t, loss in r["by_tau"].items())
        print(f"{name}: best {r['best']:.3f} (τ={r['best_tau']}), chance {r['chance']:.3f}; {cells}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
