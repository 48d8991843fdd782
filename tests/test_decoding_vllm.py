"""Constrained sampling inside vLLM (the per-request tree logits processor of the installed
build): every sample spells a catalog item, scored like the transformers backend scores it."""

from __future__ import annotations

import pytest

from genrec.data.catalog import Catalog, Item
from genrec.decoding.trie import ItemTrie
from genrec.prompting import PromptTemplate

TITLES = ["Red Wool Scarf", "Red Wool Hat", "Red Wool Scarf", "X", "Red", "Blue Denim Jacket", "Blue", "Red Wool"]
PROMPT = "Bought:\n- Blue Denim Jacket\n- Red Wool Hat\nNext:\n"


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_constrained_sampling_spells_catalog_items(tmp_path, smollm2_dir, tokenizer):
    from genrec.decoding.vllm_trie import PROCESSOR
    from genrec.generation.base import GenerationConfig
    from genrec.generation.hf import HFGenerator
    from genrec.generation.vllm_backend import VLLMGenerator

    path = tmp_path / "titles.yaml"
    path.write_text('name: titles\nattributes:\n  - {field: title, prefix: ""}\nhistory_label: "Bought:\\n"\n'
                    'item_label: "- "\nsuffix: "Next:\\n"\nterminator: "\\n"\n', encoding="utf-8")
    template = PromptTemplate.load(path)
    catalog = Catalog(Item(f"i{i}", t) for i, t in enumerate(TITLES))
    trie = ItemTrie.from_catalog(catalog, template, tokenizer)
    cfg = GenerationConfig(model=smollm2_dir, n=12, max_new_tokens=12, max_model_len=512,
                           vllm_kwargs={"logits_processors": [PROCESSOR]})
    gen = VLLMGenerator(cfg)
    try:
        assert gen.supports("constrained_sample") and not gen.supports("constrained_beam")
        out = gen.constrained_sample([PROMPT, PROMPT], trie, n=12)
        free = gen.generate([PROMPT], n=4)  # requests without the tree are left alone
    finally:
        gen.shutdown()
    assert len(free[0]) == 4
    hf = HFGenerator(GenerationConfig(model=smollm2_dir, n=2, max_new_tokens=12))
    prompt_ids = hf.prompt_ids(PROMPT)
    for decoded in out:
        assert sum(d.count for d in decoded) == 12  # every sample finished on an item
        items = [i for d in decoded for i in d.items]
        assert len(items) == len(set(items)) and set(items) <= set(range(len(TITLES)))
        for d in decoded:
            assert list(d.items) == sorted(trie.lookup(d.token_ids).tolist())
            # vLLM's CPU kernels and transformers disagree slightly (0.03 seen on these 3-7 token texts)
            assert d.score == pytest.approx(hf.score_ids(prompt_ids, list(d.token_ids)), abs=5e-2)
