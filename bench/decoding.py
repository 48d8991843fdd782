"""Constrained beam search vs QRR sampling for one user, and the prefix tree at 1M items.

    python bench/decoding.py              # 8 users, N_gen 10, 32 new tokens; the tree at 1M items
    python bench/decoding.py --quick      # about a minute: 1 user, the tree at 200k items
    python bench/decoding.py --threads 2  # torch threads (default 1: steadier on a shared CPU)
    python bench/decoding.py --quick --bundle runs/bundles/scientific_full   # a trained bundle

Without ``--bundle``: the untuned SmolLM2-135M with ``--template``. With ``--bundle DIR``: that
bundle's model, template, BM25 index, prefix tree and prompt budget (the recommender's own
prompts), the token budget its settings give unless ``--max-new-tokens`` says otherwise — what
the Done-when of issue #12 names ("on the Scientific bundle").

The reference is today's generative answer: N_gen free samples (transformers ``generate``,
temperature 1) grounded by QRR BM25 over the whole catalog. Against it, in the same run on the
same prompts: beam search of width N_gen inside the item prefix tree (genrec.decoding), with the
same N_gen and the same token budget (``--max-new-tokens``). Both on the transformers backend
(the only one that runs constrained beam search; see genrec.decoding.vllm_trie), the model
SmolLM2-135M (untuned: its free samples rarely stop early, so QRR spends its token budget; the
beams stop when N_gen items are finished and no live beam can beat them).

Catalog: Scientific (Amazon 2018, LC-Rec processing, 4,344 items), the items rendered as the
model is taught to write them with ``--template`` (default ``calrec_short`` — the title alone —
when present, else ``calrec_compact``); prompts are the recommender's, from the first Scientific
users with at least 4 items. Times per user exclude model load and the tree / BM25 builds,
which are reported apart. ``constrained_over_qrr`` = mean beam-search time / mean QRR time.

The tree at scale: 1M synthetic items, each a real Scientific target's token path with two
random vocabulary tokens inserted before its terminator (real shared prefixes, unique texts):
build time, nodes, and the bytes of its arrays (the tree's whole resident size). Measured once,
2 cores shared with other jobs: 1M items → 3.08M nodes, 41 MB (41 bytes an item), 13 s to build.
The CPU is shared: timings are noisy. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SCIENTIFIC = REPO.parent / "shared" / "data" / "amazon18_industrial_scientific_lcrec"


def pick_template(name: str | None):
    from genrec.errors import GenrecError
    from genrec.prompting import PromptTemplate

    for candidate in ([name] if name else ["calrec_short", "calrec_compact"]):
        try:
            return PromptTemplate.load(candidate)
        except GenrecError:
            continue
    raise SystemExit(f"template {name!r} not found")


def tree_at_scale(sequences: list[list[int]], items: int, vocab: int, seed: int = 0) -> dict:
    """Build the tree of ``items`` synthetic paths (see the module docstring)."""
    from genrec.decoding.trie import ItemTrie

    rng = np.random.default_rng(seed)
    base = rng.integers(0, len(sequences), items)
    extra = rng.integers(0, vocab, (items, 2))
    synthetic = [sequences[b][:-1] + [int(extra[i, 0]), int(extra[i, 1]), sequences[b][-1]]
                 for i, b in enumerate(base.tolist())]
    t0 = time.perf_counter()
    trie = ItemTrie.build(synthetic)
    seconds = time.perf_counter() - t0
    stats = trie.stats()
    return {"items": items, "nodes": stats["nodes"], "depth": stats["depth"], "bytes": stats["bytes"],
            "bytes_per_item": round(stats["bytes"] / items, 1), "build_s": round(seconds, 2),
            "distinct_texts": stats["distinct_texts"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--users", type=int, default=0, help="default 8, quick 1")
    ap.add_argument("--n", type=int, default=10, help="N_gen: samples for QRR, beam width for constrained")
    ap.add_argument("--max-new-tokens", type=int, default=0,
                    help="token budget of both (default 32, or the bundle's)")
    ap.add_argument("--template", default=None)
    ap.add_argument("--bundle", default=None, help="a bundle: its model, template, index, tree and prompts")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tree-items", type=int, default=0, help="synthetic tree size (default 1M, quick 200k)")
    args = ap.parse_args()
    users = args.users or (1 if args.quick else 8)
    tree_items = args.tree_items or (200_000 if args.quick else 1_000_000)

    import torch

    torch.set_num_threads(args.threads)
    from bench.generation import user_histories, user_prompts  # the generation bench's users
    from genrec.bundle import item_texts
    from genrec.data.readers import read_dataset
    from genrec.decoding.trie import ItemTrie
    from genrec.generation import GenerationConfig
    from genrec.generation.hf import HFGenerator
    from genrec.grounding import BM25Index, qrr_batch
    from genrec.model_store import resolve_model

    dataset = read_dataset("lcrec", SCIENTIFIC)
    if args.bundle:
        from genrec.bundle import Bundle

        bundle = Bundle.load(args.bundle)
        template, catalog = bundle.template, bundle.catalog
        max_new = args.max_new_tokens or int(bundle.settings.generation.get("max_new_tokens", 32))
        t0 = time.perf_counter()
        gen = HFGenerator(bundle.generation_config("hf", n=args.n, max_new_tokens=max_new, seed=0,
                                                   temperature=1.0, top_p=1.0, top_k=0))
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        index = bundle.index
        bm25_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        trie = bundle.trie
        trie_s = time.perf_counter() - t0
        rec = bundle.recommender(generator=gen, tokenizer=gen.tokenizer)
        prompts = [rec.build_prompt(h) for h in user_histories(dataset, users)]  # the generation bench's users
        model_name = f"bundle {args.bundle}"
    else:
        template = pick_template(args.template)
        catalog = dataset.catalog
        max_new = args.max_new_tokens or 32
        t0 = time.perf_counter()
        gen = HFGenerator(GenerationConfig(model=resolve_model("smollm2-135m"), n=args.n, max_new_tokens=max_new,
                                           stop=template.terminator, seed=0))
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        index = BM25Index.build(item_texts(catalog, template))
        bm25_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        trie = ItemTrie.from_catalog(catalog, template, gen.tokenizer)
        trie_s = time.perf_counter() - t0
        prompts = user_prompts(dataset, template, gen.tokenizer, users)
        model_name = "SmolLM2-135M (untuned)"

    gen.generate(prompts[:1], n=2)  # warm-up: first-call allocations, stop-string tables
    gen.constrained_beam(prompts[:1], trie, width=2)
    qrr_times, beam_times, qrr_tokens, beam_items, beam_lengths = [], [], [], [], []
    for p in prompts:  # alternate, so a burst of load from other jobs hits both alike
        t0 = time.perf_counter()
        samples = gen.generate([p], n=args.n)
        qrr_batch(samples, index, n_preds=10, eps=0.01)
        qrr_times.append(time.perf_counter() - t0)
        qrr_tokens.append(float(np.mean([len(s.token_ids) for s in samples[0]])))
        t0 = time.perf_counter()
        decoded = gen.constrained_beam([p], trie, width=args.n)[0]
        beam_times.append(time.perf_counter() - t0)
        beam_items.append(sum(len(d.items) for d in decoded))
        beam_lengths.append(float(np.mean([len(d.token_ids) for d in decoded])) if decoded else 0.0)
        ids = [i for d in decoded for i in d.items]
        assert len(ids) == len(set(ids)) and all(0 <= i < len(catalog) for i in ids)

    sequences = [list(x) for x in gen.tokenizer([template.render_target(it) for it in catalog],
                                                add_special_tokens=False)["input_ids"]]
    target_len = np.array([len(x) for x in sequences])
    fits = float(np.mean(target_len <= max_new))
    scale = tree_at_scale(sequences, tree_items, len(gen.tokenizer))

    qrr, beam = float(np.mean(qrr_times)), float(np.mean(beam_times))
    ratio = beam / qrr
    print(f"{model_name}, transformers, {args.threads} thread(s); Scientific {len(catalog)} items, "
          f"template {template.name}; {users} users, N_gen {args.n}, {max_new} new tokens (shared CPU: noisy)")
    print(f"model load {load_s:.1f} s, BM25 index {bm25_s:.1f} s, prefix tree {trie_s:.1f} s "
          f"({trie.num_nodes} nodes, {trie.nbytes() / 1e6:.2f} MB, depth {trie.depth}); target texts: median "
          f"{int(np.median(target_len))} tokens, {fits:.0%} fit the budget")
    print(f"{'path':<26} {'s/user':>8} {'tokens/sample':>14} {'items':>6}")
    print(f"{'QRR (sample + ground)':<26} {qrr:>8.2f} {np.mean(qrr_tokens):>14.1f} {'':>6}")
    print(f"{'constrained beam search':<26} {beam:>8.2f} {np.mean(beam_lengths):>14.1f} {np.mean(beam_items):>6.1f}")
    print(f"constrained over QRR: {ratio:.2f}x (target <= 2)")
    print(f"tree at {scale['items']:,} synthetic items: {scale['nodes']:,} nodes, {scale['bytes'] / 1e6:.0f} MB "
          f"({scale['bytes_per_item']} bytes/item), built in {scale['build_s']} s")
    print(json.dumps({
        "constrained_over_qrr": round(ratio, 3), "qrr_s_per_user": round(qrr, 3), "beam_s_per_user": round(beam, 3),
        "qrr_tokens_per_sample": round(float(np.mean(qrr_tokens)), 1),
        "beam_tokens_per_item": round(float(np.mean(beam_lengths)), 1),
        "beam_items_per_user": round(float(np.mean(beam_items)), 1), "users": users, "n_gen": args.n,
        "max_new_tokens": max_new, "threads": args.threads, "catalog": "scientific", "catalog_items": len(catalog),
        "model": model_name,
        "template": template.name, "tree_nodes": trie.num_nodes, "tree_bytes": trie.nbytes(),
        "targets_within_budget": round(fits, 3),
        "tree_at_scale": scale}))


if __name__ == "__main__":
    main()
