"""Zero-shot on an unseen shop (issue #31): shops mixed with prefixed ids, the text table swapped
for another shop's, models with ID rows refused, and a model trained on two demo shops ranking the
third one's whole catalog."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genrec.config import load_config
from genrec.data.mixed import mix_datasets, offsets
from genrec.data.preprocess import leave_one_out
from genrec.data.source import DatasetSource
from genrec.errors import ConfigError
from genrec.esr.alpharec import AlphaRec, AlphaRecConfig, graph_edges
from genrec.esr.llmesr import DualViewModel, ESRConfig
from genrec.esr.pipeline import FallbackSettings, train_and_test
from genrec.esr.scorer import FallbackScorer
from genrec.esr.unisrec import UniSRec, UniSRecConfig
from genrec.esr.zero_shot import transfer


def _demo(name: str):
    return DatasetSource(format="demo", name=name).load()


def test_mixed_shops_keep_every_sequence_and_text_under_prefixed_ids():
    a, b = _demo("electronics"), _demo("kitchen")
    mixed = mix_datasets([a, b])
    assert offsets([a, b]) == [0, len(a.catalog)]
    assert mixed.name == "electronics+kitchen"
    assert len(mixed.catalog) == len(a.catalog) + len(b.catalog)
    assert mixed.num_users == a.num_users + b.num_users
    assert mixed.num_interactions == a.num_interactions + b.num_interactions
    for shop, start in ((a, 0), (b, len(a.catalog))):
        for user, seq in shop.sequences.items():
            got = mixed.sequences[f"{shop.name}/{user}"]
            assert got == [start + i for i in seq]
            assert [mixed.catalog[i].title for i in got] == [shop.catalog[i].title for i in seq]
            assert mixed.catalog[got[0]].item_id == f"{shop.name}/{shop.catalog[seq[0]].item_id}"
    with pytest.raises(ConfigError, match="distinct names"):
        mix_datasets([a, a])


def _unisrec(text: np.ndarray) -> UniSRec:
    torch.manual_seed(0)
    return UniSRec(UniSRecConfig(hidden=12, heads=2, ffn=16, n_exps=2, max_len=5), len(text), text).eval()


def test_transfer_is_the_same_model_built_on_the_new_shops_text():
    rng = np.random.default_rng(0)
    source, target = rng.normal(size=(7, 8)).astype(np.float32), rng.normal(size=(4, 8)).astype(np.float32)
    moved = transfer(_unisrec(source), target)
    fresh = _unisrec(target)
    fresh.load_state_dict({k: v for k, v in moved.state_dict().items()})
    seqs = torch.tensor([[0, 1, 3], [2, 4, 1]])
    with torch.no_grad():
        s = moved.score(seqs)
        assert s.shape == (2, 4) and moved.num_items == 4
        torch.testing.assert_close(s, fresh.score(seqs))
    with pytest.raises(ConfigError, match="dims"):
        transfer(moved, target[:, :5])


def test_models_with_id_rows_are_refused_with_the_setting_that_removes_them():
    text = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
    with pytest.raises(ConfigError, match="esr.views=semantic"):
        transfer(DualViewModel(ESRConfig(hidden=8, cross_attention=False), 6, text), text)
    with pytest.raises(ConfigError, match="unisrec.stage=inductive"):
        transfer(UniSRec(UniSRecConfig(hidden=12, heads=2, stage="transductive"), 6, text), text)
    with pytest.raises(ConfigError, match="text model"):
        transfer(DualViewModel(ESRConfig.sasrec(hidden=8), 6), text)
    semantic = transfer(DualViewModel(ESRConfig(hidden=8, views="semantic", distill=False), 6, text), text[:3])
    assert semantic.score(torch.tensor([[1, 2]])).shape == (1, 3)


def test_alpharec_moved_to_a_new_shop_scores_items_by_the_mlp_of_their_text():
    rng = np.random.default_rng(1)
    text = rng.normal(size=(6, 8)).astype(np.float32)
    torch.manual_seed(0)
    train = {"u": [0, 1, 2], "v": [3, 4, 5, 1]}
    m = AlphaRec(AlphaRecConfig(hidden=4, normalize_llm=False), 6, text, graph_edges(train), 2)
    new = rng.normal(size=(3, 8)).astype(np.float32)
    transfer(m, new)
    with torch.no_grad():
        torch.testing.assert_close(m.output_table(), F.normalize(m.mlp(torch.from_numpy(new)), dim=-1))
        assert torch.isfinite(m.score(torch.tensor([[1, 3]]))).all()


def test_unisrec_trained_on_two_demo_shops_ranks_the_third(tmp_path):
    """Done when (zero-shot): no interaction of the tested shop reaches training; its whole catalog is ranked."""
    cfg = load_config(FallbackSettings, "finetune/configs/esr_demo.yaml", [
        "model=unisrec", "dataset.name=outdoors", f"output_dir={tmp_path / 'z'}", "train.epochs=2",
        f"cache={tmp_path / 'cache'}", "encoder.kind=sentence-transformers", "encoder.model=all-MiniLM-L6-v2",
        "encoder.max_length=64", "encoder.threads=1", "unisrec.hidden=32", "unisrec.ffn=32", "unisrec.n_exps=2"])
    cfg.transfer.sources = [DatasetSource(format="demo", name="electronics"), DatasetSource(format="demo", name="kitchen")]
    res = train_and_test(cfg)
    target = _demo("outdoors")
    assert res["dataset"] == "outdoors"
    assert res["training"]["transfer"]["train_items"] == 143 + 116
    assert res["training"]["transfer"]["trained_on"] == "electronics+kitchen"
    assert res["test"]["overall"]["n"] == len(leave_one_out(target).test) == 300
    scorer = FallbackScorer.load(tmp_path / "z" / "scorer", target.catalog)
    assert scorer.meta["catalog_fingerprint"] == target.catalog.fingerprint()
    scores = scorer.score_batch([[0, 5, 9]])[0]
    assert scores.shape == (len(target.catalog),) and len(np.unique(scores)) == len(scores)


def test_zero_shot_refuses_what_has_nothing_to_transfer(tmp_path):
    cfg = load_config(FallbackSettings, "finetune/configs/esr_demo.yaml",
                      ["model=textknn", f"output_dir={tmp_path / 'k'}"])
    cfg.transfer.sources = [DatasetSource(format="demo", name="kitchen")]
    with pytest.raises(ConfigError, match="trains nothing to transfer"):
        train_and_test(cfg)
    cfg = load_config(FallbackSettings, "finetune/configs/esr_demo.yaml",
                      ["model=sasrec", f"output_dir={tmp_path / 's'}", f"cache={tmp_path / 'cache'}"])
    cfg.transfer.sources = [DatasetSource(format="demo", name="kitchen")]
    with pytest.raises(ConfigError, match="text model"):
        train_and_test(cfg)
