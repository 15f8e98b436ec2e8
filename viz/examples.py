"""Small, readable expressions to draw, step through and explore.

Each preset is a builder `fn(seed=0, backward=True)` that returns the ROOT of its graph: a
scalar loss. With backward=True the builder has already called `loss.backward()`, so every
tensor in the graph holds its `.grad`; with backward=False the loss comes back untouched (the
stepper and the explorer run the backward themselves, one op at a time).

The builders name only their own leaves and results (x, w, q, k, v, y, loss, ...): the steps
inside softmax, layer norm, attention and cross-entropy are named by the engine and transformer
code that writes them (max, z - max, exp, scores, weights, log_probs, ...), parameters by their
module path (h.0.attn.c_attn.weight). The module presets tag their tensors with scopes
("attn.c_attn", "h.0.attn", "h.1.mlp") so a drawing can group or collapse them. Everything is
seeded: the same seed gives the same numbers.

DRAW_DEFAULTS holds each preset's drawing options (title, collapse, rankdir) in one place:
`draw_preset(name)` is what `tx graph NAME` draws and what docs/figures/NAME.svg shows.
Shapes: B batch, T time, C channels, H heads, hs head size, V vocab.
"""
import functools
import math

import numpy as np

from tinygrad_tx import Tensor, backend, functional as F, fused_ops, scope
from transformer import GPT, Block, GPTConfig, MultiHeadAttention, causal_mask, scaled_dot_product_attention

from .graph import draw_graph


# ----------------------------------------------------------------------------- helpers


def _composed(builder):
    """Build with the fused ops switched off, whatever the caller's mode: the point of a preset
    is to show every primitive step (softmax, layer norm, cross-entropy, GELU) in the graph."""
    @functools.wraps(builder)
    def build_composed(seed=0, backward=True):
        with fused_ops(False):
            return builder(seed=seed, backward=backward)
    return build_composed


def _tensor(arr, name, requires_grad=True):
    """A named leaf in the engine's default float dtype."""
    return Tensor(np.asarray(arr), requires_grad=requires_grad, dtype=backend.default_dtype(), name=name)


def _dot(a, b):
    """sum(a * b): a fixed random `b` makes every entry of `a` matter to the loss (dL/da = b)."""
    return (a * b).sum()


def _finish(loss, backward):
    loss.named("loss")
    if backward:
        loss.backward()
    return loss


# ----------------------------------------------------------------------------- presets
# seed 0 draws the neuron of docs/backprop.md section 1, numbers a reader can check by hand
NEURON_W, NEURON_X, NEURON_B = [0.5, -1.0, 2.0], [1.0, 2.0, 0.5], 0.3


@_composed
def neuron(seed=0, backward=True):
    """micrograd's neuron: o = tanh(w . x + b), with squared error (o - y)^2 against y = 1.

    seed 0 uses the walkthrough's numbers (w = [0.5, -1, 2], x = [1, 2, 0.5], b = 0.3); any
    other seed draws w, x and b at random."""
    if seed == 0:
        xs, ws, bs = NEURON_X, NEURON_W, NEURON_B
    else:
        rng = np.random.default_rng(seed)
        xs, ws, bs = rng.normal(size=3), rng.normal(size=3), rng.normal()
    x = _tensor(xs, "x")                                         # (3,)
    w = _tensor(ws, "w")                                         # (3,)
    b = _tensor(bs, "b")                                         # ()
    y = _tensor(1.0, "y", requires_grad=False)                   # () the target
    n = ((w * x).sum() + b).named("n")                           # () pre-activation
    o = n.tanh().named("o")                                      # () dL/dn = dL/do * (1 - o^2)
    return _finish((o - y) ** 2, backward)


@_composed
def mlp(seed=0, backward=True):
    """Two-layer MLP on a batch of 4: pred = tanh(x W1 + b1) W2 + b2, MSE against y."""
    rng = np.random.default_rng(seed)
    x = _tensor(rng.normal(size=(4, 3)), "x", requires_grad=False)      # (B, 3)
    y = _tensor(rng.normal(size=(4, 1)), "y", requires_grad=False)      # (B, 1)
    W1 = _tensor(rng.normal(size=(3, 5)) / math.sqrt(3), "W1")          # (3, 5)
    b1 = _tensor(np.zeros(5), "b1")
    W2 = _tensor(rng.normal(size=(5, 1)) / math.sqrt(5), "W2")          # (5, 1)
    b2 = _tensor(np.zeros(1), "b2")
    z1 = (x @ W1 + b1).named("z1")                                      # (B, 5)
    h = z1.tanh().named("h")
    pred = (h @ W2 + b2).named("pred")                                  # (B, 1)
    return _finish(((pred - y) ** 2).mean(), backward)


@_composed
def softmax_xent(seed=0, backward=True):
    """Cross-entropy of logits (2, 4) against targets: -mean log softmax(logits)[y]."""
    rng = np.random.default_rng(seed)
    logits = _tensor(rng.normal(size=(2, 4)), "logits")                 # (N, V)
    targets = np.array([1, 3])                                          # (N,) class ids
    return _finish(F.cross_entropy(logits, targets), backward)


@_composed
def masked_softmax(seed=0, backward=True):
    """Causal masked softmax: scores (3, 3) with the future set to -inf, then softmax; the loss
    is a fixed weighted sum, so the masked weights (exactly 0) get exactly 0 gradient."""
    rng = np.random.default_rng(seed)
    scores = _tensor(rng.normal(size=(3, 3)), "scores")                 # (Tq, Tk)
    mask = Tensor(causal_mask(3), name="mask")                          # (Tq, Tk) True = future
    target = _tensor(rng.normal(size=(3, 3)), "target", requires_grad=False)
    masked = scores.masked_fill(mask, float("-inf")).named("masked_scores")
    weights = masked.softmax(axis=-1).named("weights")                  # rows sum to 1
    return _finish(_dot(weights, target), backward)


@_composed
def attention(seed=0, backward=True):
    """One causal attention head, T=4: q, k, v = x Wq, x Wk, x Wv; y = softmax(q kT / sqrt(hs)) v."""
    rng = np.random.default_rng(seed)
    T, C, hs = 4, 6, 4
    x = _tensor(rng.normal(size=(T, C)), "x")       # (T, C) with a gradient: dX sums three paths
    Wq = _tensor(rng.normal(size=(C, hs)) / math.sqrt(C), "Wq")         # (C, hs)
    Wk = _tensor(rng.normal(size=(C, hs)) / math.sqrt(C), "Wk")
    Wv = _tensor(rng.normal(size=(C, hs)) / math.sqrt(C), "Wv")
    upstream = _tensor(rng.normal(size=(T, hs)), "upstream", requires_grad=False)
    with scope("attn"):
        q, k, v = (x @ Wq).named("q"), (x @ Wk).named("k"), (x @ Wv).named("v")   # (T, hs) each
        y, weights = scaled_dot_product_attention(q, k, v, mask=causal_mask(T))   # (T, hs), (T, T)
    return _finish(_dot(y.named("y"), upstream), backward)


@_composed
def multihead(seed=0, backward=True):
    """MultiHeadAttention (C=8, H=2, causal) on x (1, 4, 8), called in scope "attn"."""
    rng = np.random.default_rng(seed)
    with backend.fork_rng(seed):
        mha = MultiHeadAttention(8, 2, causal=True)
    x = _tensor(rng.normal(size=(1, 4, 8)), "x", requires_grad=False)   # (B, T, C)
    upstream = _tensor(rng.normal(size=(1, 4, 8)), "upstream", requires_grad=False)
    with scope("attn"):
        y = mha(x)                                                      # (B, T, C)
    return _finish(_dot(y.named("out"), upstream), backward)


@_composed
def layernorm(seed=0, backward=True):
    """Layer norm of x (2, 4, 6) over its last axis (per token), scaled and shifted."""
    rng = np.random.default_rng(seed)
    x = _tensor(rng.normal(size=(2, 4, 6)), "x")                        # (B, T, C)
    weight = _tensor(1.0 + 0.1 * rng.normal(size=6), "weight")          # (C,)
    bias = _tensor(0.1 * rng.normal(size=6), "bias")
    upstream = _tensor(rng.normal(size=(2, 4, 6)), "upstream", requires_grad=False)
    y = F.layer_norm(x, weight, bias).named("y")                        # (B, T, C)
    return _finish(_dot(y, upstream), backward)


@_composed
def gpt_block(seed=0, backward=True):
    """One pre-norm transformer Block (C=8, H=2, causal) on x (1, 4, 8), in scope "h.0"."""
    rng = np.random.default_rng(seed)
    with backend.fork_rng(seed):
        block = Block(8, 2, causal=True, norm="pre")
    x = _tensor(rng.normal(size=(1, 4, 8)), "x", requires_grad=False)   # (B, T, C)
    upstream = _tensor(rng.normal(size=(1, 4, 8)), "upstream", requires_grad=False)
    with scope("h.0"):
        y = block(x)                                                    # (B, T, C)
    return _finish(_dot(y.named("out"), upstream), backward)


@_composed
def gpt(seed=0, backward=True):
    """A tiny GPT (2 layers, 2 heads, C=8, block_size 8, vocab 11): next-token cross-entropy
    on one sequence of 6 tokens. Scopes: wte, wpe, h.0.ln_1, h.0.attn.c_attn, h.1.mlp.c_fc, ..."""
    rng = np.random.default_rng(seed)
    config = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
    with backend.fork_rng(seed):
        model = GPT(config)
    tokens = rng.integers(0, config.vocab_size, size=(1, 7))
    idx, targets = tokens[:, :-1], tokens[:, 1:]                        # (B, T): predict the next token
    logits, loss = model(idx, targets)                                  # (B, T, V), ()
    return _finish(loss, backward)


PRESETS = {
    "neuron": neuron,
    "mlp": mlp,
    "softmax-xent": softmax_xent,
    "masked-softmax": masked_softmax,
    "attention": attention,
    "multihead": multihead,
    "layernorm": layernorm,
    "gpt-block": gpt_block,
    "gpt": gpt,
}

# How each preset is drawn, by `tx graph` and in docs/figures alike. Unlisted options take
# draw_graph's defaults; rankdir is top to bottom unless a preset reads better left to right.
# The module presets, whose figures are about structure (shapes, residual adds), show value
# statistics instead of grids: that halves their height (docs/backprop.md reads their shapes).
DRAW_DEFAULTS = {
    "neuron": dict(title="a neuron: loss = (tanh(w.x + b) - y)^2", rankdir="LR"),
    "mlp": dict(title="a two-layer MLP: pred = tanh(x W1 + b1) W2 + b2, mean squared error"),
    "softmax-xent": dict(title="softmax + cross-entropy: loss = -mean log_softmax(logits)[y], targets [1, 3]"),
    "masked-softmax": dict(title="causal masked softmax (3 x 3): -inf in, exact zeros (and zero gradients) out"),
    "attention": dict(title="one causal attention head, T = 4: dL/dx adds the q, k and v paths"),
    "multihead": dict(title="multi-head attention: C = 8, H = 2 heads of hs = 4",
                      collapse=["attn.c_attn", "attn.c_proj"], values="stats"),
    "layernorm": dict(title="layer norm of x (B, T, C) = (2, 4, 6): mean and variance per token", values="stats"),
    "gpt-block": dict(title="one pre-norm block: x + attn(ln_1(x)), then x + mlp(ln_2(x))",
                      collapse=["h.0.ln_1", "h.0.attn", "h.0.ln_2", "h.0.mlp.c_fc", "h.0.mlp.c_proj"], values="stats"),
    "gpt": dict(title="a whole GPT, one box per module: 2 blocks, C = 8, V = 11, T = 6",
                collapse=["wte", "wpe", "h.0", "h.1", "ln_f", "lm_head"], values="stats"),
}


def describe(name):
    """The first line of a preset's docstring (for listings)."""
    return (PRESETS[name].__doc__ or "").strip().splitlines()[0]


def _check(name):
    if name not in PRESETS:
        raise ValueError(f"unknown example {name!r}; valid names: {', '.join(PRESETS)}")


def build(name, seed=0, backward=True):
    """Build preset `name`; returns its scalar loss (with gradients when backward=True)."""
    _check(name)
    return PRESETS[name](seed=seed, backward=backward)


def draw_options(name, **overrides):
    """The draw_graph options of preset `name`: rankdir "TB" and a title from its docstring,
    then its DRAW_DEFAULTS, then the overrides (collapse=None draws every node)."""
    _check(name)
    return {"rankdir": "TB", "title": f"{name}: {describe(name)}", **DRAW_DEFAULTS.get(name, {}), **overrides}


def draw_preset(name, seed=0, **overrides):
    """Preset `name` built (after backward) and drawn with its options: a graphviz.Digraph."""
    return draw_graph(build(name, seed=seed), **draw_options(name, **overrides))


__all__ = ["PRESETS", "DRAW_DEFAULTS", "build", "describe", "draw_options", "draw_preset"]
