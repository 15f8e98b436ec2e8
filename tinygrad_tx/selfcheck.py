"""The engine's self-check: one small float64 case per op / functional / broadcasting pattern,
each run through central-difference gradcheck. Used by `tx gradcheck` and by the tests.

An input spec is (shape, kind): kind "n" standard normal, "p" positive (for log, sqrt, /),
"t" a transposed, non-contiguous view of a normal array of the reversed shape."""
import time

from . import backend, functional as F
from .tensor import Tensor, concat, stack, where
from .gradcheck import max_gradient_error
from .autograd import fused_ops
from .ops import ToDevice


def make_inputs(specs, seed=0, dtype="float64"):
    rng = backend.rng_for_seed(seed)
    xs = []
    for shape, kind in specs:
        if kind == "t":
            data = rng.standard_normal(tuple(reversed(shape))).astype(dtype).T
        elif kind == "p":
            data = rng.uniform(0.5, 2.0, shape).astype(dtype)
        else:
            data = rng.standard_normal(shape).astype(dtype)
        xs.append(Tensor(data, requires_grad=True, dtype=dtype))
    return xs


def _mask(shape, seed=1):
    return backend.rng_for_seed(seed).random(shape) < 0.3


def _ids(shape, high, seed=2):
    return backend.rng_for_seed(seed).integers(0, high, shape)


def _dropout(x):
    return F.dropout(x, 0.3, training=True, generator=backend.rng_for_seed(7))   # same mask each call


N, P, T_ = "n", "p", "t"

# name: (primitive or function exercised, fn, input specs)
CASES = {
    "add":                ("Add", lambda a, b: a + b, [((3, 4), N), ((3, 4), N)]),
    "add_broadcast":      ("Add", lambda a, b: a + b, [((2, 1, 4), N), ((3, 1), N)]),
    "add_scalar":         ("Add", lambda a: 2.5 + a, [((3,), N)]),
    "sub":                ("Sub", lambda a, b: a - b, [((3, 4), N), ((4,), N)]),
    "rsub_scalar":        ("Sub", lambda a: 1.0 - a, [((3, 4), N)]),
    "mul":                ("Mul", lambda a, b: a * b, [((3, 4), N), ((3, 4), T_)]),
    "mul_broadcast":      ("Mul", lambda a, b: a * b, [((2, 3, 1), N), ((1, 4), N)]),
    "mul_reuse":          ("Mul", lambda a: a * a, [((3, 2), N)]),
    "div":                ("Div", lambda a, b: a / b, [((3, 4), N), ((3, 4), P)]),
    "div_broadcast":      ("Div", lambda a, b: a / b, [((2, 3), N), ((3,), P)]),
    "rdiv_scalar":        ("Div", lambda a: 2.0 / a, [((4,), P)]),
    "neg":                ("Neg", lambda a: -a, [((3, 4), N)]),
    "pow_2":              ("Pow", lambda a: a ** 2, [((3, 4), N)]),
    "pow_3":              ("Pow", lambda a: a ** 3, [((3, 4), N)]),
    "pow_neg_half":       ("Pow", lambda a: a ** -0.5, [((3, 4), P)]),
    "rpow":               ("RPow", lambda a: 2.0 ** a, [((3, 4), N)]),
    "exp":                ("Exp", lambda a: a.exp(), [((3, 4), N)]),
    "log":                ("Log", lambda a: a.log(), [((3, 4), P)]),
    "sqrt":               ("Sqrt", lambda a: a.sqrt(), [((3, 4), P)]),
    "tanh":               ("Tanh", lambda a: a.tanh(), [((3, 4), T_)]),
    "sigmoid":            ("Sigmoid", lambda a: a.sigmoid(), [((3, 4), N)]),
    "relu":               ("Relu", lambda a: a.relu(), [((3, 4), N)]),
    "erf":                ("Erf", lambda a: a.erf(), [((3, 4), N)]),
    "gelu":               ("gelu", lambda a: a.gelu(), [((3, 4), N)]),
    "gelu_tanh":          ("gelu", lambda a: a.gelu("tanh"), [((3, 4), N)]),
    "sum_all":            ("Sum", lambda a: a.sum(), [((3, 4), N)]),
    "sum_axis":           ("Sum", lambda a: a.sum(axis=1), [((2, 3, 4), N)]),
    "sum_neg_axis_keep":  ("Sum", lambda a: a.sum(axis=-1, keepdims=True), [((2, 3, 4), T_)]),
    "sum_tuple_axes":     ("Sum", lambda a: a.sum(axis=(0, 2)), [((2, 3, 4), N)]),
    "mean":               ("mean", lambda a: a.mean(axis=-1), [((2, 3, 4), N)]),
    "max_axis":           ("Max", lambda a: a.max(axis=1), [((3, 5), N)]),
    "max_all_keep":       ("Max", lambda a: a.max(keepdims=True), [((3, 5), N)]),
    "var":                ("var", lambda a: a.var(axis=-1), [((3, 5), N)]),
    "softmax":            ("softmax", lambda a: a.softmax(axis=-1), [((3, 5), N)]),
    "softmax_axis0":      ("softmax", lambda a: a.softmax(axis=0), [((3, 5), T_)]),
    "log_softmax":        ("log_softmax", lambda a: a.log_softmax(axis=-1), [((3, 5), N)]),
    "matmul_2d":          ("MatMul", lambda a, b: a @ b, [((3, 4), N), ((4, 5), N)]),
    "matmul_batched":     ("MatMul", lambda a, b: a @ b, [((2, 1, 3, 4), N), ((3, 4, 2), N)]),
    "matmul_transposed":  ("MatMul", lambda a, b: a @ b, [((3, 4), T_), ((4, 2), T_)]),
    "matmul_vector":      ("MatMul", lambda a, b: a @ b, [((4,), N), ((2, 4, 3), N)]),
    "matvec":             ("MatMul", lambda a, b: a @ b, [((3, 4), N), ((4,), N)]),
    "reshape":            ("Reshape", lambda a: a.reshape(4, -1), [((2, 3, 2), N)]),
    "reshape_view":       ("Reshape", lambda a: a.reshape(-1), [((3, 4), T_)]),
    "transpose":          ("Permute", lambda a: a.transpose(2, 0, 1), [((2, 3, 4), N)]),
    "swapaxes":           ("Permute", lambda a: a.swapaxes(-1, -2), [((2, 3, 4), N)]),
    "T":                  ("Permute", lambda a: a.T, [((3, 4), N)]),
    "getitem_slice":      ("GetItem", lambda a: a[1:, ::2], [((3, 5), N)]),
    "getitem_int_none":   ("GetItem", lambda a: a[1, None, :, -1], [((3, 4, 5), N)]),
    "getitem_repeated":   ("GetItem", lambda a: a[_ids((2, 6), 4)], [((4, 3), N)]),
    "masked_fill":        ("MaskedFill", lambda a: a.masked_fill(_mask((1, 5)), 0.5), [((3, 5), N)]),
    "masked_softmax":     ("MaskedFill", lambda a: a.masked_fill(_mask((3, 5)) & (backend.asarray(range(5)) > 0),
                                                                float("-inf")).softmax(-1), [((3, 5), N)]),
    "where":              ("Where", lambda a, b: where(_mask((3, 4)), a, b), [((3, 4), N), ((4,), N)]),
    "concat":             ("Concat", lambda a, b: concat([a, b], axis=-1), [((2, 3), N), ((2, 2), T_)]),
    "stack":              ("Stack", lambda a, b: stack([a, b], axis=1), [((2, 3), N), ((2, 3), N)]),
    "split":              ("split", lambda a: a.split(2, axis=1)[1] * a.split([1, 4], axis=1)[1][:, :2],
                           [((3, 5), N)]),
    "cross_entropy":      ("cross_entropy", lambda a: F.cross_entropy(a, _ids((2, 3), 5)), [((2, 3, 5), N)]),
    "cross_entropy_ignore": ("cross_entropy", lambda a: F.cross_entropy(a, backend.asarray([0, -1, 4, 2]),
                                                                        ignore_index=-1), [((4, 5), N)]),
    "linear":             ("linear", lambda x, w, b: F.linear(x, w, b), [((2, 3, 4), N), ((4, 5), N), ((5,), N)]),
    "layer_norm":         ("layer_norm", lambda x, w, b: F.layer_norm(x, w, b), [((2, 3, 6), N), ((6,), N), ((6,), N)]),
    "embedding":          ("embedding", lambda w: F.embedding(w, _ids((2, 5), 4)), [((4, 3), N)]),
    "dropout":            ("dropout", _dropout, [((4, 5), N)]),
    # the op behind Tensor.to(device); on one device it copies, and moves the gradient back
    "to_device":          ("ToDevice", lambda a: ToDevice.apply(a, device=a.device) * a, [((3, 4), N)]),
}


def run_gradchecks(names=None, tol=1e-6, fused=False):
    """Gradcheck every case (or those named). Returns rows of
    {"name", "op", "max_abs_err", "seconds", "ok"} with ok meaning max error <= tol.
    fused=True runs each case inside fused_ops(): the fused ops' hand-derived backwards."""
    rows = []
    for name, (op, fn, specs) in CASES.items():
        if names and name not in names:
            continue
        start = time.perf_counter()
        with fused_ops(fused):
            err = max_gradient_error(fn, make_inputs(specs))
        rows.append({"name": name, "op": op, "max_abs_err": err,
                     "seconds": time.perf_counter() - start, "ok": err <= tol})
    return rows
