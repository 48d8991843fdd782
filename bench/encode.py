"""Item-text encoding speed: genrec's LLM encoder vs the encoder it replaced, on the same texts.

    python bench/encode.py            # 1,000 Scientific item prompts, whole (up to 512 tokens)
    python bench/encode.py --quick    # under a minute: 96 prompts
    python bench/encode.py --texts 4344 --skip-reference   # the whole catalog, new encoder only
    python bench/encode.py --texts 4344 --skip-reference --compile   # ... with torch.compile

Texts: LLM-ESR item prompts (``esr_item`` template) of a seeded sample of Scientific items, or
of the embedded demo shops when ``../shared`` is absent. Model: SmolLM2-135M, fp32, mean pooling.

- reference (the encoder before this change): float32, texts sorted by character count, fixed
  batches of 32 padded to their longest text, torch's thread setting as found;
- genrec (:class:`genrec.esr.embeddings.LLMEncoder`, ``dtype: auto``): bfloat16 where the CPU
  has native bf16 kernels (else float32), tokenised once, sorted by token count, batches of at
  most ``token_budget`` padded tokens, every core.

Both encode the same texts with the same truncation; the lowest cosine between the two vectors
of a text is reported (1.0 up to rounding: batching changes only which padding rows are
computed, bf16 the rounding). Reported: real tokens per second and the fraction of computed
tokens that were padding. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SCIENTIFIC = REPO.parent / "shared" / "data" / "amazon18_industrial_scientific_lcrec"


def item_prompts(n: int, seed: int = 0) -> tuple[str, list[str]]:
    from genrec.esr.embeddings import item_texts

    if SCIENTIFIC.exists():
        from genrec.data.readers import read_dataset

        name, catalog = "scientific", read_dataset("lcrec", SCIENTIFIC).catalog
    else:
        from genrec.data.demo import demo_dataset

        name, catalog = "demo-electronics", demo_dataset("electronics").catalog
    texts = item_texts(catalog)
    idx = np.random.default_rng(seed).permutation(len(texts))[:n]
    return name, [texts[i] for i in sorted(idx)]


def reference_encode(encoder, texts: list[str], batch_size: int = 32) -> tuple[np.ndarray, int]:
    """The previous encoder's loop: char-length order, fixed batches padded to their longest text."""
    import torch

    model, tok = encoder.model, encoder.tokenizer
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    order = np.argsort([len(t) for t in texts], kind="stable")[::-1]
    computed = 0
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            batch = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=encoder.max_length,
                        return_tensors="pt")
            computed += batch["input_ids"].numel()
            hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out[idx] = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).numpy()
    return out, computed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="96 texts (under a minute)")
    parser.add_argument("--texts", type=int, default=1000, help="how many item prompts")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--token-budget", type=int, default=8192)
    parser.add_argument("--dtype", default="auto", help="genrec encoder's dtype: auto | float32 | bfloat16")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for both encoders (0: the reference "
                        "keeps torch's setting, genrec uses every core)")
    parser.add_argument("--skip-reference", action="store_true", help="time the genrec encoder alone")
    parser.add_argument("--compile", action="store_true", help="genrec encoder with torch.compile (its compile "
                        "time is reported as the warm-up, and counted in seconds_with_warmup)")
    args = parser.parse_args(argv)
    n = 96 if args.quick else args.texts

    import torch

    from genrec.esr.embeddings import LLMEncoder

    dataset, texts = item_prompts(n)
    threads_found = torch.get_num_threads()
    enc = LLMEncoder("smollm2-135m", max_length=args.max_length, token_budget=args.token_budget,
                     dtype=args.dtype, compile=args.compile)
    enc.model  # noqa: B018 (loads the model and its tokenizer)
    lengths = [len(x) for x in enc.tokenizer(texts, truncation=True, max_length=args.max_length)["input_ids"]]
    real = sum(lengths)
    genrec_threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(genrec_threads)
    t0 = time.perf_counter()
    enc.encode(texts[:8], progress=False)  # warm-up: first-call allocations (and the compile, with --compile)
    warmup = time.perf_counter() - t0
    rows = []
    ref = None
    if not args.skip_reference:
        torch.set_num_threads(args.threads or threads_found)
        ref_enc = LLMEncoder("smollm2-135m", max_length=args.max_length, dtype="float32")
        ref_enc.model  # noqa: B018
        reference_encode(ref_enc, texts[:8])  # warm-up
        t0 = time.perf_counter()
        ref, computed = reference_encode(ref_enc, texts)
        secs = time.perf_counter() - t0
        rows.append(("reference (fp32, batch 32, char order)", torch.get_num_threads(), secs, real / secs, 1 - real / computed))
    torch.set_num_threads(genrec_threads)  # back from the reference's setting
    computed = sum(len(b) * max(lengths[i] for i in b) for b in enc.batches(lengths))
    t0 = time.perf_counter()
    new = enc.encode(texts, progress=False)
    secs = time.perf_counter() - t0
    rows.append((f"genrec ({enc.dtype}, token budget{', compiled' if args.compile else ''})", torch.get_num_threads(),
                 secs, real / secs, 1 - real / computed))

    print(f"{dataset}: {n} item prompts, {real} tokens (median {int(np.median(lengths))}, max {max(lengths)}), "
          f"max_length {args.max_length}")
    print(f"{'encoder':<40} {'threads':>7} {'seconds':>8} {'tokens/s':>9} {'padding':>8}")
    for name, threads, s, tps, pad in rows:
        print(f"{name:<40} {threads:>7} {s:>8.1f} {tps:>9.0f} {pad:>8.1%}")
    print(f"genrec warm-up on 8 texts{' (the compile)' if args.compile else ''}: {warmup:.1f} s")
    result = {"texts": n, "tokens": real, "dtype": enc.dtype, "seconds": round(rows[-1][2], 2),
              "tokens_per_s": round(rows[-1][3], 1), "padding_fraction": round(rows[-1][4], 4),
              "compile": args.compile, "warmup_seconds": round(warmup, 2),
              "seconds_with_warmup": round(rows[-1][2] + warmup, 2)}
    if ref is not None:
        cos = (ref * new).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(new, axis=1)
        print(f"lowest cosine between the two encoders' vectors of a text: {cos.min():.6f}")
        result.update(reference_tokens_per_s=round(rows[0][3], 1), speedup_vs_reference=round(rows[0][2] / rows[-1][2], 3),
                      min_cosine_vs_reference=round(float(cos.min()), 6))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
