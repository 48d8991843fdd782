"""CALRec fine-tuning (SPEC.md §1): losses, collator, Trainer subclass, data stream, stages.

``run_stage(TrainConfig)`` is the entry point; ``finetune/train_calrec.py`` is its script.
"""

from genrec.training.config import LoRAConfig, LossConfig, TrainConfig, ValidationConfig
from genrec.training.stages import StageResult, run_stage

__all__ = ["LoRAConfig", "LossConfig", "TrainConfig", "ValidationConfig", "StageResult", "run_stage"]
