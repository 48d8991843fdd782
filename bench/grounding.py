"""QRR BM25 grounding speed: bm25s sparse products vs a rank-bm25 loop, then 100k and 1M items.

    python bench/grounding.py            # Scientific + synthetic 100k and 1M catalogs
    python bench/grounding.py --quick    # under a minute: fewer users, synthetic 100k only

What one "user" costs: N_gen = 20 generated texts → QRR (SPEC §1, N_preds = 10) over the whole
catalog → the top 10 items. Generated texts are simulated as what the model writes: the first
8-30 words of a random item rendered with the ``calrec`` template, a few words replaced by random
catalog words, s uniform in [-10, 0]; a few samples repeat a text (duplicates are dropped by QRR).

- Scientific catalog (4,344 items, rendered with the ``calrec`` template as the bundle indexes
  them): ``genrec.grounding`` (bm25s weights, one sparse product for a batch of users) vs the
  reference — rank-bm25 ``BM25Okapi(epsilon=0)`` ``get_scores`` per sample, then the same QRR
  arithmetic in numpy — in the same run; their top-10 scores are checked equal.
- synthetic catalogs of 100k and 1M items whose texts are drawn from the Scientific vocabulary
  with its word frequencies and its item-length distribution (built as term counts with
  ``BM25Index.from_counts``; bm25s's per-item loop would take minutes at 1M).

Users are grounded in batches (``--batch``); times are per user. The CPU is shared: expect noise.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SCIENTIFIC = REPO.parent / "shared" / "data" / "amazon18_industrial_scientific_lcrec"
N_GEN, N_PREDS, EPS, K = 20, 10, 0.01, 10


def simulated_samples(docs: list[list[str]], vocab_words: list[str], users: int, rng: np.random.Generator):
    """N_GEN generated texts per user, shaped like model output (see the module docstring)."""
    from genrec.generation import Sample

    out = []
    for _ in range(users):
        samples = []
        for _ in range(N_GEN):
            if samples and rng.random() < 0.15:  # the model repeats itself now and then
                samples.append(Sample(samples[-1].text, float(rng.uniform(-10, 0))))
                continue
            words = list(docs[rng.integers(len(docs))][: rng.integers(8, 31)])
            for j in rng.choice(len(words), size=min(2, len(words)), replace=False):
                words[j] = vocab_words[rng.integers(len(vocab_words))]
            samples.append(Sample(" ".join(words), float(rng.uniform(-10, 0))))
        out.append(samples)
    return out


def ground_fast(index, users, batch: int) -> tuple[float, float, list[list[tuple[int, float]]]]:
    """Wall and CPU seconds per user, and the top-10 of each user, with genrec.grounding."""
    from genrec.grounding import qrr_batch, top_k

    tops = []
    t0, c0 = time.perf_counter(), time.process_time()
    for start in range(0, len(users), batch):
        scores = qrr_batch(users[start:start + batch], index, N_PREDS, EPS)
        tops.extend(top_k(row, K) for row in scores)
    return (time.perf_counter() - t0) / len(users), (time.process_time() - c0) / len(users), tops


def ground_rank_bm25(reference, users) -> tuple[float, float, list[list[tuple[int, float]]]]:
    """The reference: one rank-bm25 ``get_scores`` per kept sample, QRR in numpy, argsort."""
    from genrec.grounding import select_samples, tokenize

    tops = []
    t0, c0 = time.perf_counter(), time.process_time()
    for samples in users:
        kept = select_samples(samples, N_PREDS)
        best = np.zeros(reference.corpus_size)
        for s in kept:
            col = reference.get_scores(tokenize(s.text))
            lo, hi = col.min(), col.max()
            col = np.zeros_like(col) if hi == lo else (col - lo) / (hi - lo)
            best = np.maximum(best, col * math.exp(EPS * s.score))
        order = np.lexsort((np.arange(len(best)), -best))[:K]
        tops.append([(int(i), float(best[i])) for i in order])
    return (time.perf_counter() - t0) / len(users), (time.process_time() - c0) / len(users), tops


def synthetic_index(docs_ids: list[np.ndarray], vocab: dict[str, int], n_items: int, rng: np.random.Generator):
    """A catalog of ``n_items`` texts drawn from the Scientific word frequencies and lengths."""
    import scipy.sparse as sp

    from genrec.grounding import BM25Index

    freq = np.bincount(np.concatenate(docs_ids), minlength=len(vocab)).astype(np.float64)
    lengths = np.array([len(d) for d in docs_ids])
    cdf = np.cumsum(freq / freq.sum())
    chunks, sample_docs = [], []
    for start in range(0, n_items, 100_000):
        m = min(100_000, n_items - start)
        lens = rng.choice(lengths, m)
        words = np.minimum(np.searchsorted(cdf, rng.random(int(lens.sum()))), len(vocab) - 1)
        rows = np.repeat(np.arange(m), lens)
        chunks.append(sp.csr_matrix((np.ones(len(words), dtype=np.float32), (rows, words)), shape=(m, len(vocab))))
        if start == 0:  # a few thousand texts to simulate generated samples from
            bounds = np.concatenate([[0], np.cumsum(lens)])
            sample_docs = [words[bounds[i]:bounds[i + 1]] for i in range(min(m, 5000))]
    return BM25Index.from_counts(sp.vstack(chunks, format="csr"), vocab), sample_docs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer users (under a minute)")
    ap.add_argument("--users", type=int, default=0, help="users grounded with bm25s (default 512, quick 128)")
    ap.add_argument("--reference-users", type=int, default=0, help="users for the rank-bm25 loop (default 50, quick 15)")
    ap.add_argument("--batch", type=int, default=64, help="users per qrr_batch call")
    ap.add_argument("--sizes", default="", help="synthetic catalog sizes (default 100000,1000000; quick 100000)")
    args = ap.parse_args()
    users_n = args.users or (128 if args.quick else 512)
    ref_n = args.reference_users or (15 if args.quick else 50)
    sizes = args.sizes or ("100000" if args.quick else "100000,1000000")

    from rank_bm25 import BM25Okapi

    from genrec.data.readers import read_dataset
    from genrec.grounding import BM25Index, tokenize
    from genrec.prompting import PromptTemplate

    rng = np.random.default_rng(0)
    template = PromptTemplate.load("calrec")
    catalog = read_dataset("lcrec", SCIENTIFIC).catalog
    texts = [template.render_item(item) for item in catalog]
    docs = [tokenize(t) for t in texts]
    vocab_words = sorted({w for d in docs for w in d})

    t0 = time.perf_counter()
    index = BM25Index.build(texts)
    build_s = time.perf_counter() - t0
    reference = BM25Okapi(docs, k1=index.k1, b=index.b, epsilon=0)
    users = simulated_samples([t.split() for t in texts], vocab_words, max(users_n, ref_n), rng)

    ground_fast(index, users[:8], args.batch)  # warm-up (imports, allocations)
    fast_s, fast_cpu, fast_tops = ground_fast(index, users[:users_n], args.batch)
    one_s, one_cpu, _ = ground_fast(index, users[:min(users_n, 64)], 1)
    ref_s, ref_cpu, ref_tops = ground_rank_bm25(reference, users[:ref_n])
    for u in range(ref_n):  # the same answers (scores at each rank; items may differ only within ties)
        np.testing.assert_allclose([s for _, s in fast_tops[u]], [s for _, s in ref_tops[u]], rtol=1e-4, atol=1e-5)
    speedup = ref_s / fast_s

    rows = [("Scientific (4,344 items)", f"genrec.grounding, batch {args.batch}", users_n, fast_s, fast_cpu),
            ("Scientific (4,344 items)", "genrec.grounding, batch 1", min(users_n, 64), one_s, one_cpu),
            ("Scientific (4,344 items)", "rank-bm25 loop (reference)", ref_n, ref_s, ref_cpu)]

    vocab = {w: i for i, w in enumerate(vocab_words)}
    docs_ids = [np.array([vocab[w] for w in d], dtype=np.int64) for d in docs]
    result = {}
    for size in [int(s) for s in sizes.split(",") if s]:
        t0 = time.perf_counter()
        big, sample_docs = synthetic_index(docs_ids, vocab, size, rng)
        build = time.perf_counter() - t0
        big_users = simulated_samples([[vocab_words[j] for j in d] for d in sample_docs], vocab_words,
                                      max(users_n // 2, args.batch), rng)
        ground_fast(big, big_users[:2], args.batch)
        per_user, cpu, _ = ground_fast(big, big_users, args.batch)
        label = f"{size // 1000}k" if size < 1_000_000 else f"{size // 1_000_000}m"
        result[f"ms_per_user_{label}"] = round(per_user * 1000, 3)
        result[f"cpu_ms_per_user_{label}"] = round(cpu * 1000, 3)
        result[f"build_s_{label}"] = round(build, 1)
        rows.append((f"synthetic {size:,} items ({big.weights.nnz:,} weights)",
                     f"genrec.grounding, batch {args.batch}", len(big_users), per_user, cpu))
        del big

    print(f"QRR grounding, N_gen={N_GEN}, N_preds={N_PREDS}, top-{K} (shared CPU: timings are noisy)")
    print(f"{'catalog':<46} {'method':<30} {'users':>6} {'ms/user':>10} {'CPU ms/user':>12}")
    for cat, method, n, sec, cpu in rows:
        print(f"{cat:<46} {method:<30} {n:>6} {sec * 1000:>10.3f} {cpu * 1000:>12.3f}")
    print(f"speedup vs rank-bm25: {speedup:.0f}x wall, {ref_cpu / fast_cpu:.0f}x CPU (target >= 300); "
          f"Scientific index build {build_s:.2f} s (bm25s); ms/user target at 1M <= 50")
    out = {"speedup_vs_rank_bm25": round(speedup, 1), "speedup_vs_rank_bm25_cpu": round(ref_cpu / fast_cpu, 1),
           "ms_per_user_scientific": round(fast_s * 1000, 4),
           "ms_per_user_scientific_batch1": round(one_s * 1000, 4),
           "ms_per_user_rank_bm25": round(ref_s * 1000, 2), **result,
           "users": users_n, "reference_users": ref_n, "batch": args.batch, "n_gen": N_GEN, "n_preds": N_PREDS}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
