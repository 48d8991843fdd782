"""The main job (``genrec demo`` / ``make demo``): the whole product on the embedded demo data.

prepare data → (two-stage fine-tune → fallback → bundle → evaluation, as those parts land).
Small enough for minutes on 2 CPU cores; a demo, not a benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from genrec.data.demo import demo_datasets
from genrec.data.preprocess import leave_one_out


@dataclass
class MainJobConfig:
    output_dir: str = "runs/demo"
    seed: int = 0
    target_category: str = "electronics"


def prepare_demo_data(cfg: MainJobConfig) -> dict:
    """Write each demo category as a native dataset folder and print its statistics."""
    out = Path(cfg.output_dir) / "data"
    datasets = demo_datasets(cfg.seed)
    print("== 1. data: the embedded demo shops")
    for name, ds in datasets.items():
        ds.save(out / name)
        split = leave_one_out(ds)
        print(f"{name:12s} {ds.stats_line()}  train_users={len(split.train)} test_users={len(split.test)}")
    return datasets


def run_main_job(cfg: MainJobConfig) -> None:
    prepare_demo_data(cfg)
