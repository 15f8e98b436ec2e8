"""Attention and masks against plain-numpy references, float64.

Shapes: B batch, H heads, T (Tq, Tk) time, C = n_embd, hs = C // H head size.
Mask convention: True = blocked."""
import math

import numpy as np
import pytest

import tinygrad_tx
from tinygrad_tx import Tensor
from tinygrad_tx.ops import MaskedFill
from transformer import (MultiHeadAttention, causal_mask, combine_masks, padding_mask,
                         scaled_dot_product_attention)


@pytest.fixture(autouse=True)
def _float64():
    tinygrad_tx.set_default_dtype("float64")      # conftest restores the default afterwards


def np_attention(q, k, v, mask=None):
    """softmax(q k^T / sqrt(hs)) v in plain numpy; a fully blocked row gets weight 0."""
    scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])        # (.., Tq, Tk)
    if mask is not None:
        scores = np.where(mask, -np.inf, scores)
    m = scores.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(scores - m)
    s = e.sum(axis=-1, keepdims=True)
    w = np.divide(e, s, out=np.zeros_like(e), where=s > 0)
    return w @ v, w


def qkv(rng, shape_q, shape_kv):
    """Leaf float64 tensors q (.., Tq, hs), k, v (.., Tk, hs) that require grad."""
    q = Tensor(rng.standard_normal(shape_q), requires_grad=True)
    k = Tensor(rng.standard_normal(shape_kv), requires_grad=True)
    v = Tensor(rng.standard_normal(shape_kv), requires_grad=True)
    return q, k, v


def graph_nodes(root):
    """Every tensor in root's graph (iterative walk over .parents)."""
    seen, stack, out = set(), [root], []
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        out.append(t)
        stack.extend(t.parents)
    return out


# ---------------------------------------------------------------- scaled dot-product attention

@pytest.mark.parametrize("masked", [False, True])
def test_sdpa_matches_numpy(rng, masked):
    q, k, v = qkv(rng, (2, 3, 5, 4), (2, 3, 6, 4))                       # (B, H, T, hs)
    mask = rng.random((2, 1, 5, 6)) < 0.4 if masked else None
    if masked:
        mask[..., 0] = False                                            # no fully blocked row here
    out, w = scaled_dot_product_attention(q, k, v, mask)
    ref_out, ref_w = np_attention(q.data, k.data, v.data, mask)
    np.testing.assert_allclose(out.numpy(), ref_out, atol=1e-12, rtol=0)
    np.testing.assert_allclose(w.numpy(), ref_w, atol=1e-12, rtol=0)
    np.testing.assert_allclose(w.numpy().sum(-1), 1.0, atol=1e-12)
    if masked:
        assert (w.numpy()[np.broadcast_to(mask, w.shape)] == 0.0).all()   # exactly zero, not small


def test_masked_scores_get_exactly_zero_gradient(rng):
    q, k, v = qkv(rng, (2, 4, 3), (2, 5, 3))
    mask = np.zeros((2, 1, 5), dtype=bool)
    mask[0, :, 3:] = True                  # keys 3, 4 of batch 0 blocked for every query (padding)
    mask[1, :, 1] = True
    out, _ = scaled_dot_product_attention(q, k, v, mask)
    R = rng.standard_normal(out.shape)
    (out * Tensor(R)).sum().backward()

    # the scores tensor, found in the graph as the input of the -inf fill
    fills = [t for t in graph_nodes(out) if isinstance(t.op, MaskedFill)]
    assert len(fills) == 1
    scores = fills[0].parents[0]                                        # (B, Tq, Tk) before the fill
    assert scores.grad is not None
    blocked = np.broadcast_to(mask, scores.shape)
    assert (scores.grad[blocked] == 0.0).all()
    assert (scores.grad[~blocked] != 0.0).any()
    # a key blocked for every query receives exactly zero gradient, and so does its value
    for b, j in [(0, 3), (0, 4), (1, 1)]:
        assert (k.grad[b, j] == 0.0).all() and (v.grad[b, j] == 0.0).all()
    assert (k.grad[0, :3] != 0.0).any() and (v.grad[1, 0] != 0.0).any()


def test_fully_masked_row_gives_zeros_not_nan(rng):
    q, k, v = qkv(rng, (1, 2, 4, 3), (1, 2, 4, 3))
    mask = np.zeros((1, 1, 4, 4), dtype=bool)
    mask[..., 2, :] = True                                               # query 2 sees nothing
    mask[..., 0, 3] = True
    out, w = scaled_dot_product_attention(q, k, v, mask)
    assert np.isfinite(out.numpy()).all() and np.isfinite(w.numpy()).all()
    assert (out.numpy()[..., 2, :] == 0.0).all() and (w.numpy()[..., 2, :] == 0.0).all()
    ref_out, ref_w = np_attention(q.data, k.data, v.data, mask)
    np.testing.assert_allclose(out.numpy(), ref_out, atol=1e-12, rtol=0)
    np.testing.assert_allclose(w.numpy(), ref_w, atol=1e-12, rtol=0)
    (out * Tensor(rng.standard_normal(out.shape))).sum().backward()
    for t in (q, k, v):
        assert np.isfinite(t.grad).all()
    assert (q.grad[..., 2, :] == 0.0).all()                              # the dead query learns nothing


# ---------------------------------------------------------------- masks

def test_causal_mask():
    m = causal_mask(4)
    assert m.shape == (4, 4) and m.dtype == bool
    np.testing.assert_array_equal(m, np.triu(np.ones((4, 4), dtype=bool), k=1))
    # with a cache of 3 past keys: 2 new queries at absolute positions 3, 4 see keys 0..3, 0..4
    m = causal_mask(2, offset=3)
    assert m.shape == (2, 5)
    np.testing.assert_array_equal(m, [[0, 0, 0, 0, 1], [0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(causal_mask(1, offset=6), np.zeros((1, 7), dtype=bool))
    # the last rows of the full mask are the offset mask
    np.testing.assert_array_equal(causal_mask(6)[4:], causal_mask(2, offset=4))


def test_padding_mask_from_lengths_and_ids():
    m = padding_mask(lengths=[2, 4, 1], T=5)
    assert m.shape == (3, 1, 1, 5) and m.dtype == bool
    np.testing.assert_array_equal(m[:, 0, 0], [[0, 0, 1, 1, 1], [0, 0, 0, 0, 1], [0, 1, 1, 1, 1]])
    assert padding_mask(lengths=[2, 3]).shape == (2, 1, 1, 3)           # T defaults to the max length
    ids = np.array([[5, 6, 0, 0], [7, 0, 8, 0]])
    np.testing.assert_array_equal(padding_mask(ids=ids, pad_id=0)[:, 0, 0], ids == 0)
    np.testing.assert_array_equal(padding_mask(ids=Tensor(ids), pad_id=0), padding_mask(ids=ids, pad_id=0))
    with pytest.raises(ValueError, match="pad_id"):
        padding_mask(ids=ids)
    with pytest.raises(ValueError, match="exceeds"):
        padding_mask(lengths=[6], T=5)
    with pytest.raises(ValueError):
        padding_mask()


def test_combine_masks():
    pad = padding_mask(lengths=[3, 2], T=3)                              # (2, 1, 1, 3)
    m = combine_masks(causal_mask(3), None, pad)
    assert m.shape == (2, 1, 3, 3)
    np.testing.assert_array_equal(m[0, 0], causal_mask(3))
    np.testing.assert_array_equal(m[1, 0], [[0, 1, 1], [0, 0, 1], [0, 0, 1]])
    assert combine_masks() is None and combine_masks(None, None) is None
    np.testing.assert_array_equal(combine_masks(pad), pad)


# ---------------------------------------------------------------- multi-head attention

def np_linear(lin, x):
    return x @ lin.weight.data + lin.bias.data


@pytest.mark.parametrize("causal", [False, True])
def test_multihead_equals_separate_heads(rng, causal):
    B, T, C, H = 2, 5, 12, 3
    hs = C // H
    mha = MultiHeadAttention(C, H, causal=causal)
    x = rng.standard_normal((B, T, C))
    pad = padding_mask(lengths=[5, 3], T=T)
    y = mha(Tensor(x), mask=pad).numpy()                                 # (B, T, C)

    q, k, v = np.split(np_linear(mha.c_attn, x), 3, axis=-1)           # (B, T, C) each
    mask = pad[:, 0] | (causal_mask(T) if causal else False)             # (B, T, T)
    heads = []
    for h in range(H):                                                   # head h owns columns h*hs:(h+1)*hs
        cols = slice(h * hs, (h + 1) * hs)
        heads.append(np_attention(q[..., cols], k[..., cols], v[..., cols], mask)[0])   # (B, T, hs)
    ref = np_linear(mha.c_proj, np.concatenate(heads, axis=-1))         # W_O mixes the heads
    np.testing.assert_allclose(y, ref, atol=1e-12, rtol=0)
    assert mha.weights.shape == (B, H, T, T)


def test_cross_attention_queries_from_x_keys_values_from_memory(rng):
    B, T, S, C, H = 2, 3, 5, 8, 2
    mha = MultiHeadAttention(C, H, cross=True)
    x, mem = rng.standard_normal((B, T, C)), rng.standard_normal((B, S, C))
    y = mha(Tensor(x), memory=Tensor(mem)).numpy()
    assert y.shape == (B, T, C) and mha.weights.shape == (B, H, T, S)

    q = np_linear(mha.c_q, x)
    k, v = np.split(np_linear(mha.c_kv, mem), 2, axis=-1)
    heads = [np_attention(q[..., h * 4:(h + 1) * 4], k[..., h * 4:(h + 1) * 4], v[..., h * 4:(h + 1) * 4])[0]
             for h in range(H)]
    np.testing.assert_allclose(y, np_linear(mha.c_proj, np.concatenate(heads, -1)), atol=1e-12, rtol=0)

    mem2 = mem.copy()
    mem2[:, -1] += 1.0
    assert np.abs(mha(Tensor(x), memory=Tensor(mem2)).numpy() - y).max() > 1e-6   # memory matters
    y1 = mha(Tensor(x[:, :1]), memory=Tensor(mem)).numpy()
    assert y1.shape == (B, 1, C)                                        # T follows x, not memory
    np.testing.assert_allclose(y1, y[:, :1], atol=1e-12, rtol=0)        # no causal link between queries
    with pytest.raises(ValueError, match="memory"):
        mha(Tensor(x))


def test_multihead_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="not divisible"):
        MultiHeadAttention(10, 3)
