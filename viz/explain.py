"""Why is this gradient zero (or tiny, or None)?

`explain_grad(tensor, loss)` replays the backward pass from `loss` into its own store (as the
stepper does: no `.grad` changes) and walks from `tensor` towards the loss until it finds the
op that made the gradient vanish. It returns an `Explanation`:

    .cause      one word of CAUSES (below)
    .elements   a bool array of the tensor's shape: the entries the cause is about (all True
                when it concerns the whole tensor, all False for "nonzero")
    .path       [PathOp(op, output, responsible)] from the loss down to the tensor; the op that
                is responsible has responsible=True
    .text       two or three plain sentences
    .grad       the replayed gradient (a numpy array; None when there is none)

A tensor does not know its consumers (only its parents), so the loss must be given to search
the path: `explain_grad(x, loss)`. Without it only the tensor's own state is read (whether it
requires grad, whether `.grad` is set); `draw_graph(loss, explain=x)` passes its root as the
loss. A gradient entry counts as zero when |g| <= tol * s, tol = 1e-6 by default, s the largest
entry of the tensor's own gradient, of what its consumers sent it and of the gradients arriving
at their outputs. `ignored_target` is recognised in the fused CrossEntropy
(its `valid` rows) and in the composed cross_entropy, which fills the ignored positions of the
tensor it names `picked` with 0 (a masked_fill with any other output is `masked`).

Reads only public attributes: `t.op` (its `name`, `args`, `parents`), `t.data`, `t.name`,
`t.requires_grad`, `t.grad`, and the engine's `backward_steps` and `toposort`.
"""
import collections
import dataclasses
import math

import numpy as np

from tinygrad_tx import backend
from tinygrad_tx.autograd import backward_steps, toposort

from .labels import label_of

CAUSES = {
    "no_backward": "backward has not run yet: .grad is None",
    "no_requires_grad": "the tensor does not require grad (a constant, data, a target, or cut "
                        "from the graph by .detach() / no_grad())",
    "detached": "the loss reads a .detach()ed copy of it, so no gradient flows back",
    "not_on_path": "the loss does not depend on it (or on these entries of it)",
    "masked": "its positions were set to -inf before a softmax: weight exactly 0, gradient 0",
    "saturated": "a softmax / tanh / sigmoid / GELU / exp whose local derivative is ~0 there",
    "dead_relu": "a ReLU whose input is <= 0 there passes no gradient",
    "ignored_target": "cross_entropy ignore_index: those positions add nothing to the loss",
    "cancelled": "large parts sum to ~0: contributions from several consumers, or the copies of a "
                 "broadcast input",
    "nonzero": "the gradient is not zero",
}


@dataclasses.dataclass
class PathOp:
    """One op on the path from the loss down to the tensor."""
    op: object
    output: object
    responsible: bool = False

    def __repr__(self):
        mark = "  <- responsible" if self.responsible else ""
        return f"{self.op.label()} -> {label_of(self.output)}{mark}"


@dataclasses.dataclass
class Explanation:
    tensor: object
    cause: str
    elements: np.ndarray
    path: list
    text: str
    grad: object = None

    @property
    def responsible(self):
        """The op marked responsible on the path (None when there is none)."""
        return next((p.op for p in self.path if p.responsible), None)

    def marks(self):
        """The ops and tensors a drawing highlights: the path and the tensor itself."""
        return tuple(p.op for p in self.path) + tuple(p.output for p in self.path) + (self.tensor,)

    def __str__(self):
        lines = [f"cause: {self.cause}", self.text]
        if self.elements is not None and 0 < self.elements.sum() < self.elements.size:
            where = [tuple(int(i) for i in ix) for ix in np.argwhere(self.elements)]
            more = f" ... ({len(where)} in all)" if len(where) > 24 else ""
            lines.append(f"elements: {', '.join(map(str, where[:24]))}{more}")
        if self.path:
            lines.append("path (from the loss down):")
            lines += [f"  {p!r}" for p in self.path]
        return "\n".join(lines)


def _np(a):
    return np.asarray(backend.to_numpy(a))


def _who(t):
    return f"{label_of(t)!r} {tuple(t.shape)}"


def _count(mask):
    n, total = int(mask.sum()), mask.size
    return "every entry" if n == total else f"{n} of its {total} entries"


class _Replay:
    """One backward replay from the loss: every gradient, who sent what to whom."""

    def __init__(self, loss):
        seed = backend.array_module(loss.data).ones_like(loss.data)
        store, self.sent, self.out_of = {}, collections.defaultdict(list), {}
        for node, g, op, parent_grads in backward_steps(loss, seed, store=store):
            self.out_of[id(op)] = node
            for j, (p, pg) in enumerate(zip(op.parents, parent_grads)):
                if pg is not None:
                    self.sent[id(p)].append((op, j, _np(pg)))
        self.grad = {k: _np(g) for k, g in store.items()}         # id(tensor) -> its full gradient

    def scale(self, t):
        """The size a gradient of t is measured against: the largest entry of its own gradient,
        of what each op reading it sent it, and of the gradient arriving at those ops' outputs
        (so a tensor saturated everywhere still counts as ~0, and a deep layer whose gradients
        are all small does not)."""
        def peak(a):
            return float(np.abs(a).max(initial=0.0))
        sizes = [peak(self.grad[id(t)])] if id(t) in self.grad else []
        for op, _, pg in self.sent.get(id(t), []):
            sizes += [peak(pg), peak(self.grad.get(id(self.out_of[id(op)]), np.zeros(())))]
        return max(sizes, default=0.0)

    def tiny(self, t, tol):
        g = self.grad.get(id(t))
        return np.ones(t.shape, bool) if g is None else np.abs(g) <= tol * self.scale(t)


def _consumers(loss, every_tensor):
    """id(tensor) -> [(op, its output)] over the loss's graph."""
    users = collections.defaultdict(list)
    for t in toposort(loss, every_tensor=every_tensor):
        if t.op is not None:
            for p in t.op.parents:
                users[id(p)].append((t.op, t))
    return users


def _path_up(t, loss, users):
    """The shortest chain of (op, output) from t up to the loss (breadth first), t's consumer first."""
    prev, queue = {id(t): None}, collections.deque([t])
    while queue:
        u = queue.popleft()
        if u is loss:
            chain = []
            while prev[id(u)] is not None:
                op, below = prev[id(u)]
                chain.append((op, u))
                u = below
            return chain[::-1]
        for op, out in users.get(id(u), []):
            if id(out) not in prev:
                prev[id(out)] = (op, u)
                queue.append(out)
    return []


def _path(chain, responsible=None):
    """PathOps from the loss down, given a chain from the tensor up."""
    return [PathOp(op, out, op is responsible) for op, out in reversed(chain)]


def explain_grad(tensor, loss=None, tol=1e-6):
    """Why `tensor`'s gradient is zero, tiny or None, with respect to `loss` (see the module
    docstring for the causes and how the loss is found). Returns an Explanation."""
    t, name = tensor, _who(tensor)
    whole = np.ones(t.shape, bool)
    if loss is None:
        return _without_loss(t, name, whole)
    if not loss.requires_grad:
        raise ValueError(f"explain_grad: the loss {_who(loss)} does not require grad: no graph was recorded")
    if not t.requires_grad:
        chain = _path_up(t, loss, _consumers(loss, every_tensor=True))
        where = "The loss reads it as a constant. " if chain else "The loss does not read it at all. "
        return Explanation(t, "no_requires_grad", whole, _path(chain), (
            f"{name} does not require grad, so backward gives it none. " + where +
            "Create it with requires_grad=True (outside no_grad(), without .detach()) to get one."))
    replay = _Replay(loss)
    if id(t) not in replay.grad and t is not loss:
        return _off_path(t, name, loss, whole)
    why = _explain_zeros(t, name, loss, replay, tol)
    if t.grad is None:
        return Explanation(t, "no_backward", whole, why.path, (
            f"backward has not run yet: {label_of(t)}.grad is None. Call loss.backward() first. "
            f"Once it runs: {why.text}"), why.grad)
    return why


def _without_loss(t, name, whole):
    if not t.requires_grad:
        return Explanation(t, "no_requires_grad", whole, [], (
            f"{name} does not require grad, so backward gives it none: it was created with "
            "requires_grad=False, or cut from the graph by .detach() or no_grad()."))
    if t.grad is None:
        return Explanation(t, "no_backward", whole, [], (
            f"{label_of(t)}.grad is None: backward has not run, or the loss does not depend on it. "
            "Pass the loss, explain_grad(t, loss), to tell which (a tensor does not know its consumers)."))
    g = _np(t.grad)
    if np.any(g == 0):
        raise ValueError(f"explain_grad: {name} has a zero gradient in {_count(g == 0)}; pass the loss, "
                         "explain_grad(t, loss), so the path can be searched (a tensor does not know its consumers)")
    return Explanation(t, "nonzero", np.zeros(t.shape, bool), [], f"{name}'s gradient is nonzero everywhere.", g)


def _off_path(t, name, loss, whole):
    """t requires grad but backward from the loss never reaches it."""
    users = _consumers(loss, every_tensor=True)
    copy = next((c for c in toposort(loss, every_tensor=True)
                 if c.op is None and not c.requires_grad and c.shape == t.shape
                 and np.may_share_memory(_np(c.data), _np(t.data))), None)
    if copy is not None:
        return Explanation(t, "detached", whole, _path(_path_up(copy, loss, users)), (
            f"The loss reads {name} only through a .detach()ed copy, which shares its values but is cut "
            "from the graph: no gradient flows back through it. Use the tensor itself where the gradient "
            "should flow."))
    return Explanation(t, "not_on_path", whole, [], (
        f"The loss does not depend on {name}: backward from the loss never reaches it, so its gradient "
        "stays None. If it should, look for a .detach() or a no_grad() block between them (they leave "
        "no trace in the graph)."))


def _explain_zeros(t, name, loss, replay, tol):
    g = replay.grad.get(id(t))
    tiny = replay.tiny(t, tol)
    if t is loss or not tiny.any():
        return Explanation(t, "nonzero", np.zeros(t.shape, bool), _path(_path_up(t, loss, _consumers(loss, False))),
                           f"{name}'s gradient is nonzero everywhere (largest |g| = {np.abs(g).max():.4g}).", g)
    found = _search(t, tiny, replay, tol, set())
    if found is None:            # an op sends 0 though its output's gradient is not 0 (a zero factor)
        first = replay.sent[id(t)][0][0] if replay.sent.get(id(t)) else None
        found = ("not_on_path", tiny, [(first, replay.out_of[id(first)])] if first else [], first, [])
    cause, elements, chain, op, below = found
    top = chain[-1][1] if chain else t
    path = _path(chain + _path_up(top, loss, _consumers(loss, every_tensor=False)), op)
    on_path = {id(p.op) for p in path}
    path += [PathOp(o, out, o is op) for o, out in below if id(o) not in on_path]   # the -inf came from below t
    text = _sentence(cause, name, elements, op, t)
    return Explanation(t, cause, elements, path, text, g)


def _search(u, E, replay, tol, seen):
    """(cause, elements of E, chain of (op, output) from u up to the responsible op, that op,
    the chain of (op, output) from u down to a masked_fill(-inf) below it), or None.
    E: the entries of u whose gradient is ~0."""
    if id(u) in seen:
        return None
    seen.add(id(u))
    data = _np(u.data)
    if data.dtype.kind == "f" and (E & np.isneginf(data)).any():
        mf, below = _masked_source(u)
        return "masked", E & np.isneginf(data), [], mf, below
    sent = replay.sent.get(id(u), [])
    if len(sent) > 1:
        big = _cancels(replay.grad.get(id(u)), np.max([np.abs(pg) for _, _, pg in sent], axis=0), tol)
        if (E & big).any():
            op = sent[0][0]
            sat, rows = _saturated_softmax(u, sent, E & big, tol)
            if sat is not None:
                return "saturated", E & rows, [(sat, replay.out_of[id(sat)])], sat, []
            return "cancelled", E & big, [(op, replay.out_of[id(op)])], op, []
    found = []
    for op, j, pg in sent:
        y = replay.out_of[id(op)]
        Ey = _map_entries(op, j, u, E, y) & replay.tiny(y, tol)
        same = op.name in ELEMENTWISE and y.shape == u.shape      # entries line up one to one
        rest = E & ~Ey if same else (E if not Ey.any() else np.zeros_like(E))
        if rest.any():                              # the op itself sends ~0 to these
            local = _local(op, j, u, rest, y, tol, replay)
            if local is not None and local[1].any():
                found.append((local[0], local[1], [(op, y)], op, []))
        if Ey.any():                                # ~0 already arrives at the op's output
            up = _search(y, Ey, replay, tol, seen)
            if up is not None:
                cause, hit, chain, resp, below = up
                found.append((cause, E & hit if same else E, [(op, y)] + chain, resp, below))
    if not found:
        return None
    best = max(found, key=lambda r: r[1].sum())
    union = np.any([r[1] for r in found if r[0] == best[0]], axis=0)     # same cause, several routes
    return (best[0], union) + best[2:]


ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Neg", "Pow", "Exp", "Log", "Sqrt", "Tanh", "Sigmoid", "Relu", "Erf",
               "MaskedFill", "Where", "ToDevice", "Gelu"}


def _cancels(total, parts, tol):
    """Where a sum `total` is ~0 because its parts cancel: the largest part is nonzero and at
    least 1/sqrt(tol) (1000) times the sum."""
    total = np.zeros_like(parts) if total is None else np.abs(total)
    return (parts > 0) & (parts * math.sqrt(tol) >= total)


def _map_entries(op, j, u, E, y):
    """The entries of y that read the entries E of input j (= u) of op, as a bool array of y's
    shape (all of y when the op mixes entries)."""
    try:
        if op.name == "Reshape":
            return E.reshape(y.shape)
        if op.name == "Permute":
            return E.transpose(op.args["axes"])
        if op.name == "GetItem":
            flat = np.arange(E.size).reshape(E.shape)[op.args["index"]]
            return E.reshape(-1)[flat]
        if op.name in ("Sum", "Max"):
            axis, keep = op.args.get("axis"), op.args.get("keepdims")
            return E.any(axis=axis, keepdims=keep) if axis is not None or keep else np.array(E.any())
        if tuple(np.broadcast_shapes(u.shape, y.shape)) == tuple(y.shape):
            return np.broadcast_to(E, y.shape)       # elementwise (u broadcast into y)
    except (ValueError, TypeError, IndexError, KeyError):
        pass
    return np.ones(y.shape, bool)


def _local(op, j, u, E, y, tol, replay):
    """A zero the op itself makes at entries E of its input j: (cause, entries) or None."""
    name = op.name
    if name in ("Add", "Sub") and u.shape != y.shape and id(y) in replay.grad:
        # u was broadcast: its gradient is the sum of dL/dy over the copies, which can cancel
        # (a bias added to every key of a softmax row shifts the whole row: gradient 0)
        g = np.abs(replay.grad[id(y)])
        lead = g.ndim - len(u.shape)
        copies = g.max(axis=tuple(range(lead))) if lead else g
        copies = copies.max(axis=tuple(i for i, n in enumerate(u.shape) if n == 1 and copies.shape[i] != 1),
                            keepdims=True)
        return "cancelled", E & _cancels(replay.grad.get(id(u)), copies, tol)
    if name == "MaskedFill" and j == 0:
        hit = E & np.broadcast_to(_np(op.parents[1].data), u.shape)
        value = float(op.args["value"])
        cause = "masked" if value == -math.inf else "ignored_target" if y.name == "picked" else "masked"
        return cause, hit
    if name == "CrossEntropy":                   # the fused loss: rows whose target is ignored
        return "ignored_target", E & ~_np(op.args["valid"])[:, None]
    if name == "Relu":
        return "dead_relu", E & (_np(u.data) <= 0)
    x, out = _np(u.data).astype(np.float64), _np(y.data).astype(np.float64)
    local = {"Tanh": lambda: 1 - out * out, "Sigmoid": lambda: out * (1 - out), "Exp": lambda: out,
             "Erf": lambda: 2 / math.sqrt(math.pi) * np.exp(-x * x),
             "Softmax": lambda: np.minimum(out, 1 - out), "Gelu": lambda: _gelu_slope(x, op.args["approximate"])}
    if name in local:
        return "saturated", E & (np.abs(local[name]()) <= tol)
    return None


def _gelu_slope(x, approximate):
    if approximate == "tanh":
        u = math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
        th = np.tanh(u)
        return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * x * x)
    cdf = 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    return cdf + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def _saturated_softmax(u, sent, E, tol):
    """A composed softmax's exp node (read by a Div and by the Sum below it) whose rows are
    near one-hot: the two paths cancel at the winning entry, and exp's slope is ~0 at the
    others. Returns (that Div, the entries of its saturated rows), or (None, None)."""
    if u.op is None or u.op.name != "Exp":
        return None, None
    for op, j, _ in sent:
        if op.name == "Div" and j == 0:
            w = _np(op.parents[0].data) / _np(op.parents[1].data)
            flat = np.minimum(w, 1 - w) <= tol
            if flat[E].all():
                return op, np.broadcast_to(flat.all(axis=-1, keepdims=True), u.shape)
    return None, None


def _masked_source(u):
    """The masked_fill(-inf) that made u's -inf entries (u's own op or one below it) and the
    chain of (op, output) from u down to it."""
    queue, prev = collections.deque([u]), {id(u): None}
    while queue:
        v = queue.popleft()
        if v.op is not None and v.op.name == "MaskedFill" and float(v.op.args["value"]) == -math.inf:
            chain, w = [], v
            while w is not None:
                chain.append((w.op, w))
                w = prev[id(w)]
            return v.op, chain[::-1]
        for p in (v.op.parents if v.op is not None else ()):
            if id(p) not in prev:
                prev[id(p)] = v
                queue.append(p)
    return u.op, [(u.op, u)] if u.op is not None else []


def _out_shape(op, t):
    return tuple(np.broadcast_shapes(*(p.shape for p in op.parents)))


def _sentence(cause, name, elements, op, t):
    where = _count(elements)
    opname = op.label() if op is not None else "an op"
    if cause == "masked" and op is not None and t is not op.parents[0] and not np.isneginf(_np(t.data)).any():
        return (f"{name}'s gradient is 0 in {where}: the scores those entries make were set to -inf by "
                f"{opname} before the softmax (or left one key, whose softmax has slope 0), so no gradient "
                "comes back to them. A query never learns from keys it must not see.")
    if cause == "masked":
        return (f"{name}'s gradient is 0 in {where}: those positions were set to -inf by {opname} before "
                "the softmax, so their weight is exactly 0 and no gradient flows back through them. "
                "That is what the mask is for: a query never learns from keys it must not see.")
    if cause == "ignored_target":
        return (f"{name}'s gradient is 0 in {where}: cross_entropy ignores those positions "
                f"(ignore_index), so they add nothing to the loss ({opname} fills them with a constant).")
    if cause == "dead_relu":
        return (f"{name}'s gradient is 0 in {where}: {opname} has input <= 0 there, where its "
                "derivative is 0. A unit whose input is always negative never learns (a dead ReLU).")
    if cause == "saturated":
        return (f"{name}'s gradient is ~0 in {where}: {opname} is saturated there, its local derivative "
                "is ~0, so almost nothing of the loss's gradient gets through, whatever the loss says.")
    if cause == "cancelled" and op is not None and op.name in ("Add", "Sub") and t.shape != _out_shape(op, t):
        return (f"{name}'s gradient is ~0 in {where}: {opname} broadcasts it to many positions, and the "
                "gradient is the sum over those copies, which cancel (each is large). A bias added to every "
                "score of a softmax row, for one, shifts the row and changes nothing.")
    if cause == "cancelled":
        return (f"{name}'s gradient is ~0 in {where}: it is used by several ops, and their contributions "
                f"(each large, the first from {opname}) sum to ~0.")
    return (f"{name}'s gradient is 0 in {where}: the loss does not depend on those entries; "
            f"{opname} sends them nothing (they are not picked, or are multiplied by 0).")


__all__ = ["CAUSES", "Explanation", "PathOp", "explain_grad"]
