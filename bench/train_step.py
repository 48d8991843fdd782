"""Cost of a CALRec training step: plain NIG vs NIG + TT + UT on the same batches.

SmolLM2-135M with LoRA (r=8, q/k/v/o), batch 8, joint sequences of 512 tokens (prompt filled
with demo-shop items up to the budget, target ≤ 64 tokens). One step = forward + backward +
AdamW step, exactly as the Trainer runs it (``CALRecModel``). The two modes alternate step by
step so load on a shared machine hits both alike; the median is reported.

    python bench/train_step.py            # 5 measured steps per mode
    python bench/train_step.py --quick    # 1 measured step per mode

Last line: JSON with ``contrastive_over_nig`` (target ≤ 1.25).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

TARGET = 1.25


def make_rows(tokenizer, n: int, seq_len: int, seed: int = 0) -> list[dict]:
    """Rows whose prompt + target fill ``seq_len`` tokens (history of demo items, newest kept)."""
    from genrec.data.demo import demo_datasets
    from genrec.prompting import PromptTemplate

    template = PromptTemplate.load("calrec_compact")
    items = [it for ds in demo_datasets().values() for it in ds.catalog]
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        pick = rng.choice(len(items), 60, replace=False)
        history, target = [items[i] for i in pick[:-1]], items[pick[-1]]
        prompt, target_text = template.render_example(history, target, tokenizer, seq_len - 1)
        s, e = len(template.history_label), len(prompt) - len(template.suffix)
        rows.append({"prompt": prompt, "target": target_text, "history_span": (s, e)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--precision", default="auto", help="auto | bf16-weights | bf16-autocast | fp32")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = p.parse_args(argv)
    steps = 1 if args.quick else args.steps
    if args.threads:
        torch.set_num_threads(args.threads)

    from genrec.training.collator import CALRecCollator
    from genrec.training.config import LossConfig, TrainConfig
    from genrec.training.model import CALRecModel
    from genrec.training.stages import choose_precision, load_trainable_model

    cfg = TrainConfig(model=args.model, precision=args.precision)
    wrapped, tokenizer, autocast = load_trainable_model(cfg)
    dtype, _ = choose_precision(args.precision, torch.cuda.is_available())
    modes = {"nig": LossConfig(alpha=0.0, beta=0.0), "nig+tt+ut": LossConfig()}
    models = {m: CALRecModel(wrapped.model, loss) for m, loss in modes.items()}  # same LoRA weights
    collators = {m: CALRecCollator(tokenizer, args.seq_len, 64, with_target_alone=loss.contrastive)
                 for m, loss in modes.items()}
    params = [q for q in wrapped.model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    rows = make_rows(tokenizer, args.batch * steps, args.seq_len)
    # Batch 0 is a small warm-up (lazy initialisation, allocator) that is not measured.
    batches = [make_rows(tokenizer, 2, 64, seed=1)] + [rows[i * args.batch:(i + 1) * args.batch]
                                                      for i in range(steps)]
    times: dict[str, list[float]] = {m: [] for m in modes}
    tokens = {}
    for b, batch_rows in enumerate(batches):
        for m in modes:
            batch = collators[m](batch_rows)
            t0 = time.perf_counter()
            with torch.autocast("cpu" if not torch.cuda.is_available() else "cuda", dtype=torch.bfloat16,
                                enabled=autocast):
                out = models[m].train()(**batch)
            out["loss"].backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if b > 0:
                times[m].append(time.perf_counter() - t0)
                tokens[m] = int(batch["attention_mask"].sum())
            print(f"batch {b} {m:10s} {time.perf_counter() - t0:7.2f} s  loss {out['loss'].item():.3f}",
                  file=sys.stderr)
    t_len = [len(tokenizer(r["target"], add_special_tokens=False)["input_ids"]) for r in rows]
    med = {m: statistics.median(v) for m, v in times.items()}
    tok_s = {m: tokens[m] / med[m] for m in modes}  # joint-sequence tokens per second
    ratio = med["nig+tt+ut"] / med["nig"]
    print(f"SmolLM2-135M LoRA r=8 | batch {args.batch} x {args.seq_len} tokens (target {min(t_len)}-{max(t_len)}) | "
          f"weights {str(dtype).replace('torch.', '')}, autocast {autocast} | threads {torch.get_num_threads()}")
    print(f"{'mode':12s} {'s/step (median)':>16s} {'tokens/s':>10s}  steps")
    for m in modes:
        print(f"{m:12s} {med[m]:16.2f} {tok_s[m]:10.0f}  {', '.join(f'{t:.2f}' for t in times[m])}")
    print(f"contrastive / nig = {ratio:.3f} (target <= {TARGET})")
    print(json.dumps({"s_per_step_nig": round(med["nig"], 3), "s_per_step_contrastive": round(med["nig+tt+ut"], 3),
                      "tokens_per_s_nig": round(tok_s["nig"], 1),
                      "tokens_per_s_contrastive": round(tok_s["nig+tt+ut"], 1),
                      "contrastive_over_nig": round(ratio, 3), "target": TARGET, "batch": args.batch,
                      "seq_len": args.seq_len, "precision": args.precision, "steps": steps}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
