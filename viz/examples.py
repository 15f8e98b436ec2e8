"""Small, readable expressions to draw, step through and explore.

Each preset is a builder `fn(seed=0, backward=True)` that returns the ROOT of its graph: a
scalar loss. With backward=True the builder has already called `loss.backward()`, so every
tensor in the graph holds its `.grad`; with backward=False the loss comes back untouched (the
stepper and the explorer run the backward themselves, one op at a time).

Tensors carry readable `.name`s (x, w, b, q, k, v, scores, mask, weights, logits, loss, ...),
and the module presets tag their tensors with scopes ("attn.c_attn", "h.0.attn", "h.1.mlp") so
a drawing can group or collapse them. Everything is seeded: the same seed gives the same
numbers. Shapes: B batch, T time, C channels, H heads, hs head size, V vocab.
"""
import functools
import math

import numpy as np

from tinygrad_tx import Tensor, backend, functional as F, fused_ops, scope
from tinygrad_tx.autograd import toposort
from transformer import GPT, Block, GPTConfig, MultiHeadAttention, causal_mask, scaled_dot_product_attention


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


def _walk(root):
    """Every tensor in root's graph (constants included), root first."""
    return reversed(toposort(root, every_tensor=True))


def _name(t, name):
    """Name t unless it already has a name (parameters keep theirs)."""
    if t is not None and t.name is None:
        t.name = name


def _name_softmax(weights):
    """Name the steps of Tensor.softmax behind `weights` = e / sum(e), e = exp(z - max z)."""
    if weights.op is None or weights.op.name != "Div":
        return
    e, total = weights.parents
    _name(total, "sum(e)")
    if e.op is not None and e.op.name == "Exp":
        _name(e, "e = exp(z - max)")
        shifted = e.parents[0]
        if shifted.op is not None and shifted.op.name == "Sub":
            _name(shifted, "z - max")
            _name(shifted.parents[1], "max (detached)")


def _name_attention(root):
    """Name the pieces of every scaled dot-product attention in root's graph, found by shape of
    the graph: MaskedFill(-inf) reads (scores, mask); scores = (q @ kT) * 1/sqrt(hs); kT is k
    transposed; a MatMul reading the (already named) `weights` reads v as its second input."""
    for t in _walk(root):
        if t.op is None:
            continue
        if t.op.name == "MaskedFill" and t.op.args.get("value") == float("-inf"):
            scores, mask = t.parents
            _name(t, "masked_scores")
            _name(mask, "mask")
            _name(scores, "scores")
            if scores.op is not None and scores.op.name == "Mul":
                qk = scores.parents[0]
                _name(qk, "q@kT")
                if qk.op is not None and qk.op.name == "MatMul":
                    q, kT = qk.parents
                    _name(q, "q")
                    _name(kT, "kT")
                    if kT.op is not None and kT.op.name == "Permute":
                        _name(kT.parents[0], "k")
        if t.op.name == "MatMul" and t.parents[0].name == "weights":
            _name_softmax(t.parents[0])
            _name(t.parents[1], "v")
            _name(t, "y")


def _dot(a, b):
    """sum(a * b): a fixed random `b` makes every entry of `a` matter to the loss (dL/da = b)."""
    prod = a * b
    prod.name = f"{a.name}*{b.name}"
    return prod.sum()


def _finish(loss, backward):
    loss.name = "loss"
    if backward:
        loss.backward()
    return loss


# ----------------------------------------------------------------------------- presets
@_composed
def neuron(seed=0, backward=True):
    """micrograd's neuron: o = tanh(w . x + b), with squared error (o - y)^2 against y = 1."""
    rng = np.random.default_rng(seed)
    x = _tensor(rng.normal(size=3), "x")                         # (3,)
    w = _tensor(rng.normal(size=3), "w")                         # (3,)
    b = _tensor(rng.normal(), "b")                               # ()
    y = _tensor(1.0, "y", requires_grad=False)                   # () the target
    wx = w * x                                                   # (3,)
    wx.name = "w*x"
    n = wx.sum() + b                                             # () pre-activation
    n.name = "n"
    o = n.tanh()                                                 # () dL/dn = dL/do * (1 - o^2)
    o.name = "o"
    err = o - y
    err.name = "o - y"
    return _finish(err ** 2, backward)


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
    z1 = x @ W1 + b1                                                    # (B, 5)
    z1.name = "z1"
    h = z1.tanh()
    h.name = "h"
    pred = h @ W2 + b2                                                  # (B, 1)
    pred.name = "pred"
    diff = pred - y
    diff.name = "pred - y"
    return _finish((diff ** 2).mean(), backward)


@_composed
def softmax_xent(seed=0, backward=True):
    """Cross-entropy of logits (2, 4) against targets: -mean log softmax(logits)[y]."""
    rng = np.random.default_rng(seed)
    logits = _tensor(rng.normal(size=(2, 4)), "logits")                 # (N, V)
    targets = np.array([1, 3])                                          # (N,) class ids
    loss = F.cross_entropy(logits, targets)
    for t in _walk(loss):                                               # name the steps inside
        if t.op is not None and t.op.name == "GetItem":
            _name(t, "logp[y]")
            _name(t.parents[0], "logp")
            logp = t.parents[0]
            if logp.op is not None and logp.op.name == "Sub":           # (z) - log(sum exp z)
                _name(logp.parents[0], "z = logits - max")
                _name(logp.parents[1], "logsumexp")
    return _finish(loss, backward)


@_composed
def masked_softmax(seed=0, backward=True):
    """Causal masked softmax: scores (3, 3) with the future set to -inf, then softmax; the loss
    is a fixed weighted sum, so the masked weights (exactly 0) get exactly 0 gradient."""
    rng = np.random.default_rng(seed)
    scores = _tensor(rng.normal(size=(3, 3)), "scores")                 # (Tq, Tk)
    mask = Tensor(causal_mask(3), name="mask")                          # (Tq, Tk) True = future
    target = _tensor(rng.normal(size=(3, 3)), "target", requires_grad=False)
    masked = scores.masked_fill(mask, float("-inf"))
    masked.name = "masked_scores"
    weights = masked.softmax(axis=-1)                                   # rows sum to 1
    weights.name = "weights"
    _name_softmax(weights)
    return _finish(_dot(weights, target), backward)


@_composed
def attention(seed=0, backward=True):
    """One causal attention head, T=4: q, k, v = x Wq, x Wk, x Wv; y = softmax(q kT / sqrt(hs)) v."""
    rng = np.random.default_rng(seed)
    T, C, hs = 4, 6, 4
    x = _tensor(rng.normal(size=(T, C)), "x", requires_grad=False)      # (T, C)
    Wq = _tensor(rng.normal(size=(C, hs)) / math.sqrt(C), "Wq")         # (C, hs)
    Wk = _tensor(rng.normal(size=(C, hs)) / math.sqrt(C), "Wk")
    Wv = _tensor(rng.normal(size=(C, hs)) / math.sqrt(C), "Wv")
    upstream = _tensor(rng.normal(size=(T, hs)), "upstream", requires_grad=False)
    with scope("attn"):
        q, k, v = x @ Wq, x @ Wk, x @ Wv                                # (T, hs) each
        q.name, k.name, v.name = "q", "k", "v"
        y, weights = scaled_dot_product_attention(q, k, v, mask=causal_mask(T))   # (T, hs), (T, T)
    y.name, weights.name = "y", "weights"
    _name_attention(y)
    return _finish(_dot(y, upstream), backward)


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
    y.name = "out"
    mha.weights.name = "weights"                                        # (B, H, T, T)
    _name_attention(y)
    return _finish(_dot(y, upstream), backward)


@_composed
def layernorm(seed=0, backward=True):
    """Layer norm of x (2, 4, 6) over its last axis (per token), scaled and shifted."""
    rng = np.random.default_rng(seed)
    x = _tensor(rng.normal(size=(2, 4, 6)), "x")                        # (B, T, C)
    weight = _tensor(1.0 + 0.1 * rng.normal(size=6), "weight")          # (C,)
    bias = _tensor(0.1 * rng.normal(size=6), "bias")
    upstream = _tensor(rng.normal(size=(2, 4, 6)), "upstream", requires_grad=False)
    y = F.layer_norm(x, weight, bias)
    y.name = "y"
    # y = xhat * weight + bias,  xhat = (x - mu) * rstd,  rstd = (var + eps)^-1/2
    scaled = y.parents[0]
    _name(scaled, "xhat*weight")
    xhat = scaled.parents[0]
    _name(xhat, "xhat")
    xc, rstd = xhat.parents
    _name(xc, "x - mu")
    _name(xc.parents[1], "mu")
    _name(rstd, "rstd")
    _name(rstd.parents[0], "var + eps")
    _name(rstd.parents[0].parents[0], "var")
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
    y.name = "out"
    block.attn.weights.name = "weights"
    _name_attention(y)
    return _finish(_dot(y, upstream), backward)


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
    logits.name = "logits"
    for block in model.h:
        block.attn.weights.name = "weights"
    _name_attention(loss)
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

# presets too big to read flat: drawn with scopes collapsed to this depth by default
DEFAULT_COLLAPSE = {"gpt": 2}


def describe(name):
    """The first line of a preset's docstring (for listings)."""
    return (PRESETS[name].__doc__ or "").strip().splitlines()[0]


def build(name, seed=0, backward=True):
    """Build preset `name`; returns its scalar loss (with gradients when backward=True)."""
    if name not in PRESETS:
        raise ValueError(f"unknown example {name!r}; valid names: {', '.join(PRESETS)}")
    return PRESETS[name](seed=seed, backward=backward)


__all__ = ["PRESETS", "DEFAULT_COLLAPSE", "build", "describe"]
