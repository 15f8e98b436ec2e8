"""The fused self-attention node (tinygrad_tx.ops.fused.SelfAttention, what MultiHeadAttention
uses inside fused_ops()): against the composed path, float64 gradcheck, PyTorch, masks with
fully blocked rows, and the weights it reports for plots."""
import math

import numpy as np
import pytest

from tinygrad_tx import Tensor, fused_ops, gradcheck
from tinygrad_tx.ops import fused
from transformer import MultiHeadAttention
from transformer.masks import causal_mask, padding_mask

B, T, C, H = 2, 5, 12, 3


def mha_run(mha, x, mask, on):
    """forward + backward of mha on x with fused ops on/off: output, weights, every gradient"""
    mha.zero_grad()
    x.grad = None
    with fused_ops(on):
        y = mha(x, mask=mask)
        (y * Tensor(np.linspace(-1, 1, y.size).reshape(y.shape))).sum().backward()
    grads = {n: p.grad.copy() for n, p in mha.named_parameters()}
    return y.numpy(), mha.weights.numpy(), x.grad.copy(), grads


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("padded", [False, True])
def test_fused_self_attention_equals_composed(causal, padded):
    rng = np.random.default_rng(0)
    mha = MultiHeadAttention(C, H, causal=causal)
    for p in mha.parameters():
        p.data = rng.normal(0, 0.5, p.shape)
    x = Tensor(rng.standard_normal((B, T, C)), requires_grad=True, dtype="float64")
    # sequence 1 has 2 padded keys; with causal=False every row still sees a key
    mask = padding_mask(lengths=[T, T - 2], T=T) if padded else None     # (B, 1, 1, T)
    composed, fused_ = mha_run(mha, x, mask, False), mha_run(mha, x, mask, True)
    for a, b in zip(composed[:3], fused_[:3]):
        np.testing.assert_allclose(b, a, atol=1e-12, rtol=1e-12)
    for n in composed[3]:
        np.testing.assert_allclose(fused_[3][n], composed[3][n], atol=1e-12, rtol=1e-12)


def test_fused_self_attention_is_one_node_and_weights_have_no_graph():
    mha = MultiHeadAttention(C, H, causal=True)
    x = Tensor(np.random.default_rng(0).standard_normal((B, T, C)).astype(np.float32), requires_grad=True)
    with fused_ops():
        y = mha(x)
    attn = y.op.parents[0]                                     # c_proj's input
    assert type(attn.op) is fused.SelfAttention
    assert attn.op.parents[0].shape == (B, T, 3 * C)           # straight from c_attn: no split ops
    w = mha.weights.numpy()
    assert mha.weights.op is None and w.shape == (B, H, T, T) and w.dtype == np.float32
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
    assert (w[..., causal_mask(T)] == 0).all()


def rand_mask(rng):
    mask = rng.random((B, H, T, T)) < 0.4
    mask[0, 1, 2] = True                                       # a query with every key blocked
    return mask


def test_gradcheck_self_attention_with_dead_rows():
    rng = np.random.default_rng(1)
    qkv = Tensor(rng.standard_normal((B, T, 3 * C)), requires_grad=True, dtype="float64")
    mask = rand_mask(rng)
    assert gradcheck(lambda t: fused.SelfAttention.apply(t, n_head=H, mask=mask, scale=0.4), [qkv])
    assert gradcheck(lambda t: fused.SelfAttention.apply(t, n_head=H, mask=causal_mask(T), scale=0.4), [qkv])


def test_dead_rows_give_zero_output_and_zero_gradient():
    rng = np.random.default_rng(2)
    qkv = Tensor(rng.standard_normal((B, T, 3 * C)), requires_grad=True, dtype="float64")
    mask = rand_mask(rng)
    w = np.empty((B, H, T, T))
    y = fused.SelfAttention.apply(qkv, n_head=H, mask=mask, scale=0.4, weights=w)
    (y * y).sum().backward()
    hs = C // H
    assert np.isfinite(y.numpy()).all() and np.isfinite(qkv.grad).all()
    assert (w[0, 1, 2] == 0).all() and (w[mask] == 0).all()
    assert (y.numpy()[0, 2, hs:2 * hs] == 0).all()             # head 1 of query 2 in sequence 0
    assert (qkv.grad[0, 2, hs:2 * hs] == 0).all()              # ... and its q gets no gradient


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 2e-5)])
def test_self_attention_matches_torch(dtype, tol):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    qkv_np, g_np = rng.standard_normal((B, T, 3 * C)), rng.standard_normal((B, T, C))
    mask = causal_mask(T) | padding_mask(lengths=[T, T - 1], T=T)          # (B, 1, T, T)
    qkv = Tensor(qkv_np, requires_grad=True, dtype=dtype)
    y = fused.SelfAttention.apply(qkv, n_head=H, mask=mask, scale=1 / math.sqrt(C // H))
    y.backward(g_np.astype(dtype))

    tdt = getattr(torch, dtype)
    tq = torch.tensor(qkv_np, dtype=tdt, requires_grad=True)
    q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in tq.split(C, dim=2))
    att = (q @ k.transpose(-1, -2)) / math.sqrt(C // H)
    att = torch.softmax(att.masked_fill(torch.from_numpy(mask), float("-inf")), dim=-1)
    ty = (att @ v).transpose(1, 2).reshape(B, T, C)
    ty.backward(torch.tensor(g_np, dtype=tdt))
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), atol=tol, rtol=tol)
    np.testing.assert_allclose(qkv.grad, tq.grad.numpy(), atol=tol, rtol=tol)
