"""Settings of a CALRec fine-tuning stage, as dataclasses that YAML files and overrides fill.

``finetune/train_calrec.py --config finetune/configs/stage1_shared.yaml lr=5e-5 lora.r=16``
maps onto :class:`TrainConfig` through :func:`genrec.config.load_config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from genrec.data.cold_split import ColdConfig
from genrec.data.source import DatasetSource
from genrec.errors import ConfigError


@dataclass
class LoRAConfig:
    r: int = 8                # LoRA rank (size of the low-rank update)
    alpha: int = 16           # LoRA scaling numerator: the update is scaled by alpha / r
    dropout: float = 0.05     # dropout on the LoRA input during training
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])  # layers adapted


@dataclass
class LossConfig:
    """α, β, τ of SPEC.md §1 (β's printed sign is negative in the paper; ours is a setting, +0.025).

    ``projection_heads``: a linear head per embedding (v_U, v_T|U, v_T) of size
    ``projection_dim`` (0 = the model's hidden size), trained with the model and saved
    beside it (not needed for generation). Mean-pooled LLM states are nearly parallel for
    any two texts (cosines ~0.9), so without a head and at τ = 0.5 the logits barely differ
    and both terms sit at chance; a head plus a lower temperature lets them learn.

    ``queue_size``: user-side vectors (v_T|U, v_U) of earlier steps, detached, kept as extra
    negatives in the denominators (the paper's sum over j runs over user-side vectors): more
    negatives per step for no extra forward pass or activation memory. The queue is part of
    the saved state, so a resumed run continues with it; validation uses in-batch negatives only.
    ``queue_for`` names the objectives that use it. L_TT gains from it; for L_UT we measured
    the opposite on the Scientific run (validation L_UT stuck at -9% of chance after 390
    steps while L_TT fell 93%): the queued v_U are stale, so the heads can learn to tell the
    current batch from the queue by drift instead of matching users to their targets.

    ``user_pooling``: how v_U is read from the joint sequence. ``mean`` is the paper's (the
    mean over the history span). ``last`` (ours) is the state at the last prompt token, the
    one that predicts the target's first token: in a causal LM it has attended to the whole
    history and the question, which is what decoder-only embedding models pool for the same
    reason, while the history mean is dominated by states that predict words inside the history.
    """

    alpha: float = 0.125            # weight of the target-target contrastive loss L_TT (0 = off)
    beta: float = 0.025             # weight of the user-target contrastive loss L_UT (0 = off)
    tau: float = 0.5                # temperature of both contrastive losses (unless set per objective)
    tau_tt: float | None = None     # temperature of L_TT (None = tau)
    tau_ut: float | None = None     # temperature of L_UT (None = tau)
    projection_heads: bool = False  # a trained linear head per embedding before the contrastive losses
    projection_dim: int = 0         # size of those heads (0 = the model's hidden size)
    queue_size: int = 0             # earlier steps' user-side vectors kept as extra negatives (0 = in-batch only)
    queue_for: list[str] = field(default_factory=lambda: ["tt", "ut"])  # objectives that use the queue
    user_pooling: str = "mean"      # v_U: mean over the history span (paper) | last = the last prompt token

    def __post_init__(self) -> None:
        unknown = sorted(set(self.queue_for) - {"tt", "ut"})
        if unknown:
            raise ConfigError(f"loss.queue_for: unknown objective(s) {unknown}; use tt and/or ut")
        if self.user_pooling not in ("mean", "last"):
            raise ConfigError(f"loss.user_pooling: unknown pooling {self.user_pooling!r}; use mean or last")

    @property
    def contrastive(self) -> bool:
        return self.alpha != 0 or self.beta != 0

    @property
    def temperatures(self) -> tuple[float, float]:
        """(τ of L_TT, τ of L_UT)."""
        return (self.tau if self.tau_tt is None else self.tau_tt, self.tau if self.tau_ut is None else self.tau_ut)


@dataclass
class ValidationConfig:
    """Validation loss on split.valid rows, and optionally ranking NDCG@10 (QRR grounding).

    ``eval_steps`` 0 = evaluate when a checkpoint is saved. ``ranking_users`` 0 = no ranking
    metric (it generates ``n_gen`` samples per user: expensive on CPU). ``select_best``:
    ``last`` keeps the final weights, ``loss``, ``ndcg@10`` or ``ndcg@10_pes`` makes the final adapter
    the best checkpoint by that validation metric. ``ndcg@10`` (also spelled ``ndcg@10_expected``)
    selects by the expected NDCG@10 under random tie-breaking (SPEC.md §12), which, unlike the
    optimistic value, a generation that grounds to nothing (every item tied, optimistic rank 1)
    cannot lift; ``ndcg@10_pes`` by the pessimistic one.
    """

    max_examples: int = 256         # validation rows for the validation loss (0 = none)
    eval_steps: int = 0             # evaluate every N steps (0 = at every checkpoint)
    batch_size: int = 8             # rows per validation batch
    ranking_users: int = 0          # users for ranking NDCG@10 (0 = off; generates n_gen samples each)
    n_gen: int = 10                 # samples generated per user for the ranking metric
    n_preds: int = 10               # samples kept for QRR grounding
    eps: float = 0.01               # ε of the exp(ε·s) score modulation in grounding
    max_new_tokens: int = 48        # longest generated item text
    temperature: float = 1.0        # sampling temperature of those samples
    mask_history: bool = True       # history items excluded from the ranking
    select_best: str = "last"       # last | loss | ndcg@10 (= ndcg@10_expected) | ndcg@10_pes: the final weights' checkpoint
    seed: int = 0                   # seed of the validation sample and the sampling

    def __post_init__(self) -> None:
        if self.select_best not in ("last", "loss", "ndcg@10", "ndcg@10_expected", "ndcg@10_pes"):
            raise ConfigError(f"validation.select_best {self.select_best!r}: choose last, loss, ndcg@10 "
                              f"(the expected value under random tie-breaking) or ndcg@10_pes")

    @property
    def best_metric(self) -> str | None:
        """The trainer's logged metric that ``select_best`` reads (None: keep the last weights):
        ``ndcg@10`` reads the expected value, never the optimistic one ties can inflate."""
        if self.select_best == "last":
            return None
        return "eval_ndcg@10_expected" if self.select_best == "ndcg@10" else f"eval_{self.select_best}"


@dataclass
class TrainConfig:
    """One fine-tuning stage. Stage 2 = stage 1's output (``init_adapter`` for LoRA, ``model`` for a
    full fine-tune) + one dataset. LoRA writes ``output_dir/adapter``, a full fine-tune a plain
    model folder ``output_dir/model``."""

    model: str = "smollm2-135m"             # base model: built-in name, local folder or Hugging Face id
    datasets: list[DatasetSource] = field(default_factory=list)  # one per category (stage 1: several)
    tuning: str = "lora"                     # lora (an adapter) | full (every weight, as in the paper)
    init_adapter: str | None = None          # LoRA stage 2: continue this adapter (full: set model to stage 1's model/)
    template: str = "calrec_compact"         # prompt template: a name under prompts/ or a .yaml path
    max_tokens: int = 512                    # joint prompt + target budget (tokens)
    max_target_tokens: int = 64              # guard: longer targets are cut (and counted in the log)
    max_history: int | None = 50             # items kept before the token budget applies
    kcore: int = 0                           # 0 = data used as given
    cold: ColdConfig = field(default_factory=ColdConfig)  # cold-item protocol on one dataset (genrec.data.cold_split)
    cold_dataset: str = ""                   # the dataset (its name) whose items go cold when cold.fraction > 0
    max_drop: int = 4                        # augmentation k in {0..max_drop}, k < n-1
    mix_power: float = 0.3                   # stage-1 category mixing ∝ n_c^power
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    batch_size: int = 8                      # rows per device per step
    grad_accum: int = 1                      # micro-batches accumulated per optimizer step
    lr: float = 1e-4                         # peak learning rate (AdamW)
    weight_decay: float = 0.0                # AdamW weight decay
    warmup_steps: int = 0                    # linear warm-up steps
    lr_scheduler: str = "constant_with_warmup"  # any transformers scheduler name (linear, cosine, ...)
    max_grad_norm: float = 1.0               # gradient clipping norm
    max_steps: int = 1000                    # the stage's total optimizer steps
    run_steps: int = 0                       # steps per invocation (0 = until max_steps); resume continues
    time_budget_s: float = 0.0               # wall-time per invocation (0 = none); stops and saves
    save_steps: int = 100                    # checkpoint every N steps (resume point)
    save_total_limit: int = 3                # checkpoints kept (oldest deleted)
    logging_steps: int = 10                  # log losses to metrics.jsonl every N steps
    seed: int = 0                            # seed of the data stream, LoRA init and dropout
    output_dir: str = "runs/calrec"          # checkpoints, metrics.jsonl, adapter/, run.json
    precision: str = "auto"                  # auto | bf16-weights | bf16-autocast | fp32
    load_in_4bit: str = "no"                 # no | yes | auto (CUDA + bitsandbytes only; ignored elsewhere)
    dataloader_workers: int = 0              # DataLoader worker processes (0 = in the main process)

    def stage_label(self) -> str:
        """``stage 1, full`` or ``stage 2 (continues X), lora``: stage 2 continues an adapter
        (LoRA's ``init_adapter``) or a model folder that an earlier stage wrote (its run's
        ``run.json`` beside it), which is how a full fine-tune's stage 2 names stage 1."""
        earlier = self.init_adapter or (self.model if (Path(self.model).parent / "run.json").exists() else None)
        return (f"stage 2 (continues {earlier})" if earlier else "stage 1") + f", {self.tuning}"
