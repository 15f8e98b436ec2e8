"""viz.stepper: the recorded backward steps follow the engine's order, carry the same gradients
as a plain backward, print readably, and draw frames; plus the `tx step` command."""

import math

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
    k_of = {id(t): k for k, t in enumerate(graph_nodes(traced))}
    plain_nodes = graph_nodes(plain)
    assert all(t.grad is None for t in graph_nodes(traced))      # the replay wrote no .grad
    for s in steps:                                     # each op sees its output's full gradient
        np.testing.assert_array_equal(s.grad_out, plain_nodes[k_of[id(s.output)]].grad)
        assert len(s.parent_grads) == len(s.op.parents)
        for (p, g), q in zip(s.parent_grads, s.op.parents):
            assert p is q
            assert (g is None) == (not q.requires_grad)
            if g is not None:
                assert g.shape == q.shape
    # grads_at after the last step is every tensor's final gradient
    final = grads_at(steps, len(steps) - 1)
    for t, ref in zip(graph_nodes(traced), plain_nodes):
        if t.requires_grad:
            np.testing.assert_allclose(final[id(t)], ref.grad, rtol=1e-12)


def test_reused_tensors_accumulate():
    a = Tensor([1.0, -2.0], requires_grad=True, name="a")
    b = a + a
    c = b + b
    steps = trace_backward(c.sum())
    sent_to_a = [g for s in steps for p, g in s.parent_grads if p is a]
    assert len(sent_to_a) == 2 and np.array_equal(sum(sent_to_a), [4.0, 4.0])
    b_step = next(s for s in steps if s.output is b)    # c = b + b: b's gradient is a sum of two
    assert b_step.index == 2 and b_step.arrived_from == [(1, "Add", 0), (1, "Add", 1)]
    assert "dL/dy = sum of 2 contributions: from Add (step 2, input 0) + from Add (step 2, input 1)" in format_step(b_step)
    assert a.grad is None


def test_seed_gradient_and_errors():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = x * 3.0
    with pytest.raises(RuntimeError, match="pass grad="):
        trace_backward(y)
    steps = trace_backward(y, grad=[1.0, 10.0])
    np.testing.assert_array_equal(steps[0].parent_grads[0][1], [3.0, 30.0])
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


# ----------------------------------------------------------------------------- replay, not backward
def test_trace_leaves_every_grad_alone_and_works_after_backward():
    fresh = model()
    trace_backward(fresh)
    assert all(t.grad is None for t in graph_nodes(fresh))
    fresh.backward()                        # the replay did not use up the graph: backward still runs
    done = model()
    done.backward()
    before = [(t.grad, None if t.grad is None else t.grad.tobytes()) for t in graph_nodes(done)]
    steps = trace_backward(done)            # after backward: replays from the kept buffers
    assert [(t.grad, None if t.grad is None else t.grad.tobytes()) for t in graph_nodes(done)] == before
    assert all(g is after.grad for (g, _), after in zip(before, graph_nodes(done)))
    for s in steps:
        np.testing.assert_array_equal(s.grad_out, s.output.grad)
    with pytest.raises(RuntimeError, match="second time"):
        done.backward()                     # a second plain backward still refuses, as in torch


def test_trace_after_a_training_backward_says_why_it_cannot():
    loss = model()
    loss.backward(leaves_only=True)
    with pytest.raises(RuntimeError, match="leaves_only=True"):
        trace_backward(loss)


# ----------------------------------------------------------------------------- tx step text
def block(text, header):
    """The lines under the line containing `header`, up to the next line not indented deeper."""
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if header in line)
    out = []
    for line in lines[i + 1:]:
        if not line.startswith("      "):
            break
        out.append(line.strip())
    return out


def test_small_arrays_print_whole_in_rows_and_columns():
    x = Tensor(np.array([[1.0, -2.5, 0.0], [1234.5678, -0.0, 3.0]]), requires_grad=True, name="x")
    k = Tensor(np.array([[-1.0, 1.0, 2.0], [0.5, 1e-5, -0.0]]), requires_grad=True, name="k")
    mul = format_step(trace_backward((x * k).sum())[1], 2)
    assert block(mul, "sent to input 0 (a) 'x' (2, 3)") == ["[[ -1      1  2]", "[0.5  1e-05  0]]"]
    assert block(mul, "sent to input 1 (b) 'k' (2, 3)") == ["[[   1  -2.5  0]", "[1235     0  3]]"]  # -0 as 0
    assert "grad arriving  dL/dy (2, 3)" in mul and block(mul, "dL/dy came from Sum (step 1)") == ["[[1  1  1]", "[1  1  1]]"]
    big = Tensor(np.arange(65.0), requires_grad=True, name="big")
    text = format_step(trace_backward((big * 2.0).sum())[1])
    assert "|g| = " in text and "[2, 2, 2, 2, ...]" in text and block(text, "sent to input 0 (a) 'big'") == []
    cube = Tensor(np.arange(8.0).reshape(2, 2, 2), requires_grad=True, name="cube")
    text = format_step(trace_backward((cube * 1.0).sum())[1])
    assert block(text, "sent to input 0 (a) 'cube'") == ["[0, :, :] =", "[[1  1]", "[1  1]]",
                                                         "[1, :, :] =", "[[1  1]", "[1  1]]"]


def scalar(v, name):
    return Tensor(np.array(v), requires_grad=True, name=name)


# each case: the op under test applied to scalars a = 0.5, b = -0.8 (positive inputs where needed)
SCALAR_OPS = {
    "Add": lambda a, b: a + b, "Sub": lambda a, b: a - b, "Mul": lambda a, b: a * b,
    "Div": lambda a, b: a / b, "Neg": lambda a, b: -b, "Pow": lambda a, b: b ** 3,
    "Exp": lambda a, b: b.exp(), "Log": lambda a, b: a.log(), "Tanh": lambda a, b: b.tanh(),
    "Sigmoid": lambda a, b: b.sigmoid(), "Relu": lambda a, b: b.relu(), "Sqrt": lambda a, b: a.sqrt(),
}


@pytest.mark.parametrize("name", sorted(SCALAR_OPS))
def test_scalar_ops_print_the_rule_with_the_numbers_plugged_in(name):
    a, b = scalar(0.5, "a"), scalar(-0.8, "b")
    y = SCALAR_OPS[name](a, b)
    upstream = Tensor(np.array(0.25), name="upstream")
    steps = trace_backward(y * upstream)              # dL/dy = 0.25, not 1, so the product shows
    step = steps[1]
    assert step.op.name == name
    text = format_step(step)
    line = text.split("with the numbers: ")[1].splitlines()
    eqs = [ln.strip() for ln in line if ln.strip().startswith("dL/d")]
    sent = [(p, g) for p, g in step.parent_grads if g is not None]
    assert len(eqs) == len(sent) >= 1
    for eq, (p, g) in zip(eqs, sent):
        parts = eq.split(" = ")
        assert parts[-1] == f"{g.item():.4g}"          # ends with the engine's own number
        if len(parts) > 3:                             # the numbers, evaluated, give it back
            expr = parts[-2].replace("^", "**").replace("exp", "math.exp")
            assert math.isclose(eval(expr, {"math": math}), g.item(), rel_tol=2e-3, abs_tol=1e-9), eq
    assert "0.25" in eqs[0]
    if name == "Pow":
        assert "y = the output <b^3> (),  p = 3" in text        # unnamed: labelled by what made it


def test_mul_prints_the_example_from_the_issue():
    a, b = scalar(0.5, "a"), scalar(-0.8, "b")
    steps = trace_backward(a * b * Tensor(np.array(0.5), name="half"))
    text = format_step(steps[1])
    assert "dL/da = dL/dy * b = 0.5 * -0.8 = -0.4" in text
    assert "dL/db = dL/dy * a = 0.5 * 0.5 = 0.25" in text


def test_rule_symbols_are_bound_so_user_names_cannot_clash():
    # the user calls the first input "b" and the second "a": the rule's a, b are bound explicitly
    first, second = scalar(2.0, "b"), scalar(3.0, "a")
    y = first * second
    y.name = "y"
    text = format_step(trace_backward(y)[0])
    assert "where a = input 0 'b' (),  b = input 1 'a' (),  y = the output 'y' ()" in text
    assert "dL/da = dL/dy * b = 1 * 3 = 3" in text          # b is the rule's b: the input 'a'
    mm = trace_backward((Tensor(np.ones((2, 3)), name="B") @ Tensor(np.ones((3, 2)), requires_grad=True, name="A")).sum())
    assert "where A = input 0 'B' (2, 3),  B = input 1 'A' (3, 2),  Y = the output" in format_step(mm[1])
    assert "sent to input 1 (B) 'A' (3, 2)  dL/dB" in format_step(mm[1])


def test_arriving_gradient_names_its_contributions():
    w = scalar(0.5, "w")
    h = w * 2.0
    h.name = "h"
    loss = h * 3.0 + (h + 1.0)                        # h feeds a Mul and an Add
    steps = trace_backward(loss)
    h_step = next(s for s in steps if s.output is h)
    senders = {s.index + 1: s.op.name for s in steps if any(p is h for p, _ in s.parent_grads)}
    (i, op_i), (j, op_j) = sorted(senders.items())
    assert f"dL/dy = sum of 2 contributions: from {op_i} (step {i}) + from {op_j} (step {j})" in format_step(h_step)
    assert {op_i, op_j} == {"Mul", "Add"}
    assert "dL/dy is the seed" in format_step(steps[0])
    assert f"dL/dy came from Add (step 1)" in format_step(steps[1])
