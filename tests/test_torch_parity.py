"""Parity with PyTorch, in the style of tinygrad's test/test_ops.py: the same seeded data goes
through our op and through torch; the forward output and every input's gradient (backward of
(out * R).sum() with one fixed random R for both) are compared with separate tolerances.

Semantics mapped here: our `axis=` is torch's `dim=`; our `max(axis)` is `torch.amax` (ties
split evenly); our `var` is biased (`correction=0`); our `transpose(*axes)` is `permute`."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as TF  # noqa: E402

from tinygrad_tx import Tensor, backend, fused_ops  # noqa: E402
from conftest import DEVICES  # noqa: E402
from tinygrad_tx.selfcheck import CASES, make_inputs, _ids, _mask  # noqa: E402  (the cases' own index/mask data)

# forward and gradient tolerances (atol = rtol) per dtype
TOL = {"float64": (1e-10, 1e-10), "float32": (1e-5, 1e-4)}


def helper_test_op(shapes, our_fn, torch_fn, atol=None, grad_atol=None, dtype="float64", vals=None, seed=0):
    """Run seeded inputs through `our_fn` (tinygrad_tx tensors) and `torch_fn` (torch tensors);
    assert forward outputs and all input gradients agree. `shapes` are make_inputs specs
    ((shape, kind) pairs, or bare shapes meaning kind "n"); `vals` gives explicit arrays instead.
    Returns (forward max abs err, gradient max abs err) for reporting."""
    fwd_tol, grad_tol = TOL[dtype]
    atol = fwd_tol if atol is None else atol
    grad_atol = grad_tol if grad_atol is None else grad_atol
    if vals is None:
        specs = [s if len(s) == 2 and isinstance(s[1], str) else (s, "n") for s in shapes]
        ours = make_inputs(specs, seed=seed, dtype=dtype)
    else:
        ours = [Tensor(np.asarray(v, dtype=dtype), requires_grad=True, dtype=dtype) for v in vals]
    # torch gets a copy with the same memory layout (a transposed view stays non-contiguous)
    theirs = [torch.from_numpy(np.array(t.data, order="K", copy=True)).requires_grad_() for t in ours]

    out, tout = our_fn(*ours), torch_fn(*theirs)
    assert out.dtype == np.dtype(dtype), f"our output is {out.dtype}, expected {dtype}"
    assert out.shape == tuple(tout.shape), f"shape {out.shape} vs torch {tuple(tout.shape)}"
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), atol=atol, rtol=atol, err_msg="forward")

    R = np.random.default_rng(seed + 100).standard_normal(out.shape).astype(dtype)
    (out * Tensor(R)).sum().backward()
    (tout * torch.from_numpy(R)).sum().backward()
    fwd_err = float(np.abs(out.numpy() - tout.detach().numpy()).max(initial=0.0))
    grad_err = 0.0
    for i, (t, tt) in enumerate(zip(ours, theirs)):
        ours_g = t.grad if t.grad is not None else np.zeros(t.shape, dtype)
        theirs_g = tt.grad.numpy() if tt.grad is not None else np.zeros(t.shape, dtype)
        assert ours_g.shape == theirs_g.shape and ours_g.dtype == np.dtype(dtype), f"grad {i}"
        np.testing.assert_allclose(ours_g, theirs_g, atol=grad_atol, rtol=grad_atol, err_msg=f"gradient of input {i}")
        grad_err = max(grad_err, float(np.abs(ours_g - theirs_g).max(initial=0.0)))
    return fwd_err, grad_err


def _t(arr):
    """A numpy constant (mask, ids) as a torch tensor."""
    return torch.from_numpy(np.asarray(arr))


def _torch_dropout(x):
    # the same mask as selfcheck._dropout: generator seed 7, p = 0.3, kept values scaled 1/(1-p)
    keep = backend.rng_for_seed(7).random(tuple(x.shape)) >= 0.3
    return x * _t(keep / 0.7).to(x.dtype)


def _torch_split(a):
    return torch.split(a, 2, dim=1)[1] * torch.split(a, [1, 4], dim=1)[1][:, :2]


def _torch_masked_softmax(a):
    mask = _mask((3, 5)) & (np.arange(5) > 0)
    return a.masked_fill(_t(mask), float("-inf")).softmax(-1)


# CASES name -> the same computation in torch (inputs and constants as in selfcheck.CASES)
TORCH = {
    "add":                  lambda a, b: a + b,
    "add_broadcast":        lambda a, b: a + b,
    "add_scalar":           lambda a: 2.5 + a,
    "sub":                  lambda a, b: a - b,
    "rsub_scalar":          lambda a: 1.0 - a,
    "mul":                  lambda a, b: a * b,
    "mul_broadcast":        lambda a, b: a * b,
    "mul_reuse":            lambda a: a * a,
    "div":                  lambda a, b: a / b,
    "div_broadcast":        lambda a, b: a / b,
    "rdiv_scalar":          lambda a: 2.0 / a,
    "neg":                  lambda a: -a,
    "pow_2":                lambda a: a ** 2,
    "pow_3":                lambda a: a ** 3,
    "pow_neg_half":         lambda a: a ** -0.5,
    "rpow":                 lambda a: 2.0 ** a,
    "exp":                  torch.exp,
    "log":                  torch.log,
    "sqrt":                 torch.sqrt,
    "tanh":                 torch.tanh,
    "sigmoid":              torch.sigmoid,
    "relu":                 torch.relu,
    "erf":                  torch.erf,
    "gelu":                 TF.gelu,
    "gelu_tanh":            lambda a: TF.gelu(a, approximate="tanh"),
    "sum_all":              lambda a: a.sum(),
    "sum_axis":             lambda a: a.sum(dim=1),
    "sum_neg_axis_keep":    lambda a: a.sum(dim=-1, keepdim=True),
    "sum_tuple_axes":       lambda a: a.sum(dim=(0, 2)),
    "mean":                 lambda a: a.mean(dim=-1),
    "max_axis":             lambda a: torch.amax(a, dim=1),
    "max_all_keep":         lambda a: torch.amax(a, dim=(0, 1), keepdim=True),
    "var":                  lambda a: torch.var(a, dim=-1, correction=0),
    "softmax":              lambda a: torch.softmax(a, dim=-1),
    "softmax_axis0":        lambda a: torch.softmax(a, dim=0),
    "log_softmax":          lambda a: torch.log_softmax(a, dim=-1),
    "matmul_2d":            torch.matmul,
    "matmul_batched":       torch.matmul,
    "matmul_transposed":    torch.matmul,
    "matmul_vector":        torch.matmul,
    "matvec":               torch.matmul,
    "reshape":              lambda a: a.reshape(4, -1),
    "reshape_view":         lambda a: a.reshape(-1),
    "transpose":            lambda a: a.permute(2, 0, 1),
    "swapaxes":             lambda a: a.transpose(-1, -2),
    "T":                    lambda a: a.permute(1, 0),
    "getitem_slice":        lambda a: a[1:, ::2],
    "getitem_int_none":     lambda a: a[1, None, :, -1],
    "getitem_repeated":     lambda a: a[_t(_ids((2, 6), 4))],
    "masked_fill":          lambda a: a.masked_fill(_t(_mask((1, 5))), 0.5),
    "masked_softmax":       _torch_masked_softmax,
    "where":                lambda a, b: torch.where(_t(_mask((3, 4))), a, b),
    "concat":               lambda a, b: torch.cat([a, b], dim=-1),
    "stack":                lambda a, b: torch.stack([a, b], dim=1),
    "split":                _torch_split,
    "cross_entropy":        lambda a: TF.cross_entropy(a.reshape(-1, 5), _t(_ids((2, 3), 5)).reshape(-1)),
    "cross_entropy_ignore": lambda a: TF.cross_entropy(a, _t([0, -1, 4, 2]), ignore_index=-1),
    "layer_norm":           lambda x, w, b: TF.layer_norm(x, (6,), w, b, eps=1e-5),
    "embedding":            lambda w: TF.embedding(_t(_ids((2, 5), 4)), w),
    "dropout":              _torch_dropout,
    "to_device":            lambda a: a.to("cpu") * a,
    "linear":               lambda x, w, b: x @ w + b,
}


def test_every_case_has_a_torch_counterpart():
    assert set(TORCH) == set(CASES)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fused", [False, True], ids=["composed", "fused"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CASES))
def test_case_parity(name, dtype, fused, device):
    """Both implementations (composed from primitives, and tinygrad_tx.fused_ops()) match torch,
    on every available device (inputs are moved there; gradients flow back through .to())."""
    _, our_fn, specs = CASES[name]
    fn = our_fn if device == "cpu" else lambda *xs: our_fn(*(x.to(device) for x in xs)).to("cpu")
    with fused_ops(fused):
        helper_test_op(specs, fn, TORCH[name], dtype=dtype)


# ----------------------------------------------------------------------------- ties and stability
TIES = [[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [-1.0, 5.0, -1.0, 5.0]]    # (3, 4) with tied maxima


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_max_ties_split_evenly(dtype):
    helper_test_op(None, lambda a: a.max(axis=1), lambda a: torch.amax(a, dim=1), dtype=dtype, vals=[TIES])
    helper_test_op(None, lambda a: a.max(axis=0, keepdims=True), lambda a: torch.amax(a, dim=0, keepdim=True), dtype=dtype, vals=[TIES])
    helper_test_op(None, lambda a: a.max(), lambda a: torch.amax(a), dtype=dtype, vals=[TIES])
    helper_test_op(None, lambda a: a.max(axis=(0, 1)), lambda a: torch.amax(a, dim=(0, 1)), dtype=dtype, vals=[[[2.0, 2.0], [1.0, 2.0]]])


def test_max_ties_gradient_sums_to_upstream():
    x = Tensor(np.array(TIES), requires_grad=True, dtype="float64")
    x.max(axis=1).sum().backward()
    np.testing.assert_allclose(x.grad.sum(axis=1), 1.0)
    np.testing.assert_allclose(x.grad[1], 0.25)


BIG = [[1000.0, -1000.0, 999.0, 0.0], [-1000.0, -1000.0, -999.5, -1000.0], [1000.0, 1000.0, 1000.0, 1000.0]]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_stable_on_large_inputs(dtype, axis):
    x = Tensor(np.array(BIG, dtype=dtype), dtype=dtype)
    assert np.isfinite(x.softmax(axis=axis).numpy()).all()
    assert np.isfinite(x.log_softmax(axis=axis).numpy()).all()
    helper_test_op(None, lambda a: a.softmax(axis=axis), lambda a: torch.softmax(a, dim=axis), dtype=dtype, vals=[BIG])
    helper_test_op(None, lambda a: a.log_softmax(axis=axis), lambda a: torch.log_softmax(a, dim=axis), dtype=dtype, vals=[BIG])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cross_entropy_stable_on_large_logits(dtype):
    from tinygrad_tx import functional as F
    y = np.array([1, 0, 3])
    helper_test_op(None, lambda a: F.cross_entropy(a, y), lambda a: TF.cross_entropy(a, _t(y)), dtype=dtype, vals=[BIG])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sigmoid_stable_on_large_inputs(dtype):
    helper_test_op(None, lambda a: a.sigmoid(), torch.sigmoid, dtype=dtype, vals=[[-1000.0, -50.0, 0.0, 50.0, 1000.0]])


# ----------------------------------------------------------------------------- dropout mask from the output
def test_dropout_parity_with_mask_read_from_output():
    """Independent of how the mask is drawn: read the kept positions from our output's zero
    pattern (inputs are nonzero) and give torch that mask."""
    from tinygrad_tx import functional as F
    x = np.random.default_rng(0).uniform(0.5, 2.0, (6, 7))
    gen = np.random.default_rng(11)
    out = F.dropout(Tensor(x, dtype="float64"), 0.4, training=True, generator=gen).numpy()
    keep = out != 0
    assert 0 < keep.sum() < keep.size
    helper_test_op(None, lambda a: F.dropout(a, 0.4, training=True, generator=np.random.default_rng(11)),
                   lambda a: a * _t(keep).to(a.dtype) / 0.6, vals=[x])
