"""One fine-tuning stage end to end: data → model (LoRA or full) → CALRecTrainer → adapter or model folder.

Stage 1 (several categories, mixed ∝ n_c^0.3) and stage 2 (stage 1's output, one category)
are the same function with different settings. A stage resumes automatically from the last
checkpoint in ``output_dir``; an invocation may stop early on its step / time budget
(``run_steps``, ``time_budget_s``) and the next one continues. The final weights are written
once ``max_steps`` are done: ``output_dir/adapter`` (LoRA) or ``output_dir/model`` (full).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from genrec.config import to_dict
from genrec.errors import ConfigError
from genrec.training.config import TrainConfig
from genrec.training.model_loading import (  # noqa: F401 - moved there (validation loads too); still importable here
    TUNINGS,
    choose_precision,
    load_trainable_model,
    want_4bit,
)

log = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"
MODEL_DIR = "model"
METRICS_FILE = "metrics.jsonl"


@dataclass
class StageResult:
    output_dir: Path
    weights_dir: Path | None      # the final weights (adapter/ for LoRA, model/ for full), once max_steps are done
    global_step: int
    completed: bool
    metrics_path: Path
    train_seconds: float = 0.0
    summary: str = ""             # losses of this invocation, for the console


def last_checkpoint(output_dir: Path) -> str | None:
    """The newest COMPLETE checkpoint (trainer_state.json is written last), or None.

    A run killed while writing a checkpoint leaves a folder without it: that one is skipped.
    """
    if not output_dir.is_dir():
        return None
    found = []
    for d in output_dir.iterdir():
        m = re.fullmatch(r"checkpoint-(\d+)", d.name)
        if m and d.is_dir():
            if (d / "trainer_state.json").exists():
                found.append((int(m.group(1)), d))
            else:
                log.warning("%s: incomplete checkpoint (no trainer_state.json), not resumed from", d)
    return str(max(found)[1]) if found else None


def _save_atomic(wrapped, tokenizer, target: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        wrapped.save(tmp)
        tokenizer.save_pretrained(str(tmp))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_trainer(cfg: TrainConfig, wrapped, tokenizer, autocast: bool, rank_fn=None):
    """The CALRecTrainer of a stage (also used by the tests), plus its budget callback."""
    from transformers import TrainingArguments
    from transformers.trainer_callback import ProgressCallback

    from genrec.prompting import PromptTemplate
    from genrec.training.collator import CALRecCollator
    from genrec.training.data import TrainingStream, ValidationRows, load_splits
    from genrec.training.trainer import BudgetCallback, CALRecTrainer, ConsoleProgress, JsonlLogger
    from genrec.training.validation import make_rank_fn

    out = Path(cfg.output_dir)
    splits = load_splits(cfg.datasets, cfg.kcore, cfg.cold, cfg.cold_dataset)
    template = PromptTemplate.load(cfg.template)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rows = cfg.max_steps * cfg.batch_size * cfg.grad_accum * world
    train = TrainingStream(splits, template, tokenizer, rows, cfg.max_tokens, cfg.max_history, cfg.max_drop,
                           cfg.mix_power, cfg.seed)
    log.info("category probabilities: %s", {k: round(v, 4) for k, v in train.probabilities.items()})
    v = cfg.validation
    valid = ValidationRows(splits, template, tokenizer, cfg.max_tokens, cfg.max_history, v.max_examples, v.seed)
    if len(valid) == 0:
        valid = None
    if rank_fn is None and v.ranking_users > 0:
        rank_fn = make_rank_fn(splits, template, tokenizer, v, cfg.max_tokens - cfg.max_target_tokens,
                               cfg.max_history)
    ranking = v.select_best.startswith("ndcg@10")
    if ranking and rank_fn is None:
        raise ConfigError(f"validation.select_best: {v.select_best} needs validation.ranking_users > 0")
    evaluating = valid is not None or rank_fn is not None
    eval_steps = v.eval_steps or cfg.save_steps
    save_steps = eval_steps if v.best_metric else cfg.save_steps
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=v.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.lr, weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_steps, lr_scheduler_type=cfg.lr_scheduler, max_grad_norm=cfg.max_grad_norm,
        max_steps=cfg.max_steps, save_strategy="steps", save_steps=save_steps,
        save_total_limit=cfg.save_total_limit, logging_steps=cfg.logging_steps, logging_first_step=True,
        eval_strategy="steps" if evaluating else "no", eval_steps=eval_steps if evaluating else None,
        load_best_model_at_end=v.best_metric is not None,
        metric_for_best_model=v.best_metric,
        greater_is_better=ranking if v.best_metric else None,
        bf16=autocast, seed=cfg.seed, data_seed=cfg.seed, train_sampling_strategy="sequential",
        remove_unused_columns=False, label_names=["labels"], prediction_loss_only=True, report_to=[],
        dataloader_num_workers=cfg.dataloader_workers, use_cpu=not torch.cuda.is_available(),
    )
    collator = CALRecCollator(tokenizer, cfg.max_tokens, cfg.max_target_tokens,
                              with_target_alone=cfg.loss.contrastive)
    budget = BudgetCallback(cfg.run_steps, cfg.time_budget_s)
    trainer = CALRecTrainer(model=wrapped, args=args, train_dataset=train, eval_dataset=valid,
                            data_collator=collator, processing_class=tokenizer,
                            callbacks=[JsonlLogger(out / METRICS_FILE), budget], rank_fn=rank_fn)
    trainer.remove_callback(ProgressCallback)  # its bar printed raw log dicts; ours is one line
    trainer.add_callback(ConsoleProgress(out.name))
    return trainer, budget


def run_stage(cfg: TrainConfig, rank_fn=None) -> StageResult:
    """Train (or continue) one stage; the adapter lands in ``output_dir/adapter`` when complete.
    ``output_dir/run.json`` records the settings, inputs, versions and times of the invocation."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    final = out / (MODEL_DIR if cfg.tuning == "full" else ADAPTER_DIR)
    state_file = final / "genrec_stage.json"
    if state_file.exists() and json.loads(state_file.read_text()).get("global_step", -1) >= cfg.max_steps:
        log.info("%s: already complete (%d steps); nothing to do", final, cfg.max_steps)
        return StageResult(out, final, cfg.max_steps, True, out / METRICS_FILE)
    (out / "train_config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    from genrec.run_record import run_record

    inputs = [*cfg.datasets, cfg.init_adapter, cfg.model if Path(cfg.model).is_dir() else None]
    seeds = {"seed": cfg.seed, "validation.seed": cfg.validation.seed}
    with run_record(out, cfg, inputs, seeds) as rec:
        result = _train(cfg, out, final, state_file, rank_fn)
        rec.extra.update(global_step=result.global_step, completed=result.completed,
                         train_seconds=round(result.train_seconds, 2),
                         weights=str(result.weights_dir) if result.weights_dir else None)
    return result


def _train(cfg: TrainConfig, out: Path, final: Path, state_file: Path, rank_fn) -> StageResult:
    import time

    from transformers import set_seed

    from genrec.training.trainer import ConsoleProgress

    set_seed(cfg.seed)
    wrapped, tokenizer, autocast = load_trainable_model(cfg)
    trainer, budget = build_trainer(cfg, wrapped, tokenizer, autocast, rank_fn)
    resume = last_checkpoint(out)
    if resume:
        log.info("resuming from %s", resume)
    t0 = time.monotonic()
    trainer.train(resume_from_checkpoint=resume)
    seconds = time.monotonic() - t0
    step = trainer.state.global_step
    completed = step >= cfg.max_steps
    truncated = trainer.data_collator.truncated
    if any(truncated.values()):
        log.warning("the length guard cut %s training rows (prompts from the left, targets on the right); "
                    "raise max_tokens / max_target_tokens to keep them whole", dict(truncated))
    adapter = None
    if completed and trainer.args.should_save:
        _save_atomic(trainer.accelerator.unwrap_model(trainer.model), tokenizer, final)
        state_file.write_text(json.dumps({"global_step": step, "best_checkpoint": trainer.state.best_model_checkpoint,
                                          "best_metric": trainer.state.best_metric}))
        adapter = final
        log.info("stage complete: %s in %s", "model" if cfg.tuning == "full" else "adapter", final)
    else:
        log.info("stopped at step %d of %d (budget); run again to continue", step, cfg.max_steps)
    progress = next((c for c in trainer.callback_handler.callbacks if isinstance(c, ConsoleProgress)), None)
    return StageResult(out, adapter, step, completed, out / METRICS_FILE, seconds,
                       progress.summary() if progress else "")
