"""UniSRec (genrec/esr/unisrec.py): the MoE adapter's formula on hand-set weights, an item scored by
its text alone, padding that changes nothing, the transductive ID rows under the cold protocol,
and a trained inductive model ranking items absent from its training on the demo data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrec.config import load_config
from genrec.data.cold_split import ColdConfig, cold_split
from genrec.data.source import DatasetSource
from genrec.errors import ConfigError
from genrec.esr.cold_protocol import fill_cold_rows, id_table_name
from genrec.esr.pipeline import FallbackSettings, train_and_test
from genrec.esr.registry import load_model
from genrec.esr.scorer import FallbackScorer
from genrec.esr.unisrec import MoEAdaptor, UniSRec, UniSRecConfig

DEMO = DatasetSource(format="demo", name="electronics")


def test_moe_adaptor_one_expert_by_hand():
    a = MoEAdaptor(1, 2, 2, dropout=0.0, noisy=True).eval()
    with torch.no_grad():
        a.bias.copy_(torch.tensor([[1.0, -1.0]]))
        a.weight.copy_(torch.tensor([[[1.0, 2.0], [0.0, 3.0]]]))
    # one expert: gate 1; (x - b) W = ([2, 1] - [1, -1]) [[1, 2], [0, 3]] = [1, 2] W = [1, 8]
    assert a(torch.tensor([[2.0, 1.0]])).tolist() == [[1.0, 8.0]]


def test_moe_adaptor_is_the_gated_sum_of_whitening_experts():
    torch.manual_seed(0)
    a = MoEAdaptor(3, 5, 4, dropout=0.0, noisy=True)
    with torch.no_grad():
        a.bias.normal_()
        a.w_gate.normal_()
    a.eval()  # no gate noise, no dropout
    x = torch.randn(7, 5)
    g = torch.softmax(x @ a.w_gate, -1)
    want = sum(g[:, k:k + 1] * ((x - a.bias[k]) @ a.weight[k]) for k in range(3))
    torch.testing.assert_close(a(x), want)
    a.train()  # the learned noise moves the gate while training only
    assert not torch.allclose(a(x), want)


def _model(stage: str = "inductive", n: int = 6, seed: int = 0) -> UniSRec:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    text = rng.normal(size=(n, 8)).astype(np.float32)
    text[5] = text[2]  # items 2 and 5 have the same text
    return UniSRec(UniSRecConfig(hidden=12, heads=2, ffn=16, n_exps=2, max_len=5, stage=stage), n, text).eval()


def test_inductive_scores_are_cosines_of_text_only_items_and_padding_changes_nothing():
    m = _model()
    with torch.no_grad():
        seqs = torch.tensor([[0, 0, 1, 2, 4], [0, 0, 0, 3, 6]])
        s = m.score(seqs)
        assert s.shape == (2, 6)
        assert (s.abs() <= 1 / 0.07 + 1e-4).all()  # cosine / temperature
        assert torch.equal(s[:, 2], s[:, 5])  # an item is its text: same text, same score
        wider = torch.cat([torch.zeros(2, 3, dtype=torch.long), seqs], 1)
        torch.testing.assert_close(m.score(wider), s)
    assert id_table_name(m) is None


def test_transductive_id_rows_break_the_tie_and_are_filled_for_cold_items():
    m = _model("transductive")
    with torch.no_grad():
        m.e_id.weight[1:].normal_()
        s = m.score(torch.tensor([[1, 2]]))
    assert s[0, 2] != s[0, 5]
    assert id_table_name(m) == "e_id"
    assert fill_cold_rows(m, np.array([2, 5])) == 2
    rows = m.e_id.weight.detach()
    warm = rows[[1, 2, 4, 5]].mean(0)  # padded rows of catalog items 0, 1, 3, 4
    torch.testing.assert_close(rows[3], warm)
    torch.testing.assert_close(rows[6], warm)


def test_config_errors_name_the_setting():
    with pytest.raises(ConfigError, match="unisrec.stage"):
        UniSRecConfig(stage="pretrain")
    with pytest.raises(ConfigError, match="unisrec.heads"):
        UniSRecConfig(hidden=10, heads=3)


def test_trained_inductive_model_ranks_cold_items_by_their_text(tmp_path):
    """Under the cold-item protocol: cold items were never trained on, yet each gets its own score
    from its text, and the saved scorer reloads to the same scores."""
    cfg = load_config(FallbackSettings, "finetune/configs/esr_demo.yaml", [
        "model=unisrec", f"output_dir={tmp_path / 'u'}", "cold.fraction=0.15", "cold.seed=0", "train.epochs=2",
        f"cache={tmp_path / 'cache'}", "encoder.kind=sentence-transformers", "encoder.model=all-MiniLM-L6-v2",
        "encoder.max_length=64", "encoder.threads=1", "unisrec.hidden=32", "unisrec.ffn=32", "unisrec.n_exps=2"])
    res = train_and_test(cfg)
    ds = DEMO.load()
    split, cold = cold_split(ds, ColdConfig(fraction=0.15, seed=0))
    assert res["test_groups"]["cold"]["n"] > 0 and res["training"]["cold_rows_filled"] == 0  # no ID rows
    scorer = FallbackScorer.load(tmp_path / "u" / "scorer", ds.catalog)
    scores = scorer.score_batch([split.test[0].history])[0]
    assert np.isfinite(scores[cold]).all() and len(np.unique(scores[cold])) == len(cold)
    again = load_model("unisrec", scorer.model.cfg.to_dict(), len(ds.catalog), scorer.model.saved_shapes())
    again.load_state_dict(scorer.model.state_dict())
    with torch.no_grad():
        np.testing.assert_allclose(again.eval().score(torch.tensor([[1, 2, 3]])).numpy(),
                                   scorer.model.score(torch.tensor([[1, 2, 3]])).numpy(), rtol=1e-6)
