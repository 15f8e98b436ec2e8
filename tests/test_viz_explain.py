"""viz.explain_grad: each cause of a zero gradient built on purpose, with the cause, the
entries and the op on the path asserted; draw_graph(explain=) and `tx why`."""
import numpy as np
import pytest
from click.testing import CliRunner

import cli
from tinygrad_tx import Tensor, fused_ops, no_grad
from tinygrad_tx import functional as F
from viz import CAUSES, draw_graph, examples, explain_grad, graph_nodes, graphviz_program


def leaf(values, name, requires_grad=True):
    return Tensor(np.array(values, dtype="float64"), requires_grad=requires_grad, name=name)


def named(loss, name):
    return next(t for t in graph_nodes(loss) if t.name == name)


def test_masked_attention_scores_are_the_upper_triangle():
    loss = examples.build("attention")
    why = explain_grad(named(loss, "scores"), loss)
    assert why.cause == "masked"
    np.testing.assert_array_equal(why.elements, np.triu(np.ones((4, 4), bool), 1))
    assert why.responsible.name == "MaskedFill"
    assert why.path[0].output is loss and why.path[-1].op.name == "MaskedFill"
    assert "-inf" in why.text
    # the -inf entries themselves, downstream of the mask, tell the same
    after = explain_grad(named(loss, "masked_scores"), loss)
    assert after.cause == "masked" and after.responsible is why.responsible
    np.testing.assert_array_equal(after.elements, why.elements)
    # query 0 sees only key 0: its whole row of q gets no gradient, through the mask
    q = explain_grad(named(loss, "q"), loss)
    assert q.cause == "masked" and q.responsible is why.responsible and q.path[-1].op.name == "MatMul"
    np.testing.assert_array_equal(q.elements, np.arange(4)[:, None] == np.zeros((1, 4)))


def test_dead_relu():
    x, w = leaf([-1.0, 2.0, -3.0], "x"), leaf([1.0, 2.0, 3.0], "w")
    loss = ((x * w).relu() * 2.0).sum()
    loss.backward()
    why = explain_grad(x, loss)
    assert why.cause == "dead_relu" and why.responsible.name == "Relu"
    np.testing.assert_array_equal(why.elements, [True, False, True])


@pytest.mark.parametrize("fn, op", [(lambda x: x.tanh(), "Tanh"), (lambda x: x.sigmoid(), "Sigmoid")])
def test_saturated(fn, op):
    x = leaf([0.1, 25.0, -40.0], "x")
    loss = fn(x).sum()
    loss.backward()
    why = explain_grad(x, loss)
    assert why.cause == "saturated" and why.responsible.name == op
    np.testing.assert_array_equal(why.elements, [False, True, True])


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_saturated_gelu(fused, approximate):
    x = leaf([-30.0, 0.5], "x")
    with fused_ops(fused):
        loss = x.gelu(approximate).sum()
    loss.backward()
    why = explain_grad(x, loss)
    assert why.cause == "saturated"
    assert why.responsible.name == ("Gelu" if fused else "Erf" if approximate == "none" else "Tanh")
    np.testing.assert_array_equal(why.elements, [True, False])


def test_saturated_softmax_row():
    x = leaf([[40.0, 0.0, 1.0], [0.1, 0.2, 0.3]], "x")
    loss = (x.softmax(axis=-1) * leaf([[1.0, 2.0, 3.0], [1.0, -1.0, 2.0]], "c", False)).sum()
    loss.backward()
    why = explain_grad(x, loss)
    assert why.cause == "saturated"
    np.testing.assert_array_equal(why.elements, [[True] * 3, [False] * 3])


@pytest.mark.parametrize("fused", [False, True])
def test_ignored_target(fused):
    with fused_ops(fused):
        logits = leaf(np.random.default_rng(0).normal(size=(4, 5)), "logits")
        loss = F.cross_entropy(logits, np.array([1, -1, 3, 0]), ignore_index=-1)
    loss.backward()
    why = explain_grad(logits, loss)
    assert why.cause == "ignored_target"
    assert why.responsible.name == ("CrossEntropy" if fused else "MaskedFill")
    expected = np.zeros((4, 5), bool)
    expected[1] = True
    np.testing.assert_array_equal(why.elements, expected)


def test_cancelled():
    x, w = leaf([1.0, 2.0, 3.0], "x"), leaf([0.5, 1.0, 2.0], "w", False)
    loss = (x * w).sum() - (x * w).sum() + w.sum()
    loss.backward()
    why = explain_grad(x, loss)
    assert why.cause == "cancelled" and why.responsible.name == "Mul"
    assert why.elements.all()


def test_key_bias_cancels_over_the_broadcast():
    """Adding one vector to every key shifts each softmax row by a constant: the key bias's
    gradient, a sum over positions, cancels (float32 noise, far below its parts)."""
    loss = examples.build("multihead")
    bias = named(loss, "c_attn.bias")                         # (3C,) = q | k | v biases, C = 8
    why = explain_grad(bias, loss)
    assert why.cause == "cancelled" and why.responsible.name == "Add"
    np.testing.assert_array_equal(why.elements, (np.arange(24) >= 8) & (np.arange(24) < 16))
    assert "broadcasts" in why.text


def test_detached_and_no_grad_and_not_on_path():
    x, w = leaf([1.0, 2.0], "x"), leaf([1.0, -1.0], "w")
    loss = (x.detach() * w).sum()
    loss.backward()
    why = explain_grad(x, loss)
    assert why.cause == "detached" and why.path[-1].op.name == "Mul"
    with no_grad():
        h = x * 2.0
    assert explain_grad(x, (h * w).sum()).cause == "not_on_path"
    part = (x[0:1] * 3.0).sum()
    part.backward()
    why = explain_grad(x, part)
    assert why.cause == "not_on_path" and why.responsible.name == "GetItem"
    np.testing.assert_array_equal(why.elements, [False, True])


def test_no_requires_grad_no_backward_nonzero():
    x, c = leaf([1.0, -2.0], "x"), leaf([3.0, 4.0], "c", False)
    loss = (x * c).relu().sum()
    why = explain_grad(c, loss)
    assert why.cause == "no_requires_grad" and why.path[-1].op.name == "Mul"
    before = explain_grad(x, loss)                       # backward has not run
    assert before.cause == "no_backward" and "Relu" in before.text and x.grad is None
    loss.backward()
    assert explain_grad(x, loss).cause == "dead_relu"
    y = leaf([1.0, 2.0], "y")
    ok = (y * 3.0).sum()
    ok.backward()
    assert explain_grad(y, ok).cause == "nonzero" and not explain_grad(y, ok).elements.any()
    assert explain_grad(y).cause == "nonzero"             # no loss: its own .grad is enough here
    with pytest.raises(ValueError, match="pass the loss"):
        explain_grad(x)                                   # zeros, but no loss to search the path


def test_every_cause_is_documented():
    assert set(CAUSES) == {"no_backward", "no_requires_grad", "detached", "not_on_path", "masked", "saturated",
                           "dead_relu", "ignored_target", "cancelled", "nonzero"}


@pytest.mark.skipif(graphviz_program.find_program() is None, reason="no Graphviz")
def test_draw_graph_explain_highlights_the_path():
    loss = examples.build("attention")
    scores = named(loss, "scores")
    plain, why = draw_graph(loss).source, draw_graph(loss, explain=scores).source
    assert why.count("penwidth=3") == len(explain_grad(scores, loss).path) > plain.count("penwidth=3")
    assert "masked: " in why


@pytest.mark.skipif(graphviz_program.find_program() is None, reason="no Graphviz")
def test_cli_why(tmp_path):
    result = CliRunner().invoke(cli.main, ["why", "attention", "--tensor", "scores"])
    assert result.exit_code == 0, result.output
    assert "cause: masked" in result.output and "elements: (0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)\n" in result.output and "<- responsible" in result.output
    out = tmp_path / "why.svg"
    drawn = CliRunner().invoke(cli.main, ["why", "attention", "--tensor", "scores", "--out", str(out)])
    assert drawn.exit_code == 0 and out.is_file() and "masked: " in out.read_text()
    bad = CliRunner().invoke(cli.main, ["why", "attention", "--tensor", "score"])
    assert bad.exit_code == 2 and "did you mean scores" in bad.output
