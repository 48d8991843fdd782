"""The fine-tuned model as an encoder: inference reads v_U and v_T exactly as training did.

A tiny random Llama with random projection heads stands in for a fine-tuned model: what must
hold for any weights is that :class:`CALRecEncoder` (prompt alone, length-sorted batches,
loaded back from files) gives the vectors :meth:`CALRecModel.embed` gave the contrastive
losses on the joint training rows.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genrec.calrec_encoder import CALRecEncoder
from genrec.errors import GenrecError
from genrec.training.collator import CALRecCollator
from genrec.training.config import LossConfig
from genrec.training.model import CALRecModel, heads_settings_file
from tests.conftest import tiny_llama, titles_template

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HISTORIES = [["Red Wool Scarf", "Blue Denim Jacket"], ["Green Rain Boots"],
             ["Yellow Sun Hat", "Red Wool Hat", "Blue", "X"]]
TARGETS = ["Red Wool Hat", "Blue Denim Jacket and a much longer title than the others", "Red"]


def _saved(tmp_path, tokenizer, pooling: str) -> tuple[CALRecModel, str]:
    torch.manual_seed(1)
    wrapped = CALRecModel(tiny_llama(tokenizer, seed=2), LossConfig(
        projection_heads=True, projection_dim=8, tau=0.07, user_pooling=pooling)).eval()
    folder = tmp_path / f"model-{pooling}"
    wrapped.save(folder)
    tokenizer.save_pretrained(folder)
    return wrapped, str(folder)


def _rows(template) -> list[dict]:
    from genrec.data.catalog import Item

    rows = []
    for hist, target in zip(HISTORIES, TARGETS):
        prompt = template.render_history([Item(t, t) for t in hist])
        rows.append({"prompt": prompt, "target": template.render_target(Item(target, target)),
                     "history_span": template.history_span(prompt)})
    return rows


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_encoder_gives_the_vectors_training_gave_the_losses(tmp_path, tokenizer, pooling):
    template = titles_template(tmp_path)
    wrapped, folder = _saved(tmp_path, tokenizer, pooling)
    rows = _rows(template)
    v_u, _, v_t = wrapped.embed(**CALRecCollator(tokenizer, 512, 64)(rows))
    expect_u = torch.nn.functional.normalize(v_u, dim=-1).numpy()
    expect_t = torch.nn.functional.normalize(v_t, dim=-1).numpy()

    enc = CALRecEncoder.load(folder, dtype="float32")
    enc.token_budget = 40  # several batches, sorted by length, against training's one padded batch
    assert len(enc._batches([30, 8, 12, 30, 5])) > 1
    got_u = enc.users([r["prompt"] for r in rows], [r["history_span"] for r in rows])
    got_t = enc.items([r["target"] for r in rows])
    assert enc.tau == 0.07 and got_u.shape == (3, 8) and got_t.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(got_u, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got_u, expect_u, atol=2e-5)
    np.testing.assert_allclose(got_t, expect_t, atol=2e-5)
    if pooling == "mean":  # the span matters: pooling the whole prompt is another vector
        whole = enc.users([r["prompt"] for r in rows])
        assert np.abs(whole - expect_u).max() > 1e-3


def test_batches_cover_every_row_once_within_the_token_budget(tmp_path, tokenizer):
    _, folder = _saved(tmp_path, tokenizer, "last")
    enc = CALRecEncoder.load(folder, dtype="float32")
    enc.token_budget = 20
    lengths = [3, 19, 7, 7, 1, 12, 25, 2]
    batches = enc._batches(lengths)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:  # longest first; a row over the budget goes alone
        assert lengths[b[0]] == max(lengths[i] for i in b)
        assert len(b) * lengths[b[0]] <= 20 or len(b) == 1
    assert [lengths[b[0]] for b in batches] == sorted((lengths[b[0]] for b in batches), reverse=True)


def test_heads_settings_are_saved_and_required(tmp_path, tokenizer):
    _, folder = _saved(tmp_path, tokenizer, "last")
    from pathlib import Path

    settings = heads_settings_file(Path(folder))
    assert json.loads(settings.read_text()) == {"user_pooling": "last", "projection_dim": 8, "tau_ut": 0.07}
    settings.write_text("{}")
    with pytest.raises(GenrecError, match="calrec_heads.json: not the heads' settings"):
        CALRecEncoder.load(folder)
    settings.unlink()
    with pytest.raises(GenrecError, match="calrec_heads.json: missing"):
        CALRecEncoder.load(folder)
    plain = tmp_path / "plain"
    tiny_llama(tokenizer).save_pretrained(plain)
    with pytest.raises(GenrecError, match="no CALRec projection heads"):
        CALRecEncoder.load(str(plain))
