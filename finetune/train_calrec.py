"""CALRec fine-tuning (LoRA or every weight), one stage per invocation (SPEC.md §1).

    python finetune/train_calrec.py --config finetune/configs/stage1_shared.yaml
    python finetune/train_calrec.py --config finetune/configs/stage2_scientific.yaml
    python finetune/train_calrec.py --config finetune/configs/demo_stage1.yaml max_steps=20 lora.r=4
    python finetune/train_calrec.py --config finetune/configs/stage1_full.yaml   # full fine-tuning

Settings: :class:`genrec.training.TrainConfig` (YAML + ``key=value`` overrides, dotted for
nested: ``loss.alpha=0``, ``validation.ranking_users=50``).

Resuming: a stage continues automatically from the newest complete checkpoint in
``output_dir`` (after a kill, or after stopping on ``run_steps`` / ``time_budget_s``). Long
CPU runs: give each invocation a budget (``run_steps=200`` or ``time_budget_s=3600``) and
run the same command again until it prints ``complete``; the loss curve is the same as an
uninterrupted run (optimizer, scheduler and RNG state are restored). When ``max_steps`` are
done the adapter is written to ``output_dir/adapter`` (``tuning: lora``; ``merge=true`` also
writes a merged model folder ``output_dir/merged``, what vLLM on CPU serves fastest), or the
whole model to ``output_dir/model`` (``tuning: full``: a plain model folder, served as it is).

Several GPUs: the same script under accelerate, nothing else changes (the batch size is per
device; the training stream is sized for all processes):

    accelerate launch --num_processes 4 finetune/train_calrec.py --config finetune/configs/stage1_shared.yaml

On CUDA, ``load_in_4bit=auto`` loads the base model in 4 bit (QLoRA, bitsandbytes) when available.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genrec import console  # noqa: E402
from genrec.config import parse_args  # noqa: E402
from genrec.errors import GenrecError  # noqa: E402
from genrec.training import TrainConfig, run_stage  # noqa: E402


@dataclass
class ScriptConfig(TrainConfig):
    merge: bool = False           # LoRA: also write output_dir/merged (base + adapter) when the stage completes
    threads: int = 0              # torch threads (0 = torch's default)
    log_level: str = "INFO"       # level of output_dir/logs/train.log (DEBUG for more)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(ScriptConfig, argv, description=__doc__.split("\n")[0])
    log_file = console.setup(Path(cfg.output_dir) / "logs", "train", capture_fds=argv is None)
    logging.getLogger().setLevel(cfg.log_level.upper())
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    names = ", ".join(d.name or Path(d.path).name for d in cfg.datasets) or "(no datasets)"
    stage = cfg.stage_label()
    try:
        with console.step(None, None, f"CALRec fine-tuning, {stage}, on {names} -> {cfg.output_dir}") as st:
            console.say(f"  logs: {log_file}; run record: {Path(cfg.output_dir) / 'run.json'}")
            result = run_stage(cfg)
            st.done(f"{result.global_step} of {cfg.max_steps} steps" + (f", {result.summary}" if result.summary else ""))
    except GenrecError as e:
        console.error(str(e))
        return 2
    if not result.completed:
        console.say(f"stopped at step {result.global_step} of {cfg.max_steps}: run the same command again to continue")
        return 0
    what = "model" if cfg.tuning == "full" else "adapter"
    console.say(f"complete: {result.global_step} steps; {what} in {result.weights_dir}; log {result.metrics_path}")
    if cfg.merge and cfg.tuning != "full":
        from genrec.merge import merge_adapter

        merged = merge_adapter(cfg.model, result.weights_dir, Path(cfg.output_dir) / "merged")
        console.say(f"merged model in {merged}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
