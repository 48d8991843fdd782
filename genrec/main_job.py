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

from genrec import console
from genrec.data.demo import demo_datasets
from genrec.data.preprocess import leave_one_out
from genrec.data.source import DatasetSource
from genrec.run_record import run_record, write_run_record


@dataclass
class MainJobConfig:
    output_dir: str = "runs/demo"    # every step's folder goes under it (logs/ too)
    seed: int = 0                    # seed of the demo data, training, sampling and evaluation
    model: str = "smollm2-135m"      # base model: built-in name, local folder or Hugging Face id
    target_category: str = "electronics"  # the shop of stage 2, the fallback and the evaluation
    stage1_steps: int = 12           # CALRec stage-1 optimizer steps (all shops)
    stage2_steps: int = 6            # CALRec stage-2 optimizer steps (target shop)
    batch_size: int = 4              # fine-tuning rows per step
    fallback_epochs: int = 15        # LLM-ESR training epochs (early stopping may end sooner)
    eval_users: int = 40             # users sampled for the generative path (CPU generation is slow)
    n_gen: int = 10                  # samples generated per user (N_gen)
    max_new_tokens: int = 32         # longest generated item text
    backend: str = "auto"            # vllm where it imports, else transformers


def prepare_demo_data(cfg: MainJobConfig) -> dict:
    """Write each demo shop as a native dataset folder and show its statistics."""
    out = Path(cfg.output_dir) / "data"
    started = time.time()
    datasets = demo_datasets(cfg.seed)
    for name, ds in datasets.items():
        ds.save(out / name)
        split = leave_one_out(ds)
        console.say(f"  {name:12s} {ds.stats_line()}  train_users={len(split.train)} test_users={len(split.test)}")
    write_run_record(out, cfg, [out / name for name in datasets], {"seed": cfg.seed}, started,
                     extra={"what": "the embedded demo shops, written as native dataset folders"})
    return datasets


def fine_tune(cfg: MainJobConfig, names: list[str]) -> tuple[Path, str]:
    """Stage 1 over every shop, stage 2 on the target shop; (the stage-2 adapter, a summary)."""
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
    stage2 = TrainConfig(datasets=[DatasetSource(format="demo", name=cfg.target_category)],
                         init_adapter=str(r1.weights_dir), max_steps=cfg.stage2_steps,
                         save_steps=max(1, cfg.stage2_steps // 2), output_dir=str(out / "stage2"), **common)
    r2 = run_stage(stage2)

    def said(r) -> str:
        return r.summary.split(", validation")[0] if r.summary else "already trained, reused"

    return Path(r2.weights_dir), (f"stage 1 {r1.global_step} steps, {said(r1)}; stage 2 {r2.global_step} steps, "
                                  f"{said(r2)}; adapter in {r2.weights_dir}")


def train_fallback(cfg: MainJobConfig) -> tuple[Path, str]:
    """The LLM-ESR fallback on the target shop, on SmolLM2 item embeddings (cached)."""
    from genrec.esr.embeddings import EncoderConfig
    from genrec.esr.model import ESRConfig
    from genrec.esr.pipeline import FallbackSettings, train_and_test
    from genrec.esr.trainer import TrainConfig

    settings = FallbackSettings(
        dataset=DatasetSource(format="demo", name=cfg.target_category), model="llmesr",
        esr=ESRConfig(hidden=32, layers=2, heads=1, dropout=0.2, max_len=50, alpha=0.1, n_similar=5),
        train=TrainConfig(lr=1e-3, batch_size=64, epochs=cfg.fallback_epochs, patience=5, threads=1),
        encoder=EncoderConfig(kind="llm", model=cfg.model, max_length=24, batch_size=32),
        user_embeddings="item_mean", output_dir=str(Path(cfg.output_dir) / "fallback"))
    result = train_and_test(settings)  # writes its own run.json; the trainer draws the epoch bar
    overall = result["test"]["overall"]
    summary = (f"llmesr on all {overall['n']} test users: NDCG@10 {overall['opt']['ndcg@10']:.4f}, "
               f"Recall@10 {overall['opt']['recall@10']:.4f}; scorer {result['scorer_dir']}")
    return Path(result["scorer_dir"]), summary


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
    from genrec.evaluation import EvalConfig, GenerativeEvalSettings, run_evaluation

    methods = ["popularity", "llmesr", "calrec"]
    ev = EvalConfig(dataset=DatasetSource(format="demo", name=cfg.target_category), split="test",
                    methods=methods, sample_users=cfg.eval_users, sample_all_methods=True, seed=cfg.seed,
                    output_dir=str(Path(cfg.output_dir) / "eval"),
                    model_dirs={"llmesr": str(fallback)},
                    generative=GenerativeEvalSettings(bundle=str(bundle), batch_users=8))
    return run_evaluation(ev)


def run_main_job(cfg: MainJobConfig) -> dict:
    """The five steps with a header, a bar for the long ones and a summary line each; the
    results table last. Library and engine logs go to ``<output_dir>/logs/main.log``."""
    from genrec.evaluation import results_markdown

    out = Path(cfg.output_dir)
    started = time.time()
    log_file = console.setup(out / "logs", "main")
    console.install_excepthook()
    console.say(f"genrec demo: the main job on the embedded demo data, into {out}/")
    if log_file is not None and not console.is_verbose():
        console.say(f"  library and engine logs: {log_file} (--verbose or GENREC_LOG=debug shows them here)")
    with run_record(out, cfg, [], {"seed": cfg.seed}) as rec:
        with console.step(1, 5, "data: the embedded demo shops") as st:
            datasets = prepare_demo_data(cfg)
            st.done(f"{len(datasets)} shops written to {out / 'data'}")
        with console.step(2, 5, f"CALRec fine-tuning: stage 1 (all shops), stage 2 ({cfg.target_category})") as st:
            adapter, summary = fine_tune(cfg, list(datasets))
            st.done(summary)
        with console.step(3, 5, "LLM-ESR fallback on cached LLM embeddings") as st:
            fallback, summary = train_fallback(cfg)
            st.done(summary)
        with console.step(4, 5, "deployment bundle") as st:
            bundle = write_demo_bundle(cfg, adapter, fallback)
            st.done(f"{bundle} (merged adapter, BM25 index, LLM-ESR fallback)")
        with console.step(5, 5, f"evaluation on {cfg.eval_users} sampled test users of {cfg.target_category}") as st:
            result = evaluate_demo(cfg, bundle, fallback)
            calrec = result["reports"]["calrec"]["overall"]["opt"]
            st.done(f"calrec NDCG@10 {calrec['ndcg@10']:.4f}; results in {out / 'eval'}")
        rec.extra.update(folders=["data", "stage1", "stage2", "fallback", "bundle", "eval"],
                         results=str(out / "eval" / "results.json"))
    console.say(f"\nmain job done in {time.time() - started:.0f} s; each folder of {out}/ holds a run.json "
                "(settings, data fingerprints, versions, seeds, times)\n")
    console.say(results_markdown(result).rstrip())
    return result
