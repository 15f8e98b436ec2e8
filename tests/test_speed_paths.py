"""The fast paths the training step relies on (cache-blocked fused kernels, float32 erf, the
glibc setting), checked for correctness on sizes large enough to take them. Their speed is
measured in bench/, never here."""
import math

import numpy as np
import pytest

import tinygrad_tx as tx
from tinygrad_tx import Tensor, backend, fused_ops
from tinygrad_tx import functional as F
from tinygrad_tx.autograd import toposort
from transformer import GPT, GPTConfig, scaled_dot_product_attention
from transformer.train import TrainConfig, make_optimizer

BIG = backend.BLOCK_ELEMENTS * 3 + 123          # several blocks plus a ragged last one


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
def test_blocked_gelu_equals_composed(approximate):
    x = np.random.default_rng(0).standard_normal((7, BIG // 7 + 1)) * 2
    assert_same(both_paths(lambda t: t.gelu(approximate), x))


def test_blocked_layer_norm_equals_composed():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((5, 300, 96)), rng.standard_normal(96), rng.standard_normal(96)
    assert x.size > backend.BLOCK_ELEMENTS
    assert_same(both_paths(F.layer_norm, x, w, b))


def test_blocked_masked_attention_equals_composed():
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((5, 4, 64, 16)) for _ in range(3))
    mask = np.triu(np.ones((64, 64), bool), 1)
    assert 5 * 4 * 64 * 64 > backend.BLOCK_ELEMENTS
    assert_same(both_paths(lambda q, k, v: scaled_dot_product_attention(q, k, v, mask)[0], q, k, v))


def test_blocked_adamw_equals_whole_array_update():
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


def test_map_blocks_visits_every_row_once():
    n = backend.BLOCK_ELEMENTS // 10 * 7 + 5
    a = np.zeros((n, 10))
    seen = []

    def kernel(block):
        block += 1
        seen.append(block.shape[0])
    backend.map_blocks(kernel, a)
    assert (a == 1).all() and sum(seen) == n and len(seen) > 1


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
    assert backend.keep_freed_memory() in (True, False)
    assert backend.keep_freed_memory() in (True, False)


def test_threaded_blocks_give_the_same_result():
    x = np.random.default_rng(0).standard_normal((BIG,)).astype(np.float32)
    results = []
    for n in (1, 2):
        backend.set_num_threads(n)
        try:
            with fused_ops():
                results.append(Tensor(x).gelu().numpy())
        finally:
            backend.set_num_threads(1)
    np.testing.assert_array_equal(results[0], results[1])


def test_float32_normal_cdf_accuracy():
    x = np.linspace(-9, 9, 30001)
    exact = np.array([0.5 * math.erfc(-v / math.sqrt(2)) for v in x])
    x32 = x.astype(np.float32)
    got = backend.normal_cdf(x32, np.exp(np.float32(-0.5) * x32 * x32))
    assert got.dtype == np.float32 and np.abs(got - exact).max() < 5e-7
    assert np.abs(backend.normal_cdf(x, np.exp(-0.5 * x * x)) - exact).max() < 1e-15
