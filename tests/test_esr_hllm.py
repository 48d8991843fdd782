"""HLLM / BAHE (genrec/esr/hllm.py): the split item tower equals the whole encoder, the LLM user model
runs the LM's own blocks, the trained model serves through the faiss scorer, and a seeded run
repeats exactly, also after a kill."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from genrec.errors import ConfigError
from genrec.esr.hllm import HLLM, HLLMConfig, empty_blocks, lm_blocks, load_base, lower_token_states
from genrec.esr.sequence_encoder import attention_mask
from tests.conftest import save_tiny_llama

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["Nitrile gloves, box of 100", "Digital caliper 150 mm stainless", "Lab beaker set borosilicate glass",
         "pH test strips"]


@pytest.fixture(scope="module")
def minilm():
    return load_base("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def tiny_llama_base(tmp_path_factory, tokenizer):
    return load_base(save_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama", tokenizer))


def _full_states(base, tokenizer, texts, max_tokens=16):
    enc = tokenizer(texts, truncation=True, max_length=max_tokens, padding=True, return_tensors="pt")
    with torch.no_grad():
        return base(**enc).last_hidden_state, enc["attention_mask"].bool()


def _tower_states(base, tokenizer, texts, keep_top, kind, max_tokens=16):
    states, mask = lower_token_states(base, tokenizer, texts, keep_top, max_tokens)
    tower = lm_blocks(base, "top", keep_top)
    t = mask.shape[1]
    allowed = mask[:, None, :].expand(-1, t, -1)
    if kind == "llama":
        allowed = allowed & torch.ones(t, t, dtype=torch.bool).tril()
    with torch.no_grad():
        return tower(states.float(), allowed | torch.eye(t, dtype=torch.bool)), mask


@pytest.mark.parametrize("keep_top", [1, 2])
def test_bahe_split_of_minilm_equals_the_whole_encoder(minilm, keep_top):
    """Cached lower-block token states (bf16) through the copied top blocks = the encoder's own output."""
    base, tok = minilm
    full, mask = _full_states(base, tok, TEXTS)
    split, mask2 = _tower_states(base, tok, TEXTS, keep_top, "bert")
    assert torch.equal(mask, mask2)
    err = (full - split).abs()[mask].max()
    assert err < 0.05 * full[mask].abs().mean(), float(err)  # bf16 rounding of the cache only


def test_bahe_split_of_a_llama_equals_the_whole_model(tiny_llama_base):
    base, tok = tiny_llama_base
    full, mask = _full_states(base, tok, TEXTS)
    split, _ = _tower_states(base, tok, TEXTS, 1, "llama")
    err = (full - split).abs()[mask].max()
    assert err < 0.05 * full[mask].abs().mean(), float(err)


def test_the_whole_llama_stack_as_a_user_model_equals_the_lm_on_input_embeddings(tiny_llama_base):
    """All blocks from the bottom, fed input embeddings with positions 0.., = LlamaModel(inputs_embeds)."""
    base, _ = tiny_llama_base
    x = torch.randn(2, 5, base.config.hidden_size)
    with torch.no_grad():
        want = base(inputs_embeds=x).last_hidden_state
        seqs = torch.ones(2, 5, dtype=torch.long)
        allowed, _ = attention_mask(seqs)
        got = lm_blocks(base, "bottom", base.config.num_hidden_layers)(x, allowed)
    assert torch.allclose(got, want, atol=1e-5)


def test_top_and_bottom_take_different_blocks_and_random_blocks_are_seeded(tiny_llama_base):
    base, _ = tiny_llama_base
    top, bottom = lm_blocks(base, "top", 1), lm_blocks(base, "bottom", 1)
    w = "self_attn.q_proj.weight"
    assert torch.equal(top.blocks[0].state_dict()[w], base.layers[1].state_dict()[w])
    assert torch.equal(bottom.blocks[0].state_dict()[w], base.layers[0].state_dict()[w])
    torch.manual_seed(3)
    a = empty_blocks(base.config.to_dict(), 1)
    torch.manual_seed(3)
    b = empty_blocks(base.config.to_dict(), 1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.blocks[0].state_dict()[w], base.layers[0].state_dict()[w])
    with pytest.raises(ConfigError, match="has 2"):
        lm_blocks(base, "top", 3)


def _tuned_model(base, tok, user, **kw) -> HLLM:
    cfg = HLLMConfig(hidden=8, max_len=6, item_tower="tuned", item_layers=1, item_max_tokens=16,
                     user_layers=1, **kw)
    tokens = lower_token_states(base, tok, TEXTS, 1, 16)
    return HLLM(cfg, len(TEXTS), None, lm_blocks(base, "top", 1), tokens, user)


def test_left_padding_does_not_change_a_user_vector(tiny_llama_base):
    base, tok = tiny_llama_base
    torch.manual_seed(0)
    model = _tuned_model(base, tok, lm_blocks(base, "top", 1)).eval()
    short = model.user_vectors(torch.tensor([[2, 4, 1]]))
    padded = model.user_vectors(torch.tensor([[0, 0, 2, 4, 1]]))
    assert torch.allclose(short, padded, atol=1e-5)


def test_every_item_is_encoded_with_gradients_in_a_step_and_the_cache_serves_evaluation(tiny_llama_base):
    """A training step runs the whole catalog through the tower (a negative that is in no sequence
    of the batch changes the loss, and the tower gets gradients); evaluation reads the cache,
    re-encoded after an update it has not seen."""
    from genrec.esr.losses import LossConfig, RankingLoss

    base, tok = tiny_llama_base
    torch.manual_seed(0)
    model = _tuned_model(base, tok, lm_blocks(base, "top", 1), user_lora_r=2)
    seqs, pos = torch.tensor([[0, 1, 2]]), torch.tensor([[0, 2, 3]])
    ranking = RankingLoss(LossConfig(kind="ce"), len(TEXTS))
    loss, _ = model.loss(seqs, pos, ranking=ranking)
    loss.backward()
    assert model.tower.blocks[0].self_attn.q_proj.weight.grad.abs().sum() > 0
    lora = [n for n, p in model.user.named_parameters() if p.requires_grad]
    assert lora and all("lora_" in n for n in lora)  # LoRA: the user blocks' own weights stay frozen
    states, mask = model._tokens
    states[3] += 1.0  # item 4 (row 4) is in no sequence of the batch: only a negative
    with torch.no_grad():
        moved, _ = model.loss(seqs, pos, ranking=ranking)
    assert abs(float(moved) - float(loss)) > 1e-4
    with torch.no_grad():
        model.tower.blocks[0].mlp.down_proj.weight.mul_(2.0)  # an update the cache has not seen
    model.eval()
    table = model.output_table()
    with torch.no_grad():
        fresh = torch.nn.functional.normalize(
            model._tower(torch.arange(1, len(TEXTS) + 1)) + model.ids.weight[1:], dim=-1)
    assert torch.allclose(table, fresh, atol=1e-6)


def test_bad_settings_name_the_field():
    with pytest.raises(ConfigError, match="hllm.item_tower"):
        HLLMConfig(item_tower="trained")
    with pytest.raises(ConfigError, match="hllm.user_layers"):
        HLLMConfig(user_layers=0)


# -- serving: the saved scorer ranks as the trained model did -----------------------------------
def test_a_trained_hllm_serves_its_test_scores_through_the_saved_scorer(tmp_path):
    """The saved scorer (no encoder, no token states: the item cache and the blocks' weights) ranks
    the test users exactly as the run's own evaluation did. (Determinism and resume after a kill:
    tests/test_esr_determinism.py.)"""
    from genrec.config import load_config
    from genrec.data.preprocess import leave_one_out
    from genrec.esr.pipeline import FallbackSettings, train_and_test
    from genrec.esr.scorer import FallbackScorer
    from genrec.esr.trainer import evaluate

    cfg = load_config(FallbackSettings, REPO / "finetune/configs/esr_demo.yaml",
                      ["model=hllm", "hllm.item_tower=tuned", "hllm.hidden=16", "hllm.item_max_tokens=24",
                       "encoder.kind=sentence-transformers", "encoder.model=all-MiniLM-L6-v2", "train.epochs=2",
                       f"output_dir={tmp_path / 'run'}"])
    result = train_and_test(cfg)
    ds = cfg.dataset.load()
    scorer = FallbackScorer.load(tmp_path / "run" / "scorer", ds.catalog)
    opt, pes = evaluate(scorer, leave_one_out(ds).test)
    ndcg = float(np.mean(np.where(opt <= 10, 1 / np.log2(opt + 1), 0.0)))
    assert ndcg == pytest.approx(result["test"]["overall"]["opt"]["ndcg@10"], abs=1e-9)
    assert np.array_equal(opt, pes)  # continuous scores: no ties
