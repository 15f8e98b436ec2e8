"""Central-difference gradcheck (float64) of every op: the self-check CASES, then extra cases for
broadcasting, negative axes, 0-d tensors, non-contiguous views, batched matmul, fancy indexing,
concat/split and multi-axis max. Also checks that gradcheck itself catches a wrong backward."""
import numpy as np
import pytest

from tinygrad_tx import Tensor, concat, stack, where, GradcheckError, gradcheck
from tinygrad_tx.autograd import Function
from tinygrad_tx.ops import ALL_OPS
from tinygrad_tx.ops.elementwise import Exp
from tinygrad_tx.selfcheck import CASES, make_inputs


def leaf(arr):
    """A float64 leaf that requires grad, sharing `arr`'s memory (views stay views)."""
    return Tensor(np.asarray(arr, dtype=np.float64), requires_grad=True, dtype="float64")


def normal(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def positive(*shape, seed=0):
    return np.random.default_rng(seed).uniform(0.5, 2.0, shape)


# ----------------------------------------------------------------------------- selfcheck CASES
@pytest.mark.parametrize("name", list(CASES))
def test_selfcheck_case(name):
    _, fn, specs = CASES[name]
    assert gradcheck(fn, make_inputs(specs)) is True


def _op_types(out):
    """type(op) of every node in out's graph, walking `tensor.op` / `tensor.parents`."""
    seen, types, stack_ = set(), set(), [out]
    while stack_:
        t = stack_.pop()
        if id(t) in seen or t.op is None:
            continue
        seen.add(id(t))
        types.add(type(t.op))
        stack_.extend(t.parents)
    return types


def test_every_op_has_a_selfcheck_case():
    covered = set()
    for name, (label, fn, specs) in CASES.items():
        types = _op_types(fn(*make_inputs(specs)))
        if label in {cls.__name__ for cls in ALL_OPS}:          # a primitive label names its op
            assert label in {t.__name__ for t in types}, f"CASES[{name!r}] says {label} but its graph has {types}"
        covered |= types
    missing = sorted(cls.__name__ for cls in set(ALL_OPS) - covered)
    assert not missing, f"ops without a selfcheck CASES entry: {missing}"


# ----------------------------------------------------------------------------- extra cases
def _reorder_pieces(pieces):
    p0, p1, p2 = pieces
    return concat([p2, p0.exp(), p1 * 3.0], axis=1)


# name: (fn, list of input arrays); every input becomes a float64 leaf requiring grad.
_M = np.random.default_rng(3).random((3, 4)) < 0.5          # a fixed boolean mask
EXTRA = {
    # size-1 axes broadcast both ways: each input is expanded along a different axis
    "add_col_row":         (lambda a, b: a + b, [normal(3, 1), normal(1, 4, seed=1)]),
    "mul_row_col":         (lambda a, b: a * b, [normal(1, 4), normal(3, 1, seed=1)]),
    "sub_size1_3d":        (lambda a, b: a - b, [normal(2, 1, 4), normal(1, 3, 1, seed=1)]),
    "div_col_row":         (lambda a, b: a / b, [normal(3, 1), positive(1, 4, seed=1)]),
    "where_size1_both":    (lambda a, b: where(_M, a, b), [normal(3, 1), normal(1, 4, seed=1)]),
    "mul_size1_lower_rank": (lambda a, b: a * b, [normal(2, 3, 1), normal(1, seed=1)]),
    # negative axes
    "sum_neg_axis":        (lambda a: a.sum(axis=-2), [normal(2, 3, 4)]),
    "sum_neg_tuple":       (lambda a: a.sum(axis=(-1, -3)), [normal(2, 3, 4)]),
    "mean_neg_tuple_keep": (lambda a: a.mean(axis=(-1, 0), keepdims=True), [normal(2, 3, 4)]),
    "max_neg_axis":        (lambda a: a.max(axis=-1), [normal(2, 3, 4)]),
    "var_neg_axis":        (lambda a: a.var(axis=-2), [normal(2, 3, 4)]),
    "softmax_neg2":        (lambda a: a.softmax(axis=-2), [normal(2, 3, 4)]),
    "log_softmax_neg3":    (lambda a: a.log_softmax(axis=-3), [normal(2, 3, 4)]),
    "stack_neg_axis":      (lambda a, b: stack([a, b], axis=-1), [normal(2, 3), normal(2, 3, seed=1)]),
    "getitem_neg_index":   (lambda a: a[-1, -2:], [normal(3, 4)]),
    # 0-d scalars
    "scalar_times_matrix": (lambda s, a: s * a, [normal(), normal(3, 4, seed=1)]),
    "matrix_div_scalar":   (lambda a, s: a / s, [normal(3, 4), positive()]),
    "scalar_unary_chain":  (lambda s: (s.exp() * s.tanh() + s.sigmoid()) ** 2, [normal()]),
    "scalar_reductions":   (lambda s: s.sum() + s.max() + s.mean(), [normal()]),
    "scalar_reshape":      (lambda s: s.reshape(1, 1) * 3.0, [normal()]),
    "scalar_getitem_none": (lambda s: s[None], [normal()]),
    # matmul with broadcast batch dims on both sides
    "matmul_bcast_both":   (lambda a, b: a @ b, [normal(2, 1, 3, 4), normal(1, 5, 4, 2, seed=1)]),
    "matmul_bcast_rank":   (lambda a, b: a @ b, [normal(5, 3, 4), normal(2, 1, 4, 2, seed=1)]),
    "matmul_bcast_lhs":    (lambda a, b: a @ b, [normal(3, 4), normal(2, 3, 4, 2, seed=1)]),
    "matmul_batched_vec":  (lambda a, b: a @ b, [normal(2, 3, 4), normal(4, seed=1)]),
    "vec_vec":             (lambda a, b: a @ b, [normal(4), normal(4, seed=1)]),
    # getitem: negative and step slices, boolean masks
    "getitem_reverse":     (lambda a: a[::-1], [normal(4, 3)]),
    "getitem_neg_step":    (lambda a: a[-1:0:-2, ::-3], [normal(5, 7)]),
    "getitem_step_neg_stop": (lambda a: a[1:-1:2, -3:], [normal(6, 5)]),
    "getitem_ellipsis":    (lambda a: a[..., ::-1], [normal(2, 3, 4)]),
    "getitem_bool_full":   (lambda a: a[_M], [normal(3, 4)]),
    "getitem_bool_rows":   (lambda a: a[_M[:, 0]], [normal(3, 4)]),
    "getitem_bool_cols":   (lambda a: a[:, _M[0]], [normal(3, 4)]),
    "getitem_int_array_neg": (lambda a: a[np.array([-1, 0, -1])], [normal(3, 4)]),
    # concat: three inputs, axis 0 and negative axes
    "concat3_axis0":       (lambda a, b, c: concat([a, b, c], axis=0), [normal(1, 3), normal(2, 3, seed=1), normal(3, 3, seed=2)]),
    "concat3_neg1":        (lambda a, b, c: concat([a, b, c], axis=-1), [normal(2, 1), normal(2, 3, seed=1), normal(2, 2, seed=2)]),
    "concat3_neg2_3d":     (lambda a, b, c: concat([a, b, c], axis=-2), [normal(2, 1, 3), normal(2, 2, 3, seed=1), normal(2, 3, 3, seed=2)]),
    # split by a list of sizes (pieces used differently, one piece unused)
    "split_sizes_reorder": (lambda a: _reorder_pieces(a.split([1, 2, 2], axis=1)), [normal(3, 5)]),
    "split_sizes_unused":  (lambda a: a.split([2, 1, 1], axis=0)[1] * a.split([2, 1, 1], axis=0)[2], [normal(4, 3)]),
    "split_sizes_neg_axis": (lambda a: a.split([3, 1], axis=-1)[0].sum(axis=-1), [normal(2, 3, 4)]),
    # max over a tuple of axes
    "max_tuple_keep":      (lambda a: a.max(axis=(0, 2), keepdims=True), [normal(2, 3, 4)]),
    "max_neg_tuple_keep":  (lambda a: a.max(axis=(-1, -3), keepdims=True), [normal(2, 3, 4)]),
    "max_tuple_nokeep":    (lambda a: a.max(axis=(1, 2)), [normal(2, 3, 4)]),
}


@pytest.mark.parametrize("name", list(EXTRA))
def test_extra_case(name):
    fn, arrays = EXTRA[name]
    assert gradcheck(fn, [leaf(a) for a in arrays]) is True


def test_max_ties_split_evenly():
    """At a tie max is not differentiable (central differences straddle a kink), so no
    gradcheck: the gradient is split evenly among the tied maxima and still sums to dL/dy."""
    x = leaf(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]))
    x.max(axis=1, keepdims=True).backward(np.ones((2, 1)))
    np.testing.assert_array_equal(x.grad, [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])


# non-contiguous (transposed and step-sliced) inputs into every elementwise unary op
UNARY = {
    "neg":       lambda x: -x,
    "pow_2":     lambda x: x ** 2,
    "pow_3":     lambda x: x ** 3,
    "pow_-0.5":  lambda x: x ** -0.5,
    "pow_1.5":   lambda x: x ** 1.5,
    "exp":       lambda x: x.exp(),
    "log":       lambda x: x.log(),
    "sqrt":      lambda x: x.sqrt(),
    "tanh":      lambda x: x.tanh(),
    "sigmoid":   lambda x: x.sigmoid(),
    "relu":      lambda x: x.relu(),
    "erf":       lambda x: x.erf(),
    "gelu":      lambda x: x.gelu(),
    "gelu_tanh": lambda x: x.gelu("tanh"),
}
NEEDS_POSITIVE = {"pow_-0.5", "pow_1.5", "log", "sqrt"}


@pytest.mark.parametrize("view", ["transposed", "step_sliced"])
@pytest.mark.parametrize("name", list(UNARY))
def test_unary_non_contiguous(name, view):
    base = positive(4, 6) if name in NEEDS_POSITIVE else normal(4, 6)
    arr = base.T if view == "transposed" else base[:, ::2]
    x = leaf(arr)
    assert not x.data.flags.c_contiguous            # really a strided view, not a copy
    assert gradcheck(UNARY[name], [x]) is True


# ----------------------------------------------------------------------------- gradcheck itself
class ExpWrongAtOneElement(Exp):
    """y = exp(x); backward deliberately wrong at element (1, 2) only."""
    def backward(self, g):
        grad = super().backward(g)
        grad[1, 2] += 1.0
        return grad


class MulWrongForB(Function):
    """y = a * b; backward for b deliberately drops a factor at element (0, 1)."""
    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a * b

    def backward(self, g):
        a, b = self.saved
        gb = g * a
        gb[0, 1] = g[0, 1]
        return g * b, gb


def test_gradcheck_raises_on_wrong_backward_naming_worst_element():
    x = leaf(normal(3, 4))
    with pytest.raises(GradcheckError, match=r"input 0 .*at index \(1, 2\).*1 elements over tolerance"):
        gradcheck(lambda a: ExpWrongAtOneElement.apply(a), [x])


def test_gradcheck_names_the_wrong_input():
    a, b = leaf(normal(2, 3) + 3.0), leaf(normal(2, 3, seed=1))     # a[0, 1] far from 1
    with pytest.raises(GradcheckError, match=r"input 1 .*at index \(0, 1\)"):
        gradcheck(lambda a, b: MulWrongForB.apply(a, b), [a, b])


def test_gradcheck_is_an_assertion_error():
    assert issubclass(GradcheckError, AssertionError)


def test_gradcheck_rejects_float32():
    x = Tensor(normal(3).astype(np.float32), requires_grad=True)
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda a: a.exp(), [x])


def test_gradcheck_restores_inputs():
    arr = normal(3, 4)
    x = leaf(arr.copy())
    gradcheck(lambda a: a.exp(), [x])
    np.testing.assert_array_equal(x.data, arr)        # perturbed in place, then put back exactly

