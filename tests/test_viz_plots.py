"""The figure helpers: each returns a matplotlib Figure (no pyplot) and saves as png/svg;
the numbers behind the figures are checked against the engine and finite differences."""
import json
import math

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tinygrad_tx import Tensor, functional as F, manual_seed
from transformer import GPT, GPTConfig, MultiHeadAttention, causal_mask, sinusoidal_table
from viz import plots as P


def image_axes(fig):
    return [ax for ax in fig.axes if ax.get_images()]


@pytest.fixture
def attn_case():
    """q, k, v, upstream for 2 heads, T=5, hs=4, with a causal mask (T, T)."""
    rng = np.random.default_rng(0)
    q, k, v, up = (rng.normal(size=(2, 5, 4)) for _ in range(4))
    return q, k, v, up, causal_mask(5)


def _tiny_gpt():
    manual_seed(0)
    return GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8))


def _rows(k):
    return [{"step": s, "train_loss": 3.0 / (1 + s * k), "val_loss": 3.2 / (1 + s * k)} for s in range(0, 100, 10)]


FIGURES = {
    "attention_heatmaps": lambda: P.attention_heatmaps(np.full((2, 3, 3), 1 / 3), list("abc"), mask=causal_mask(3)),
    "attention_grid": lambda: P.attention_grid(_tiny_gpt(), np.arange(5), list("hello")),
    "score_gradient_heatmap": lambda: P.score_gradient_heatmap(np.arange(9.0).reshape(3, 3) - 4, list("abc"),
                                                               mask=causal_mask(3), weights=np.eye(3)),
    "positional_encoding_heatmap": lambda: P.positional_encoding_heatmap(T=10, C=32),
    "positional_encoding_figure": lambda: P.positional_encoding_figure(T=12, C=16, pair=1, k=2),
    "layernorm_terms_figure": lambda: P.layernorm_terms_figure(),
    "softmax_jacobian_figure": lambda: P.softmax_jacobian_figure([0.5, -1.0, 2.0]),
    "forward_reverse_figure": lambda: P.forward_reverse_figure(),
    "loss_curves": lambda: P.loss_curves([_rows(0.1), _rows(0.3)], ["causal", "no mask"]),
    "scaling_figure": lambda: P.scaling_figure(d_ks=(4, 16), n=200),
}


@pytest.mark.parametrize("name", list(FIGURES))
def test_figure_returns_figure_and_saves_png_and_svg(name, tmp_path):
    fig = FIGURES[name]()
    assert isinstance(fig, Figure) and isinstance(fig.canvas, FigureCanvasAgg)
    png, svg = P.save(fig, tmp_path / f"{name}.png"), P.save(fig, tmp_path / "sub" / f"{name}.svg")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in svg.read_bytes()[:2000]


def test_save_rejects_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match="png or .svg"):
        P.save(P.softmax_jacobian_figure(), tmp_path / "x.pdf")


# ----------------------------------------------------------------------------- attention
def test_attention_heatmaps_one_panel_per_head_with_mask(attn_case):
    manual_seed(0)
    mha = MultiHeadAttention(8, 2, causal=True)
    mha(Tensor(np.random.default_rng(0).normal(size=(1, 4, 8))))
    fig = P.attention_heatmaps(mha.weights, list("abcd"), title="t")        # Tensor (B, H, T, T)
    assert len(image_axes(fig)) == 2
    fig = P.attention_heatmaps(mha.weights.numpy()[0], list("abcd"), mask=causal_mask(4))
    shown = image_axes(fig)[0].get_images()[0].get_array()
    assert np.array_equal(np.ma.getmaskarray(shown), causal_mask(4))


def test_attention_grid_draws_every_layer_and_head():
    model = _tiny_gpt()
    fig = P.attention_grid(model, np.array([[1, 2, 3, 4]]), list("abcd"))
    assert len(image_axes(fig)) == 4                                      # 2 layers x 2 heads
    assert model.h[1].attn.weights.shape == (1, 2, 4, 4)
    assert model.training                                                 # mode put back


def test_score_grads_are_exactly_zero_where_masked(attn_case):
    q, k, v, up, mask = attn_case
    scores, weights, grad = P.attention_score_grads(q, k, v, mask, up)
    assert scores.name == "scores" and scores.shape == (2, 5, 5) and grad.shape == (2, 5, 5)
    m = np.broadcast_to(mask, grad.shape)
    assert np.all(grad[m] == 0.0)                                         # exactly, not approximately
    assert np.all(weights[m] == 0.0)
    assert np.any(grad[~m] != 0.0)
    assert np.allclose(weights.sum(-1), 1.0)


def test_score_grads_match_finite_differences(attn_case):
    """dL/dscores from the engine = central difference of L through softmax of the masked scores."""
    q, k, v, up, mask = attn_case
    scores, _, grad = P.attention_score_grads(q, k, v, mask, up)
    s0 = scores.numpy()

    def loss(s):
        s = np.where(mask, -np.inf, s)
        w = np.exp(s - s.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        return float(((w @ v) * up).sum())
    h, fd = 1e-6, np.zeros_like(s0)
    for idx in np.ndindex(s0.shape):
        e = np.zeros_like(s0)
        e[idx] = h
        fd[idx] = (loss(s0 + e) - loss(s0 - e)) / (2 * h)
    assert np.allclose(grad, fd, atol=1e-7)


def test_score_gradient_heatmap_masks_cells_and_centres_at_zero(attn_case):
    q, k, v, up, mask = attn_case
    _, w, g = P.attention_score_grads(q, k, v, mask, up)
    fig = P.score_gradient_heatmap(g, list("hello"), mask=mask, weights=w)
    axes = image_axes(fig)
    assert len(axes) == 4                                                 # weights row + grad row, 2 heads
    im = axes[-1].get_images()[0]
    assert np.array_equal(np.ma.getmaskarray(im.get_array()), mask)
    assert im.norm.vcenter == 0.0 and im.norm.vmin == -im.norm.vmax


def test_score_grads_refuse_a_fully_masked_row():
    q = np.ones((2, 3))
    with pytest.raises(ValueError, match="every key masked"):
        P.attention_score_grads(q, q, q, np.ones((2, 2), bool))


# ----------------------------------------------------------------------------- positions
def test_positional_encoding_heatmap_shows_the_table():
    fig = P.positional_encoding_heatmap(T=7, C=16)
    data = image_axes(fig)[0].get_images()[0].get_array()
    assert data.shape == (7, 16)
    assert np.allclose(data, sinusoidal_table(7, 16))
    assert P.positional_encoding_heatmap(T=20, C=512).axes[0].get_images()[0].get_array().shape == (20, 512)


def test_positional_encoding_figure_reorders_columns_and_labels_real_dims():
    fig = P.positional_encoding_figure(T=12, C=16, pair=1, k=2)
    table_ax = image_axes(fig)[0]
    data = table_ax.get_images()[0].get_array()
    pe = sinusoidal_table(12, 16)
    assert np.allclose(data[:, :8], pe[:, 0::2]) and np.allclose(data[:, 8:], pe[:, 1::2])   # sin first, then cos
    ticks = {int(round(t)): label.get_text() for t, label in zip(table_ax.get_xticks(), table_ax.get_xticklabels())}
    assert ticks[0] == "0" and ticks[8] == "1" and ticks[2] == "4"                      # the real dimension numbers
    circle = [ax for ax in fig.axes if "R = [[cos 2w" in ax.get_title()]
    assert circle, [ax.get_title() for ax in fig.axes]


# ----------------------------------------------------------------------------- layer norm
@pytest.mark.parametrize("shape", [(6,), (3, 5)])
def test_layernorm_terms_sum_to_engine_grad(shape):
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape) * 3 + 1
    w, up = rng.normal(size=shape[-1:]), rng.normal(size=shape)
    terms = P.layernorm_backward_terms(x, w, up)
    xt = Tensor(x, requires_grad=True, dtype="float64")
    (F.layer_norm(xt, Tensor(w, dtype="float64"), None) * Tensor(up, dtype="float64")).sum().backward()
    total = terms["direct"] + terms["mean"] + terms["variance"]
    assert np.array_equal(total, terms["total"])
    assert np.max(np.abs(total - xt.grad)) <= 1e-10
    assert np.max(np.abs(terms["engine"] - xt.grad)) <= 1e-12
    assert np.allclose(terms["total"].sum(-1), 0.0, atol=1e-10)           # dx always sums to 0 over C
    assert np.allclose(terms["mean"], terms["mean"][..., :1])             # term 2 is the same for every feature


# ----------------------------------------------------------------------------- softmax
def test_softmax_jacobian_matches_finite_differences():
    z = np.array([0.3, -1.2, 2.0, 0.7, 0.0])
    J = P.softmax_jacobian(z)

    def softmax(z):
        e = np.exp(z - z.max())
        return e / e.sum()
    h = 1e-6
    fd = np.stack([(softmax(z + h * e) - softmax(z - h * e)) / (2 * h) for e in np.eye(len(z))], axis=1)
    assert np.allclose(J, fd, atol=1e-9)
    assert np.allclose(J.sum(axis=1), 0.0, atol=1e-15)
    assert np.allclose(J, J.T)


# ----------------------------------------------------------------------------- training
def test_loss_curves_reads_metrics_files(tmp_path):
    paths = []
    for name, k in (("causal", 0.1), ("nomask", 0.4)):
        p = tmp_path / name / "metrics.jsonl"
        p.parent.mkdir()
        p.write_text("".join(json.dumps(r) + "\n" for r in _rows(k)))
        paths.append(p)
    fig = P.loss_curves(paths)
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 4                                       # train + val per run
    assert [t.get_text() for t in ax.get_legend().get_texts()][0] == "causal (train)"
    assert len(P.loss_curves(paths[0], ["one"]).axes[0].get_lines()) == 2
    with pytest.raises(ValueError, match="labels"):
        P.loss_curves(paths, ["only one"])


# ----------------------------------------------------------------------------- sqrt(d_k)
def test_scaling_stats_show_sqrt_dk_growth():
    stats = P.scaling_stats(d_ks=(4, 16, 64, 256), n=2000, seed=0)
    assert set(stats) == {4, 16, 64, 256}
    for d in (16, 64, 256):
        s = stats[d]
        assert 0.8 <= s["scaled_std"] <= 1.2
        assert abs(s["unscaled_std"] / math.sqrt(d) - 1) <= 0.2
    ent = [stats[d]["unscaled_entropy"] for d in (4, 16, 64, 256)]
    assert all(a > b for a, b in zip(ent, ent[1:]))                       # unscaled softmax saturates
    assert min(stats[d]["scaled_entropy"] for d in stats) > 2 * ent[-1]
