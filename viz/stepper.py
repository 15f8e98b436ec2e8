"""Step through a backward pass one op at a time.

`trace_backward(loss)` runs backward by draining the engine's `backward_steps` generator (the
same loop `Tensor.backward` drains) and keeps a record of each step: which op, the gradient
that arrived at its output (and which earlier steps sent it), what it sent to each input,
and its local rule. It replays into its own store: no tensor's `.grad` changes, and it works
whether or not `loss.backward()` has already run.

`format_step` prints a step for the terminal. A rule is written in the op's own symbols (the
ones its docstring uses: `a, b -> y` for Mul, `A, B -> Y` for MatMul, `x -> y` for Tanh), and
each symbol is bound explicitly to the tensor it stands for ("where a = input 0 'w' (3,)"),
so a user's tensor called `b` cannot be mistaken for the rule's `b`.
"""
import collections
import dataclasses

import numpy as np

from tinygrad_tx import Tensor, backend
from tinygrad_tx.autograd import backward_steps

from .graph import draw_graph
from .labels import label_of, number


@dataclasses.dataclass
class Step:
    """One op processed by backward. Gradients are host (numpy) copies taken at that moment."""
    index: int                      # 0-based position in the backward order
    op: object                      # the Function node
    output: object                  # the tensor the op produced
    grad_out: np.ndarray            # dL/d(output), complete when the op runs
    parent_grads: list              # [(input tensor, dL/d(input) sent by this op, or None)]
    rule: str                       # the op's local derivative rule (its docstring)
    arrived_from: list = dataclasses.field(default_factory=list)
    # [(step index, op name, input position)]: the earlier steps whose gradients summed to
    # grad_out (empty for the loss itself, whose gradient is the seed)

    @property
    def label(self):
        return self.output.op_name or self.op.name


def trace_backward(loss, grad=None):
    """Run backward from `loss` (seed `grad`, default 1 for a scalar), recording every step.
    Returns the list of Steps in the order backward processed them (reverse topological).
    Leaves every `.grad` as it was (None if backward never ran)."""
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
    steps, senders = [], {}                 # id(tensor) -> [(step, op name, input position)]
    for tensor, g, op, parent_grads in backward_steps(loss, grad, store={}):
        sent = [(p, None if pg is None else np.array(backend.to_numpy(pg)))
                for p, pg in zip(op.parents, parent_grads)]
        steps.append(Step(len(steps), op, tensor, np.array(backend.to_numpy(g)), sent, op.rule,
                          senders.pop(id(tensor), [])))
        for j, (p, pg) in enumerate(sent):
            if pg is not None:
                senders.setdefault(id(p), []).append((len(steps) - 1, op.name, j))
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
    """A user's name in quotes ('loss'); an unnamed tensor by what made it, in angle brackets
    (<o - y>), so neither reads as one of the rule's own symbols (x, y, a, b)."""
    return repr(t.name) if t.name else f"<{label_of(t)}>"


# ----------------------------------------------------------------------------- numbers
SMALL = 64              # arrays with at most this many elements are printed whole


def _rows(m):
    """A 2-d array as text rows, columns right-aligned: [[ 1  -0.5], [ 2  3 ]]."""
    cells = [[number(x) for x in row] for row in m.tolist()]
    widths = [max(len(r[c]) for r in cells) for c in range(m.shape[1])]
    body = ["[" + "  ".join(v.rjust(w) for v, w in zip(r, widths)) + "]" for r in cells]
    return [("[" if i == 0 else " ") + b + ("]" if i == len(body) - 1 else "") for i, b in enumerate(body)]


def grid(a):
    """Every value of a small array, rows and columns as in the array, as text lines. Leading
    axes beyond two are spelled out: "[0, :, :] =" then that matrix."""
    a = np.asarray(a)
    if a.ndim == 0:
        return [number(a.item())]
    if a.ndim == 1:
        return [_rows(a[None, :])[0][1:-1]]                 # one row: [1  -0.5  2]
    if a.ndim == 2:
        return _rows(a)
    lines = []
    for lead in np.ndindex(*a.shape[:-2]):
        lines.append("[" + ", ".join(map(str, lead)) + ", :, :] =")
        lines.extend("  " + line for line in _rows(a[lead]))
    return lines


def _values(g):
    """A gradient for the terminal: one number inline; up to 64 every number, each row on its
    own line; larger its norm and the first few values."""
    if g.size == 1:
        return f" = {number(g.reshape(-1)[0])}", []
    if g.size <= SMALL:
        return f"  |g| = {_norm(g):.4g}", ["      " + line for line in grid(g)]
    return f"  |g| = {_norm(g):.4g}  {_preview(g)}", []


# ----------------------------------------------------------------------------- the op's symbols
# op -> (its inputs, its output), in the letters its docstring writes its rule with
SYMBOLS = {
    "Add": (("a", "b"), "y"), "Sub": (("a", "b"), "y"), "Mul": (("a", "b"), "y"), "Div": (("a", "b"), "y"),
    "MatMul": (("A", "B"), "Y"), "Where": (("cond", "a", "b"), "y"), "MaskedFill": (("x", "mask"), "y"),
    "LayerNorm": (("x", "w", "b"), "y"), "Linear": (("x", "W", "b"), "y"), "Embedding": (("W",), "y"),
    "CrossEntropy": (("z",), "loss"), "AttentionWeights": (("q", "k"), "W"),
    "SelfAttention": (("qkv",), "y"),
}


def symbols(op):
    """(input symbols, output symbol) of an op: Mul -> (["a", "b"], "y"). Concat and Stack
    take x_1..x_n; an op not listed reads x -> y; inputs past the listed ones are in_j."""
    n = len(op.parents)
    if op.name in ("Concat", "Stack"):
        return [f"x_{j + 1}" for j in range(n)], "y"
    ins, out = SYMBOLS.get(op.name, (("x",), "y"))
    ins = list(ins[:n])
    return ins + [f"in{j}" for j in range(len(ins), n)], out


# op -> per input: (its rule, the same with numbers in), for ops whose output is y. Placeholders:
# g = dL/dy, y, the input symbols, p the exponent; a trailing _ puts a negative number in
# parentheses, as a base of ^ or after a unary minus needs.
PLUGGED = {
    "Add": [("dL/dy", "{g}"), ("dL/dy", "{g}")],
    "Sub": [("dL/dy", "{g}"), ("-dL/dy", "-{g_}")],
    "Mul": [("dL/dy * b", "{g} * {b}"), ("dL/dy * a", "{g} * {a}")],
    "Div": [("dL/dy / b", "{g} / {b}"), ("-dL/dy * a / b^2", "-{g_} * {a} / {b_}^2")],
    "Neg": [("-dL/dy", "-{g_}")],
    "Pow": [("dL/dy * p * x^(p-1)", "{g} * {p} * {x_}^{pm1_}")],
    "Exp": [("dL/dy * y", "{g} * {y}")],
    "Log": [("dL/dy / x", "{g} / {x}")],
    "Sqrt": [("dL/dy / (2 y)", "{g} / (2 * {y})")],
    "Tanh": [("dL/dy * (1 - y^2)", "{g} * (1 - {y_}^2)")],
    "Sigmoid": [("dL/dy * y * (1 - y)", "{g} * {y} * (1 - {y})")],
    "Relu": [("dL/dy * [x > 0]", "{g} * [{x} > 0] = {g} * {step}")],
    "Erf": [("dL/dy * 2/sqrt(pi) * exp(-x^2)", "{g} * 1.128 * exp(-{x_}^2)")],
    "Sum": [("dL/dy", "{g}")], "Max": [("dL/dy", "{g}")], "Reshape": [("dL/dy", "{g}")],
}


def plugged(step):
    """For an op whose tensors each hold one number: per input that got a gradient, the rule
    with the numbers in, e.g. "dL/da = dL/dy * b = 0.5 * -0.8 = -0.4". [] otherwise."""
    op, out = step.op, step.output
    rules = PLUGGED.get(op.name)
    if rules is None or out.size != 1 or any(p.size != 1 for p in op.parents):
        return []
    ins, _ = symbols(op)
    vals = {sym: p.numpy().item() for sym, p in zip(ins, op.parents)}
    vals.update(g=step.grad_out.item(), y=out.numpy().item())
    if op.name == "Pow":
        vals.update(p=op.args["exponent"], pm1=op.args["exponent"] - 1)
    if op.name == "Relu":
        vals["step"] = int(vals["x"] > 0)
    text = {k: number(v) for k, v in vals.items()}
    text.update({k + "_": f"({t})" if t.startswith("-") else t for k, t in text.items()})
    lines = []
    for sym, (p, pg), (rule, numbers) in zip(ins, step.parent_grads, rules):
        if pg is not None:
            numbers, result = numbers.format(**text), number(pg.item())
            lines.append(f"dL/d{sym} = {rule} = {numbers}" + (f" = {result}" if numbers != result else ""))
    return lines


# ----------------------------------------------------------------------------- one step
def _arrivals(step, y):
    """Where the arriving gradient came from, in words: the seed, one op, or a sum."""
    if not step.arrived_from:
        return f"dL/d{y} is the seed: backward starts here"
    uses = collections.Counter(i for i, _, _ in step.arrived_from)     # a + a: one step, twice
    parts = [f"from {name} (step {i + 1}" + (f", input {j}" if uses[i] > 1 else "") + ")"
             for i, name, j in step.arrived_from]
    if len(parts) == 1:
        return f"dL/d{y} came {parts[0]}"
    return f"dL/d{y} = sum of {len(parts)} contributions: " + " + ".join(parts)


def format_step(step, total=None):
    """A few lines describing one step, for the terminal: the op, its rule in its own symbols
    with each symbol bound to a tensor, the gradient arriving (and where it came from), what
    it sends to each input, and for one-number tensors the rule with the numbers plugged in.
    Arrays of at most 64 elements are printed whole."""
    of = f"/{total}" if total else ""
    out = step.output
    ins, y = symbols(step.op)
    lines = [f"step {step.index + 1}{of}: {step.label}  ->  {_tname(out)} {tuple(out.shape)}"
             + (f"  [scope {out.scope}]" if out.scope else "")]
    rule = step.rule.replace("\n", "\n        ") if step.rule else "(no rule written)"
    lines.append(f"  rule: {rule}")
    where = [f"{sym} = input {j} {_tname(p)} {tuple(p.shape)}" for j, (sym, p) in enumerate(zip(ins, step.op.parents))]
    where.append(f"{y} = the output {_tname(out)} {tuple(out.shape)}")
    if step.op.name == "Pow":
        where.append(f"p = {number(step.op.args['exponent'])}")
    lines.append("  where " + ",  ".join(where))
    head, rows = _values(step.grad_out)
    lines += [f"  grad arriving  dL/d{y} {tuple(step.grad_out.shape)}{head}", f"    {_arrivals(step, y)}"] + rows
    for j, (sym, (p, g)) in enumerate(zip(ins, step.parent_grads)):
        who = f"input {j} ({sym}) {_tname(p)} {tuple(p.shape)}"
        if g is None:
            lines.append(f"  sent to {who}: nothing (needs no gradient)")
        else:
            head, rows = _values(g)
            lines += [f"  sent to {who}  dL/d{sym}{head}"] + rows
    numbers = plugged(step)
    if numbers:
        lines.append("  with the numbers: " + ("\n" + " " * 20).join(numbers))
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

