"""Property tests (hypothesis): broadcasting elementwise ops and batched matmul on random shapes.

The expected gradients are computed in numpy without the engine's unbroadcast: a broadcast
input element is copied to every output position whose index maps onto it, so its gradient is
the sum of the full-size gradient over those positions. `sum_to` finds them with bincount."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

from tinygrad_tx import Tensor

SETTINGS = settings(max_examples=50, deadline=None)
RTOL = 1e-12


def sum_to(full, shape):
    """Sum a gradient of the broadcast shape back onto `shape` (each input element receives
    the sum over the output positions that copied it)."""
    n = math.prod(shape)
    owner = np.broadcast_to(np.arange(n).reshape(shape), full.shape)    # input index per output
    return np.bincount(owner.ravel(), weights=full.ravel(), minlength=n).reshape(shape)


def _arrays(seed, *shapes):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in shapes]


def _away_from_zero(seed, shape):
    rng = np.random.default_rng(seed + 1)
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.5, 2.0, size=shape)


# d out / d a and d out / d b, each times g, at full (broadcast) size
ELEMENTWISE = {
    "add": (lambda a, b: a + b, lambda g, a, b: (g, g)),
    "sub": (lambda a, b: a - b, lambda g, a, b: (g, -g)),
    "mul": (lambda a, b: a * b, lambda g, a, b: (g * b, g * a)),
    "div": (lambda a, b: a / b, lambda g, a, b: (g / b, -g * a / b ** 2)),
}


@pytest.mark.parametrize("opname", list(ELEMENTWISE))
@SETTINGS
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4),
       seed=st.integers(0, 2 ** 16))
def test_broadcast_elementwise(opname, shapes, seed):
    fn, local_grads = ELEMENTWISE[opname]
    (sa, sb), out_shape = shapes
    a_np, g = _arrays(seed, sa, out_shape)
    b_np = _away_from_zero(seed, sb)
    a, b = Tensor(a_np, requires_grad=True), Tensor(b_np, requires_grad=True)

    y = fn(a, b)
    assert y.shape == out_shape and y.dtype == np.float64
    np.testing.assert_allclose(y.numpy(), fn(a_np, b_np), rtol=1e-15, atol=0)

    y.backward(grad=g)
    ga_full, gb_full = local_grads(g, np.broadcast_to(a_np, out_shape), np.broadcast_to(b_np, out_shape))
    assert a.grad.shape == sa and b.grad.shape == sb
    assert a.grad.dtype == np.float64 and b.grad.dtype == np.float64
    np.testing.assert_allclose(a.grad, sum_to(ga_full, sa), rtol=RTOL, atol=1e-13)
    np.testing.assert_allclose(b.grad, sum_to(gb_full, sb), rtol=RTOL, atol=1e-13)


def _check_matmul(sa, sb, seed):
    """A (.., M, K) or (K,), B (.., K, N) or (K,): forward is numpy's @, and
    dL/dA = g @ B^T, dL/dB = A^T @ g computed on the broadcast batch, then summed to each shape."""
    a_np, b_np = _arrays(seed, sa, sb)
    expected = a_np @ b_np
    g = np.random.default_rng(seed + 7).standard_normal(expected.shape)
    a, b = Tensor(a_np, requires_grad=True), Tensor(b_np, requires_grad=True)

    y = a @ b
    assert y.shape == expected.shape
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-13, atol=1e-13)
    y.backward(grad=g)

    # numpy's rules for vectors: A (K,) is a (1, K) row, B (K,) a (K, 1) column, and the
    # inserted axis is dropped from the result; put it back in g.
    a2 = a_np[None, :] if a_np.ndim == 1 else a_np
    b2 = b_np[:, None] if b_np.ndim == 1 else b_np
    g2 = g
    if b_np.ndim == 1:
        g2 = g2[..., None]
    if a_np.ndim == 1:
        g2 = g2[..., None, :]
    batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    a_full = np.broadcast_to(a2, batch + a2.shape[-2:])                 # (.., M, K)
    b_full = np.broadcast_to(b2, batch + b2.shape[-2:])                 # (.., K, N)
    ga = sum_to(g2 @ b_full.swapaxes(-1, -2), a2.shape).reshape(sa)     # g @ B^T
    gb = sum_to(a_full.swapaxes(-1, -2) @ g2, b2.shape).reshape(sb)     # A^T @ g
    assert a.grad.shape == sa and b.grad.shape == sb
    np.testing.assert_allclose(a.grad, ga, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(b.grad, gb, rtol=1e-11, atol=1e-12)


@SETTINGS
@given(batch=mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3),
       mkn=st.tuples(*[st.integers(1, 4)] * 3), seed=st.integers(0, 2 ** 16))
def test_batched_matmul(batch, mkn, seed):
    (ba, bb), _ = batch
    M, K, N = mkn
    _check_matmul(ba + (M, K), bb + (K, N), seed)


@SETTINGS
@given(shapes=mutually_broadcastable_shapes(signature=np.matmul.signature, max_dims=2, max_side=4),
       seed=st.integers(0, 2 ** 16))
def test_matmul_numpy_signature_including_vectors(shapes, seed):
    (sa, sb), _ = shapes
    _check_matmul(sa, sb, seed)
