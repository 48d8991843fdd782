"""Settings of a CALRec fine-tuning stage, as dataclasses that YAML files and overrides fill.

``finetune/train_calrec.py --config finetune/configs/stage1_shared.yaml lr=5e-5 lora.r=16``
maps onto :class:`TrainConfig` through :func:`genrec.config.load_config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from genrec.data.source import DatasetSource


@dataclass
class LoRAConfig:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class LossConfig:
    """α, β, τ of SPEC.md §1 (β's printed sign is negative in the paper; ours is a setting, +0.025).

    ``projection_heads``: a linear head per embedding (v_U, v_T|U, v_T) of size
    ``projection_dim`` (0 = the model's hidden size), trained with the adapter and saved
    beside it as ``calrec_heads.safetensors`` (not needed for generation).
    """

    alpha: float = 0.125
    beta: float = 0.025
    tau: float = 0.5
    projection_heads: bool = False
    projection_dim: int = 0

    @property
    def contrastive(self) -> bool:
        return self.alpha != 0 or self.beta != 0


@dataclass
class ValidationConfig:
    """Validation loss on split.valid rows, and optionally ranking NDCG@10 (QRR grounding).

    ``eval_steps`` 0 = evaluate when a checkpoint is saved. ``ranking_users`` 0 = no ranking
    metric (it generates ``n_gen`` samples per user: expensive on CPU). ``select_best``:
    ``last`` keeps the final weights, ``loss`` or ``ndcg@10`` makes the final adapter the best
    checkpoint by that validation metric.
    """

    max_examples: int = 256
    eval_steps: int = 0
    batch_size: int = 8
    ranking_users: int = 0
    n_gen: int = 10
    n_preds: int = 10
    eps: float = 0.01
    max_new_tokens: int = 48
    temperature: float = 1.0
    mask_history: bool = True
    select_best: str = "last"
    seed: int = 0


@dataclass
class TrainConfig:
    """One fine-tuning stage. Stage 2 = ``init_adapter`` set to the stage-1 adapter + one dataset."""

    model: str = "smollm2-135m"
    datasets: list[DatasetSource] = field(default_factory=list)
    init_adapter: str | None = None          # continue from this adapter (stage 2)
    template: str = "calrec_compact"
    max_tokens: int = 512                    # joint prompt + target budget (tokens)
    max_target_tokens: int = 64              # guard: longer targets are cut (and counted in the log)
    max_history: int | None = 50             # items kept before the token budget applies
    kcore: int = 0                           # 0 = data used as given
    max_drop: int = 4                        # augmentation k in {0..max_drop}, k < n-1
    mix_power: float = 0.3                   # stage-1 category mixing ∝ n_c^power
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_scheduler: str = "constant_with_warmup"
    max_grad_norm: float = 1.0
    max_steps: int = 1000                    # the stage's total optimizer steps
    run_steps: int = 0                       # steps per invocation (0 = until max_steps); resume continues
    time_budget_s: float = 0.0               # wall-time per invocation (0 = none); stops and saves
    save_steps: int = 100
    save_total_limit: int = 3
    logging_steps: int = 10
    seed: int = 0
    output_dir: str = "runs/calrec"
    precision: str = "auto"                  # auto | bf16-weights | bf16-autocast | fp32
    load_in_4bit: str = "no"                 # no | yes | auto (CUDA + bitsandbytes only; ignored elsewhere)
    dataloader_workers: int = 0
