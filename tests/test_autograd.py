"""The graph core: the backward driver, grad modes, anomaly detection, dtypes and the graph
fields the viz layer reads. Expected gradients are worked out by hand in each test."""
import numpy as np
import pytest

import tinygrad_tx
from tinygrad_tx import AnomalyError, Tensor, detect_anomaly, no_grad, scope


def f64(x, requires_grad=True, name=None):
    return Tensor(np.asarray(x, dtype=np.float64), requires_grad=requires_grad, name=name)


# ----------------------------------------------------------------------------- the driver
def test_reused_node_accumulates():
    a = f64(3.0)
    b = a + a                                   # db/da = 2
    c = b + b                                   # dc/db = 2
    c.backward()
    assert a.grad == 4.0
    assert b.grad == 2.0


def test_diamond_graph():
    # a -> (b = 2a, c = a^2) -> d = b * c = 2a^3;  dd/da = 6a^2
    a = f64(2.0)
    b = a * 2.0
    c = a * a
    d = b * c
    d.backward()
    assert a.grad == pytest.approx(6 * 2.0 ** 2)
    assert b.grad == pytest.approx(4.0)         # dd/db = c
    assert c.grad == pytest.approx(4.0)         # dd/dc = b


def test_diamond_with_shared_intermediate():
    # x -> h = exp(x) -> (h * h, h + 1) -> sum: dL/dh = 2h + 1, dL/dx = (2h + 1) h
    x = f64([0.5, -1.0])
    h = x.exp()
    ((h * h) + (h + 1.0)).sum().backward()
    e = np.exp(x.numpy())
    np.testing.assert_allclose(x.grad, (2 * e + 1) * e, rtol=1e-12)


def test_deep_mul_chain_no_recursion_error():
    x = f64([2.0])
    y = x
    for _ in range(20_000):
        y = y * 1.0
    y.sum().backward()
    assert x.grad.tolist() == [1.0]


def test_deep_add_chain_no_recursion_error():
    x = f64([2.0])
    y = x
    for _ in range(20_000):
        y = y + x                               # y = 20001 x
    y.sum().backward()
    assert x.grad.tolist() == [20_001.0]


def test_grads_accumulate_across_backward_calls():
    x = f64([1.0, 2.0])
    (x * 3.0).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 3.0 + 2 * x.numpy())


def test_intermediates_keep_grad_by_default():
    x = f64([1.0, 2.0])
    h = x * 2.0
    h.sum().backward()
    np.testing.assert_array_equal(h.grad, [1.0, 1.0])
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])


def test_leaves_only_keeps_grad_on_leaves():
    x = f64([1.0, 2.0])
    h = x * 2.0
    out = h.sum()
    out.backward(leaves_only=True)
    assert h.grad is None
    assert out.grad is None
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])


def test_second_backward_without_retain_graph_raises():
    x = f64([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match=r"(?i)freed.*retain_graph|retain_graph.*freed"):
        y.backward()


def test_plain_backward_keeps_the_saved_buffers_for_a_replay():
    from tinygrad_tx.autograd import backward_steps
    x = f64([1.0, 2.0])
    h = x.exp()
    y = (h * h).sum()
    y.backward()
    assert h.op.saved and h.op.used and not h.op.freed          # used up, but not freed
    grads = {id(t): t.grad for t in (x, h, y)}
    store = {}
    replayed = [op.name for _, _, op, _ in backward_steps(y, np.ones(()), store=store)]
    assert replayed == ["Sum", "Mul", "Exp"]
    assert all(t.grad is grads[id(t)] for t in (x, h, y))      # the replay wrote into its store
    np.testing.assert_array_equal(store[id(x)], x.grad)
    np.testing.assert_array_equal(store[id(h)], h.grad)
    with pytest.raises(RuntimeError, match=r"(?i)second time.*retain_graph"):
        y.backward()                                            # a replay does not reopen the graph


def test_training_backward_frees_the_saved_buffers():
    from tinygrad_tx.autograd import backward_steps
    x = f64([1.0, 2.0])
    h = x.exp()
    y = (h * h).sum()
    y.backward(leaves_only=True)
    assert h.op.saved == () and h.op.freed and h.op.parents == ()
    with pytest.raises(RuntimeError, match=r"leaves_only=True\) freed its saved buffers as it went; run forward again$"):
        list(backward_steps(y, np.ones(()), store={}))


def test_retain_graph_allows_second_backward_and_accumulates():
    x = f64([1.0, 2.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, 2 * (2 * x.numpy()))


def test_backward_with_explicit_grad():
    x = f64([1.0, 2.0, 3.0])
    y = x * x
    y.backward(grad=np.array([1.0, 0.0, 2.0]))
    np.testing.assert_allclose(x.grad, [2.0, 0.0, 12.0])


# ----------------------------------------------------------------------------- error messages
def test_matmul_shape_mismatch_message():
    a, b = f64(np.ones((2, 3))), f64(np.ones((4, 5)))
    with pytest.raises(ValueError) as e:
        a @ b
    msg = str(e.value)
    assert "MatMul" in msg and "(2, 3)" in msg and "(4, 5)" in msg


@pytest.mark.parametrize("op, name", [(lambda a, b: a + b, "Add"), (lambda a, b: a * b, "Mul")])
def test_broadcast_mismatch_message(op, name):
    a, b = f64(np.ones((2, 3))), f64(np.ones((4,)))
    with pytest.raises(ValueError) as e:
        op(a, b)
    msg = str(e.value)
    assert name in msg and "(2, 3)" in msg and "(4,)" in msg


def test_backward_on_non_scalar_without_grad():
    y = f64([1.0, 2.0]) * 2.0
    with pytest.raises(RuntimeError) as e:
        y.backward()
    msg = str(e.value)
    assert "non-scalar" in msg and "(2,)" in msg


def test_backward_grad_shape_mismatch():
    y = f64([1.0, 2.0]) * 2.0
    with pytest.raises(ValueError, match=r"\(3,\)"):
        y.backward(grad=np.ones(3))


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="int"):
        Tensor([1, 2], requires_grad=True)


def test_backward_on_tensor_without_grad_raises():
    y = Tensor([1.0, 2.0]).sum()
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


# ----------------------------------------------------------------------------- no_grad
def test_no_grad_records_nothing():
    x = f64([1.0, 2.0])
    with no_grad():
        y = x * 2.0 + 1.0
    assert y.requires_grad is False
    assert y.op is None and y.is_leaf
    assert tinygrad_tx.is_grad_enabled()


def test_no_grad_nested():
    with no_grad():
        with no_grad():
            assert not tinygrad_tx.is_grad_enabled()
        assert not tinygrad_tx.is_grad_enabled()
        y = f64([1.0]) * 2.0
    assert tinygrad_tx.is_grad_enabled()
    assert not y.requires_grad


def test_no_grad_restores_after_exception():
    with pytest.raises(ZeroDivisionError):
        with no_grad():
            1 / 0
    assert tinygrad_tx.is_grad_enabled()
    assert (f64([1.0]) * 2.0).requires_grad


# ----------------------------------------------------------------------------- detect_anomaly
def test_anomaly_log_of_negative():
    x = f64([1.0, -1.0], name="x")
    with detect_anomaly(), np.errstate(invalid="ignore"):
        with pytest.raises(AnomalyError) as e:
            x.log()
    err = e.value
    msg = str(err)
    assert "Log" in msg and "(2,)" in msg and "x" in msg
    assert err.op.name == "Log"
    assert err.op.parents[0] is x
    assert err.tensor.shape == (2,) and np.isnan(err.tensor.numpy()[1])
    assert isinstance(err, FloatingPointError)


def test_anomaly_zero_times_inf():
    a = f64([0.0, 1.0], name="zeros")
    b = f64([np.inf, 1.0], name="infs")
    with detect_anomaly(), np.errstate(invalid="ignore"):
        with pytest.raises(AnomalyError) as e:
            a * b
    msg = str(e.value)
    assert "Mul" in msg and "NaN" in msg and "zeros" in msg and "infs" in msg
    assert e.value.op.name == "Mul"


def test_anomaly_inf_from_finite_inputs():
    x = f64([0.0], name="x")
    with detect_anomaly(), np.errstate(divide="ignore"):
        with pytest.raises(AnomalyError, match="Log"):
            x.log()                             # -inf from a finite input


def test_anomaly_in_backward_names_op():
    x = f64([0.0, 4.0], name="x")
    with detect_anomaly(), np.errstate(divide="ignore"):
        y = x.sqrt().sum()                      # forward is finite: sqrt(0) = 0
        with pytest.raises(AnomalyError) as e:
            y.backward()                        # d sqrt / dx = 1 / (2 sqrt x) = inf at 0
    assert "Sqrt" in str(e.value) and "backward" in str(e.value)
    assert e.value.op.name == "Sqrt"
    assert e.value.tensor is x


def test_anomaly_allows_masked_softmax():
    x = f64(np.arange(6.0).reshape(2, 3))
    mask = np.array([[False, True, True], [False, False, True]])
    with detect_anomaly():
        p = x.masked_fill(Tensor(mask), -np.inf).softmax(axis=-1)
        (p * f64(np.arange(6.0).reshape(2, 3), requires_grad=False)).sum().backward()
    np.testing.assert_allclose(p.numpy().sum(axis=-1), [1.0, 1.0])
    assert p.numpy()[0, 0] == 1.0 and np.all(p.numpy()[mask] == 0)
    assert np.isfinite(x.grad).all()
    assert np.all(x.grad[mask] == 0)


def test_no_anomaly_check_outside_context():
    x = f64([-1.0, 0.0])
    with np.errstate(invalid="ignore", divide="ignore"):
        y = x.log()                             # NaN and -inf, silently
        y2 = f64([0.0]).sqrt().sum()
        y2.backward()
    assert np.isnan(y.numpy()[0]) and np.isneginf(y.numpy()[1])


# ----------------------------------------------------------------------------- dtypes
def test_default_dtype_float32():
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert Tensor(1.5).dtype == np.float32
    assert Tensor([[1, 2]]).dtype.kind == "i"


def test_float64_array_kept():
    assert Tensor(np.zeros(3)).dtype == np.float64
    assert Tensor([1.0], dtype="float64").dtype == np.float64
    # numpy scalars carry their dtype as arrays do (as torch.tensor(np.float64(1.5)) is float64)
    assert Tensor(np.float64(1.5)).dtype == np.float64
    assert Tensor(np.zeros(3).sum()).dtype == np.float64


def test_float32_op_with_python_scalar_stays_float32():
    x = Tensor([1.0, 2.0], requires_grad=True)
    for y in (x * 2.5, 2.5 * x, x + 1, x / 3.0, 1.0 - x, x ** 2):
        assert y.dtype == np.float32, y.op_name


def test_grads_have_tensor_dtype():
    a = Tensor([1.0, 2.0], requires_grad=True)                                  # float32
    b = Tensor(np.array([3.0, 4.0]), requires_grad=True)                        # float64
    y = (a * b).sum()                                                           # promoted to float64
    assert y.dtype == np.float64
    y.backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    np.testing.assert_allclose(a.grad, [3.0, 4.0])


# ----------------------------------------------------------------------------- graph fields
def test_graph_fields():
    a = f64([[1.0, 2.0], [3.0, 4.0]], name="a")
    s = a.sum(axis=1)
    assert a.is_leaf and a.op is None and a.parents == () and a.op_name is None
    assert not s.is_leaf
    assert s.parents == (a,) and s.op.parents == (a,)
    assert s.op_name.startswith("Sum(") and "axis=1" in s.op_name
    assert "dL/dx" in s.op.rule
    m = a * a
    assert m.op_name == "Mul" and m.parents == (a, a)
    assert "dL/da" in m.op.rule


def test_repr():
    a = f64([1.0, 2.0], name="weights")
    y = a * 2.0
    y.name = "doubled"
    r = repr(y)
    assert "(2,)" in r and "float64" in r and "Mul" in r and "doubled" in r
    assert "weights" in repr(a) and "requires_grad=True" in repr(a)


def test_scope_tags_tensors():
    with scope("h"):
        with scope("0"):
            t = Tensor([1.0])
            u = f64([1.0]) * 2.0
        v = Tensor([1.0])
    assert t.scope == "h.0" and u.scope == "h.0" and v.scope == "h"
    assert Tensor([1.0]).scope == ""


def test_item_numpy_detach_zero_grad():
    x = f64([[2.5]])
    assert x.item() == 2.5
    arr = x.numpy()
    assert isinstance(arr, np.ndarray) and arr.shape == (1, 1)
    with pytest.raises(ValueError, match="one element"):
        f64([1.0, 2.0]).item()

    y = x * 3.0
    d = y.detach()
    assert d.op is None and not d.requires_grad and d.is_leaf
    np.testing.assert_array_equal(d.numpy(), y.numpy())
    (y * d).sum().backward()                    # d is a constant: dL/dx = 3 * d
    np.testing.assert_allclose(x.grad, [[3.0 * 7.5]])
    x.zero_grad()
    assert x.grad is None


# ----------------------------------------------------------------------------- op details
def test_max_ties_split_gradient_evenly():
    x = f64([1.0, 3.0, 3.0, 2.0])
    x.max().backward()
    np.testing.assert_allclose(x.grad, [0.0, 0.5, 0.5, 0.0])


def test_max_ties_along_axis():
    x = f64([[5.0, 5.0, 5.0], [1.0, 2.0, 2.0]])
    x.max(axis=1).sum().backward()
    np.testing.assert_allclose(x.grad, [[1 / 3, 1 / 3, 1 / 3], [0.0, 0.5, 0.5]])


def test_split_int_chunks_like_torch():
    x = f64(np.arange(10.0))
    pieces = x.split(3)
    assert [p.shape for p in pieces] == [(3,), (3,), (3,), (1,)]
    np.testing.assert_array_equal(pieces[-1].numpy(), [9.0])
    (pieces[1] * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [0, 0, 0, 2, 2, 2, 0, 0, 0, 0])


def test_split_sizes_along_axis():
    x = f64(np.arange(12.0).reshape(2, 6))
    a, b = x.split([2, 4], axis=1)
    assert a.shape == (2, 2) and b.shape == (2, 4)
    np.testing.assert_array_equal(b.numpy(), np.arange(12.0).reshape(2, 6)[:, 2:])
    with pytest.raises(ValueError, match="sum to"):
        x.split([2, 3], axis=1)


@pytest.mark.parametrize("sa, sb", [((2, 3), (3,)), ((2, 3), (2, 1)), ((1, 3), (4, 1)),
                                    ((2, 1, 3), (4, 1)), ((), (2, 2))])
def test_unbroadcast_grad_shapes(sa, sb):
    rng = np.random.default_rng(0)
    a, b = f64(rng.standard_normal(sa)), f64(rng.standard_normal(sb))
    (a * b).sum().backward()
    assert a.grad.shape == sa and b.grad.shape == sb
    out = np.broadcast_shapes(sa, sb)
    # d/da sum(a * b) = b summed over every output position that copied a
    np.testing.assert_allclose(a.grad.sum(), np.broadcast_to(b.numpy(), out).sum())
    np.testing.assert_allclose(b.grad.sum(), np.broadcast_to(a.numpy(), out).sum())


def test_training_backward_releases_the_graph_as_it_goes():
    """backward(leaves_only=True) drops graph edges as it passes them, so intermediates that
    user code does not hold are freed during backward (PyTorch frees its graph the same way)."""
    import gc
    import weakref
    x = Tensor(np.ones(3), requires_grad=True)
    h = x * 2.0
    ref = weakref.ref(h)
    y = (h * 3.0).sum()
    del h
    gc.collect()
    assert ref() is not None                    # still needed: the graph holds it
    y.backward(leaves_only=True)
    assert ref() is None                        # freed by the backward pass itself
    np.testing.assert_array_equal(x.grad, [6.0, 6.0, 6.0])
    held = x * 2.0
    z = (held * 3.0).sum()
    z.backward(leaves_only=True)
    np.testing.assert_array_equal(held.numpy(), [2.0, 2.0, 2.0])   # what the user holds stays


def test_default_backward_keeps_the_graph_for_drawing():
    x = Tensor(np.ones(3), requires_grad=True)
    y = (x * 2.0).sum()
    y.backward()
    assert y.parents and y.parents[0].parents[0] is x
