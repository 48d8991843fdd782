"""LLM-ESR model: PCA initialisation, padding invariance, and what each ablation switch removes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrec.esr.model import DualViewModel, ESRConfig, pca, prepare_llm_embeddings
from genrec.esr.trainer import pad_left

N_ITEMS, D_LLM = 90, 80


@pytest.fixture(scope="module")
def llm_emb() -> np.ndarray:
    rng = np.random.default_rng(0)
    # anisotropic, with a common offset, like mean-pooled LLM states
    return (rng.normal(size=(N_ITEMS, D_LLM)) * np.linspace(3, 0.1, D_LLM) + 5.0).astype(np.float32)


def test_pca_matches_numpy_svd_top_components_up_to_sign(llm_emb):
    out = pca(llm_emb, 64)
    x = llm_emb.astype(np.float64)
    c = x - x.mean(0)
    u, s, vt = np.linalg.svd(c, full_matrices=False)
    ref = c @ vt[:64].T  # == u[:, :64] * s[:64]
    assert out.shape == (N_ITEMS, 64)
    for j in range(64):
        same = np.allclose(out[:, j], ref[:, j], atol=1e-3)
        flipped = np.allclose(out[:, j], -ref[:, j], atol=1e-3)
        assert same or flipped, f"component {j} differs from the SVD's"
    np.testing.assert_allclose(np.abs(ref), np.abs(u[:, :64] * s[:64]), atol=1e-3)
    # variance is decreasing along the components: the TOP 64 were taken
    var = out.var(0)
    assert np.all(np.diff(var) <= 1e-4)


def test_e_co_is_initialised_by_pca_of_e_se(llm_emb):
    model = DualViewModel(ESRConfig(), N_ITEMS, llm_emb)
    expected = pca(prepare_llm_embeddings(llm_emb), 64)
    np.testing.assert_allclose(model.e_co.weight[1:].detach().numpy(), expected, atol=1e-5)
    assert torch.all(model.e_co.weight[0] == 0)  # padding row


def test_llm_table_is_frozen_and_not_a_parameter(llm_emb):
    model = DualViewModel(ESRConfig(), N_ITEMS, llm_emb)
    names = dict(model.named_parameters())
    assert "e_se" not in names and "e_se" in dict(model.named_buffers())
    assert model.adapter[0].in_features == D_LLM and model.adapter[0].out_features == D_LLM // 2
    assert model.adapter[1].out_features == 64


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    seqs = [list(rng.integers(0, N_ITEMS, size=n)) for n in (3, 7, 12, 2)]
    inp = torch.from_numpy(pad_left([s[:-1] for s in seqs], 200))
    pos = torch.from_numpy(pad_left([s[1:] for s in seqs], 200, length=inp.shape[1]))
    neg = torch.from_numpy(rng.integers(1, N_ITEMS + 1, size=pos.shape)) * (pos > 0)
    teacher = torch.from_numpy(pad_left([list(rng.integers(0, N_ITEMS, size=5)) for _ in range(4 * 10)], 200))
    return inp, pos, neg, teacher


@pytest.mark.parametrize("layout", ["sasrec", "recbole"])
def test_scores_do_not_depend_on_extra_left_padding(llm_emb, layout):
    model = DualViewModel(ESRConfig(layout=layout), N_ITEMS, llm_emb).eval()
    hist = [[3, 9, 27, 4]]
    a = model.score(torch.from_numpy(pad_left(hist, 200)))
    b = model.score(torch.from_numpy(pad_left(hist, 200, length=50)))
    assert a.shape == (1, N_ITEMS)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("layout", ["sasrec", "recbole"])
def test_causal_future_items_do_not_change_earlier_states(llm_emb, layout):
    model = DualViewModel(ESRConfig(layout=layout), N_ITEMS, llm_emb).eval()
    s1 = model.encode(torch.tensor([[0, 4, 5, 6, 7]]))
    s2 = model.encode(torch.tensor([[0, 4, 5, 6, 80]]))
    torch.testing.assert_close(s1[:, :4], s2[:, :4])
    assert not torch.allclose(s1[:, 4], s2[:, 4])


def _counting(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_full_model_uses_every_part(llm_emb):
    model = DualViewModel(ESRConfig(), N_ITEMS, llm_emb)
    calls = {n: _counting(getattr(model, n)) for n in ("adapter", "se_over_co", "co_over_se", "encoder")}
    loss, parts = model.loss(*_batch())
    assert all(c[0] > 0 for c in calls.values()), {n: c[0] for n, c in calls.items()}
    loss.backward()
    assert model.e_co.weight.grad.abs().sum() > 0 and model.adapter[0].weight.grad.abs().sum() > 0
    assert parts["distill"] > 0
    # the shared encoder runs once for both views (stacked) and once more, without grad, for the teacher
    assert calls["encoder"][0] == 2
    assert model.user_vectors(_batch()[0]).shape[-1] == 128


def test_no_distillation_zeroes_the_term_and_skips_the_teacher(llm_emb):
    model = DualViewModel(ESRConfig(distill=False), N_ITEMS, llm_emb)
    enc_calls = _counting(model.encoder)
    inp, pos, neg, teacher = _batch()
    loss, parts = model.loss(inp, pos, neg, teacher)
    assert parts["distill"] == 0.0
    assert enc_calls[0] == 1  # se + co views stacked through the shared encoder, no teacher forward
    torch.manual_seed(0)
    full = DualViewModel(ESRConfig(), N_ITEMS, llm_emb)
    torch.manual_seed(0)
    nod = DualViewModel(ESRConfig(distill=False), N_ITEMS, llm_emb)
    full.eval()
    nod.eval()
    lf, pf = full.loss(inp, pos, neg, teacher)
    ln, _ = nod.loss(inp, pos, neg, teacher)
    torch.testing.assert_close(lf, ln + 0.1 * pf["distill"])


def test_no_cross_attention_removes_both_modules(llm_emb):
    model = DualViewModel(ESRConfig(cross_attention=False), N_ITEMS, llm_emb)
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.startswith(("se_over_co", "co_over_se")) for n in names)
    full = DualViewModel(ESRConfig(), N_ITEMS, llm_emb)
    assert sum(p.numel() for p in full.parameters()) - sum(p.numel() for p in model.parameters()) == 2 * 4 * (64 * 64 + 64)
    model.loss(*_batch())  # runs


def test_unshared_encoders_have_two_encoders_each_used_once(llm_emb):
    model = DualViewModel(ESRConfig(shared_encoder=False, distill=False), N_ITEMS, llm_emb)
    a, b = _counting(model.encoder), _counting(model.encoder_co)
    model.loss(*_batch())
    assert a[0] == 1 and b[0] == 1
    shared = DualViewModel(ESRConfig(), N_ITEMS, llm_emb)
    assert not hasattr(shared, "encoder_co")


def test_semantic_view_only_has_no_id_table(llm_emb):
    model = DualViewModel(ESRConfig(views="semantic"), N_ITEMS, llm_emb)
    assert not hasattr(model, "e_co") and not hasattr(model, "se_over_co")
    calls = _counting(model.adapter)
    model.loss(*_batch())
    assert calls[0] >= 1
    assert model.output_table().shape == (N_ITEMS, 64)


def test_collaborative_view_only_has_no_llm_table_or_adapter(llm_emb):
    model = DualViewModel(ESRConfig(views="collaborative"), N_ITEMS, llm_emb)
    assert not hasattr(model, "adapter") and not hasattr(model, "e_se") and not hasattr(model, "se_over_co")
    np.testing.assert_allclose(model.e_co.weight[1:].detach().numpy(),
                               pca(prepare_llm_embeddings(llm_emb), 64), atol=1e-5)  # still PCA-initialised
    model.loss(*_batch())
    assert model.output_table().shape == (N_ITEMS, 64)


def test_sasrec_needs_no_llm_and_is_randomly_initialised():
    model = DualViewModel(ESRConfig.sasrec(), N_ITEMS, None)
    assert not hasattr(model, "adapter") and not hasattr(model, "se_over_co")
    loss, parts = model.loss(*_batch())
    assert parts["distill"] == 0.0 and torch.isfinite(loss)
    with pytest.raises(ValueError, match="LLM item embeddings"):
        DualViewModel(ESRConfig(), N_ITEMS, None)


def test_feed_forward_width_and_activation_are_settings():
    from torch import nn

    from genrec.esr.sasrec import build_sasrec

    paper = DualViewModel(ESRConfig.sasrec(hidden=16, heads=2), N_ITEMS, None)
    ffn = paper.encoder.layers[0].ffn
    assert (ffn[0].in_features, ffn[0].out_features, ffn[3].out_features) == (16, 16, 16)
    assert isinstance(ffn[1], nn.ReLU)
    recbole = build_sasrec(ESRConfig(hidden=16, heads=2, ffn=64, activation="gelu"), N_ITEMS)
    ffn = recbole.encoder.layers[1].ffn
    assert (ffn[0].in_features, ffn[0].out_features, ffn[3].in_features, ffn[3].out_features) == (16, 64, 64, 16)
    assert isinstance(ffn[1], nn.GELU)
    assert sum(p.numel() for p in recbole.parameters()) - sum(p.numel() for p in paper.parameters()) == \
        2 * ((16 * 64 + 64) + (64 * 16 + 16) - 2 * (16 * 16 + 16))  # per layer: both linears, weights + biases
    with pytest.raises(ValueError, match="activation"):
        ESRConfig(activation="tanh")


def test_recbole_layout_is_post_norm_over_normalised_embeddings():
    """One RecBole-layout block computed by hand from the model's own weights: LayerNorm(item +
    position), then x = LN1(x + attention(x)), then LN2(x + W2 gelu(W1 x)); no sqrt(d) scaling and
    no final LayerNorm. A pre-norm block or a scaled embedding gives other numbers."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = DualViewModel(ESRConfig.sasrec(hidden=8, layers=1, heads=2, dropout=0.0, max_len=10, ffn=16,
                                           activation="gelu", layout="recbole"), 12).eval()
    seq = torch.tensor([[0, 0, 5, 2, 9]])
    with torch.no_grad():
        got = model.encode(seq)[0, 2:]  # the three real positions
        layer = model.encoder.layers[0]
        x = model.emb_norm(model.e_co.weight[[5, 2, 9]] + model.pos.weight[[1, 2, 3]])
        q, k, v = (lin(x).view(3, 2, 4).transpose(0, 1) for lin in (layer.attn.q, layer.attn.k, layer.attn.v))
        logits = q @ k.transpose(1, 2) / 2.0 + torch.triu(torch.full((3, 3), float("-inf")), 1)
        attn = layer.attn.o((logits.softmax(-1) @ v).transpose(0, 1).reshape(3, 8))
        x = F.layer_norm(x + attn, (8,), layer.attn_norm.weight, layer.attn_norm.bias, 1e-12)
        ffn = layer.ffn[2](F.gelu(layer.ffn[0](x)))
        want = F.layer_norm(x + ffn, (8,), layer.ffn_norm.weight, layer.ffn_norm.bias, 1e-12)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_recbole_layout_initialises_like_recbole():
    torch.manual_seed(0)
    model = DualViewModel(ESRConfig.sasrec(hidden=64, layout="recbole"), 2000)
    w = model.e_co.weight[1:].detach()
    assert abs(float(w.std()) - 0.02) < 0.001  # N(0, 0.02), not Xavier's sqrt(2 / (2001 + 64)) = 0.031
    biases = [p for n, p in model.named_parameters() if n.endswith("bias") and "norm" not in n]
    assert biases and all(torch.all(b == 0) for b in biases)
    assert isinstance(model.encoder.norm, torch.nn.Identity)
    with pytest.raises(ValueError, match="layout"):
        ESRConfig(layout="bert")
