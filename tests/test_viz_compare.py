"""viz.compare_backward: a wrong backward planted in any one op of a 20-op expression is the
op found (first_bad) and outlined in the drawing; a correct graph agrees with central
differences to 1e-7 (float64), with the composed graph and with PyTorch; `tx gradcheck --fused`."""
import re
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import cli
from tinygrad_tx import Tensor, fused_ops
from tinygrad_tx import functional as F
from tinygrad_tx.ops import (Add, Div, Exp, Log, MatMul, Mul, Permute, Pow, Relu, Reshape, Sigmoid, Sqrt, Sub,
                             Sum, Tanh, fused)
from viz import compare_backward, examples, graph_nodes


def planted(cls):
    """cls with a wrong backward: its first input's gradient comes out 1.5 times too big."""
    class Wrong(cls):
        def backward(self, g):
            grads = super().backward(g)
            grads = grads if isinstance(grads, tuple) else (grads,)
            return (grads[0] * 1.5,) + grads[1:]
    Wrong.__name__ = f"Wrong{cls.__name__}"
    return Wrong


N_OPS = 20


def expression(plant=None):
    """A 20-op float64 expression; op number `plant` (0-based) gets the wrong backward.
    Returns (loss, the planted op or None)."""
    rng = np.random.default_rng(0)
    a = Tensor(rng.normal(size=(3, 4)), requires_grad=True, name="a")
    b = Tensor(rng.normal(size=(4, 2)), requires_grad=True, name="b")
    c = Tensor(rng.normal(size=(2,)), requires_grad=True, name="c")
    p = Tensor(rng.uniform(0.5, 2.0, size=(3, 2)), requires_grad=True, name="p")
    made = []

    def op(cls, *xs, **kw):
        out = (planted(cls) if len(made) == plant else cls).apply(*xs, **kw)
        made.append(out.op)
        return out
    h = op(MatMul, a, b)                                   # (3, 2)
    h2 = op(Add, h, c)
    t = op(Tanh, h2)
    u = op(Mul, t, t)
    s = op(Sigmoid, u)
    e = op(Exp, s)
    m = op(Mul, e, t)
    d = op(Div, m, p)
    r = op(Sub, d, h2)
    rl = op(Relu, r)
    q = op(Pow, e, exponent=2)
    w = op(Add, rl, q)
    sq = op(Sqrt, e)
    z = op(Mul, w, sq)
    zt = op(Permute, z, axes=(1, 0))                       # (2, 3)
    f = op(Reshape, zt, shape=(6,))
    lg = op(Log, q)
    sl = op(Sum, lg, axis=None, keepdims=False)
    sf = op(Sum, f, axis=None, keepdims=False)
    loss = op(Add, sf, sl)
    assert len(made) == N_OPS
    return loss, (made[plant] if plant is not None else None)


@pytest.mark.parametrize("plant", range(N_OPS))
def test_planted_bug_is_first_bad_and_outlined(plant):
    loss, wrong = expression(plant)
    cmp = compare_backward(loss, "numeric")
    assert cmp.first_bad is wrong, (cmp.first_bad, wrong)
    order = graph_nodes(loss)
    k = next(k for k, t in enumerate(order) if t.op is wrong)
    outlined = [line.split()[0] for line in cmp.draw().body if "penwidth=4" in line]
    assert outlined == [f"op{k}"]


def test_correct_graph_agrees_to_1e7():
    loss, _ = expression()
    cmp = compare_backward(loss, "numeric")
    assert cmp.first_bad is None and not cmp.bad
    assert len(cmp.errors) == N_OPS + 4                     # every op's output and the 4 leaves
    assert max(err for err, _ in cmp.errors.values()) < 1e-7
    assert all(t.grad is None for t in cmp.errors)          # a replay: no .grad was touched
    loss.backward()                                         # after backward too: same answer
    assert compare_backward(loss, "numeric").first_bad is None


def test_torch_reference():
    pytest.importorskip("torch")
    loss, _ = expression()
    cmp = compare_backward(loss, "torch")
    assert cmp.first_bad is None and max(err for err, _ in cmp.errors.values()) < 1e-12
    wrong_loss, wrong = expression(7)
    assert compare_backward(wrong_loss, "torch").first_bad is wrong
    attention = examples.build("attention", backward=False)       # float32: the engine's rounding only
    assert compare_backward(attention, "torch").first_bad is None


def test_torch_reference_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)          # as if torch were not installed
    loss, _ = expression()
    with pytest.raises(ImportError, match="needs PyTorch"):
        compare_backward(loss, "torch")


def test_torch_reference_names_an_op_it_lacks():
    pytest.importorskip("torch")
    from viz.figures_debug import Cube          # a user's own op (its backward forgets the 3): torch has no twin
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    loss = Cube.apply(x).sum()
    with pytest.raises(ValueError, match="no PyTorch version of op 'Cube'"):
        compare_backward(loss, "torch")
    assert compare_backward(loss, "numeric").first_bad.name == "Cube"   # numeric needs no other version


def fused_graph(softmax=fused.Softmax):
    rng = np.random.default_rng(1)
    x = Tensor(rng.normal(size=(2, 3, 6)), requires_grad=True, name="x")
    w = Tensor(rng.normal(size=6), requires_grad=True, name="w")
    b = Tensor(rng.normal(size=6), requires_grad=True, name="b")
    W = Tensor(rng.normal(size=(6, 5)), requires_grad=True, name="W")
    with fused_ops():
        y = F.layer_norm(x, w, b).gelu()                                   # (2, 3, 6)
        probs = softmax.apply(F.linear(y, W, b[:5]), axis=-1)              # (2, 3, 5)
        return F.cross_entropy(probs.log(), rng.integers(0, 5, (2, 3)))


def test_composed_reference_checks_the_fused_ops():
    loss = fused_graph()
    assert {type(t.op).__name__ for t in graph_nodes(loss) if t.op} >= {"LayerNorm", "Gelu", "Linear", "Softmax",
                                                                         "CrossEntropy"}
    cmp = compare_backward(loss, "composed")
    assert cmp.first_bad is None and max(err for err, _ in cmp.errors.values()) < 1e-12
    bad = fused_graph(planted(fused.Softmax))
    found = compare_backward(bad, "composed").first_bad
    assert found is not None and found.name == "WrongSoftmax"
    assert compare_backward(bad, "numeric").first_bad is found


def test_bad_reference():
    loss, _ = expression()
    with pytest.raises(ValueError, match="reference must be one of"):
        compare_backward(loss, "exact")


def test_cli_gradcheck_fused():
    result = CliRunner().invoke(cli.main, ["gradcheck", "--fused", "--op", "layer_norm", "--op", "softmax"])
    assert result.exit_code == 0, result.output
    assert re.search(r"layer_norm \[fused\]\s+layer_norm\s+\S+\s+\S+\s+PASS", result.output)
    assert "4/4 cases passed" in result.output


def test_docs_figure_outlines_the_planted_cube(tmp_path):
    pytest.importorskip("graphviz")
    from viz import figures_debug, graphviz_program
    if graphviz_program.find_program() is None:
        pytest.skip("no Graphviz")
    assert compare_backward(figures_debug.planted_bug_loss(), "numeric").first_bad.name == "Cube"
    text = figures_debug.compare_bug_svg(tmp_path, 0).read_text(encoding="utf-8")
    assert "first wrong at Cube" in text
    groups = re.findall(r'<g id="node\d+" class="node">(.*?)</g>', text, flags=re.S)
    outlined = [g for g in groups if 'stroke-width="4"' in g]
    assert len(outlined) == 1 and ">Cube<" in outlined[0]


@pytest.mark.parametrize("reference", ["composed", "numeric", "torch"])
def test_fused_gpt_agrees_with_every_reference(reference):
    """The training path (every fused op, SelfAttention included) of a one-layer GPT, float32."""
    if reference == "torch":
        pytest.importorskip("torch")
    from tinygrad_tx import backend
    from transformer import GPT, GPTConfig
    with backend.fork_rng(0):
        model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    idx = np.random.default_rng(0).integers(0, 11, (1, 7))
    with fused_ops():
        _, loss = model(idx[:, :-1], idx[:, 1:])
    assert "SelfAttention" in {t.op.name for t in graph_nodes(loss) if t.op}
    cmp = compare_backward(loss, reference)
    assert cmp.first_bad is None and not cmp.bad
