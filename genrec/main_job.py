"""The main job (``genrec demo`` / ``make demo``): the whole product on the embedded demo data.

prepare data → stage-1 fine-tune on all demo shops (mixed ∝ n^0.3) → stage-2 on one shop →
LLM-ESR fallback on cached LLM embeddings → a bundle → evaluation of both paths (and
popularity) → the table. Small enough for minutes on 2 CPU cores: a demo, not a benchmark.
Every step resumes or reuses its output when run again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from genrec.data.demo import demo_datasets
from genrec.data.preprocess import leave_one_out
from genrec.data.source import DatasetSource


@dataclass
class MainJobConfig:
    output_dir: str = "runs/demo"
    seed: int = 0
    model: str = "smollm2-135m"
    target_category: str = "electronics"
    stage1_steps: int = 12
    stage2_steps: int = 6
    batch_size: int = 4
    fallback_epochs: int = 15
    eval_users: int = 40             # users sampled for the generative path (CPU generation is slow)
    n_gen: int = 10
    max_new_tokens: int = 32
    backend: str = "auto"            # vllm where it imports, else transformers


def _section(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.time()


def prepare_demo_data(cfg: MainJobConfig) -> dict:
    """Write each demo shop as a native dataset folder and print its statistics."""
    out = Path(cfg.output_dir) / "data"
    datasets = demo_datasets(cfg.seed)
    for name, ds in datasets.items():
        ds.save(out / name)
        split = leave_one_out(ds)
        print(f"{name:12s} {ds.stats_line()}  train_users={len(split.train)} test_users={len(split.test)}")
    return datasets


def fine_tune(cfg: MainJobConfig, names: list[str]) -> Path:
    """Stage 1 over every shop, stage 2 on the target shop; returns the stage-2 adapter."""
    from genrec.training import TrainConfig, run_stage
    from genrec.training.config import ValidationConfig

    out = Path(cfg.output_dir)
    common = dict(model=cfg.model, template="calrec_compact", max_tokens=160, max_target_tokens=48, max_history=5,
                  batch_size=cfg.batch_size, lr=3e-4, save_total_limit=1, logging_steps=4, seed=cfg.seed,
                  validation=ValidationConfig(max_examples=8, eval_steps=0, batch_size=8))
    stage1 = TrainConfig(datasets=[DatasetSource(format="demo", name=n) for n in names],
                         max_steps=cfg.stage1_steps, save_steps=max(1, cfg.stage1_steps // 2),
                         output_dir=str(out / "stage1"), **common)
    r1 = run_stage(stage1)
    print(f"stage 1: {r1.global_step} steps over {', '.join(names)} -> {r1.adapter_dir}")
    stage2 = TrainConfig(datasets=[DatasetSource(format="demo", name=cfg.target_category)],
                         init_adapter=str(r1.adapter_dir), max_steps=cfg.stage2_steps,
                         save_steps=max(1, cfg.stage2_steps // 2), output_dir=str(out / "stage2"), **common)
    r2 = run_stage(stage2)
    print(f"stage 2: {r2.global_step} steps on {cfg.target_category} -> {r2.adapter_dir}")
    return Path(r2.adapter_dir)


def train_fallback(cfg: MainJobConfig) -> Path:
    """The LLM-ESR fallback on the target shop, on SmolLM2 item embeddings (cached)."""
    from genrec.esr.embeddings import EncoderConfig
    from genrec.esr.model import ESRConfig
    from genrec.esr.pipeline import FallbackSettings, train_and_test
    from genrec.esr.trainer import TrainConfig
    from genrec.metrics import format_table

    settings = FallbackSettings(
        dataset=DatasetSource(format="demo", name=cfg.target_category), model="llmesr",
        esr=ESRConfig(hidden=32, layers=2, heads=1, dropout=0.2, max_len=50, alpha=0.1, n_similar=5),
        train=TrainConfig(lr=1e-3, batch_size=64, epochs=cfg.fallback_epochs, patience=5, threads=1),
        encoder=EncoderConfig(kind="llm", model=cfg.model, max_length=24, batch_size=32),
        user_embeddings="item_mean", output_dir=str(Path(cfg.output_dir) / "fallback"))
    result = train_and_test(settings)
    print(format_table({"llmesr (all test users)": result["test"]}))
    return Path(result["scorer_dir"])


def write_demo_bundle(cfg: MainJobConfig, adapter: Path, fallback: Path) -> Path:
    from genrec.bundle import BundleConfig, BundleSettings, write_bundle

    settings = BundleSettings()
    settings.recommender.n_gen = cfg.n_gen
    settings.generation = {"backend": cfg.backend, "max_new_tokens": cfg.max_new_tokens, "temperature": 1.0}
    bundle = BundleConfig(out=str(Path(cfg.output_dir) / "bundle"),
                          dataset=DatasetSource(format="demo", name=cfg.target_category), model=cfg.model,
                          adapter=str(adapter), fallback=str(fallback), settings=settings,
                          overwrite=True)
    return write_bundle(bundle)


def evaluate_demo(cfg: MainJobConfig, bundle: Path, fallback: Path) -> dict:
    from genrec.evaluation import EvalConfig, GenerativeEvalSettings, results_markdown, run_evaluation

    methods = ["popularity", "llmesr", "calrec"]
    ev = EvalConfig(dataset=DatasetSource(format="demo", name=cfg.target_category), split="test",
                    methods=methods, sample_users=cfg.eval_users, sample_all_methods=True, seed=cfg.seed,
                    output_dir=str(Path(cfg.output_dir) / "eval"),
                    model_dirs={"llmesr": str(fallback)},
                    generative=GenerativeEvalSettings(bundle=str(bundle), batch_users=8))
    result = run_evaluation(ev)
    print(results_markdown(result))
    return result


def run_main_job(cfg: MainJobConfig) -> dict:
    started = time.time()
    t = _section("1/5 data: the embedded demo shops")
    datasets = prepare_demo_data(cfg)
    t = _section("2/5 CALRec fine-tuning: stage 1 (all shops), stage 2 (" + cfg.target_category + ")")
    adapter = fine_tune(cfg, list(datasets))
    print(f"({time.time() - t:.0f} s)")
    t = _section("3/5 LLM-ESR fallback on cached LLM embeddings")
    fallback = train_fallback(cfg)
    print(f"({time.time() - t:.0f} s)")
    t = _section("4/5 bundle")
    bundle = write_demo_bundle(cfg, adapter, fallback)
    print(f"{bundle} ({time.time() - t:.0f} s)")
    t = _section(f"5/5 evaluation on {cfg.eval_users} sampled test users of {cfg.target_category}")
    result = evaluate_demo(cfg, bundle, fallback)
    print(f"main job done in {time.time() - started:.0f} s; results in {Path(cfg.output_dir) / 'eval'}")
    return result
