"""Loading the model a CALRec stage trains: base model + new or continued LoRA adapter (4-bit where
CUDA and bitsandbytes allow), or the whole model for a full fine-tune, with the precision this
machine runs best.

Apart from :mod:`genrec.training.stages` because validation (:mod:`genrec.training.validation`)
loads checkpoints the same way, and stages reads validation: both import it from here.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from genrec.errors import ConfigError
from genrec.hardware import cpu_has_fast_bf16
from genrec.training.config import TrainConfig

log = logging.getLogger(__name__)

TUNINGS = ("lora", "full")


def choose_precision(precision: str, cuda: bool, tuning: str = "lora") -> tuple[torch.dtype, bool]:
    """(weights dtype, autocast bf16?) for a ``precision`` setting on this machine.

    ``auto``: on CUDA fp32 weights with bf16 autocast where supported. On a CPU with native
    bf16 kernels: LoRA keeps the frozen weights in bf16 with fp32 LoRA parameters
    (ENVIRONMENT.md: 8.3 s vs 12.7 s fp32 per step on an AVX-512 machine); a full fine-tune
    keeps fp32 master weights (AdamW updates of ~1e-4 vanish when rounded to bf16's 8 bits of
    mantissa) and computes under bf16 autocast. Other CPUs: fp32.
    """
    if precision == "auto":
        if cuda:
            return torch.float32, torch.cuda.is_bf16_supported()
        if tuning == "full":
            return torch.float32, cpu_has_fast_bf16()
        return (torch.bfloat16 if cpu_has_fast_bf16() else torch.float32), False
    table = {"bf16-weights": (torch.bfloat16, False), "bf16-autocast": (torch.float32, True),
             "fp32": (torch.float32, False)}
    if precision not in table:
        raise ConfigError(f"precision {precision!r}: choose auto, bf16-weights, bf16-autocast or fp32")
    return table[precision]


def want_4bit(setting: str, cuda: bool) -> bool:
    """QLoRA loading only where it can run: CUDA and bitsandbytes present. Never required."""
    setting = str(setting).lower()
    if setting in ("no", "false", "off"):
        return False
    if setting not in ("yes", "true", "on", "auto"):
        raise ConfigError(f"load_in_4bit {setting!r}: choose no, yes or auto")
    try:
        import bitsandbytes  # noqa: F401
        have_bnb = True
    except Exception:  # noqa: BLE001 - a broken install counts as absent
        have_bnb = False
    if cuda and have_bnb:
        return True
    if setting in ("yes", "true", "on"):
        log.warning("load_in_4bit=yes ignored: needs a CUDA GPU and bitsandbytes (cuda=%s, bitsandbytes=%s)",
                    cuda, have_bnb)
    return False


def load_trainable_model(cfg: TrainConfig):
    """(CALRecModel, tokenizer, autocast_bf16): base model + new or continued LoRA adapter,
    or (``tuning: full``) the model itself with every weight trainable."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from genrec.model_store import resolve_model
    from genrec.training.model import CALRecModel

    if cfg.tuning not in TUNINGS:
        raise ConfigError(f"tuning {cfg.tuning!r}: choose lora or full")
    full = cfg.tuning == "full"
    if full and cfg.init_adapter:
        raise ConfigError("tuning: full continues a model folder, not an adapter: set model to stage 1's "
                          "output_dir/model and leave init_adapter empty")
    cuda = torch.cuda.is_available()
    dtype, autocast = choose_precision(cfg.precision, cuda, cfg.tuning)
    path = resolve_model(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs: dict = {"dtype": dtype}
    quant = not full and want_4bit(cfg.load_in_4bit, cuda)
    if quant:
        from transformers import BitsAndBytesConfig

        kwargs = {"dtype": torch.bfloat16, "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True)}
    base = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if quant:
        from peft import prepare_model_for_kbit_training

        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
    if full:
        model = base
        model.config.use_cache = False
        log.info("full fine-tuning: %.1fM trainable parameters", sum(p.numel() for p in model.parameters()) / 1e6)
    elif cfg.init_adapter:
        adapter = Path(cfg.init_adapter)
        if not (adapter / "adapter_config.json").exists():
            raise ConfigError(f"init_adapter {adapter}: not a PEFT adapter folder (run stage 1 first?)")
        model = PeftModel.from_pretrained(base, str(adapter), is_trainable=True)
        log.info("continuing adapter %s (its LoRA settings apply; lora.* ignored)", adapter)
    else:
        model = get_peft_model(base, LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha,
                                                lora_dropout=cfg.lora.dropout,
                                                target_modules=list(cfg.lora.target_modules),
                                                task_type="CAUSAL_LM"))
    wrapped = CALRecModel(model, cfg.loss)
    previous = cfg.init_adapter or (path if full and Path(path).is_dir() else None)
    if previous and wrapped.load_heads(previous):
        log.info("projection heads continued from %s", previous)
    return wrapped, tokenizer, autocast
