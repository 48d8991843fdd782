"""The recommender pipeline on a small hand-made catalog with the real BM25 index.

Generators here are the real transformers backend (determinism) or fixed-output stand-ins for
a generator (so grounding and fallback behaviour can be checked on known text); the pipeline
under test is always the real one.
"""

from __future__ import annotations

import numpy as np
import pytest

from genrec.data.catalog import Catalog, Item
from genrec.generation.base import Sample
from genrec.grounding import BM25Index
from genrec.prompting import PromptTemplate
from genrec.recommender import (
    PATH_GENERATIVE,
    PATH_POPULARITY,
    NoKnownItemsError,
    Recommender,
    RecommenderSettings,
    RequestError,
    top_k_with_ties,
)

TITLES = ["Red Wool Scarf", "Blue Denim Jacket", "Green Rain Boots", "Yellow Sun Hat", "Black Leather Belt",
          "White Cotton Socks", "Purple Silk Tie", "Orange Running Shoes"]
COUNTS = np.array([5, 1, 9, 0, 3, 7, 2, 4], dtype=np.float64)  # training popularity


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog(Item(f"i{i}", t, brand="Acme", categories=("Clothing",)) for i, t in enumerate(TITLES))


@pytest.fixture(scope="module")
def template() -> PromptTemplate:
    return PromptTemplate.load("calrec")


@pytest.fixture(scope="module")
def index(catalog, template) -> BM25Index:
    from genrec.bundle import item_texts

    return BM25Index.build(item_texts(catalog, template))


def popularity():
    from genrec.esr import PopularityScorer

    return PopularityScorer(COUNTS)


class FixedGenerator:
    """Stands in for a generator: returns the given samples for every prompt, records prompts."""

    def __init__(self, samples=(), error: Exception | None = None):
        self.samples, self.error, self.prompts = list(samples), error, []

    def generate(self, prompts, n=None, seed=None):
        self.prompts.extend(prompts)
        if self.error is not None:
            raise self.error
        return [list(self.samples) for _ in prompts]


def make(catalog, index, template, gen, **settings) -> Recommender:
    return Recommender(catalog, index, template, gen, popularity(), RecommenderSettings(**settings),
                       fallback_path=PATH_POPULARITY, popularity=COUNTS)


def test_top_k_with_ties_hand_computed():
    scores = np.array([0.5, 0.0, 0.9, 0.0, 0.5, 0.0])
    tie = np.array([1, 5, 0, 7, 3, 5])
    idx, sc = top_k_with_ties(scores, 4, tie_break=tie)
    # 0.9 first, then the two 0.5 (item 4 more popular than 0), then the most popular 0.0 (item 3)
    assert idx.tolist() == [2, 4, 0, 3]
    assert sc.tolist() == [0.9, 0.5, 0.5, 0.0]
    idx, _ = top_k_with_ties(scores, 3, tie_break=tie, exclude=[2, 3])
    assert idx.tolist() == [4, 0, 1]  # items 1 and 5 tie on popularity: the lower index wins
    idx, _ = top_k_with_ties(scores, 10, exclude=[0, 1])
    assert sorted(idx.tolist()) == [2, 3, 4, 5]  # never more than the allowed items


def test_generative_path_grounds_samples(catalog, index, template):
    samples = [Sample("Title: Green Rain Boots | Brand: Acme", -1.0), Sample("Title: Purple Silk Tie", -2.0)]
    rec = make(catalog, index, template, FixedGenerator(samples), n_gen=2, n_preds=2, k=3)
    out = rec.recommend(["i0", "nope", "i5"])
    assert out.path == PATH_GENERATIVE and out.reason is None
    assert out.unknown_ids == ["nope"]
    # QRR: each sample's best match in turn, the more confident sample first
    assert out.item_ids[:2] == ["i2", "i6"]
    assert len(out.item_ids) == 3 == len(set(out.item_ids))
    assert all(a.score >= b.score for a, b in zip(out.items, out.items[1:]))
    assert out.items[0].title == "Green Rain Boots"
    assert {"i0", "i5"}.isdisjoint(out.item_ids)  # history excluded by default


def test_exclude_history_setting(catalog, index, template):
    samples = [Sample("Title: Red Wool Scarf", -1.0)]
    rec = make(catalog, index, template, FixedGenerator(samples), k=2)
    assert rec.recommend(["i0"], exclude_history=False).item_ids[0] == "i0"
    assert "i0" not in rec.recommend(["i0"]).item_ids


def test_fallback_when_generation_fails_or_is_unusable(catalog, index, template):
    for gen, why in [(FixedGenerator(error=RuntimeError("engine died")), "generation failed"),
                     (FixedGenerator([Sample("   ", -1.0)]), "no usable"),
                     (FixedGenerator([Sample("zzz qqq xyzzy", -1.0)]), "matched no catalog item")]:
        out = make(catalog, index, template, gen, k=3).recommend(["i1"])
        assert out.path == PATH_POPULARITY and why in out.reason
        # popularity order of the items not in the history: i2 (9), i5 (7), i0 (5)
        assert out.item_ids == ["i2", "i5", "i0"]


def test_request_errors(catalog, index, template):
    rec = make(catalog, index, template, FixedGenerator([Sample("Red Scarf", -1.0)]))
    with pytest.raises(NoKnownItemsError, match="'x1', 'x2'") as e:
        rec.recommend(["x1", "x2"])
    assert e.value.unknown_ids == ["x1", "x2"] and e.value.field == "history"
    for bad, field in [([], "history"), ("i0", "history"), ([None], "history")]:
        with pytest.raises(RequestError) as e:
            rec.recommend(bad)
        assert e.value.field == field
    for k in (0, -1, len(TITLES) + 1, 2.5, True):
        with pytest.raises(RequestError) as e:
            rec.recommend(["i0"], k=k)
        assert e.value.field == "k"


def test_recommend_many_returns_errors_in_place(catalog, index, template):
    gen = FixedGenerator([Sample("Title: Yellow Sun Hat", -0.5)])
    rec = make(catalog, index, template, gen, k=2)
    out = rec.recommend_many([["i0"], ["unknown"], ["i1", "i2"]], errors="return")
    assert isinstance(out[1], NoKnownItemsError)
    assert out[0].item_ids[0] == "i3" and out[2].item_ids[0] == "i3"
    assert len(gen.prompts) == 2  # one generation call for the two valid users, none for the bad one
    with pytest.raises(NoKnownItemsError):
        rec.recommend_many([["i0"], ["unknown"]])


def test_long_history_truncated_oldest_first(catalog, index, template):
    gen = FixedGenerator([Sample("Title: Red Wool Scarf", -1.0)])
    rec = make(catalog, index, template, gen, max_prompt_tokens=60, exclude_history=False)
    history = [f"i{i % 8}" for i in range(296)]  # ends with ... i5, i6, i7
    out = rec.recommend(history)
    prompt = gen.prompts[0]
    assert out.path == PATH_GENERATIVE
    lines = prompt.splitlines()
    assert "Orange Running Shoes" in lines[-2] and "Purple Silk Tie" in lines[-3]  # newest kept, in order
    assert 1 < len(lines) - 2 < 296  # cut, not refused
    assert len(prompt) < 60 * 4 + 8  # the estimate without a tokenizer: 4 characters a token
    assert prompt.endswith(template.suffix)


def test_hf_backend_is_deterministic_for_a_seed(tmp_path, tokenizer, catalog, index, template):
    """Same seed → same samples and list; another seed → other samples (the seed is used).
    Determinism does not depend on the weights, so a tiny random Llama keeps this fast."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from genrec.generation import GenerationConfig, make_generator

    LlamaForCausalLM(LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                                 vocab_size=len(tokenizer))).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    gen = make_generator(GenerationConfig(backend="hf", model=str(tmp_path), max_new_tokens=8, n=3, dtype="float32"))
    rec = make(catalog, index, template, gen, n_gen=3, n_preds=3, k=4, seed=7)
    a = rec.recommend(["i0", "i1"])
    b = rec.recommend(["i0", "i1"])
    c = rec.recommend(["i0", "i1"], seed=8)
    assert [s.text for s in a.samples] == [s.text for s in b.samples]
    assert [s.score for s in a.samples] == [s.score for s in b.samples]
    assert a.item_ids == b.item_ids and [it.score for it in a.items] == [it.score for it in b.items]
    assert [s.text for s in a.samples] != [s.text for s in c.samples]
    assert len(a.items) == 4 and len(set(a.item_ids)) == 4


def test_failing_fallback_model_is_answered_by_popularity(catalog, index, template):
    from genrec.esr import UnknownHistoryError

    class Broken:
        def recommend(self, history, k, exclude_history=True):
            raise UnknownHistoryError("history has no item the model knows")

    rec = Recommender(catalog, index, template, FixedGenerator(error=RuntimeError("down")), Broken(),
                      RecommenderSettings(k=2), fallback_path="fallback", popularity=COUNTS)
    out = rec.recommend(["i2"])
    assert out.path == PATH_POPULARITY and "fallback model failed" in out.reason
    assert out.item_ids == ["i5", "i0"]
