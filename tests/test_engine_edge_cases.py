"""Edge cases of the engine (issue 13), each compared with torch: 0-d and size-0 inputs for
every op (composed and fused), pow at 0 and with negative bases, axes on 0-d tensors, axis
errors, torch's dtype promotion, numpy operands on the left, conversions to Python scalars,
gradcheck on NaN, and the fused paths validating exactly as the composed ones."""
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as TF  # noqa: E402

from tinygrad_tx import (Tensor, GradcheckError, backend, concat, fused_ops, gradcheck,  # noqa: E402
                         stack, where)
from tinygrad_tx import functional as F  # noqa: E402
from tinygrad_tx.autograd import Function  # noqa: E402
from tinygrad_tx.ops.reduce import AxisError  # noqa: E402
from torch_compare import compare  # noqa: E402


def normal(shape, dtype="float32", seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def positive(shape, dtype="float32", seed=0):
    return np.random.default_rng(seed).uniform(0.5, 2.0, shape).astype(dtype)


def mask_like(shape, seed=1):
    return np.asarray(np.random.default_rng(seed).random(shape) < 0.5)


# ----------------------------------------------------------------------------- 0-d and size-0
# name: (ours, torch, input maker); each input maker takes the shape
UNARY = {
    "neg":         (lambda a: -a, lambda a: -a, normal),
    "exp":         (lambda a: a.exp(), torch.exp, normal),
    "log":         (lambda a: a.log(), torch.log, positive),
    "sqrt":        (lambda a: a.sqrt(), torch.sqrt, positive),
    "tanh":        (lambda a: a.tanh(), torch.tanh, normal),
    "sigmoid":     (lambda a: a.sigmoid(), torch.sigmoid, normal),
    "relu":        (lambda a: a.relu(), torch.relu, normal),
    "erf":         (lambda a: a.erf(), torch.erf, normal),
    "gelu":        (lambda a: a.gelu(), TF.gelu, normal),
    "gelu_tanh":   (lambda a: a.gelu("tanh"), lambda a: TF.gelu(a, approximate="tanh"), normal),
    "pow_0":       (lambda a: a ** 0, lambda a: a ** 0, normal),
    "pow_2":       (lambda a: a ** 2, lambda a: a ** 2, normal),
    "pow_3":       (lambda a: a ** 3, lambda a: a ** 3, normal),
    "pow_half":    (lambda a: a ** 0.5, lambda a: a ** 0.5, positive),
    "pow_neg1":    (lambda a: a ** -1, lambda a: a ** -1, positive),
    "rpow_2":      (lambda a: 2.0 ** a, lambda a: 2.0 ** a, normal),
    "add_scalar":  (lambda a: a + 1.5, lambda a: a + 1.5, normal),
    "rsub_scalar": (lambda a: 1.5 - a, lambda a: 1.5 - a, normal),
    "rdiv_scalar": (lambda a: 2.0 / a, lambda a: 2.0 / a, positive),
    "sum":         (lambda a: a.sum(), torch.sum, normal),
    "sum_0":       (lambda a: a.sum(axis=0), lambda a: a.sum(dim=0), normal),
    "sum_-1_keep": (lambda a: a.sum(axis=-1, keepdims=True), lambda a: a.sum(dim=-1, keepdim=True), normal),
    "mean":        (lambda a: a.mean(), torch.mean, normal),
    "mean_-1":     (lambda a: a.mean(axis=-1), lambda a: a.mean(dim=-1), normal),
    "max":         (lambda a: a.max(), torch.amax, normal),
    "max_-1":      (lambda a: a.max(axis=-1), lambda a: a.amax(dim=-1), normal),
    "max_0_keep":  (lambda a: a.max(axis=0, keepdims=True), lambda a: a.amax(dim=0, keepdim=True), normal),
    "var_-1":      (lambda a: a.var(axis=-1), lambda a: a.var(dim=-1, correction=0), normal),
    "softmax":     (lambda a: a.softmax(axis=-1), lambda a: a.softmax(dim=-1), normal),
    "softmax_0":   (lambda a: a.softmax(axis=0), lambda a: a.softmax(dim=0), normal),
    "log_softmax": (lambda a: a.log_softmax(axis=-1), lambda a: a.log_softmax(dim=-1), normal),
    "reshape":     (lambda a: a.reshape(-1), lambda a: a.reshape(-1), normal),
    "T":           (lambda a: a.transpose(), lambda a: a.permute(tuple(reversed(range(a.ndim)))), normal),
    "swapaxes":    (lambda a: a.swapaxes(0, -1), lambda a: a.transpose(0, -1), normal),
    "getitem_ell": (lambda a: a[...], lambda a: a[...], normal),
    "getitem_none": (lambda a: a[None], lambda a: a[None], normal),
    "masked_fill": (lambda a: a.masked_fill(mask_like(a.shape), -1.0),
                    lambda a: a.masked_fill(torch.from_numpy(mask_like(a.shape)), -1.0), normal),
    "where":       (lambda a: where(mask_like(a.shape), a, 0.5),
                    lambda a: torch.where(torch.from_numpy(mask_like(a.shape)), a, 0.5), normal),
    "stack":       (lambda a: stack([a, a * 2.0]), lambda a: torch.stack([a, a * 2.0]), normal),
    "add_self":    (lambda a: a + a, lambda a: a + a, normal),
    "mul_bcast":   (lambda a: a * Tensor(np.float32(3)), lambda a: a * torch.tensor(3.0), normal),
}
EMPTY_SHAPES = [(), (0,), (2, 0), (0, 3), (1,)]


@pytest.mark.filterwarnings("ignore:var... degrees of freedom")     # torch's note on var of nothing
@pytest.mark.parametrize("fused", [False, True], ids=["composed", "fused"])
@pytest.mark.parametrize("shape", EMPTY_SHAPES, ids=str)
@pytest.mark.parametrize("name", list(UNARY))
def test_op_on_0d_and_size0(name, shape, fused):
    ours, theirs, make = UNARY[name]
    with np.errstate(invalid="ignore", divide="ignore"):       # the mean of nothing is NaN, as torch
        compare(ours, theirs, [make(shape)], fused=fused)


# ops of two or more tensors, on empty and 0-d shapes
MULTI = {
    "add_0d_1d":    (lambda a, b: a + b, lambda a, b: a + b, [normal(()), normal((0,))]),
    "mul_0d_0d":    (lambda a, b: a * b, lambda a, b: a * b, [normal(()), normal((), seed=1)]),
    "div_empty":    (lambda a, b: a / b, lambda a, b: a / b, [normal((2, 0)), positive((1, 0))]),
    "matmul_empty_k": (lambda a, b: a @ b, lambda a, b: a @ b, [normal((2, 0)), normal((0, 3))]),
    "matmul_empty_m": (lambda a, b: a @ b, lambda a, b: a @ b, [normal((0, 2)), normal((2, 3))]),
    "matmul_0d":    (lambda a, b: a @ b, lambda a, b: a @ b, [normal(()), normal((2,))]),
    "concat_empty": (lambda a, b: concat([a, b]), lambda a, b: torch.cat([a, b]), [normal((0, 3)), normal((2, 3))]),
    "stack_0d":     (lambda a, b: stack([a, b]), lambda a, b: torch.stack([a, b]), [normal(()), normal(())]),
    "where_0d":     (lambda a, b: where(Tensor(np.array(True)), a, b),
                     lambda a, b: torch.where(torch.tensor(True), a, b), [normal(()), normal(())]),
    "linear_empty_rows": (lambda x, w, b: F.linear(x, w, b), lambda x, w, b: TF.linear(x, w.T, b),
                          [normal((0, 3)), normal((3, 2)), normal((2,))]),
    "linear_in_0":  (lambda x, w, b: F.linear(x, w, b), lambda x, w, b: TF.linear(x, w.T, b),
                     [normal((4, 0)), normal((0, 2)), normal((2,))]),
    "layer_norm_empty_rows": (lambda x, w, b: F.layer_norm(x, w, b), lambda x, w, b: TF.layer_norm(x, (4,), w, b),
                              [normal((0, 4)), normal((4,)), normal((4,))]),
    "layer_norm_0d": (lambda x, w, b: F.layer_norm(x, w, b), lambda x, w, b: TF.layer_norm(x, (), w, b),
                      [normal(()), normal(()), normal(())]),
    "embedding_empty": (lambda w: F.embedding(w, np.zeros((0,), np.int64)),
                        lambda w: TF.embedding(torch.zeros(0, dtype=torch.int64), w), [normal((5, 3))]),
    "embedding_0d": (lambda w: F.embedding(w, np.int64(2)), lambda w: TF.embedding(torch.tensor(2), w), [normal((5, 3))]),
    "attention_T0": (lambda q, k, v: _our_attention(q, k, v), lambda q, k, v: _torch_attention(q, k, v),
                     [normal((1, 0, 4)), normal((1, 0, 4)), normal((1, 0, 4))]),
}


def _our_attention(q, k, v):
    from transformer.attention import scaled_dot_product_attention
    return scaled_dot_product_attention(q, k, v)[0]


def _torch_attention(q, k, v):
    return TF.scaled_dot_product_attention(q, k, v)


@pytest.mark.parametrize("fused", [False, True], ids=["composed", "fused"])
@pytest.mark.parametrize("name", list(MULTI))
def test_multi_input_op_on_0d_and_size0(name, fused):
    ours, theirs, arrays = MULTI[name]
    compare(ours, theirs, arrays, fused=fused)


def test_erf_and_gelu_on_0d_float32_do_not_crash():
    x = Tensor(np.float32(0.5), requires_grad=True)
    assert abs(x.erf().item() - torch.erf(torch.tensor(0.5)).item()) < 1e-6
    with fused_ops():
        y = x.gelu()
    y.backward()
    assert y.shape == () and x.grad.shape == ()


def test_cross_entropy_refuses_an_empty_batch_in_both_paths():
    # torch returns NaN (the mean of nothing); we refuse with a message instead of a silent NaN
    for fused in (False, True):
        with fused_ops(fused), pytest.raises(ValueError, match="cross_entropy"):
            F.cross_entropy(Tensor(normal((0, 5)), requires_grad=True), np.zeros((0,), np.int64))


# ----------------------------------------------------------------------------- pow
POW_POINTS = np.array([0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0], dtype="float64")


@pytest.mark.parametrize("exponent", [0, 1, 2, 3, -1, -2, 0.5, -0.5, 2.5, 0.0])
def test_pow_values_and_gradients_at_zero_and_negatives(exponent):
    with np.errstate(all="ignore"):
        compare(lambda a: a ** exponent, lambda a: a ** exponent, [POW_POINTS])


@pytest.mark.parametrize("base", [0, 0.0, 2, 2.0, 0.5, -2.0, -1, -0.5, 1.0])
def test_scalar_base_to_a_tensor_power(base):
    with np.errstate(all="ignore"):
        compare(lambda a: base ** a, lambda a: base ** a, [POW_POINTS])


@pytest.mark.parametrize("name, ours, theirs, x", [
    ("sqrt_at_0", lambda a: a.sqrt(), torch.sqrt, [0.0, 1.0]),
    ("log_at_0", lambda a: a.log(), torch.log, [0.0, 1.0]),
    ("log_negative", lambda a: a.log(), torch.log, [-1.0, 1.0]),
    ("div_by_0", lambda a: 1.0 / a, lambda a: 1.0 / a, [0.0, -0.0]),
    ("relu_at_0", lambda a: a.relu(), torch.relu, [0.0, -1.0, 1.0]),
    ("max_ties", lambda a: a.max(), torch.amax, [1.0, 1.0, 0.0]),
    ("max_ties_axis", lambda a: a.max(axis=-1), lambda a: a.amax(dim=-1), [[2.0, 2.0, 2.0], [0.0, 1.0, 1.0]]),
])
def test_singular_points_as_torch(name, ours, theirs, x):
    with np.errstate(all="ignore"):
        compare(ours, theirs, [np.array(x)])


def test_max_tie_rule_is_torch_amax_not_max_dim():
    # amax (and torch.max() with no dim) split the gradient evenly among ties; our max does too
    x = Tensor(np.array([3.0, 3.0, 1.0]), requires_grad=True, dtype="float64")
    x.max().backward()
    np.testing.assert_array_equal(x.grad, [0.5, 0.5, 0.0])


def test_int_pow_follows_torch():
    compare(lambda a: a ** 2, lambda a: a ** 2, [np.array([1, 2, 3])])
    compare(lambda a: a ** 2.5, lambda a: a ** 2.5, [np.array([1, 2, 3])])
    compare(lambda a: a ** 2, lambda a: a ** 2, [np.array([True, False])])
    compare(lambda a: 2 ** a, lambda a: 2 ** a, [np.array([0, 1, 3])])
    assert compare(lambda a: a ** -1, lambda a: a ** -1, [np.array([1, 2])]) == "refused"


# ----------------------------------------------------------------------------- axes
@pytest.mark.parametrize("fused", [False, True], ids=["composed", "fused"])
@pytest.mark.parametrize("axis", [0, -1])
@pytest.mark.parametrize("op", ["sum", "mean", "max", "softmax", "log_softmax"])
def test_explicit_axis_on_a_0d_tensor(op, axis, fused):
    torch_name = {"max": "amax"}.get(op, op)
    for keepdims in ((False, True) if op in ("sum", "mean", "max") else (None,)):
        kw, tkw = ({}, {}) if keepdims is None else ({"keepdims": keepdims}, {"keepdim": keepdims})
        compare(lambda a: getattr(a, op)(axis=axis, **kw), lambda a: getattr(a, torch_name)(dim=axis, **tkw),
                [np.array(0.7, dtype="float32")], fused=fused)


@pytest.mark.parametrize("call, op", [
    (lambda t: t.swapaxes(0, 2), "swapaxes"),
    (lambda t: t.swapaxes(-3, 0), "swapaxes"),
    (lambda t: t.mean(axis=2), "mean"),
    (lambda t: t.sum(axis=-3), "Sum"),
    (lambda t: t.max(axis=(0, 2)), "Max"),
    (lambda t: t.softmax(axis=2), "softmax"),
    (lambda t: t.log_softmax(axis=-3), "log_softmax"),
    (lambda t: t.var(axis=5), "mean"),
    (lambda t: t.split(1, axis=2), "split"),
])
def test_out_of_range_axis_names_op_shape_and_axis(call, op):
    t = Tensor(normal((2, 3)))
    with pytest.raises(AxisError, match=re.escape(op) + r".*axis -?\d.*\(2, 3\)|" + re.escape(op) + r".*\(2, 3\)"):
        call(t)
    # torch refuses the same calls
    with pytest.raises(IndexError):
        call(_TorchLike(torch.from_numpy(normal((2, 3)))))
    with pytest.raises(IndexError):        # our AxisError is also an IndexError, as torch's
        call(t)


class _TorchLike:
    """Our method names on a torch tensor, for asserting that torch refuses the same call."""

    def __init__(self, t):
        self.t = t

    def swapaxes(self, a, b): return self.t.transpose(a, b)
    def mean(self, axis): return self.t.mean(dim=axis)
    def sum(self, axis): return self.t.sum(dim=axis)
    def max(self, axis): return self.t.amax(dim=axis)
    def softmax(self, axis): return self.t.softmax(dim=axis)
    def log_softmax(self, axis): return self.t.log_softmax(dim=axis)
    def var(self, axis): return self.t.var(dim=axis)
    def split(self, size, axis): return self.t.split(size, dim=axis)


@pytest.mark.parametrize("call", [
    lambda t: t.mean(axis=(1, -1)), lambda t: t.var(axis=(1, -1)), lambda t: t.sum(axis=(0, 0)),
    lambda t: t.max(axis=(-2, 0)),
])
def test_repeated_axis_is_refused(call):
    t = Tensor(normal((3, 3)))
    with pytest.raises(ValueError, match="appears more than once"):
        call(t)
    with pytest.raises(RuntimeError):
        call(_TorchLike(torch.from_numpy(normal((3, 3)))))


def test_transpose_with_an_out_of_range_axis():
    assert compare(lambda a: a.transpose(0, 5), lambda a: a.permute(0, 5), [normal((2, 3))]) == "refused"


@pytest.mark.parametrize("sizes", [[-1, 4], [4, -1], [1.5, 1.5]])
def test_split_refuses_negative_or_non_int_sizes(sizes):
    with pytest.raises(ValueError, match="split: sizes must be non-negative ints"):
        Tensor(normal((3,))).split(sizes)


def test_split_as_torch():
    x = normal((5, 2))
    for sizes in (2, [0, 5], [2, 3], 5, 7):
        ours = Tensor(x).split(sizes)
        theirs = torch.from_numpy(x).split(sizes)
        assert [p.shape for p in ours] == [tuple(p.shape) for p in theirs]
    assert len(Tensor(normal((0,))).split(2)) == len(torch.zeros(0).split(2)) == 1
    with pytest.raises(ValueError, match="split: needs a tensor with at least 1 dim"):
        Tensor(np.float32(1)).split(1)


# ----------------------------------------------------------------------------- dtype promotion
DTYPES = ["bool", "int32", "int64", "float32", "float64"]


def _arr(dtype, shape, seed=0):
    if dtype == "bool":
        return mask_like(shape, seed)
    if dtype.startswith("int"):
        return np.random.default_rng(seed).integers(1, 5, shape).astype(dtype)
    return positive(shape, dtype, seed)


BINARY = {"add": lambda a, b: a + b, "mul": lambda a, b: a * b, "div": lambda a, b: a / b,
          "sub": lambda a, b: a - b}


@pytest.mark.parametrize("op", list(BINARY))
@pytest.mark.parametrize("db", DTYPES)
@pytest.mark.parametrize("da", DTYPES)
@pytest.mark.parametrize("shapes", [((3,), (3,)), ((3,), ()), ((), (3,)), ((), ())], ids=str)
def test_tensor_tensor_promotion_as_torch(op, da, db, shapes):
    fn = BINARY[op]
    compare(fn, fn, [_arr(da, shapes[0]), _arr(db, shapes[1], seed=1)])


# numpy scalars act as Python numbers of their kind (torch reads np.bool_ as a float: not copied)
SCALARS = [2, 2.5, True, np.float32(2.5), np.float64(2.5), np.int64(3)]


@pytest.mark.parametrize("scalar", SCALARS, ids=repr)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", list(BINARY))
def test_tensor_with_a_scalar_promotes_as_torch(op, dtype, scalar):
    fn = BINARY[op]
    compare(lambda a: fn(a, scalar), lambda a: fn(a, scalar), [_arr(dtype, (3,))])
    compare(lambda a: fn(scalar, a), lambda a: fn(scalar, a), [_arr(dtype, (3,))])


@pytest.mark.parametrize("dtype", ["bool", "int32", "int64"])
@pytest.mark.parametrize("op", ["exp", "log", "sqrt", "tanh", "sigmoid", "erf"])
def test_float_functions_of_ints_give_the_default_float(op, dtype):
    compare(lambda a: getattr(a, op)(), lambda a: getattr(torch, op)(a), [_arr(dtype, (3,))])


def test_default_float_dtype_float64_is_followed(torch):
    backend.set_default_dtype("float64")
    torch_default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        compare(lambda a: a * 2.5, lambda a: a * 2.5, [np.array([1, 2])])
        compare(lambda a: a.exp(), torch.exp, [np.array([1, 2])])
        compare(lambda a: a / a, lambda a: a / a, [np.array([1, 2])])
    finally:
        torch.set_default_dtype(torch_default)


@pytest.mark.parametrize("da, db", [("int64", "float32"), ("float32", "float64"), ("bool", "int32"), ("int32", "int64")])
def test_where_and_concat_promote_as_torch(da, db):
    cond = mask_like((3,))
    compare(lambda a, b: where(cond, a, b), lambda a, b: torch.where(torch.from_numpy(cond), a, b),
            [_arr(da, (3,)), _arr(db, (3,), seed=1)])
    compare(lambda a, b: where(cond, a, 2.5), lambda a, b: torch.where(torch.from_numpy(cond), a, 2.5),
            [_arr(da, (3,)), _arr(db, (3,), seed=1)])
    compare(lambda a, b: concat([a, b]), lambda a, b: torch.cat([a, b]), [_arr(da, (3,)), _arr(db, (2,), seed=1)])
    compare(lambda a, b: stack([a, b]), lambda a, b: torch.stack([a, b]), [_arr(da, (3,)), _arr(db, (3,), seed=1)])


def test_a_float32_graph_stays_float32_with_int_data():
    w = Tensor(normal((3, 2)), requires_grad=True)
    ids = Tensor(np.array([[1, 2, 3]], dtype=np.int32))
    y = ((ids * w.T).sum() + ids.exp().sum() * 0.5 + (ids / 2).sum())
    assert y.dtype == np.float32
    y.backward()
    assert w.grad.dtype == np.float32


def test_int_tensors_cannot_require_grad_and_int_mean_is_refused():
    with pytest.raises(TypeError, match="only float tensors can require grad"):
        Tensor([1, 2], requires_grad=True)
    assert compare(lambda a: a.mean(), torch.mean, [np.array([1, 2])]) == "refused"
    assert compare(lambda a: a.softmax(axis=-1), lambda a: a.softmax(-1), [np.array([1, 2])]) == "refused"
    assert compare(lambda a: -a, lambda a: -a, [np.array([True])]) == "refused"
    assert compare(lambda a: a - a, lambda a: a - a, [np.array([True])]) == "refused"


# ----------------------------------------------------------------------------- numpy on the left
LEFT = {
    "np_float32_mul": (lambda t: np.float32(2) * t, lambda t: 2.0 * t),
    "np_float64_add": (lambda t: np.float64(2) + t, lambda t: 2.0 + t),
    "np_int_sub":     (lambda t: np.int64(3) - t, lambda t: 3 - t),
    "np_scalar_div":  (lambda t: np.float32(1) / t, lambda t: 1.0 / t),
    "np_scalar_pow":  (lambda t: np.float32(2) ** t, lambda t: 2.0 ** t),
    "mask_mul":       (lambda t: np.array([True, False, True]) * t, lambda t: torch.tensor([True, False, True]) * t),
    "array_add":      (lambda t: np.arange(3, dtype=np.float32) + t, lambda t: torch.arange(3.0) + t),
    "array_sub":      (lambda t: np.ones((2, 3), np.float32) - t, lambda t: torch.ones(2, 3) - t),
    "array_div":      (lambda t: np.ones(3, np.float32) / t, lambda t: torch.ones(3) / t),
    "array_matmul":   (lambda t: np.ones((2, 3), np.float32) @ t, lambda t: torch.ones(2, 3) @ t),
}


@pytest.mark.parametrize("name", list(LEFT))
def test_numpy_operand_on_the_left_defers_to_the_tensor(name):
    ours, theirs = LEFT[name]
    x = positive((3,))
    out = ours(Tensor(x))
    assert isinstance(out, Tensor), f"got {type(out).__name__}"
    compare(ours, theirs, [x])


# ----------------------------------------------------------------------------- Python conversions
@pytest.mark.parametrize("value", [0.0, 1.0, -0.0, 0, 3, True, False])
def test_bool_float_int_of_a_one_element_tensor(value):
    for shape in ((), (1,), (1, 1)):
        t, tt = Tensor(np.full(shape, value)), torch.from_numpy(np.full(shape, value))
        assert bool(t) == bool(tt) and float(t) == float(tt) and int(t) == int(tt)


@pytest.mark.parametrize("shape", [(2,), (0,), (2, 2)])
def test_bool_of_a_larger_tensor_is_ambiguous(shape):
    with pytest.raises(RuntimeError, match="Boolean value of Tensor with .* is ambiguous"):
        bool(Tensor(np.zeros(shape)))
    with pytest.raises(RuntimeError, match="Boolean value of Tensor with .* is ambiguous"):
        bool(torch.zeros(shape))
    with pytest.raises(ValueError):
        float(Tensor(np.zeros(shape)))


def test_index_only_for_one_element_int_tensors():
    assert [10, 20, 30][Tensor(np.array([1]))] == 20 == [10, 20, 30][torch.tensor([1])]
    for bad in (Tensor([1.0]), Tensor([1, 2])):
        with pytest.raises(TypeError, match="only integer tensors of a single element"):
            [10, 20][bad]


@pytest.mark.parametrize("data, error, match", [
    (None, TypeError, "got None"),
    ([[1, 2], [3]], ValueError, "cannot make a tensor"),
    (["a", "b"], TypeError, "must be numbers"),
    ([1, None], TypeError, "must be numbers"),
    (np.array([1 + 2j]), TypeError, "must be numbers"),
])
def test_bad_tensor_data_is_refused(data, error, match):
    with pytest.raises(error, match=match):
        Tensor(data)


# ----------------------------------------------------------------------------- masked_fill
def test_masked_fill_on_ints_as_torch():
    m = np.array([True, False])
    assert compare(lambda a: a.masked_fill(m, float("-inf")),
                   lambda a: a.masked_fill(torch.from_numpy(m), float("-inf")), [np.array([1, 2])]) == "refused"
    assert compare(lambda a: a.masked_fill(m, 2 ** 40),
                   lambda a: a.masked_fill(torch.from_numpy(m), 2 ** 40), [np.array([1, 2], np.int32)]) == "refused"
    compare(lambda a: a.masked_fill(m, 1.5), lambda a: a.masked_fill(torch.from_numpy(m), 1.5), [np.array([1, 2])])
    compare(lambda a: a.masked_fill(m, 2), lambda a: a.masked_fill(torch.from_numpy(m), 2), [np.array([True, False])])
    assert compare(lambda a: a.masked_fill(np.array([1, 0]), 2.0),
                   lambda a: a.masked_fill(torch.tensor([1, 0]), 2.0), [np.array([1.0, 2.0])]) == "refused"


# ----------------------------------------------------------------------------- gradcheck
class _NaNBackward(Function):
    """y = x;  a deliberately broken backward that returns NaN"""
    def forward(self, x):
        return x.copy()

    def backward(self, g):
        return g * float("nan")


def test_gradcheck_fails_on_a_nan_analytic_gradient():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True, dtype="float64")
    with pytest.raises(GradcheckError, match="analytic nan"):
        gradcheck(lambda a: _NaNBackward.apply(a), [x])


def test_gradcheck_fails_on_a_nan_numeric_gradient():
    x = Tensor(np.array([-1.0, 2.0]), requires_grad=True, dtype="float64")       # sqrt(-1 +- eps) is NaN
    with np.errstate(invalid="ignore", divide="ignore"), pytest.raises(GradcheckError, match="numeric nan"):
        gradcheck(lambda a: a.sqrt(), [x])


# ----------------------------------------------------------------------------- fused == composed
@pytest.mark.parametrize("fused", [False, True], ids=["composed", "fused"])
@pytest.mark.parametrize("how", ["ignore_index", "default_-100"])
def test_cross_entropy_nan_in_an_ignored_row_as_torch(fused, how):
    z = normal((3, 4), "float64")
    z[1] = np.nan
    t = np.array([0, 1, 3])
    ignore = 1 if how == "ignore_index" else -100
    if how != "ignore_index":
        t[1] = -100
    our_t = t if how == "ignore_index" else np.where(t == -100, -100, t)
    compare(lambda a: F.cross_entropy(a, our_t, ignore_index=ignore),
            lambda a: TF.cross_entropy(a, torch.from_numpy(t), ignore_index=ignore), [z], fused=fused)
    with fused_ops(fused):
        assert np.isfinite(F.cross_entropy(Tensor(z), our_t, ignore_index=ignore).item())


def _error(fn):
    try:
        fn()
    except (ValueError, TypeError) as e:
        return type(e), str(e)
    raise AssertionError("no error raised")


def _both_paths(fn):
    """The error (type, message) of fn in the composed and in the fused path: must be the same."""
    with fused_ops(False):
        composed = _error(fn)
    with fused_ops(True):
        fused = _error(fn)
    assert composed == fused, f"composed: {composed}\nfused:    {fused}"
    return composed


@pytest.mark.parametrize("x_shape, w_shape, b_shape, match", [
    ((2, 5), (4, 3), (3,), r"linear: input of shape \(2, 5\) does not match weight of shape \(4, 3\)"),
    ((2, 4), (4, 3), (4,), r"linear: bias of shape \(4,\) does not match weight of shape \(4, 3\)"),
    ((2, 4), (4, 3), (1, 3), r"linear: bias of shape \(1, 3\)"),
    ((), (4, 3), (3,), r"linear: input of shape \(\)"),
    ((2, 4), (4,), (3,), r"linear: weight must be 2-d"),
])
def test_linear_shape_mistakes_read_the_same_in_both_paths(x_shape, w_shape, b_shape, match):
    x, w, b = (Tensor(normal(s), requires_grad=True) for s in (x_shape, w_shape, b_shape))
    kind, msg = _both_paths(lambda: F.linear(x, w, b))
    assert kind is ValueError and re.search(match, msg), msg


@pytest.mark.parametrize("x_shape, w_shape, b_shape, match", [
    ((2, 5), (4,), (4,), r"layer_norm: weight of shape \(4,\) does not match input of shape \(2, 5\)"),
    ((2, 4), (4,), (5,), r"layer_norm: bias of shape \(5,\)"),
    ((2, 4), (1, 4), (4,), r"layer_norm: weight of shape \(1, 4\)"),
])
def test_layer_norm_shape_mistakes_read_the_same_in_both_paths(x_shape, w_shape, b_shape, match):
    x, w, b = (Tensor(normal(s), requires_grad=True) for s in (x_shape, w_shape, b_shape))
    kind, msg = _both_paths(lambda: F.layer_norm(x, w, b))
    assert kind is ValueError and re.search(match, msg), msg


def test_layer_norm_of_ints_is_refused_in_both_paths():
    x, w, b = Tensor(np.ones((2, 4), np.int64)), Tensor(normal((4,))), Tensor(normal((4,)))
    kind, msg = _both_paths(lambda: F.layer_norm(x, w, b))
    assert "layer_norm: needs a float input" in msg


@pytest.mark.parametrize("mask, kind, match", [
    (np.zeros((4, 4), np.int64), TypeError, "attention: mask must be a boolean array"),
    (np.ones((4, 4), np.float32), TypeError, "attention: mask must be a boolean array"),
    (np.zeros((3, 4), bool), ValueError, r"attention: mask of shape \(3, 4\) does not broadcast"),
])
def test_attention_mask_mistakes_read_the_same_in_both_paths(mask, kind, match):
    from transformer.attention import MultiHeadAttention, scaled_dot_product_attention
    q, k, v = (Tensor(normal((2, 2, 4, 3), seed=i), requires_grad=True) for i in range(3))
    got = _both_paths(lambda: scaled_dot_product_attention(q, k, v, mask=mask))
    assert got[0] is kind and re.search(match, got[1]), got
    mha = MultiHeadAttention(8, 2).eval()
    x = Tensor(normal((2, 4, 8)), requires_grad=True)
    got = _both_paths(lambda: mha(x, mask=mask))
    assert got[0] is kind and re.search(match, got[1]), got


@pytest.mark.parametrize("shapes, match", [
    (((2, 4, 3), (2, 4, 5), (2, 4, 3)), r"attention: expected q \(\.\., Tq, hs\)"),
    (((2, 4, 3), (2, 5, 3), (2, 4, 3)), r"attention: expected q"),
    (((2, 4, 3), (3, 4, 3), (3, 4, 3)), r"attention: batch dims"),
])
def test_attention_shape_mistakes_read_the_same_in_both_paths(shapes, match):
    from transformer.attention import scaled_dot_product_attention
    q, k, v = (Tensor(normal(s, seed=i), requires_grad=True) for i, s in enumerate(shapes))
    got = _both_paths(lambda: scaled_dot_product_attention(q, k, v))
    assert got[0] is ValueError and re.search(match, got[1]), got


@pytest.mark.parametrize("shape", [(2, 4, 6), (2, 4), (4, 8, 2, 1)])
def test_multi_head_attention_input_shape_mistakes_read_the_same_in_both_paths(shape):
    from transformer.attention import MultiHeadAttention
    mha = MultiHeadAttention(8, 2, causal=True).eval()
    x = Tensor(normal(shape), requires_grad=True)
    kind, msg = _both_paths(lambda: mha(x))
    assert kind is ValueError and "MultiHeadAttention: x must be (B, T, C)" in msg


@pytest.mark.parametrize("shape", [(2, 0, 8), (0, 3, 8), (1, 1, 8)], ids=str)
def test_fused_self_attention_on_empty_batches_equals_composed(shape):
    from transformer.attention import MultiHeadAttention
    results = []
    for fused in (False, True):
        backend.manual_seed(0)
        mha = MultiHeadAttention(8, 2, causal=True).eval()
        x = Tensor(normal(shape), requires_grad=True)
        with fused_ops(fused):
            y = mha(x)
            (y * Tensor(normal(y.shape, seed=5))).sum().backward()
        results.append((y.numpy(), x.grad, mha.c_attn.weight.grad))
    for a, b in zip(*results):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- non-finite inputs
NAN, INF = float("nan"), float("inf")
NON_FINITE = {
    "max_nan": (lambda a: a.max(), torch.amax, [[1.0, NAN, 2.0]]),
    "max_nan_axis": (lambda a: a.max(axis=-1), lambda a: a.amax(-1), [[[1.0, NAN, 2.0], [1.0, 2.0, 3.0]]]),
    "max_inf_ties": (lambda a: a.max(), torch.amax, [[1.0, INF, INF]]),
    "softmax_all_neginf_row": (lambda a: a.softmax(-1), lambda a: a.softmax(-1), [[[-INF, -INF], [0.0, -INF]]]),
    "log_softmax_inf": (lambda a: a.log_softmax(-1), lambda a: a.log_softmax(-1), [[[INF, 0.0], [0.0, -INF]]]),
    "sigmoid_inf_nan": (lambda a: a.sigmoid(), torch.sigmoid, [[INF, -INF, NAN]]),
    "tanh_inf": (lambda a: a.tanh(), torch.tanh, [[INF, -INF]]),
    "relu_nan": (lambda a: a.relu(), torch.relu, [[NAN, -1.0, 0.0, 2.0]]),
    "gelu_inf": (lambda a: a.gelu(), TF.gelu, [[INF, -INF, 50.0, -50.0]]),
    "gelu_tanh_large": (lambda a: a.gelu("tanh"), lambda a: TF.gelu(a, approximate="tanh"), [[30.0, -30.0, 50.0]]),
    "div_inf": (lambda a, b: a / b, lambda a, b: a / b, [[1.0, INF], [INF, INF]]),
    "pow_inf_nan": (lambda a: a ** 2, lambda a: a ** 2, [[INF, -INF, NAN]]),
    "var_constant": (lambda a: a.var(), lambda a: a.var(correction=0), [[3.0, 3.0]]),
    "sqrt_negative": (lambda a: a.sqrt(), torch.sqrt, [[-1.0, 4.0]]),
    "rpow_inf": (lambda a: 2.0 ** a, lambda a: 2.0 ** a, [[INF, -INF, 1000.0]]),
}


# torch's float32 GELU kernel gives NaN at +inf; we give inf (the limit), so that pair is not compared
@pytest.mark.parametrize("name, dtype", [(n, d) for n in NON_FINITE for d in ("float32", "float64")
                                         if (n, d) != ("gelu_inf", "float32")])
def test_non_finite_inputs_as_torch(name, dtype):
    ours, theirs, arrays = NON_FINITE[name]
    with np.errstate(all="ignore"):
        compare(ours, theirs, [np.array(a, dtype=dtype) for a in arrays])
