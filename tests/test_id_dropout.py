"""Item-ID dropout (issue #31, genrec/esr/llmesr.py): in training a share of the items is scored
through a row mapped from its text; after training every new item gets that map's row."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrec.config import load_config
from genrec.data.cold_split import ColdConfig, cold_split
from genrec.data.source import DatasetSource
from genrec.errors import ConfigError
from genrec.esr.cold_items import cold_output_rows
from genrec.esr.cold_protocol import fill_cold_rows
from genrec.esr.llmesr import DualViewModel, ESRConfig
from genrec.esr.losses import LossConfig, RankingLoss
from genrec.esr.pipeline import FallbackSettings, train_and_test
from genrec.esr.scorer import FallbackScorer


def _model(n: int = 12, id_dropout: float = 0.25, seed: int = 0) -> DualViewModel:
    torch.manual_seed(seed)
    text = np.random.default_rng(0).normal(size=(n, 16)).astype(np.float32)
    return DualViewModel(ESRConfig(hidden=8, heads=1, max_len=5, cross_attention=False, id_dropout=id_dropout), n, text)


def test_training_scores_a_share_of_items_through_their_text_mapped_rows_and_evaluation_none():
    model = _model(n=400).train()
    co = model.item_tables()["co"].detach()
    trained, mapped = model.e_co.weight.detach(), model.mapped_id_rows(model.e_se).detach()
    is_trained = (co == trained).all(dim=1)
    is_mapped = (co == mapped).all(dim=1)
    assert bool((is_trained | is_mapped).all())  # each row is one or the other, whole
    assert bool(is_trained[0]) and co[0].abs().sum().item() == 0.0  # padding stays padding
    assert 60 <= int(is_mapped[1:].sum()) <= 140  # 25% of 400 (binomial sd 8.7)
    again = model.item_tables()["co"].detach()
    assert not torch.equal(again, co)  # a new draw each step
    model.eval()
    torch.testing.assert_close(model.item_tables()["co"], model.e_co.weight, rtol=0, atol=0)


def test_the_map_trains_through_the_ranking_loss():
    model = _model(n=30, id_dropout=0.5).train()
    seqs = torch.tensor([[0, 3, 7, 9], [2, 4, 6, 8]])
    pos = torch.tensor([[0, 7, 9, 11], [4, 6, 8, 10]])
    loss, _ = model.loss(seqs, pos, ranking=RankingLoss(LossConfig(kind="ce"), 30))
    loss.backward()
    assert model.co_from_text.weight.grad.abs().sum().item() > 0


def test_adding_the_map_leaves_the_other_initial_weights_as_they_were():
    """A run without item-ID dropout is the same model as before the setting existed."""
    plain, with_map = _model(id_dropout=0.0), _model(id_dropout=0.3)
    assert not hasattr(plain, "co_from_text")
    theirs = dict(with_map.named_parameters())
    for name, p in plain.named_parameters():
        torch.testing.assert_close(p, theirs[name], rtol=0, atol=0)
    with pytest.raises(ValueError, match="without item-ID dropout"):
        plain.mapped_id_rows(plain.e_se)


@pytest.mark.parametrize("kw, match", [({"views": "collaborative"}, "needs views=both"),
                                       ({"views": "semantic"}, "needs views=both"),
                                       ({"id_dropout": 1.0}, r"in \[0, 1\)"),
                                       ({"id_dropout": -0.1}, r"in \[0, 1\)")])
def test_bad_id_dropout_settings_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        ESRConfig(**{"id_dropout": 0.2, **kw})


def test_learned_cold_rows_are_the_maps_rows_and_serving_a_new_item_uses_it_too():
    model = _model().eval()
    cold = np.array([1, 4, 10])
    before = model.e_co.weight.detach().clone()
    assert fill_cold_rows(model, cold, "learned") == 3
    rows = torch.as_tensor(cold + 1)
    with torch.no_grad():
        want = model.co_from_text(model.e_se[rows])
        warm = [i for i in range(13) if i - 1 not in cold]
        torch.testing.assert_close(model.e_co.weight[rows], want)
        torch.testing.assert_close(model.e_co.weight[warm], before[warm], rtol=0, atol=0)
        tables = model.item_tables()
        served = cold_output_rows(model, tables, 3, semantic=model.e_se[rows].numpy())
    np.testing.assert_allclose(served[:, 8:], want.numpy(), rtol=1e-6)  # [se : co]: the ID half is the map's
    with pytest.raises(ConfigError, match="item-ID dropout"):
        fill_cold_rows(_model(id_dropout=0.0), cold, "learned")


def test_learned_rows_without_item_id_dropout_are_refused_before_training(tmp_path):
    cfg = load_config(FallbackSettings, "finetune/configs/esr_demo.yaml",
                      ["model=llmesr", "cold.fraction=0.15", "cold.id_rows=learned", f"output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="esr.id_dropout > 0"):
        train_and_test(cfg)
    assert not (tmp_path / "run.json").exists()


def test_llmesr_trained_with_item_id_dropout_scores_new_items_through_the_learned_map(tmp_path):
    out = tmp_path / "run"
    cfg = load_config(FallbackSettings, "finetune/configs/esr_demo.yaml",
                      ["model=llmesr", f"output_dir={out}", "cold.fraction=0.15", "cold.seed=0",
                       "cold.id_rows=learned", "esr.id_dropout=0.3", "train.epochs=2", f"cache={tmp_path / 'cache'}",
                       "encoder.kind=sentence-transformers", "encoder.model=all-MiniLM-L6-v2",
                       "encoder.max_length=64", "esr.cross_attention=false", "encoder.threads=1"])
    res = train_and_test(cfg)
    ds = DatasetSource(format="demo", name="electronics").load()
    split, cold = cold_split(ds, ColdConfig(fraction=0.15, seed=0))
    assert res["training"]["cold_rows_filled"] == len(cold) == 21
    model = FallbackScorer.load(out / "scorer", ds.catalog).model  # the map survives the round trip
    rows = torch.as_tensor(cold + 1)
    with torch.no_grad():
        torch.testing.assert_close(model.e_co.weight[rows], model.co_from_text(model.e_se[rows]))
    scores = FallbackScorer(model).score_batch([split.test[0].history])[0]
    assert np.isfinite(scores).all() and len(np.unique(scores[cold])) == len(cold)
