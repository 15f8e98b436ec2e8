"""Run one computation through tinygrad_tx and through torch and compare what comes out: the
value, the dtype, the shape and every float input's gradient (backward of (out * R).sum() with
one fixed random R for both), or check that both refuse. Used by the edge-case and property
tests. Import it after `pytest.importorskip("torch")`."""
import numpy as np
import torch

from tinygrad_tx import Tensor, fused_ops

# forward / gradient tolerance (atol = rtol) by the output's dtype
TOL = {"float64": (1e-9, 1e-8), "float32": (1e-5, 1e-4), "float16": (1e-2, 1e-2)}
REFUSALS = (ValueError, TypeError, IndexError, RuntimeError, NotImplementedError)


def dtype_name(t):
    """'float32', 'int64', 'bool' for a torch tensor or a numpy dtype."""
    return str(t.dtype).replace("torch.", "") if isinstance(t, torch.Tensor) else np.dtype(t).name


def compare(our_fn, torch_fn, arrays, fused=False, grad=True, seed=0):
    """Assert that our_fn(*Tensors) and torch_fn(*torch tensors) agree on the same arrays, or
    that both raise. Returns "refused" when both refuse, else "same"."""
    arrays = [np.asarray(a) for a in arrays]
    wants_grad = [grad and a.dtype.kind == "f" for a in arrays]
    ours = [Tensor(a.copy(), requires_grad=g, dtype=a.dtype) for a, g in zip(arrays, wants_grad)]
    theirs = [torch.from_numpy(a.copy()).requires_grad_(g) for a, g in zip(arrays, wants_grad)]
    try:
        expected, torch_error = torch_fn(*theirs), None
    except REFUSALS as e:
        torch_error = e
    try:
        with fused_ops(fused):
            out, our_error = our_fn(*ours), None
    except REFUSALS as e:
        our_error = e
    if torch_error is not None:
        assert our_error is not None, f"torch refuses ({type(torch_error).__name__}: {torch_error}) but we return {out!r}"
        return "refused"
    assert our_error is None, f"we refuse ({type(our_error).__name__}: {our_error}) but torch returns {expected}"
    assert isinstance(out, Tensor), f"expected a Tensor, got {type(out).__name__}"
    assert out.dtype.name == dtype_name(expected), f"dtype {out.dtype} vs torch {expected.dtype}"
    assert out.shape == tuple(expected.shape), f"shape {out.shape} vs torch {tuple(expected.shape)}"
    fwd_tol, grad_tol = TOL.get(out.dtype.name, (0, 0))
    np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), atol=fwd_tol, rtol=fwd_tol,
                               equal_nan=True, err_msg="forward")
    if not (out.requires_grad and expected.requires_grad):
        assert out.requires_grad == expected.requires_grad, "requires_grad differs from torch"
        return "same"
    R = np.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)
    (out * Tensor(R)).sum().backward()
    (expected * torch.from_numpy(R)).sum().backward()
    for i, (t, tt) in enumerate(zip(ours, theirs)):
        if not t.requires_grad:
            continue
        got = np.zeros(t.shape, t.dtype) if t.grad is None else np.asarray(t.grad)
        want = np.zeros(t.shape, t.dtype) if tt.grad is None else tt.grad.numpy()
        tol = max(grad_tol, TOL[t.dtype.name][1])
        np.testing.assert_allclose(got, want, atol=tol, rtol=tol, equal_nan=True, err_msg=f"gradient of input {i}")
    return "same"
