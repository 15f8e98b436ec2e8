"""The fast paths the training step relies on (the compiled kernels on large inputs, any
thread count; the glibc setting), checked for correctness. Their speed is measured in bench/,
never here. Each kernel against its xp reference: test_kernels.py."""
import math

import numpy as np
import pytest

import tinygrad_tx as tx
from tinygrad_tx import Tensor, backend, fused_ops
from tinygrad_tx import functional as F
from tinygrad_tx.autograd import toposort
from transformer import GPT, GPTConfig, scaled_dot_product_attention
from transformer.train import TrainConfig, make_optimizer

BIG = (1 << 18) * 3 + 123      # above kernels.PARALLEL_MIN_ELEMENTS (so on every thread), not a round number


def both_paths(fn, *arrays):
    """(composed result, fused result), each as (output, grads) in float64."""
    results = []
    for on in (False, True):
        xs = [Tensor(a, requires_grad=True, dtype="float64") for a in arrays]
        with fused_ops(on):
            out = fn(*xs)
        w = np.random.default_rng(1).standard_normal(out.shape)
        (out * Tensor(w)).sum().backward()
        results.append((out.numpy(), [x.grad for x in xs]))
    return results


def assert_same(results, tol=1e-11):
    (oc, gc), (of, gf) = results
    np.testing.assert_allclose(of, oc, atol=tol, rtol=tol)
    for a, b in zip(gc, gf):
        np.testing.assert_allclose(b, a, atol=tol, rtol=tol)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_large_gelu_equals_composed(approximate):
    x = np.random.default_rng(0).standard_normal((7, BIG // 7 + 1)) * 2
    assert_same(both_paths(lambda t: t.gelu(approximate), x))


def test_large_layer_norm_equals_composed():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((5, 300, 96)), rng.standard_normal(96), rng.standard_normal(96)
    assert_same(both_paths(F.layer_norm, x, w, b))


def test_large_masked_attention_equals_composed():
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((5, 4, 64, 16)) for _ in range(3))
    mask = np.triu(np.ones((64, 64), bool), 1)
    assert_same(both_paths(lambda q, k, v: scaled_dot_product_attention(q, k, v, mask)[0], q, k, v))


def test_compiled_adamw_equals_whole_array_update():
    rng = np.random.default_rng(0)
    data, grads = rng.standard_normal(BIG), [rng.standard_normal(BIG) for _ in range(3)]
    p = Tensor(data.copy(), requires_grad=True, dtype="float64")
    opt = tx.optim.AdamW([p], lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1)
    ref, m, v = data.copy(), np.zeros(BIG), np.zeros(BIG)
    for t, g in enumerate(grads, start=1):
        p.grad = g.copy()
        opt.step()
        # the same update, written for the whole array at once
        ref *= 1 - 1e-2 * 0.1
        m = 0.9 * m + 0.1 * g
        v = 0.99 * v + 0.01 * g * g
        ref -= (1e-2 / (1 - 0.9 ** t)) * m / (np.sqrt(v) / math.sqrt(1 - 0.99 ** t) + 1e-8)
    np.testing.assert_allclose(p.data, ref, atol=1e-13)


def test_adamw_updates_non_contiguous_parameters_in_place():
    data = np.random.default_rng(0).standard_normal((40, 30))
    p = Tensor(data.T, requires_grad=True, dtype="float64")            # a transposed view
    assert not p.data.flags.c_contiguous
    before = p.data.copy()
    p.grad = np.ones(p.shape)
    tx.optim.AdamW([p], lr=1e-2).step()
    assert not np.allclose(p.data, before)


def test_float32_erf_accuracy():
    x = np.linspace(-6, 6, 20001)
    exact = np.array([math.erf(v) for v in x])
    assert np.abs(backend.erf(x.astype(np.float32)) - exact).max() < 1e-6
    assert np.abs(backend.erf(x) - exact).max() < 1e-15
    assert backend.erf(x.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("fused", [False, True], ids=["composed", "fused"])
@pytest.mark.parametrize("dropout", [0.0, 0.1])     # 0.0: the fused SelfAttention node (no attention dropout)
def test_float32_training_step_has_no_float64_anywhere(fused, dropout):
    tx.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=dropout))
    opt = make_optimizer(model, TrainConfig())
    idx = np.random.default_rng(0).integers(0, 13, (3, 8))
    with fused_ops(fused):
        _, loss = model(idx, idx)
        loss.backward()
    opt.step()
    tensors = toposort(loss)
    ops = {type(t.op).__name__ for t in tensors if t.op is not None}
    assert ("SelfAttention" in ops) == (fused and dropout == 0.0), ops
    bad = [f"{t.op_name or t.name}: {t.dtype}" for t in tensors if t.dtype.kind == "f" and t.dtype != np.float32]
    bad += [f"grad of {t.op_name or t.name}" for t in tensors if t.grad is not None and t.grad.dtype != np.float32]
    bad += [f"param {n}" for n, p in model.named_parameters() if p.dtype != np.float32]
    bad += [f"optimizer state {k}" for st in opt.state.values() for k, v in st.items()
            if hasattr(v, "dtype") and v.dtype != np.float32]
    assert not bad, bad


def test_keep_freed_memory_is_safe_to_call_twice():
    from transformer.memory import keep_freed_memory
    assert keep_freed_memory() in (True, False)
    assert keep_freed_memory() in (True, False)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_one_and_two_threads_give_the_same_bits(approximate):
    """fastmath is off and every row is one thread's: the thread count cannot change a result."""
    pytest.importorskip("numba")
    from tinygrad_tx import threads
    x = np.random.default_rng(0).standard_normal((BIG,)).astype(np.float32)
    results = []
    for n in (1, 2):
        threads.set_threads(n)
        with fused_ops():
            t = Tensor(x, requires_grad=True)
            y = t.gelu(approximate)
            y.sum().backward()
        results.append((y.numpy(), t.grad))
    threads.set_threads(1)
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.parametrize("op", ["layer_norm", "cross_entropy"])
def test_row_sums_give_the_same_bits_on_one_and_two_threads(op):
    """Their row sums may be reassociated (vectorised), but each row is still one thread's."""
    pytest.importorskip("numba")
    from tinygrad_tx import threads
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BIG // 97, 97)).astype(np.float32)            # rows of an odd width
    w, b = rng.standard_normal(97).astype(np.float32), rng.standard_normal(97).astype(np.float32)
    targets = rng.integers(0, 97, x.shape[0])
    results = []
    for n in (1, 2):
        threads.set_threads(n)
        with fused_ops():
            ts = [Tensor(a, requires_grad=True) for a in (x, w, b)]
            y = F.layer_norm(*ts) if op == "layer_norm" else F.cross_entropy(ts[0], targets)
            (y * y).sum().backward()
        results.append([y.numpy()] + [t.grad for t in ts if t.grad is not None])
    threads.set_threads(1)
    for a, c in zip(*results):
        np.testing.assert_array_equal(a, c)


def test_float32_gelu_polynomial_phi_accuracy():
    """float32 GELU's Phi by A&S 7.1.26 (kernels/gelu.py): within 1e-7 of the exact Phi."""
    x = np.linspace(-9, 9, 30001)
    exact = x * np.array([0.5 * math.erfc(-v / math.sqrt(2)) for v in x])
    with fused_ops():
        got = Tensor(x.astype(np.float32)).gelu().numpy()
    assert got.dtype == np.float32 and (np.abs(got - exact) / np.maximum(np.abs(x), 1)).max() < 2.5e-7
