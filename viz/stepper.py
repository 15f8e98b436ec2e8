"""Step through a backward pass one op at a time.

`trace_backward(loss)` runs backward by draining the engine's `backward_steps` generator (the
same loop `Tensor.backward` drains) and keeps a record of each step: which op, the gradient
that arrived at its output, what it sent to each input, and its local rule. Afterwards every
tensor's `.grad` is what `loss.backward()` would have left.
"""
import dataclasses

import numpy as np

from tinygrad_tx import Tensor, backend
from tinygrad_tx.autograd import backward_steps

from .graph import draw_graph
from .labels import label_of


@dataclasses.dataclass
class Step:
    """One op processed by backward. Gradients are host (numpy) copies taken at that moment."""
    index: int                      # 0-based position in the backward order
    op: object                      # the Function node
    output: object                  # the tensor the op produced
    grad_out: np.ndarray            # dL/d(output), complete when the op runs
    parent_grads: list              # [(input tensor, dL/d(input) sent by this op, or None)]
    rule: str                       # the op's local derivative rule (its docstring)

    @property
    def label(self):
        return self.output.op_name or self.op.name


def trace_backward(loss, grad=None):
    """Run backward from `loss` (seed `grad`, default 1 for a scalar), recording every step.
    Returns the list of Steps in the order backward processed them (reverse topological)."""
    if not loss.requires_grad:
        raise RuntimeError("trace_backward: this tensor does not require grad (no graph was recorded)")
    if grad is None:
        if int(np.prod(loss.shape)) != 1:
            raise RuntimeError(f"trace_backward: loss has shape {loss.shape}; pass grad= of that shape "
                               "(or reduce it to a scalar first)")
        grad = backend.array_module(loss.data).ones_like(loss.data)
    else:
        grad = grad.data if isinstance(grad, Tensor) else backend.asarray(grad, loss.dtype)
        if tuple(grad.shape) != tuple(loss.shape):
            raise ValueError(f"trace_backward: grad of shape {tuple(grad.shape)} does not match loss shape {loss.shape}")
    steps = []
    for tensor, g, op, parent_grads in backward_steps(loss, grad):
        sent = [(p, None if pg is None else np.array(backend.to_numpy(pg)))
                for p, pg in zip(op.parents, parent_grads)]
        steps.append(Step(len(steps), op, tensor, np.array(backend.to_numpy(g)), sent, op.rule))
    return steps


def grads_at(steps, i):
    """id(tensor) -> the gradient it had accumulated once step i was done (None = none yet).
    A step's output holds its full gradient; an input holds the sum sent to it so far."""
    acc = {}
    for s in steps[:i + 1]:
        acc[id(s.output)] = s.grad_out
        for p, g in s.parent_grads:
            if g is not None:
                acc[id(p)] = g if acc.get(id(p)) is None else acc[id(p)] + g
    return acc


def _norm(g):
    return float(np.sqrt(np.sum(np.square(g.astype(np.float64))))) if g.dtype.kind == "f" else float("nan")


def _preview(g, n=4):
    flat = g.reshape(-1)
    head = ", ".join(f"{float(x):.4g}" for x in flat[:n])
    return f"[{head}{', ...' if flat.size > n else ''}]"


def _tname(t):
    return repr(t.name) if t.name else label_of(t)


def format_step(step, total=None):
    """A few lines describing one step, for the terminal."""
    of = f"/{total}" if total else ""
    out = step.output
    lines = [f"step {step.index + 1}{of}: {step.label}  ->  {_tname(out)} {tuple(out.shape)}"
             + (f"  [scope {out.scope}]" if out.scope else ""),
             f"  grad arriving  dL/dy {tuple(step.grad_out.shape)}  |g| = {_norm(step.grad_out):.4g}  "
             f"{_preview(step.grad_out)}"]
    for j, (p, g) in enumerate(step.parent_grads):
        who = f"input {j} {_tname(p)} {tuple(p.shape)}"
        if g is None:
            lines.append(f"  sent to {who}: nothing (needs no gradient)")
        else:
            lines.append(f"  sent to {who}  |g| = {_norm(g):.4g}  {_preview(g)}")
    rule = step.rule.replace("\n", "\n        ") if step.rule else "(no rule written)"
    lines.append(f"  rule: {rule}")
    return "\n".join(lines)


def frame_graph(loss, steps, i, **draw_kwargs):
    """draw_graph for step i: its op and output in red, earlier steps' ops shaded as done, and
    each tensor's gradient as it stood after step i ("not computed yet" where none arrived)."""
    if not 0 <= i < len(steps):
        raise IndexError(f"frame_graph: step {i} out of range (0..{len(steps) - 1})")
    acc = grads_at(steps, i)
    cur = steps[i]
    done = [s.op for s in steps[:i]] + [s.output for s in steps[:i]]
    draw_kwargs.setdefault("title", f"backward step {i + 1}/{len(steps)}: {cur.label}")
    return draw_graph(loss, highlight=(cur.op, cur.output), shade=done,
                      grad_of=lambda t: acc.get(id(t)), **draw_kwargs)

