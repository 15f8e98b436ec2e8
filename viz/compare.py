"""Where does my derivation go wrong? Every gradient of a graph against a reference, node by node.

`compare_backward(loss, reference)` replays the engine's backward (into its own store: no
`.grad` changes) and compares the gradient of every tensor that requires grad with a reference:

    "numeric"   central differences in float64 of the loss with respect to that tensor: each
                entry of the tensor is moved by +-eps and the graph's forward is replayed from
                it, re-running each recorded op's `forward` (type(op), op.args, op.parents) in
                topological order. Needs no other implementation: it checks a custom Function too.
    "composed"  the graph rebuilt with the composed version of every fused op (Softmax,
                LayerNorm, CrossEntropy, ... from tinygrad_tx/ops/fused.py), backward run on it.
    "torch"     the same expression built in PyTorch (float64) for the engine's primitives and
                fused ops (torch is imported only here, and only when asked for).

The result, a `BackwardComparison`, has `.errors` (tensor -> (max abs error, relative error)),
`.bad` (the tensors whose gradient is wrong), `.first_bad` (the op whose output's gradient is
right but whose inputs' gradients are wrong: where the derivation breaks; None when all agree)
and `.draw()` (the graph, each tensor coloured by its error, first_bad outlined in red).

A gradient is wrong when max |engine - reference| > atol + rtol * max |reference|.
"""
import dataclasses
import math

import numpy as np

from tinygrad_tx import Tensor, backend, fused_ops
from tinygrad_tx import functional as F
from tinygrad_tx.autograd import backward_steps, toposort, unbroadcast
from tinygrad_tx.ops import fused

from .graph import HOT, HOT_FILL, draw_graph
from .labels import label_of

REFERENCES = ("numeric", "composed", "torch")
# relative error -> box colour, from right (green) to wrong (red)
ERROR_COLOURS = ((1e-6, "#d9f0d3"), (1e-4, "#fff2b3"), (1e-2, "#ffd1a3"), (math.inf, "#ff9e9e"))


@dataclasses.dataclass
class BackwardComparison:
    loss: object
    reference: str
    errors: dict            # tensor -> (max abs error, relative error)
    grads: dict             # tensor -> the engine's gradient (numpy)
    expected: dict          # tensor -> the reference gradient (numpy)
    first_bad: object       # the op where the derivation breaks, or None
    atol: float
    rtol: float

    @property
    def bad(self):
        """The tensors whose gradient disagrees with the reference."""
        return [t for t in self.errors if not self.ok(t)]

    def ok(self, t):
        err = self.errors[t][0]
        return err <= self.atol + self.rtol * float(np.abs(self.expected[t]).max(initial=0.0))

    def draw(self, **draw_kwargs):
        """The graph with each tensor's box coloured by the relative error of its gradient (green
        right ... red wrong; the error written in the box) and first_bad outlined in red."""
        draw_kwargs.setdefault("title", f"gradients against the {self.reference} reference"
                               + (f": first wrong at {self.first_bad.label()}" if self.first_bad else ": all agree"))
        draw_kwargs.setdefault("subtitle", "box colour = relative error of the tensor's gradient: green < 1e-6, "
                               "yellow < 1e-4, orange < 1e-2, red above; the red outlined op is where it breaks")
        draw_kwargs.setdefault("grad_of", lambda t: self.grads.get(t))        # the engine's gradients
        dot = draw_graph(self.loss, **draw_kwargs)
        order = toposort(self.loss, every_tensor=True)
        node = {f"t{k}": t for k, t in enumerate(order)}
        bad_op = next((f"op{k}" for k, t in enumerate(order) if self.first_bad is not None and t.op is self.first_bad), None)
        for i, line in enumerate(dot.body):
            name, _, rest = line.strip().partition(" ")
            if not rest.startswith("["):
                continue                        # an edge, not a node
            t = node.get(name)
            if t is not None and t in self.errors and "label=<<TABLE" in line:
                err, rel = self.errors[t]
                colour = next(c for limit, c in ERROR_COLOURS if rel < limit)
                row = (f'<TR><TD ALIGN="LEFT" BGCOLOR="{colour}"><FONT POINT-SIZE="8">error {err:.2g} '
                       f'(relative {rel:.2g})</FONT></TD></TR>')
                head, tail = line.rsplit("</TABLE>>", 1)
                dot.body[i] = head.replace('BGCOLOR="white"', f'BGCOLOR="{colour}"', 1) + row + "</TABLE>>" + tail
            elif name == bad_op:
                dot.body[i] = line.rstrip().rstrip("]") + f' color="{HOT}" fillcolor="{HOT_FILL}" penwidth=4]\n'
        return dot

    def __str__(self):
        rows = [f"{'tensor':<28} {'max abs err':>11} {'rel err':>9}"]
        for t, (err, rel) in self.errors.items():
            rows.append(f"{label_of(t)[:28]:<28} {err:>11.2e} {rel:>9.2e}{'' if self.ok(t) else '  WRONG'}")
        rows.append(f"first bad op: {self.first_bad.label() if self.first_bad else 'none: all agree'}")
        return "\n".join(rows)


def compare_backward(loss, reference="numeric", eps=1e-6, atol=1e-6, rtol=1e-4):
    """Compare every gradient of loss's graph with `reference` ("numeric", "composed" or
    "torch"); see the module docstring. Returns a BackwardComparison."""
    if reference not in REFERENCES:
        raise ValueError(f"compare_backward: reference must be one of {', '.join(map(repr, REFERENCES))}, "
                         f"got {reference!r}")
    if not loss.requires_grad or loss.size != 1:
        raise ValueError(f"compare_backward: the loss must be a scalar that requires grad, got shape "
                         f"{loss.shape} with requires_grad={loss.requires_grad}")
    grads = engine_grads(loss)
    expected = {"numeric": numeric_grads, "composed": composed_grads, "torch": torch_grads}[reference](loss, eps)
    errors = {}
    for t in toposort(loss):
        if id(t) in grads and id(t) in expected:
            a, r = grads[id(t)].astype(np.float64), expected[id(t)]
            err = float(np.abs(a - r).max(initial=0.0))
            errors[t] = (err, err / max(float(np.abs(r).max(initial=0.0)), 1e-30))
    cmp = BackwardComparison(loss, reference, errors, {t: grads[id(t)] for t in errors},
                             {t: expected[id(t)] for t in errors}, None, atol, rtol)
    cmp.first_bad = _first_bad(loss, cmp, eps)
    return cmp


def _np(a):
    return np.asarray(backend.to_numpy(a))


def engine_grads(loss):
    """id(tensor) -> the engine's gradient, replayed (no .grad changes)."""
    store = {}
    for _ in backward_steps(loss, backend.array_module(loss.data).ones_like(loss.data), store=store):
        pass
    return {k: _np(g) for k, g in store.items()}


# ----------------------------------------------------------------------------- numeric
def _f64(a):
    a = _np(a)
    return a.astype(np.float64) if a.dtype.kind == "f" else a


def _replay_op(op, arrays):
    """Re-run a recorded op's forward on new (float64, numpy) arrays: a fresh instance of its class."""
    fresh = type(op)(op.parents, np)
    args = {k: (_np(v) if backend.is_array(v) else v) for k, v in op.args.items()}
    if "weights" in args:
        args["weights"] = None          # SelfAttention's buffer for plots: leave the model's alone
    fresh.args = args
    return np.asarray(fresh.forward(*arrays, **args))


def numeric_grads(loss, eps=1e-6):
    """id(tensor) -> dL/d(tensor) by central differences in float64, for every tensor of the
    graph that requires grad: the tensor's entries are moved one at a time and the forward is
    replayed from it (only the ops downstream of it run again)."""
    order = toposort(loss, every_tensor=True)
    index = {id(t): k for k, t in enumerate(order)}
    base = {}
    for t in order:
        base[id(t)] = _f64(t.data) if t.op is None else _replay_op(t.op, [base[id(p)] for p in t.parents])
    downstream = [[] for _ in order]            # k -> the later tensors that read tensor k, in order
    reads = [set() for _ in order]
    for k, t in enumerate(order):
        reads[k] = {k}
        for p in t.parents:
            reads[k] |= reads[index[id(p)]]
        for j in reads[k] - {k}:
            downstream[j].append(k)

    def loss_with(k, value):
        vals = dict(base)
        vals[id(order[k])] = value
        for d in downstream[k]:
            t = order[d]
            vals[id(t)] = _replay_op(t.op, [vals[id(p)] for p in t.parents])
        return float(np.sum(vals[id(loss)]))

    out = {}
    for t in toposort(loss):
        k, x = index[id(t)], base[id(t)]
        g = np.zeros(x.shape)
        for i in np.ndindex(*x.shape):
            if not np.isfinite(x[i]):
                continue                        # a -inf (masked) entry: the loss cannot move with it
            up, down = x.copy(), x.copy()
            up[i] += eps
            down[i] -= eps
            g[i] = (loss_with(k, up) - loss_with(k, down)) / (2 * eps)
        out[id(t)] = g
    return out


# ----------------------------------------------------------------------------- composed
def _mask(mask):
    return None if mask is None else _np(mask)


def _self_attention(qkv, n_head, mask=None, scale=1.0, weights=None):
    B, T, C3 = qkv.shape
    C = C3 // 3
    heads = [x.reshape(B, T, n_head, C // n_head).transpose(0, 2, 1, 3) for x in qkv.split(C, axis=-1)]
    y = F.attention_weights(heads[0], heads[1], _mask(mask), scale) @ heads[2]  # (B, H, T, hs)
    return y.transpose(0, 2, 1, 3).reshape(B, T, C)


def _cross_entropy(logits, targets, valid):
    logp = logits.log_softmax(axis=-1)                                           # (N, V)
    picked = logp[np.arange(logits.shape[0]), _np(targets)]                      # (N,)
    valid = _np(valid)
    if not valid.all():
        picked = picked.masked_fill(Tensor(~valid), 0.0)
    return -picked.sum() / int(valid.sum())


COMPOSED = {      # fused op -> its composed version, from primitives (keyword arguments: op.args)
    "Softmax": lambda x, axis=-1: x.softmax(axis=axis),
    "LogSoftmax": lambda x, axis=-1: x.log_softmax(axis=axis),
    "LayerNorm": lambda x, w, b, eps=1e-5: F.layer_norm(x, w, b, eps=eps),
    "Linear": lambda x, w, b: x @ w + b,
    "Gelu": lambda x, approximate="none": x.gelu(approximate),
    "Embedding": lambda w, ids: w[_np(ids)],
    "CrossEntropy": _cross_entropy,
    "AttentionWeights": lambda q, k, mask=None, scale=1.0: F.attention_weights(q, k, _mask(mask), scale),
    "SelfAttention": _self_attention,
}


def _fused_name(op):
    """The name of the fused op class this op is (or derives from), else None."""
    return next((c.__name__ for c in type(op).__mro__ if c.__module__ == fused.__name__), None)


def composed_grads(loss, eps=None):
    """id(tensor) -> its gradient in the graph rebuilt with every fused op composed."""
    order = toposort(loss, every_tensor=True)
    new = {}
    with fused_ops(False):
        for t in order:
            if t.op is None:
                new[id(t)] = Tensor(t.data, requires_grad=t.requires_grad)
            else:
                ps = [new[id(p)] for p in t.parents]
                build = COMPOSED.get(_fused_name(t.op))
                new[id(t)] = build(*ps, **t.op.args) if build else type(t.op).apply(*ps, **t.op.args)
    grads = engine_grads(new[id(loss)])
    return {id(t): grads[id(new[id(t)])].astype(np.float64) for t in order if id(new[id(t)]) in grads}


# ----------------------------------------------------------------------------- torch
def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("compare_backward(reference='torch') needs PyTorch (a test-only dependency of this "
                          "project: pip install torch); use reference='numeric' without it") from None
    return torch


def _torch_ops(torch):
    tF = torch.nn.functional

    def axes(a):
        return tuple(a) if isinstance(a, (tuple, list)) else a

    def reduce(fn):
        def run(x, axis=None, keepdims=False):
            dims = tuple(range(x.ndim)) if axis is None else axes(axis)
            return fn(x, dim=dims, keepdim=keepdims)
        return run

    def index(i):
        parts = i if isinstance(i, tuple) else (i,)
        parts = tuple(torch.as_tensor(_np(p)) if backend.is_array(p) else p for p in parts)
        return parts if isinstance(i, tuple) else parts[0]

    def ce(z, targets, valid):
        t = torch.as_tensor(np.where(_np(valid), _np(targets), -100))
        return tF.cross_entropy(z, t, ignore_index=-100)

    def attn(q, k, mask=None, scale=1.0):
        s = (q @ k.transpose(-1, -2)) * scale
        if mask is None:
            return torch.softmax(s, -1)
        m = torch.as_tensor(_np(mask))
        dead = m.all(-1, keepdim=True)
        w = torch.softmax(s.masked_fill(m & ~dead, float("-inf")), -1)
        return w.masked_fill(dead, 0.0)

    def self_attention(qkv, n_head, mask=None, scale=1.0, weights=None):
        B, T, C3 = qkv.shape
        q, k, v = (x.reshape(B, T, n_head, C3 // (3 * n_head)).transpose(1, 2) for x in qkv.split(C3 // 3, dim=-1))
        return (attn(q, k, mask, scale) @ v).transpose(1, 2).reshape(B, T, C3 // 3)
    return {
        "Add": lambda a, b: a + b, "Sub": lambda a, b: a - b, "Mul": lambda a, b: a * b, "Div": lambda a, b: a / b,
        "Neg": lambda x: -x, "Pow": lambda x, exponent: x ** exponent, "Exp": torch.exp, "Log": torch.log,
        "Sqrt": torch.sqrt, "Tanh": torch.tanh, "Sigmoid": torch.sigmoid, "Relu": torch.relu, "Erf": torch.erf,
        "Sum": reduce(torch.sum), "Max": reduce(torch.amax), "MatMul": lambda a, b: a @ b,
        "Reshape": lambda x, shape: x.reshape(shape), "Permute": lambda x, axes: x.permute(*axes),
        "GetItem": lambda x, index_: x[index(index_)],
        "Concat": lambda *xs, axis=0: torch.cat(xs, dim=axis), "Stack": lambda *xs, axis=0: torch.stack(xs, dim=axis),
        "MaskedFill": lambda x, m, value: x.masked_fill(m, value), "Where": torch.where,
        "ToDevice": lambda x, device: x,
        "Softmax": lambda x, axis=-1: torch.softmax(x, axis), "LogSoftmax": lambda x, axis=-1: torch.log_softmax(x, axis),
        "LayerNorm": lambda x, w, b, eps=1e-5: tF.layer_norm(x, (x.shape[-1],), w, b, eps),
        "Linear": lambda x, w, b: x @ w + b, "Gelu": lambda x, approximate="none": tF.gelu(x, approximate=approximate),
        "Embedding": lambda w, ids: w[torch.as_tensor(_np(ids))], "CrossEntropy": ce, "AttentionWeights": attn,
        "SelfAttention": self_attention,
    }


def torch_grads(loss, eps=None):
    """id(tensor) -> its gradient from the same expression built in PyTorch, float64."""
    torch = _torch()
    ops = _torch_ops(torch)
    order = toposort(loss, every_tensor=True)
    new = {}
    for t in order:
        if t.op is None:
            new[id(t)] = torch.tensor(_f64(t.data), requires_grad=t.requires_grad)
            continue
        # the engine's op this one is (a subclass with its own backward is the same function)
        fn = next((ops[c.__name__] for c in type(t.op).__mro__
                   if c.__module__.startswith("tinygrad_tx.ops") and c.__name__ in ops), None)
        if fn is None:
            raise ValueError(f"compare_backward(reference='torch'): no PyTorch version of op {t.op.name!r}; "
                             "use reference='numeric' (it needs none)")
        args = dict(t.op.args)
        if "index" in args:
            args = {"index_": args["index"]}
        out = fn(*(new[id(p)] for p in t.parents), **args)
        if t.requires_grad:
            out.retain_grad()
        new[id(t)] = out
    new[id(loss)].sum().backward()
    return {id(t): new[id(t)].grad.detach().numpy() for t in order
            if t.requires_grad and new[id(t)].grad is not None}


# ----------------------------------------------------------------------------- where it breaks
def _first_bad(loss, cmp, eps):
    """In backward order, the ops whose output's gradient is right but an input's is wrong; of
    those, the first whose own backward disagrees with a numeric check of its forward (an input
    read by several ops could be spoiled by any of them), else the first."""
    by_tensor = {id(t): t for t in cmp.errors}
    candidates = []
    for t in reversed(toposort(loss)):
        if t.op is None or t not in cmp.errors or not cmp.ok(t):
            continue
        if any(id(p) in by_tensor and not cmp.ok(by_tensor[id(p)]) for p in t.op.parents):
            candidates.append(t)
    for t in candidates:
        if not _local_backward_ok(t, cmp, eps):
            return t.op
    return candidates[0].op if candidates else None


def _local_backward_ok(t, cmp, eps):
    """Does t.op's backward, given t's (right) gradient, agree with central differences of its
    forward alone?  d/dx_j sum(forward(x) * g), each input entry moved by +-eps."""
    op = t.op
    g = cmp.grads[t]
    sent = op.backward(backend.asarray(g, t.dtype, t.device))
    sent = sent if isinstance(sent, tuple) else (sent,)
    xs = [_f64(p.data) for p in op.parents]
    g64 = g.astype(np.float64)
    for j, (p, a) in enumerate(zip(op.parents, sent)):
        if not p.requires_grad or a is None:
            continue
        a = _np(unbroadcast(a, p.shape)).astype(np.float64)
        num = np.zeros(p.shape)
        for i in np.ndindex(*p.shape):
            if not np.isfinite(xs[j][i]):
                continue
            vals = []
            for step in (eps, -eps):
                moved = [x.copy() if n == j else x for n, x in enumerate(xs)]
                moved[j][i] += step
                vals.append(float(np.sum(_replay_op(op, moved) * g64)))
            num[i] = (vals[0] - vals[1]) / (2 * eps)
        if np.abs(a - num).max(initial=0.0) > cmp.atol + cmp.rtol * np.abs(num).max(initial=0.0):
            return False
    return True


__all__ = ["BackwardComparison", "compare_backward", "engine_grads", "numeric_grads", "composed_grads",
           "torch_grads", "REFERENCES"]
