"""Figures for the blog post: attention weights and their score gradients, the sinusoidal
position code, the three terms of the layer norm backward, the softmax Jacobian, loss curves
and why attention divides by sqrt(d_k).

Every function builds a `matplotlib.figure.Figure` on its own Agg canvas and returns it: no
pyplot, so no global figure state and no GUI backend. `save(fig, path)` writes .png or .svg.
The numbers behind a figure come from a separate function (attention_score_grads,
layernorm_backward_terms, softmax_jacobian, scaling_stats) so tests can check them.

Shapes: B batch, H heads, Tq/Tk query/key lengths, C channels, hs head size.
"""
import collections
import json
import math
import pathlib

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import PathPatch
from matplotlib.path import Path

from tinygrad_tx import Tensor, functional as F, no_grad
from transformer import causal_mask, sinusoidal_table

MASKED_COLOUR = "#bdbdbd"        # blocked (masked) cells: grey with a hatch, outside any colormap


# ----------------------------------------------------------------------------- basics
def _figure(width, height):
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig, path, dpi=150):
    """Write fig to `path`; the format comes from the extension (.png or .svg)."""
    path = pathlib.Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise ValueError(f"save: unsupported extension {path.suffix!r}; use .png or .svg")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=fmt, dpi=dpi)
    return path


def _np(x):
    """Tensor or array-like -> numpy array (a host copy for tensors)."""
    if isinstance(x, Tensor):
        return x.numpy()
    return np.asarray(x)


def _heads(a, what):
    """(Tq, Tk), (H, Tq, Tk) or (B, H, Tq, Tk) (batch 0 taken) -> (H, Tq, Tk)."""
    a = _np(a)
    if a.ndim == 4:
        a = a[0]
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"{what}: expected (Tq, Tk), (H, Tq, Tk) or (B, H, Tq, Tk), got shape {a.shape}")
    return a


def _mask_like(mask, shape):
    """A boolean mask (broadcastable, maybe with a batch axis) -> (H, Tq, Tk), or None."""
    if mask is None:
        return None
    m = _np(mask).astype(bool)
    if m.ndim == 4:
        m = m[0]
    return np.broadcast_to(m, shape)


def _labels(tokens, n):
    if tokens is None:
        return [str(i) for i in range(n)]
    tokens = [repr(t)[1:-1] if isinstance(t, str) else str(t) for t in tokens]   # show "\n" as \n
    if len(tokens) != n:
        raise ValueError(f"expected {n} token labels, got {len(tokens)}")
    return tokens


def _heatmap(ax, data, mask, labels_q, labels_k, cmap, norm=None, vmin=None, vmax=None,
             annotate=None, fmt="{:.2f}"):
    """One (Tq, Tk) heatmap: queries down, keys across; masked cells grey and hatched."""
    cmap = colormaps[cmap].with_extremes(bad=MASKED_COLOUR)
    shown = np.ma.masked_array(data, mask=mask if mask is not None else np.zeros(data.shape, bool))
    im = ax.imshow(shown, cmap=cmap, norm=norm, vmin=None if norm else vmin, vmax=None if norm else vmax,
                   interpolation="nearest", aspect="equal")
    Tq, Tk = data.shape
    if mask is not None and mask.any():       # every masked cell in ONE hatched path: fast for T = 64+
        i, j = np.nonzero(mask)
        corners = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5]])   # one cell, closed
        verts = (np.stack([j, i], axis=1)[:, None, :] + corners).reshape(-1, 2)
        codes = np.tile([Path.MOVETO, Path.LINETO, Path.LINETO, Path.LINETO, Path.CLOSEPOLY], len(i))
        ax.add_patch(PathPatch(Path(verts, codes), facecolor=MASKED_COLOUR, edgecolor="#808080", hatch="///",
                               linewidth=0))
    ax.set_xticks(range(Tk), labels_k, rotation=90 if max(map(len, labels_k)) > 2 else 0)
    ax.set_yticks(range(Tq), labels_q)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    if annotate is None:
        annotate = Tq * Tk <= 64
    if annotate:
        for i in range(Tq):
            for j in range(Tk):
                if mask is not None and mask[i, j]:
                    continue
                r, g, b, _ = cmap(im.norm(data[i, j]))
                dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5            # white text on dark cells
                ax.text(j, i, fmt.format(data[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")
    return im


# ----------------------------------------------------------------------------- attention
def attention_heatmaps(weights, tokens_q, tokens_k=None, mask=None, title=None):
    """One heatmap per head of the attention weights (rows: queries, columns: keys; each row
    sums to 1). weights: (Tq, Tk), (H, Tq, Tk) or (B, H, Tq, Tk) (batch 0 is drawn), numpy or
    Tensor. mask (True = blocked) is drawn grey and hatched: those weights are exactly 0."""
    w = _heads(weights, "attention_heatmaps")
    H, Tq, Tk = w.shape
    m = _mask_like(mask, w.shape)
    lq = _labels(tokens_q, Tq)
    lk = _labels(tokens_k if tokens_k is not None else (tokens_q if Tq == Tk else None), Tk)
    cols = min(H, 4)
    rows = math.ceil(H / cols)
    fig = _figure(1.0 + 2.6 * cols, 0.6 + 2.6 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    im = None
    for h, ax in enumerate(axes.ravel()):
        if h >= H:
            ax.set_visible(False)
            continue
        im = _heatmap(ax, w[h], None if m is None else m[h], lq, lk, "viridis", vmin=0.0, vmax=1.0)
        ax.set_title(f"head {h}" if H > 1 else "weights")
    fig.colorbar(im, ax=axes.ravel().tolist(), label="attention weight", shrink=0.8)
    if title:
        fig.suptitle(title)
    return fig


def attention_grid(model, idx, tokens=None, title=None):
    """Run a GPT on idx ((T,) or (1, T) ids, no gradients) and draw every layer x head from
    `block.attn.weights`; the causal mask is drawn hatched."""
    ids = np.asarray(_np(idx))
    if ids.ndim == 1:
        ids = ids[None]
    was_training = model.training
    model.eval()                                      # no dropout: the weights the model uses
    try:
        with no_grad():
            model(ids[:1])
    finally:
        model.train(was_training)
    blocks = list(model.h)
    T = ids.shape[1]
    H = blocks[0].attn.n_head
    mask = causal_mask(T) if getattr(model.config, "causal", True) else None
    labels = _labels(tokens, T)
    fig = _figure(1.0 + 2.4 * H, 0.6 + 2.4 * len(blocks))
    axes = fig.subplots(len(blocks), H, squeeze=False)
    im = None
    for layer, block in enumerate(blocks):
        w = _heads(block.attn.weights, "attention_grid")               # (H, T, T)
        for h in range(H):
            ax = axes[layer, h]
            im = _heatmap(ax, w[h], mask, labels, labels, "viridis", vmin=0.0, vmax=1.0,
                          annotate=T <= 6)
            ax.set_title(f"layer {layer}, head {h}", fontsize=9)
            if h:
                ax.set_ylabel("")
            if layer < len(blocks) - 1:
                ax.set_xlabel("")
    fig.colorbar(im, ax=axes.ravel().tolist(), label="attention weight", shrink=0.8)
    if title:
        fig.suptitle(title)
    return fig


ScoreGrads = collections.namedtuple("ScoreGrads", "scores weights grad")


def attention_score_grads(q, k, v, mask=None, upstream=None):
    """Run one attention with the engine and return (scores, weights, grad):

        scores  = q @ k^T / sqrt(hs)          (.., Tq, Tk)  the named Tensor, pre-mask
        weights = softmax(masked_fill(scores, mask, -inf))
        loss    = sum((weights @ v) * upstream)
        grad    = dL/dscores                   (.., Tq, Tk)  numpy

    MaskedFill passes exactly 0 gradient to the positions it overwrote, so `grad` is exactly 0.0
    in the masked cells (not merely small). Computed in float64. upstream defaults to ones."""
    def leaf(a, name):
        return Tensor(np.asarray(_np(a), dtype=np.float64), requires_grad=True, dtype="float64", name=name)
    q, k, v = leaf(q, "q"), leaf(k, "k"), leaf(v, "v")
    hs = q.shape[-1]
    scores = (q @ k.swapaxes(-1, -2)) * (1.0 / math.sqrt(hs))         # (.., Tq, Tk)
    scores.name = "scores"
    if mask is not None:
        m = np.broadcast_to(_np(mask).astype(bool), scores.shape)
        if m.all(axis=-1).any():
            raise ValueError("attention_score_grads: a query row has every key masked (softmax of all -inf)")
        masked = scores.masked_fill(Tensor(m, name="mask"), float("-inf"))
        masked.name = "masked_scores"
    else:
        masked = scores
    weights = masked.softmax(axis=-1)                                  # (.., Tq, Tk)
    weights.name = "weights"
    out = weights @ v                                                  # (.., Tq, hs)
    out.name = "out"
    up = np.ones(out.shape) if upstream is None else np.asarray(_np(upstream), dtype=np.float64)
    loss = (out * Tensor(up, dtype="float64", name="upstream")).sum()
    loss.name = "loss"
    loss.backward()
    return ScoreGrads(scores, weights.numpy(), scores.grad.copy())


def score_gradient_heatmap(grad, tokens_q, tokens_k=None, mask=None, weights=None, title=None):
    """dL/dscores (pre-softmax) per head, on a diverging colormap centred at 0 (red pushes the
    score up, blue down). Masked cells are grey and hatched: their gradient is exactly 0.
    With `weights` given, a first row shows the attention weights for comparison."""
    g = _heads(grad, "score_gradient_heatmap")
    H, Tq, Tk = g.shape
    m = _mask_like(mask, g.shape)
    lq = _labels(tokens_q, Tq)
    lk = _labels(tokens_k if tokens_k is not None else (tokens_q if Tq == Tk else None), Tk)
    rows = 2 if weights is not None else 1
    fig = _figure(1.4 + 2.8 * H, 0.6 + 2.7 * rows)
    axes = fig.subplots(rows, H, squeeze=False)
    if weights is not None:
        w = _heads(weights, "score_gradient_heatmap")
        for h in range(H):
            im_w = _heatmap(axes[0, h], w[h], None if m is None else m[h], lq, lk, "viridis", vmin=0.0, vmax=1.0)
            axes[0, h].set_title(f"weights, head {h}" if H > 1 else "attention weights")
        fig.colorbar(im_w, ax=axes[0].tolist(), label="weight", shrink=0.8)
    shown = g[~m] if m is not None else g.ravel()
    bound = float(np.abs(shown).max()) if shown.size else 1.0
    bound = bound if bound > 0 else 1.0
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-bound, vmax=bound)
    for h in range(H):
        ax = axes[rows - 1, h]
        im = _heatmap(ax, g[h], None if m is None else m[h], lq, lk, "RdBu_r", norm=norm, fmt="{:+.2f}")
        ax.set_title(f"dL/dscores, head {h}" if H > 1 else "dL/dscores (pre-softmax)")
    fig.colorbar(im, ax=axes[rows - 1].tolist(), label="gradient", shrink=0.8)
    if title:
        fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------- positions
def _pe_table_axes(ax, T, C, interleaved):
    """Draw the sinusoidal table on ax; with interleaved=False the sin columns (even dims) come
    first and the cos columns (odd dims) after, and the ticks name the real dimensions."""
    table = np.asarray(sinusoidal_table(T, C))                         # (T, C)
    if not interleaved:
        table = np.concatenate([table[:, 0::2], table[:, 1::2]], axis=1)
    im = ax.imshow(table, cmap="RdBu", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    if interleaved:
        ax.set_xlabel("embedding dimension (even: sin, odd: cos)")
    else:
        half = (C + 1) // 2                                            # number of sin columns
        ax.axvline(half - 0.5, color="black", linewidth=1)
        step = max(1, half // 4)
        cols = list(range(0, half, step)) + list(range(half, C, step))
        ax.set_xticks(cols, [str(2 * c if c < half else 2 * (c - half) + 1) for c in cols])
        ax.set_xlabel("columns reordered: sin dims 0, 2, 4, ...  |  cos dims 1, 3, 5, ...  (ticks: real dim)")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("position")
    return im


def positional_encoding_heatmap(T=20, C=512, interleaved=True, title=None):
    """The sinusoidal table PE (T positions x C dims): fast waves at small dims, slow ones at
    large dims; even dims are sin, odd dims cos. interleaved=False draws the sin dims first,
    then the cos dims (the layout of many tutorials), which makes the waves easier to see;
    the ticks then still name the real dimensions."""
    fig = _figure(9, 1.8 + 0.12 * T)
    ax = fig.subplots()
    im = _pe_table_axes(ax, T, C, interleaved)
    ax.set_title(title or f"sinusoidal positional encoding ({T} positions x {C} dims)")
    fig.colorbar(im, ax=ax, label="PE[pos, dim]")
    return fig


def pe_shift_rotation(C, pair, k):
    """The 2x2 matrix R_k of dimension pair (2 pair, 2 pair + 1) = (sin, cos) at frequency
    w = 10000^(-2 pair / C): [sin, cos](pos + k) = R_k [sin, cos](pos) for every pos, from
    sin(a + b) = cos b sin a + sin b cos a and cos(a + b) = cos b cos a - sin b sin a."""
    w = 10000.0 ** (-2 * pair / C)
    c, s = math.cos(k * w), math.sin(k * w)
    return np.array([[c, s], [-s, c]])


def positional_encoding_figure(T=48, C=64, pair=4, k=3, title=None):
    """Two panels: the table (sin columns first, ticks naming the real dimensions), and one
    (sin, cos) pair of it drawn as points on the unit circle, position by position, with the
    shift pos -> pos + k as the same rotation R_k for every pos, R_k written out."""
    table = np.asarray(sinusoidal_table(T, C))                         # (T, C)
    R = pe_shift_rotation(C, pair, k)
    fig = _figure(13.0, 1.8 + 0.12 * T)
    ax_t, ax_c = fig.subplots(1, 2, width_ratios=[1.5, 1.0])
    im = _pe_table_axes(ax_t, T, C, interleaved=False)
    ax_t.set_title(f"sinusoidal positional encoding ({T} positions x {C} dims)", fontsize=10)
    fig.colorbar(im, ax=ax_t, label="PE[pos, dim]", shrink=0.8)

    pts = table[:, 2 * pair:2 * pair + 2]                              # (T, 2): (sin, cos) per position
    n = min(T, 12)
    theta = np.linspace(0, 2 * math.pi, 200)
    ax_c.plot(np.sin(theta), np.cos(theta), color="#cccccc", linewidth=1)
    ax_c.plot(pts[:n, 0], pts[:n, 1], "o", color="#4c72b0", markersize=4)
    for pos in range(n):
        ax_c.annotate(str(pos), pts[pos], xytext=(4, 4), textcoords="offset points", fontsize=7)
    for pos in (0, 5):                                                 # the same rotation from any start
        a, b = pts[pos], R @ pts[pos]
        ax_c.annotate("", b, a, arrowprops=dict(arrowstyle="->", color="#c44e52", linewidth=1.5))
    ax_c.set_aspect("equal")
    ax_c.set_xlim(-1.35, 1.35)
    ax_c.set_ylim(-1.35, 1.35)
    ax_c.set_xlabel(f"PE[pos, {2 * pair}] = sin(pos w)")
    ax_c.set_ylabel(f"PE[pos, {2 * pair + 1}] = cos(pos w)")
    w = 10000.0 ** (-2 * pair / C)
    ax_c.set_title(f"one (sin, cos) pair, dims ({2 * pair}, {2 * pair + 1}), w = {w:.3f}:\n"
                   f"PE(pos + {k}) = R PE(pos) for every pos, with\n"
                   f"R = [[cos {k}w, sin {k}w], [-sin {k}w, cos {k}w]]\n"
                   f"   = [[{R[0, 0]:+.3f}, {R[0, 1]:+.3f}], [{R[1, 0]:+.3f}, {R[1, 1]:+.3f}]]", fontsize=9)
    ax_c.text(0, 0, f"red: pos -> pos + {k}\n(0 -> {k} and 5 -> {5 + k})", ha="center", va="center",
              fontsize=8, color="#c44e52")
    if title:
        fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------- layer norm
def layernorm_backward_terms(x, weight=None, upstream=None, eps=1e-5):
    """The layer norm backward for token vectors x (.., C), split into its three terms.

    forward:  xhat = (x - mean(x)) / sigma,  sigma = sqrt(var(x) + eps) (biased var),
              y = xhat * weight + bias,  upstream = dL/dy
    backward: g = upstream * weight  (= dL/dxhat)
              dx = (1/sigma) * (g - mean(g) - xhat * mean(g * xhat))
      term 1, "direct":            g / sigma            (x_i moves xhat_i directly)
      term 2, "through the mean":  -mean(g) / sigma     (x_i moves the mean, which every xhat_j subtracts)
      term 3, "through the variance": -xhat * mean(g * xhat) / sigma   (x_i moves sigma, which scales every xhat_j)

    Returns a dict of float64 arrays (shape of x): "direct", "mean", "variance", "total" (their
    sum) and "engine" (x.grad from the engine's composed layer_norm, for comparison)."""
    x = np.asarray(_np(x), dtype=np.float64)
    C = x.shape[-1]
    weight = np.ones(C) if weight is None else np.asarray(_np(weight), dtype=np.float64)
    upstream = np.ones(x.shape) if upstream is None else np.asarray(_np(upstream), dtype=np.float64)
    mu = x.mean(axis=-1, keepdims=True)
    sigma = np.sqrt(((x - mu) ** 2).mean(axis=-1, keepdims=True) + eps)
    xhat = (x - mu) / sigma
    g = upstream * weight
    direct = g / sigma
    through_mean = np.broadcast_to(-g.mean(axis=-1, keepdims=True) / sigma, x.shape).copy()
    through_var = -xhat * (g * xhat).mean(axis=-1, keepdims=True) / sigma
    # the same gradient from the engine, through every primitive of functional.layer_norm
    xt = Tensor(x, requires_grad=True, dtype="float64", name="x")
    wt = Tensor(weight, requires_grad=True, dtype="float64", name="weight")
    y = F.layer_norm(xt, wt, None, eps)
    (y * Tensor(upstream, dtype="float64", name="upstream")).sum().backward()
    return {"direct": direct, "mean": through_mean, "variance": through_var,
            "total": direct + through_mean + through_var, "engine": xt.grad.copy()}


def layernorm_terms_figure(x=None, weight=None, upstream=None, eps=1e-5, seed=0, title=None):
    """Bars of the three layer norm backward terms per feature of one token, with their sum
    and the engine's dL/dx on top. Random x, upstream (C=8) when not given."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=8) * 2 + 1 if x is None else np.asarray(_np(x), dtype=np.float64)
    upstream = rng.normal(size=x.shape) if upstream is None else upstream
    if x.ndim != 1:
        raise ValueError(f"layernorm_terms_figure: expects one token vector (C,), got shape {x.shape}")
    terms = layernorm_backward_terms(x, weight, upstream, eps)
    C = x.shape[0]
    pos = np.arange(C)
    fig = _figure(max(8.0, 0.9 * C + 1.5), 4.6)
    ax = fig.subplots()
    width = 0.26
    parts = [("direct", "term 1: direct  g/sigma", "#4c72b0"),
             ("mean", "term 2: through the mean  -mean(g)/sigma", "#dd8452"),
             ("variance", "term 3: through the variance  -xhat*mean(g*xhat)/sigma", "#55a868")]
    for n, (key, label, colour) in enumerate(parts):
        ax.bar(pos + (n - 1) * width, terms[key], width, label=label, color=colour)
    ax.plot(pos, terms["total"], "k_", markersize=22, markeredgewidth=2.5, label="sum = dL/dx")
    ax.plot(pos, terms["engine"], "o", color="#c44e52", markersize=4, label="engine x.grad")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(pos, [f"x[{i}]" for i in pos])
    ax.set_xlabel("feature")
    ax.set_ylabel("contribution to dL/dx")
    ax.set_title(title or "layer norm backward, term by term (one token)")
    fig.legend(fontsize=8, loc="outside lower center", ncols=3)
    return fig


# ----------------------------------------------------------------------------- softmax
def softmax_jacobian(z):
    """J[i, j] = dp_i/dz_j = p_i (delta_ij - p_j), i.e. J = diag(p) - p p^T, p = softmax(z).
    Each row sums to 0: adding a constant to every z leaves p unchanged."""
    z = np.asarray(_np(z), dtype=np.float64)
    if z.ndim != 1:
        raise ValueError(f"softmax_jacobian: z must be a vector, got shape {z.shape}")
    e = np.exp(z - z.max())
    p = e / e.sum()
    return np.diag(p) - np.outer(p, p)


def softmax_jacobian_figure(z=(1.0, 2.0, 0.5, -1.0), title=None):
    """The softmax Jacobian as an annotated heatmap (diverging, centred at 0): positive on the
    diagonal (raising z_i raises p_i), negative off it (and lowers every other p_j)."""
    z = np.asarray(_np(z), dtype=np.float64)
    J = softmax_jacobian(z)
    p = np.exp(z - z.max())
    p /= p.sum()
    n = len(z)
    fig = _figure(3.4 + 0.8 * n, 1.5 + 0.75 * n)
    ax = fig.subplots()
    bound = float(np.abs(J).max()) or 1.0
    im = ax.imshow(J, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -bound, bound), interpolation="nearest")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{J[i, j]:+.3f}", ha="center", va="center", fontsize=8,
                    color="white" if abs(J[i, j]) > 0.6 * bound else "black")
    ax.set_xticks(range(n), [f"z{j} = {z[j]:.2g}" for j in range(n)])
    ax.set_yticks(range(n), [f"p{i} = {p[i]:.2f}" for i in range(n)])
    ax.set_xlabel("input z_j")
    ax.set_ylabel("output p_i")
    ax.set_title(title or "softmax Jacobian J = diag(p) - p p^T\n(each row sums to 0)", fontsize=10)
    fig.colorbar(im, ax=ax, label="dp_i / dz_j")
    return fig


# ----------------------------------------------------------------------------- modes
def forward_reverse_figure(names=("w", "n = w.x + b", "o = tanh(n)", "loss"), n_inputs=7, title=None):
    """Forward mode and reverse mode on one chain of ops, as two rows of the same boxes:
    forward mode pushes a tangent v from the input towards the loss, one Jacobian-vector
    product (JVP) per op, and needs one pass per input direction; reverse mode pulls the
    gradient from the loss back to the input, one vector-Jacobian product (VJP) per op, and gets
    every input's gradient in one pass."""
    k = len(names)
    fig = _figure(10.5, 4.2)
    ax = fig.subplots()
    ax.set_xlim(-0.7, k - 0.3)
    ax.set_ylim(-0.4, 2.9)
    ax.axis("off")
    rows = ((2.0, "forward mode (JVP): one pass per input direction", "#4c72b0"),
            (0.6, "reverse mode (VJP): one pass for every input", "#c44e52"))
    for y, label, colour in rows:
        ax.text(-0.6, y + 0.55, label, fontsize=10, color=colour, fontweight="bold", va="center")
        for i, name in enumerate(names):
            ax.text(i, y, name, ha="center", va="center", fontsize=9,
                    bbox=dict(boxstyle="round,pad=0.4", facecolor="#eef2f8", edgecolor="#56657a"))
    short = [name.split(" =")[0] for name in names]                   # "n = w.x + b" -> "n"
    for i in range(1, k):
        prev, cur = short[i - 1], short[i]
        tangent = "v" if i == 1 else f"d{prev}"
        ax.annotate("", (i - 0.28, 2.0), (i - 0.72, 2.0), arrowprops=dict(arrowstyle="->", color="#4c72b0", lw=1.6))
        ax.text(i - 0.5, 1.72, f"d{cur} = J{i} {tangent}", ha="center", fontsize=8, color="#4c72b0")
        ax.annotate("", (i - 0.72, 0.6), (i - 0.28, 0.6), arrowprops=dict(arrowstyle="->", color="#c44e52", lw=1.6))
        upstream = "1" if i == k - 1 else f"dL/d{cur}"
        ax.text(i - 0.5, 0.3, f"dL/d{prev} = {upstream} J{i}", ha="center", fontsize=8, color="#c44e52")
    ax.text(-0.6, -0.25, f"J_i = d(box i) / d(box i-1), the local Jacobian of op i. With {n_inputs} inputs and 1 output (the neuron of "
            f"Figure 1.1), forward mode needs {n_inputs} passes, reverse mode 1;\nreverse mode keeps the "
            "forward values until its backward pass has used them.", fontsize=8, color="#333333")
    ax.set_title(title or "forward mode vs reverse mode on one chain", fontsize=11)
    return fig


# ----------------------------------------------------------------------------- training
def _read_rows(src):
    if isinstance(src, (str, pathlib.Path)):
        text = pathlib.Path(src).read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return list(src)


def loss_curves(runs, labels=None, title=None):
    """Train (solid) and val (dashed) loss vs step, one colour per run. runs: a metrics.jsonl
    path, a list of rows ({"step", "train_loss", "val_loss"}), or a list of either."""
    if isinstance(runs, (str, pathlib.Path)) or (isinstance(runs, list) and runs and isinstance(runs[0], dict)):
        runs = [runs]
    runs = list(runs)
    if labels is None:
        labels = [pathlib.Path(r).parent.name or pathlib.Path(r).stem if isinstance(r, (str, pathlib.Path))
                  else f"run {i}" for i, r in enumerate(runs)]
    if len(labels) != len(runs):
        raise ValueError(f"loss_curves: {len(runs)} runs but {len(labels)} labels")
    fig = _figure(6.5, 4.0)
    ax = fig.subplots()
    colours = colormaps["tab10"].colors
    for i, (src, label) in enumerate(zip(runs, labels)):
        rows = sorted(_read_rows(src), key=lambda r: r["step"])
        colour = colours[i % len(colours)]
        for key, style in (("train_loss", "-"), ("val_loss", "--")):
            pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if pts:
                steps, vals = zip(*pts)
                ax.plot(steps, vals, style, color=colour, marker="." if len(pts) < 30 else None,
                        label=f"{label} ({key.split('_')[0]})")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (cross-entropy, nats)")
    ax.set_title(title or "loss curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


# ----------------------------------------------------------------------------- sqrt(d_k)
def scaling_stats(d_ks=(4, 16, 64, 256), n=2000, n_keys=8, seed=0):
    """For q, k with unit-normal entries: the std of the scores q.k (unscaled: grows like
    sqrt(d_k); scaled by 1/sqrt(d_k): stays near 1) and the mean entropy (nats) of the softmax
    over n_keys keys per query (unscaled scores saturate it towards one-hot, entropy -> 0),
    and the mean size sum_ij |J_ij| of that softmax's Jacobian J = diag(p) - p p^T, which is
    2 (1 - sum_i p_i^2): 2 (1 - 1/n_keys) for a uniform softmax, 0 for a one-hot one (no
    gradient gets through). Returns {d_k: {"scaled_std", "unscaled_std", "scaled_entropy",
    "unscaled_entropy", "scaled_jacobian", "unscaled_jacobian"}}."""
    rng = np.random.default_rng(seed)

    def entropy(s):                                   # s (n, n_keys) -> mean softmax entropy
        z = s - s.max(axis=-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        return float(-(np.exp(logp) * logp).sum(axis=-1).mean())

    def jacobian_size(s):                             # s (n, n_keys) -> mean sum_ij |J_ij|
        z = np.exp(s - s.max(axis=-1, keepdims=True))
        p = z / z.sum(axis=-1, keepdims=True)         # (n, n_keys)
        # J = diag(p) - p p^T: sum |J| = sum_i p_i (1 - p_i) + sum_{i != j} p_i p_j = 2 (1 - sum p_i^2)
        return float((2.0 * (1.0 - (p ** 2).sum(axis=-1))).mean())

    stats = {}
    for d in d_ks:
        q = rng.standard_normal((n, 1, d))            # (n, 1, d) one query each
        k = rng.standard_normal((n, n_keys, d))       # (n, n_keys, d) its own keys
        raw = (q * k).sum(axis=-1)                    # (n, n_keys) q.k, variance d
        scaled = raw / math.sqrt(d)
        stats[d] = {"scaled_std": float(scaled.std()), "unscaled_std": float(raw.std()),
                    "scaled_entropy": entropy(scaled), "unscaled_entropy": entropy(raw),
                    "scaled_jacobian": jacobian_size(scaled), "unscaled_jacobian": jacobian_size(raw)}
    return stats


def scaling_figure(d_ks=(4, 16, 64, 256), n=2000, seed=0, n_keys=8, title=None):
    """Three panels: score std vs d_k (unscaled follows sqrt(d_k), scaled stays at 1), the
    mean softmax entropy (unscaled collapses towards 0: a saturated, one-hot softmax; scaled
    stays near the uniform maximum log(n_keys)), and the size sum |J| of the softmax Jacobian,
    which falls towards 0 with the entropy: the gradient through a saturated softmax vanishes."""
    stats = scaling_stats(d_ks, n, n_keys, seed)
    d = np.array(list(stats))
    col = {key: np.array([stats[x][key] for x in d]) for key in next(iter(stats.values()))}
    fig = _figure(13.0, 3.8)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    ax1.plot(d, col["unscaled_std"], "o-", color="#c44e52", label="q.k (unscaled)")
    ax1.plot(d, col["scaled_std"], "s-", color="#4c72b0", label="q.k / sqrt(d_k)")
    dd = np.geomspace(d.min(), d.max(), 50)
    ax1.plot(dd, np.sqrt(dd), ":", color="gray", label="sqrt(d_k)")
    ax1.set_xscale("log", base=2)
    ax1.set_yscale("log", base=2)
    ax1.set_xlabel("d_k")
    ax1.set_ylabel("std of scores")
    ax1.set_title("score spread")
    ax1.legend(fontsize=8)
    ax2.plot(d, col["unscaled_entropy"], "o-", color="#c44e52", label="softmax(q.k)")
    ax2.plot(d, col["scaled_entropy"], "s-", color="#4c72b0", label="softmax(q.k / sqrt(d_k))")
    ax2.axhline(math.log(n_keys), ls=":", color="gray", label=f"uniform: log {n_keys}")
    ax2.set_xscale("log", base=2)
    ax2.set_ylim(0, math.log(n_keys) * 1.1)
    ax2.set_xlabel("d_k")
    ax2.set_ylabel("mean entropy (nats)")
    ax2.set_title(f"softmax over {n_keys} keys")
    ax2.legend(fontsize=8)
    ax3.plot(d, col["unscaled_jacobian"], "o-", color="#c44e52", label="unscaled")
    ax3.plot(d, col["scaled_jacobian"], "s-", color="#4c72b0", label="scaled by 1/sqrt(d_k)")
    ax3.axhline(2 * (1 - 1 / n_keys), ls=":", color="gray", label=f"uniform: 2 (1 - 1/{n_keys})")
    ax3.set_xscale("log", base=2)
    ax3.set_ylim(0, 2.0)
    ax3.set_xlabel("d_k")
    ax3.set_ylabel("mean sum |J_ij|")
    ax3.set_title("softmax Jacobian size")
    ax3.legend(fontsize=8)
    for ax in (ax1, ax2, ax3):
        ax.set_xticks(d, [str(x) for x in d])
        ax.grid(alpha=0.3)
    ax1.set_yticks([1, 2, 4, 8, 16], ["1", "2", "4", "8", "16"])
    fig.suptitle(title or "why divide by sqrt(d_k)")
    return fig


__all__ = ["attention_heatmaps", "attention_grid", "score_gradient_heatmap", "attention_score_grads",
           "positional_encoding_heatmap", "positional_encoding_figure", "pe_shift_rotation",
           "layernorm_backward_terms", "layernorm_terms_figure",
           "softmax_jacobian", "softmax_jacobian_figure", "forward_reverse_figure", "loss_curves", "scaling_figure",
           "scaling_stats", "save"]
