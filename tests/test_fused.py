"""The fused ops (tinygrad_tx/ops/fused.py, selected by tinygrad_tx.fused_ops()) against the
composed versions they replace, and gradcheck of each. Torch parity of both paths is in
test_torch_parity.py (test_case_parity runs every case composed and fused)."""
import numpy as np
import pytest

import tinygrad_tx as tx
from tinygrad_tx import Tensor, fused_ops, gradcheck, is_fused
from tinygrad_tx import functional as F
from tinygrad_tx.ops import fused
from tinygrad_tx.selfcheck import CASES, make_inputs
from transformer import GPT, GPTConfig, scaled_dot_product_attention

FUSED_OPS = (fused.Softmax, fused.LogSoftmax, fused.AttentionWeights, fused.CrossEntropy, fused.LayerNorm,
             fused.Gelu, fused.Embedding, fused.Linear)


def graph_ops(root):
    seen, stack, ops = set(), [root], set()
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if t.op is not None:
            ops.add(type(t.op))
            stack.extend(t.parents)
    return ops


def run(fn, specs, fused_on):
    xs = make_inputs(specs)
    with fused_ops(fused_on):
        out = fn(*xs)
        (out * Tensor(np.linspace(-1, 1, out.size).reshape(out.shape))).sum().backward()
    return out.numpy(), [x.grad for x in xs]


@pytest.mark.parametrize("name", list(CASES))
def test_fused_equals_composed(name):
    _, fn, specs = CASES[name]
    out_c, grads_c = run(fn, specs, False)
    out_f, grads_f = run(fn, specs, True)
    np.testing.assert_allclose(out_f, out_c, atol=1e-12, rtol=1e-12)
    for gc, gf in zip(grads_c, grads_f):
        np.testing.assert_allclose(gf, gc, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("name", list(CASES))
def test_gradcheck_fused(name):
    _, fn, specs = CASES[name]
    with fused_ops():
        assert gradcheck(fn, make_inputs(specs))


def test_every_fused_op_is_exercised():
    used = set()
    with fused_ops():
        for _, fn, specs in CASES.values():
            used |= graph_ops(fn(*make_inputs(specs)))
        q, k, v = make_inputs([((2, 3, 4), "n")] * 3)
        used |= graph_ops(scaled_dot_product_attention(q, k, v)[0])
    assert set(FUSED_OPS) <= used, set(FUSED_OPS) - used


def test_fused_ops_is_off_by_default_and_restored():
    assert not is_fused()
    with fused_ops():
        assert is_fused()
        with fused_ops(False):
            assert not is_fused()
        assert is_fused()
    assert not is_fused()


def test_fused_graph_is_one_node_per_composite():
    x, w, b = make_inputs([((2, 3, 6), "n"), ((6,), "n"), ((6,), "n")])
    composed = F.layer_norm(x, w, b)
    with fused_ops():
        one = F.layer_norm(x, w, b)
    assert type(one.op) is fused.LayerNorm and set(one.parents) == {x, w, b}
    assert len(graph_ops(composed)) > 4


@pytest.mark.parametrize("with_mask", [False, True])
def test_fused_attention_matches_composed(with_mask):
    q, k, v = make_inputs([((2, 2, 4, 3), "n")] * 3)
    mask = np.triu(np.ones((4, 4), bool), 1) if with_mask else None
    results = []
    for on in (False, True):
        for t in (q, k, v):
            t.grad = None
        with fused_ops(on):
            out, w = scaled_dot_product_attention(q, k, v, mask)
            (out * out).sum().backward()
        results.append((out.numpy(), w.numpy(), q.grad.copy(), k.grad.copy(), v.grad.copy()))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_attention_weights_dead_row_is_zero_not_nan():
    rng = np.random.default_rng(0)
    q = Tensor(rng.standard_normal((3, 2)), requires_grad=True, dtype="float64")
    k = Tensor(rng.standard_normal((4, 2)), requires_grad=True, dtype="float64")
    mask = np.zeros((3, 4), bool)
    mask[1] = True                                   # query 1: every key blocked
    mask[2, 3] = True
    w = fused.AttentionWeights.apply(q, k, mask=mask, scale=0.5)
    (w * w).sum().backward()
    assert (w.numpy()[1] == 0).all() and (w.numpy()[mask] == 0).all() and np.isfinite(w.numpy()).all()
    assert (q.grad[1] == 0).all() and np.isfinite(k.grad).all()
    np.testing.assert_allclose(w.numpy()[[0, 2]].sum(-1), 1.0)


def test_gradcheck_attention_weights_with_mask():
    rng = np.random.default_rng(1)
    q = Tensor(rng.standard_normal((2, 3, 4)), requires_grad=True, dtype="float64")
    k = Tensor(rng.standard_normal((2, 5, 4)), requires_grad=True, dtype="float64")
    mask = rng.random((3, 5)) < 0.3
    assert gradcheck(lambda q, k: fused.AttentionWeights.apply(q, k, mask=mask, scale=0.5), [q, k])


def test_cross_entropy_backward_twice_with_retain_graph():
    logits, = make_inputs([((4, 5), "n")])
    with fused_ops():
        loss = F.cross_entropy(logits, np.array([0, 1, 2, 3]))
    loss.backward(retain_graph=True)
    g1 = logits.grad.copy()
    loss.backward()
    np.testing.assert_allclose(logits.grad, 2 * g1)


def test_gpt_fused_equals_composed_float64():
    tx.set_default_dtype("float64")
    tx.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, norm="post"))
    idx = np.random.default_rng(0).integers(0, 11, (3, 8))
    grads = []
    for on in (False, True):
        m.zero_grad()
        with fused_ops(on):
            _, loss = m(idx, idx)
            loss.backward()
        grads.append((loss.item(), {n: p.grad.copy() for n, p in m.named_parameters()}))
    assert grads[0][0] == pytest.approx(grads[1][0], abs=1e-13)
    for n in grads[0][1]:
        np.testing.assert_allclose(grads[1][1][n], grads[0][1][n], atol=1e-13)
