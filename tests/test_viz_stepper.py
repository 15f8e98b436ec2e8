"""viz.stepper: the recorded backward steps follow the engine's order, carry the same gradients
as a plain backward, print readably, and draw frames; plus the `tx step` command."""

import numpy as np
import pytest
from click.testing import CliRunner

import cli
from tinygrad_tx import Tensor, scope
from tinygrad_tx.autograd import toposort
from viz import format_step, frame_graph, graph_nodes, graphviz_program, trace_backward
from viz.graph import DONE_FILL, GRAD, HOT
from viz.stepper import grads_at


def model(seed=0):
    """A small net with a reused tensor and a broadcast: softmax(x W + b) weighted sum."""
    rng = np.random.default_rng(seed)
    x = Tensor(rng.normal(size=(3, 4)), name="x")
    W = Tensor(rng.normal(size=(4, 2)), requires_grad=True, name="W")
    b = Tensor(rng.normal(size=(2,)), requires_grad=True, name="b")
    with scope("layer"):
        z = (x @ W + b).tanh()                          # (3, 2)
    p = z.softmax(axis=-1)                              # (3, 2)
    loss = (p * z).sum() + (W * W).mean()               # W used twice
    loss.name = "loss"
    return loss


def test_steps_follow_the_engines_reverse_topological_order():
    loss = model()
    expected = [t.op for t in reversed(toposort(loss)) if t.op is not None]
    steps = trace_backward(loss)
    assert [s.op for s in steps] == expected
    assert [s.index for s in steps] == list(range(len(steps)))
    assert all(s.output.op is s.op for s in steps)


def test_recorded_gradients_equal_a_plain_backward():
    traced, plain = model(), model()
    steps = trace_backward(traced)
    plain.backward()
    for a, b in zip(graph_nodes(traced), graph_nodes(plain)):
        assert (a.grad is None) == (b.grad is None)
        if a.grad is not None:
            np.testing.assert_array_equal(a.grad, b.grad)
    for s in steps:                                     # each op sees its output's full gradient
        np.testing.assert_array_equal(s.grad_out, s.output.grad)
        assert len(s.parent_grads) == len(s.op.parents)
        for (p, g), q in zip(s.parent_grads, s.op.parents):
            assert p is q
            assert (g is None) == (not q.requires_grad)
            if g is not None:
                assert g.shape == q.shape
    # grads_at after the last step is every tensor's final gradient
    final = grads_at(steps, len(steps) - 1)
    for t in graph_nodes(traced):
        if t.requires_grad:
            np.testing.assert_allclose(final[id(t)], t.grad, rtol=1e-12)


def test_reused_tensors_accumulate():
    a = Tensor([1.0, -2.0], requires_grad=True, name="a")
    b = a + a
    c = b + b
    steps = trace_backward(c.sum())
    np.testing.assert_array_equal(a.grad, [4.0, 4.0])
    sent_to_a = [g for s in steps for p, g in s.parent_grads if p is a]
    assert len(sent_to_a) == 2 and np.array_equal(sum(sent_to_a), a.grad)


def test_seed_gradient_and_errors():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = x * 3.0
    with pytest.raises(RuntimeError, match="pass grad="):
        trace_backward(y)
    steps = trace_backward(y, grad=[1.0, 10.0])
    np.testing.assert_array_equal(x.grad, [3.0, 30.0])
    np.testing.assert_array_equal(steps[0].grad_out, [1.0, 10.0])
    with pytest.raises(RuntimeError, match="does not require grad"):
        trace_backward(Tensor([1.0]))


def test_format_step_names_the_op_shapes_norms_and_rule():
    steps = trace_backward(model())
    matmul = next(s for s in steps if s.op.name == "MatMul")
    text = format_step(matmul, len(steps))
    assert f"step {matmul.index + 1}/{len(steps)}: MatMul" in text
    assert "dL/dA = dL/dY @ B^T" in text                       # the rule
    assert "(3, 4)" in text and "(4, 2)" in text and "|g| = " in text
    assert "'x'" in text and "nothing (needs no gradient)" in text     # x is data
    assert f"{float(matmul.grad_out.reshape(-1)[0]):.4g}" in text       # a value preview
    norm = np.linalg.norm(matmul.grad_out)
    assert f"|g| = {norm:.4g}" in text


def test_frame_graph_highlights_current_and_shades_done():
    loss = model()
    steps = trace_backward(loss)
    order = graph_nodes(loss)
    k_of = {id(t): k for k, t in enumerate(order)}
    i = 3
    dot = frame_graph(loss, steps, i)
    lines = {line.strip().split(" ")[0]: line for line in dot.source.splitlines() if " [" in line}
    cur = k_of[id(steps[i].output)]
    assert HOT in lines[f"op{cur}"] and HOT in lines[f"t{cur}"]
    for s in steps[:i]:
        assert DONE_FILL in lines[f"op{k_of[id(s.output)]}"]
    for s in steps[i + 1:]:
        assert DONE_FILL not in lines[f"op{k_of[id(s.output)]}"]
    # W has not received its gradient by step 0; by the last step it has
    W = k_of[id(next(t for t in order if t.name == "W"))]
    assert "not computed yet" in frame_graph(loss, steps, 0).source.split(f"t{W} [")[1].split("\n")[0]
    last = frame_graph(loss, steps, len(steps) - 1).source.split(f"t{W} [")[1].split("\n")[0]
    assert f'COLOR="{GRAD}"><TABLE' in last and "not computed yet" not in last     # its gradient grid
    assert "backward step 4/" in dot.source
    with pytest.raises(IndexError):
        frame_graph(loss, steps, len(steps))


# ----------------------------------------------------------------------------- CLI
# the `presets` fixture (a one-preset PRESETS named "tiny") is in conftest.py


def test_cli_step_prints_every_step_without_a_tty(presets):
    r = CliRunner().invoke(cli.main, ["step", "tiny"], input="")
    assert r.exit_code == 0, r.output
    assert "3 backward steps" in r.output
    for name in ("Sum", "Tanh", "Mul"):
        assert f": {name}" in r.output
    assert r.output.index(": Sum") < r.output.index(": Tanh") < r.output.index(": Mul")
    assert "rule: y = tanh(x)" in r.output and "done:" in r.output


@pytest.mark.skipif(graphviz_program.find_program() is None, reason="no Graphviz layout program")
def test_cli_step_writes_one_frame_per_step(tmp_path, presets):
    r = CliRunner().invoke(cli.main, ["step", "tiny", "--all", "--out", str(tmp_path / "frames")])
    assert r.exit_code == 0, r.output
    frames = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert frames == ["frame_000.svg", "frame_001.svg", "frame_002.svg"]
    assert "#d62728" in (tmp_path / "frames" / "frame_001.svg").read_text()


def test_cli_step_unknown_preset(presets):
    r = CliRunner().invoke(cli.main, ["step", "tin"])
    assert r.exit_code == 2 and "unknown preset 'tin'; did you mean tiny?" in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
