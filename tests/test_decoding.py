"""Decoding onto the catalog: the prefix tree, constrained beam search and sampling, reranking.

The tree is checked on hand-computed arrays and against a plain dict-of-prefixes reference;
the decoders on a real (tiny, random) Llama with the SmolLM2 tokenizer over a small catalog
with shared prefixes, identical titles, a one-token title and a title that is a prefix of
others. Every score is compared with the model's own log-prob of the same tokens
(``HFGenerator.score_ids``, an independent forward pass).
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from genrec.data.catalog import Catalog, Item
from genrec.decoding.constrained import HFStepper, beam_search, catalog_signal, sample
from genrec.decoding.trie import ItemTrie
from genrec.errors import GenrecError
from genrec.prompting import PromptTemplate
from tests.conftest import tiny_llama, titles_template

TITLES = ["Red Wool Scarf", "Red Wool Hat", "Red Wool Scarf", "X", "Red", "Blue Denim Jacket", "Blue", "Red Wool"]
PROMPT = "Bought:\n- Blue Denim Jacket\nNext:\n"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- the tree ----------------------------------------------------------------------------------
def test_trie_arrays_hand_computed():
    #   item: 0=[5,6,7] 1=[5,6] 2=[5,8] 3=[9] 4=[5,6,7] (same as 0) 5=[9,1,2] 6=[3]
    t = ItemTrie.build([[5, 6, 7], [5, 6], [5, 8], [9], [5, 6, 7], [9, 1, 2], [3]])
    # breadth first, children sorted: 1:'3' 2:'5' 3:'9' | 4:'5 6' 5:'5 8' 6:'9 1' | 7:'5 6 7' 8:'9 1 2'
    assert t.token.tolist() == [-1, 3, 5, 9, 6, 8, 1, 7, 2]
    assert t.first_child.tolist() == [1, 4, 4, 6, 7, 8, 8, 9, 9, 9]
    assert t.num_nodes == 9 and t.depth == 3
    assert sorted(t.lookup([5, 6, 7]).tolist()) == [0, 4]  # identical texts: one node, both items
    assert t.lookup([5, 6]).tolist() == [1] and t.lookup([9]).tolist() == [3] and t.lookup([3]).tolist() == [6]
    assert t.lookup([5]).size == 0 and t.lookup([4]).size == 0 and t.lookup([5, 6, 7, 1]).size == 0
    node = t.walk([5, 6])
    assert t.is_end(node) and t.children(node)[0].tolist() == [7]  # ends an item and goes on
    assert t.stats() == {"items": 7, "nodes": 9, "depth": 3, "bytes": t.nbytes(), "distinct_texts": 6,
                         "tied_items": 1}


def test_trie_matches_a_dict_reference_on_random_sets():
    rng = random.Random(0)
    for _ in range(150):
        seqs = [[rng.randrange(4) for _ in range(rng.randrange(1, 6))] for _ in range(rng.randrange(1, 40))]
        t = ItemTrie.build(seqs)
        prefixes = {tuple(s[:k]) for s in seqs for k in range(1, len(s) + 1)}
        assert t.num_nodes == len(prefixes) + 1
        for i, s in enumerate(seqs):
            assert i in t.lookup(s).tolist()
        assert sorted(t.items.tolist()) == list(range(len(seqs)))  # every item ends exactly once
        for p in prefixes:
            want = sorted({s[len(p)] for s in seqs if len(s) > len(p) and tuple(s[:len(p)]) == p})
            assert t.children(t.walk(p))[0].tolist() == want


def test_trie_save_load_round_trip_and_errors(tmp_path):
    t = ItemTrie.build([[1, 2], [1, 3], [4]], meta={"x": 1})
    t.save(tmp_path / "t.npz")
    u = ItemTrie.load(tmp_path / "t.npz")
    for name in ("first_child", "token", "item_ptr", "items"):
        assert getattr(u, name).tolist() == getattr(t, name).tolist()
    assert u.depth == 2 and u.meta["x"] == 1
    with pytest.raises(GenrecError, match="empty target"):
        ItemTrie.build([[1], []])
    (tmp_path / "bad.npz").write_bytes(b"not a tree")
    with pytest.raises(GenrecError, match="unreadable prefix tree"):
        ItemTrie.load(tmp_path / "bad.npz")


# -- decoders on a tiny model ------------------------------------------------------------------
@pytest.fixture(scope="module")
def template(tmp_path_factory) -> PromptTemplate:
    return titles_template(tmp_path_factory.mktemp("tpl"))


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog(Item(f"i{i}", t) for i, t in enumerate(TITLES))


@pytest.fixture(scope="module")
def generator(tokenizer):
    from genrec.generation.base import GenerationConfig
    from genrec.generation.hf import HFGenerator

    model = tiny_llama(tokenizer, seed=3).eval()
    return HFGenerator(GenerationConfig(n=6, max_new_tokens=12, seed=0, temperature=1.0), model=model,
                       tokenizer=tokenizer)


@pytest.fixture(scope="module")
def trie(catalog, template, tokenizer) -> ItemTrie:
    return ItemTrie.from_catalog(catalog, template, tokenizer)


def item_scores(generator, catalog, template) -> dict[tuple[int, ...], float]:
    """Every distinct item text's exact log-prob after PROMPT, by its tokens (brute force)."""
    prompt = generator.prompt_ids(PROMPT)
    out = {}
    for item in catalog:
        ids = tuple(generator.tokenizer(template.render_target(item), add_special_tokens=False).input_ids)
        out[ids] = generator.score_ids(prompt, list(ids))
    return out


def test_catalog_has_the_hard_cases(trie, tokenizer, template, catalog):
    ids = [tokenizer(template.render_target(it), add_special_tokens=False).input_ids for it in catalog]
    assert len(ids[3]) == 2  # "X" is one token, then the terminator
    assert ids[4][0] == ids[0][0] == ids[1][0]  # "Red" shares its first token with the Red Wool items
    assert ids[0] == ids[2]  # identical titles
    assert trie.stats()["tied_items"] == 1


def test_beam_search_wide_enough_is_the_exact_ranking(generator, trie, catalog, template):
    exact = item_scores(generator, catalog, template)
    width = len(exact)  # as many beams as distinct texts: nothing is ever pruned
    got = beam_search(HFStepper(generator.model), trie, generator.prompt_ids(PROMPT), width, 12)
    assert [d.token_ids for d in got] == sorted(exact, key=lambda k: -exact[k])
    for d in got:
        assert d.score == pytest.approx(exact[d.token_ids], abs=1e-4)
        assert list(d.items) == sorted(trie.lookup(d.token_ids).tolist())
    ties = [d for d in got if len(d.items) > 1]
    assert [d.items for d in ties] == [(0, 2)]  # identical titles come back together, tied


@pytest.mark.parametrize("width", [1, 2, 3, 5])
def test_beam_search_returns_only_catalog_items_without_duplicates(generator, trie, width):
    got = generator.constrained_beam([PROMPT], trie, width=width)[0]
    items = [i for d in got for i in d.items]
    assert 1 <= len(got) <= width and len(items) == len(set(items))
    assert all(0 <= i < len(TITLES) for i in items)
    assert [d.score for d in got] == sorted((d.score for d in got), reverse=True)
    greedy = beam_search(HFStepper(generator.model), trie, generator.prompt_ids(PROMPT), 1, 12)
    # a wider beam never finds a worse best item; the two sums are float32 log-probs of batches of
    # other shapes, which differ in the last digits on CPUs with other kernels (AVX-512: ~1e-6)
    assert got[0].score >= greedy[0].score - 1e-4


def test_beam_search_respects_the_token_budget(generator, trie):
    got = beam_search(HFStepper(generator.model), trie, generator.prompt_ids(PROMPT), 8, 2)
    assert got and all(len(d.token_ids) <= 2 for d in got)
    assert {i for d in got for i in d.items} <= {3, 4, 6}  # "X\n", "Red\n", "Blue\n" only


def test_constrained_sampling_spells_items_exactly(generator, trie, catalog, template):
    exact = item_scores(generator, catalog, template)
    got = generator.constrained_sample([PROMPT], trie, n=40, seed=5)[0]
    assert sum(d.count for d in got) == 40  # every sample finished on an item within 12 tokens
    items = [i for d in got for i in d.items]
    assert len(items) == len(set(items)) and set(items) <= set(range(len(TITLES)))
    for d in got:
        assert d.score == pytest.approx(exact[d.token_ids], abs=1e-4)
    again = generator.constrained_sample([PROMPT], trie, n=40, seed=5)[0]
    assert again == got  # seeded
    greedy = sample(HFStepper(generator.model), trie, generator.prompt_ids(PROMPT), 3, 12, temperature=0)
    assert len(greedy) == 1 and greedy[0].count == 3


def test_catalog_signal_ties_identical_texts():
    from genrec.decoding.constrained import Decoded

    sig = catalog_signal([Decoded((0, 2), -1.5, (1,)), Decoded((3,), -4.0, (2,))], 5)
    assert sig.tolist() == [-1.5, -np.inf, -1.5, -4.0, -np.inf]


def test_rerank_scores_equal_single_forward_passes(generator, catalog, template):
    exact = item_scores(generator, catalog, template)
    cands = list(exact)
    got = generator.score_candidates(PROMPT, [list(c) for c in cands])
    assert got == pytest.approx([exact[c] for c in cands], abs=1e-4)


def test_batched_beam_search_equals_one_prompt_at_a_time(generator, trie):
    from genrec.decoding.constrained import HFBatchStepper, beam_search_many

    prompts = [PROMPT, "Bought:\n- X\nNext:\n", "Bought:\n- Red Wool Hat\n- Blue\n- Red Wool Scarf\nNext:\n"]
    ids = [generator.prompt_ids(p) for p in prompts]
    assert len({len(i) for i in ids}) == 3  # different lengths: left padding is exercised
    for width in (1, 3):
        batched = beam_search_many(HFBatchStepper(generator.model), trie, ids, width, 12)
        for one, got in zip(ids, batched):
            alone = beam_search(HFStepper(generator.model), trie, one, width, 12)
            assert [d.token_ids for d in got] == [d.token_ids for d in alone]
            assert [d.score for d in got] == pytest.approx([d.score for d in alone], abs=1e-4)


def test_batched_sampling_equals_one_prompt_at_a_time(generator, trie):
    from genrec.decoding.constrained import HFBatchStepper, sample_many

    prompts = [PROMPT, "Bought:\n- X\nNext:\n", "Bought:\n- Red Wool Hat\n- Blue\n- Red Wool Scarf\nNext:\n"]
    ids = [generator.prompt_ids(p) for p in prompts]
    assert len({len(i) for i in ids}) == 3  # different lengths: left padding is exercised
    for temperature in (1.0, 0.0):
        batched = sample_many(HFBatchStepper(generator.model), trie, ids, 12, 12, temperature=temperature,
                              seeds=[7, 8, 9])
        for one, seed, got in zip(ids, (7, 8, 9), batched):
            alone = sample(HFStepper(generator.model), trie, one, 12, 12, temperature=temperature, seed=seed)
            assert [(d.token_ids, d.count, d.items) for d in got] == [(d.token_ids, d.count, d.items) for d in alone]
            assert [d.score for d in got] == pytest.approx([d.score for d in alone], abs=1e-4)
            assert sum(d.count for d in got) == 12
    assert sample_many(HFBatchStepper(generator.model), trie, ids, 0, 12) == [[], [], []]
