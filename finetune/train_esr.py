"""Train a fallback model of the family, chosen by name, and evaluate it on the test split.

``model``: sasrec | llmesr (the default fallback) | alpharec | darec | pad | hllm | unisrec | textknn | popularity; one module
per model in ``genrec/esr/`` (``genrec.esr.registry`` lists them), all on the same trainer, ranking
losses, item-vector cache, early stopping, resume and faiss scorer.

    python finetune/train_esr.py --config finetune/configs/esr_scientific.yaml
    python finetune/train_esr.py --config finetune/configs/sasrec_scientific.yaml train.epochs=50
    python finetune/train_esr.py --config finetune/configs/alpharec_scientific.yaml   # or darec_, pad_
    python finetune/train_esr.py --config finetune/configs/esr_demo.yaml model=pad output_dir=runs/x

Leave-one-out split; early stopping on validation NDCG@10 (full ranking, history masked);
the best model is saved as a servable scorer (``<output_dir>/scorer``), the test metrics
overall and for head/tail users and items go to ``<output_dir>/results.json``. Killed runs
resume from ``<output_dir>/checkpoints/last.pt`` when started again with the same settings.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genrec import console  # noqa: E402
from genrec.config import parse_args  # noqa: E402
from genrec.errors import GenrecError  # noqa: E402
from genrec.esr.pipeline import FallbackSettings, train_and_test  # noqa: E402
from genrec.metrics import format_group_table, format_table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(FallbackSettings, argv, description=__doc__.splitlines()[0])
    console.setup(Path(cfg.output_dir) / "logs", "train_esr", capture_fds=argv is None)  # library logs to a file
    result = train_and_test(cfg)
    report = result["test"]
    print(format_table({cfg.model: report}))
    print(format_group_table({cfg.model: report}))
    seconds = result["training"].get("seconds_per_epoch", 0)
    print(f"seconds/epoch: {seconds:.2f}; results: {Path(cfg.output_dir) / 'results.json'}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except GenrecError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
