"""``CALRecTrainer``: the transformers Trainer with the CALRec loss, component logging and budgets.

What the Trainer brings is kept: optimizer and scheduler, gradient accumulation, checkpoints
with optimizer / scheduler / RNG state (so a resumed run replays the same loss curve),
tqdm progress, evaluation, best-checkpoint tracking. What is added:

* ``compute_loss`` takes the combined loss from :class:`~genrec.training.model.CALRecModel`
  and records L_NIG, L_TT and L_UT, logged as ``nig``, ``tt``, ``ut`` (``eval_nig`` ... in
  evaluation) into ``state.log_history`` and, via :class:`JsonlLogger`, ``metrics.jsonl``;
* :class:`BudgetCallback`: stop (and save) after N steps or T seconds in this invocation,
  so long CPU runs continue in the next one;
* an optional ``rank_fn(model) -> {"ndcg@10": ...}`` run at every evaluation (ranking
  NDCG@10 on a fixed validation sample), usable as ``metric_for_best_model``;
* saving/loading the adapter (+ projection heads) instead of a full model state dict;
* :class:`ConsoleProgress` instead of the Trainer's own bar, which printed every log record
  as a raw dict between its redraws: one bar per stage (steps, rate, ETA, latest loss).
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer import TRAINING_ARGS_NAME

COMPONENTS = ("nig", "tt", "ut")
RankFn = Callable[[torch.nn.Module], dict[str, float]]


class CALRecTrainer(Trainer):
    # compute_loss returns a per-micro-batch mean: the Trainer divides it by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, rank_fn: RankFn | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rank_fn = rank_fn
        self._sums: dict[str, dict[str, torch.Tensor]] = {"train": {}, "eval": {}}
        self._counts: dict[str, dict[str, int]] = {"train": defaultdict(int), "eval": defaultdict(int)}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = model(**inputs)
        mode = "train" if model.training else "eval"
        for k in COMPONENTS:
            v = out.get(k)
            if v is not None:
                s = self._sums[mode]
                s[k] = s[k] + v.float() if k in s else v.float()
                self._counts[mode][k] += 1
        return (out["loss"], out) if return_outputs else out["loss"]

    def _drain(self, mode: str, prefix: str) -> dict[str, float]:
        sums, counts = self._sums[mode], self._counts[mode]
        out = {f"{prefix}{k}": float(sums[k]) / counts[k] for k in COMPONENTS if counts.get(k)}
        self._sums[mode] = {}
        self._counts[mode] = defaultdict(int)
        return out

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            logs.update(self._drain("train", ""))
        elif "eval_loss" in logs:
            logs.update(self._drain("eval", "eval_"))
        super().log(logs, start_time)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix) if (
            eval_dataset is not None or self.eval_dataset is not None) else {}
        if self.rank_fn is not None:
            model = self.accelerator.unwrap_model(self.model)
            was_training = model.training
            ranked = {f"{metric_key_prefix}_{k}": float(v) for k, v in self.rank_fn(model.model).items()}
            model.train(was_training)
            self.log(dict(ranked))
            metrics.update(ranked)
        return metrics

    # -- files: the adapter (+ heads), never the frozen base weights ----------------------
    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        if not self.args.should_save:
            return
        self.accelerator.unwrap_model(self.model).save(output_dir)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        self.accelerator.unwrap_model(model if model is not None else self.model).load_weights(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        best = self.state.best_model_checkpoint
        if best and Path(best).exists():
            self.accelerator.unwrap_model(self.model).load_weights(best)


class BudgetCallback(TrainerCallback):
    """Stops the run after ``max_run_steps`` steps or ``time_budget_s`` seconds, saving a checkpoint.

    Both count from the start of this invocation's training loop; the stage's ``max_steps``
    (and so the LR schedule) is unchanged, so the next invocation resumes where this one stopped.
    """

    def __init__(self, max_run_steps: int = 0, time_budget_s: float = 0.0) -> None:
        self.max_run_steps = max_run_steps
        self.time_budget_s = time_budget_s
        self.stopped_early = False
        self._start_time = 0.0
        self._start_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._start_time = time.monotonic()
        self._start_step = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        out_of_steps = self.max_run_steps and state.global_step - self._start_step >= self.max_run_steps
        out_of_time = self.time_budget_s and time.monotonic() - self._start_time >= self.time_budget_s
        if (out_of_steps or out_of_time) and state.global_step < state.max_steps:
            control.should_save = True
            control.should_training_stop = True
            self.stopped_early = True
        return control


class JsonlLogger(TrainerCallback):
    """Appends every log record (step, loss, nig, tt, ut, lr, eval_*) to a JSONL file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": state.global_step, "time": round(time.time(), 3), **logs}) + "\n")


class ConsoleProgress(TrainerCallback):
    """One console bar for the stage (genrec.console) and its first / last / eval losses."""

    def __init__(self, desc: str = "training") -> None:
        self.desc = desc
        self.bar = None
        self.first_loss: float | None = None
        self.last_loss: float | None = None
        self.eval_loss: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.bar is None:
            from genrec import console

            self.bar = console.progress(total=state.max_steps, initial=state.global_step, desc=self.desc,
                                        unit="step")

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None and state.global_step > self.bar.n:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs:
            loss = float(logs["loss"])
            self.first_loss = loss if self.first_loss is None else self.first_loss
            self.last_loss = loss
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        if "eval_loss" in logs:
            self.eval_loss = float(logs["eval_loss"])

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def summary(self) -> str:
        """``loss 3.10 -> 2.41, validation loss 2.52`` (what was logged in this invocation)."""
        parts = []
        if self.last_loss is not None:
            parts.append(f"loss {self.first_loss:.3f} -> {self.last_loss:.3f}")
        if self.eval_loss is not None:
            parts.append(f"validation loss {self.eval_loss:.3f}")
        return ", ".join(parts)
