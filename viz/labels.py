"""The label a drawing gives a tensor: its name when the code named it, otherwise what made it.

`label_of(t)` writes an unnamed intermediate as the expression of its op over its inputs'
labels, recursively: `x @ c_attn.weight`, `exp(z - max)`, `sum(exp, axis=-1)`, `-x`,
`relu(h)`, `x[...]`, `reshape(q)`. Deep expressions are elided with "…" to about `max_len`
characters. An unnamed leaf is a constant: a scalar shows its value (`0.5`), a larger one its
shape (`const (4, 4)`). Inside an expression a dotted parameter name keeps its last two parts
(`h.0.attn.c_attn.weight` -> `c_attn.weight`); the tensor's own label keeps the whole name.

Reads only public attributes: `t.name`, `t.op` (its `name` and `args`), `t.parents`, `t.data`,
`t.shape`, `t.requires_grad`.
"""
import numpy as np

from tinygrad_tx import backend

INFIX = {"Add": ("+", 1), "Sub": ("-", 1), "Mul": ("*", 2), "Div": ("/", 2), "MatMul": ("@", 2)}
CALLS = {"Exp", "Log", "Sqrt", "Tanh", "Sigmoid", "Relu", "Erf", "Reshape"}


def label_of(t, max_len=32):
    """The readable label of tensor t (never empty, never a placeholder)."""
    if t.name:
        return str(t.name)
    if t.op is None:
        return _leaf(t)
    for depth in (3, 2, 1, 0):          # fewer levels of inputs until it fits
        text = _made(t, depth)
        if len(text) <= max_len:
            return text
    return text[:max_len - 1] + "…"


def _inner(t, depth):
    """t's label as an operand inside a bigger expression."""
    if t.name:
        name = str(t.name)
        parts = name.split(".")
        return ".".join(parts[-2:]) if " " not in name and len(parts) > 2 else name
    if t.op is None:
        return _leaf(t)
    return _made(t, depth) if depth > 0 else "…"


def _leaf(t):
    if t.size == 1:
        return number(backend.to_numpy(t.data).reshape(()).item())
    return f"{'leaf' if t.requires_grad else 'const'} {tuple(t.shape)}"


def number(x):
    """One number as every drawing and printout of viz writes it: 4 significant digits, -0 as 0,
    inf / -inf / nan as such; ints and bools as they are."""
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    x = float(x)
    return "0" if x == 0 else f"{x:.4g}"


def _made(t, depth):
    """The expression of t's op over its inputs, each input `depth - 1` levels deep."""
    op, args = t.op.name, [_inner(p, depth - 1) for p in t.parents]
    if op in INFIX and len(args) == 2:
        sym, prec = INFIX[op]
        a, b = args
        a = _wrap(a) if prec == 2 and _is_sum(a) else a
        b = _wrap(b) if (prec == 2 and _is_infix(b)) or (op == "Sub" and _is_sum(b)) else b
        return f"{a} {sym} {b}"
    if op == "Neg":
        return f"-{_wrap(args[0]) if _is_infix(args[0]) else args[0]}"
    if op == "Pow":
        base = _wrap(args[0]) if _is_infix(args[0]) else args[0]
        return f"{base}^{number(t.op.args['exponent'])}"
    if op in CALLS:
        return f"{op.lower()}({args[0]})"
    if op in ("Sum", "Max"):
        axis = t.op.args.get("axis")
        return f"{op.lower()}({args[0]}{'' if axis is None else f', axis={axis}'})"
    if op == "Permute":
        axes = tuple(t.op.args["axes"])
        swaps_last = len(axes) >= 2 and axes == tuple(range(len(axes) - 2)) + (len(axes) - 1, len(axes) - 2)
        return f"{args[0]}.T" if swaps_last and not _is_infix(args[0]) else f"transpose({args[0]})"
    if op == "GetItem":
        return f"{args[0]}[...]"
    if op == "MaskedFill":
        return f"masked_fill({args[0]}, {number(float(t.op.args['value']))})"
    if op == "ToDevice":
        return f"{args[0]}.to({t.op.args['device']})"
    return f"{op.lower()}({', '.join(args)})"       # Concat, Stack, Where, the fused ops


def _is_infix(label):
    return any(f" {sym} " in label for sym in "+-*/@") and not _enclosed(label)


def _is_sum(label):
    return (" + " in label or " - " in label) and not _enclosed(label)


def _enclosed(label):
    """True when the whole label is one call or bracket: exp(a + b), (a + b)."""
    if not label.endswith(")"):
        return False
    depth = 0
    for i, ch in enumerate(label):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and i < len(label) - 1 and "(" in label[:i + 1]:
            return False
    return "(" in label and " " not in label[:label.index("(")]


def _wrap(label):
    return f"({label})"


__all__ = ["label_of"]
