"""The graph core: `Function` (one node of the graph), grad modes, module scopes, and the
backward driver.

A Function instance is the op node between tensors: `out.op` is the Function that made `out`,
`out.op.parents` (also `out.parents`) the tensors it read. Subclasses implement
`forward(*arrays, **args) -> array` and `backward(grad_out) -> grad per parent`, with the
derivative written in the docstring (shown by the viz layer as the op's local rule).
"""
import contextlib
import inspect

from . import backend


class AnomalyError(FloatingPointError):
    """Raised under `detect_anomaly()`. `.tensor` is the offending tensor, `.op` the op."""

    def __init__(self, message, tensor=None, op=None):
        super().__init__(message)
        self.tensor, self.op = tensor, op


# ----------------------------------------------------------------------------- modes
class _State:
    grad_enabled = True
    anomaly = False
    fused = False
    scopes = []            # stack of module names, e.g. ["h.0", "attn"]
    scope_name = ""        # their dotted join, kept up to date (read by every op)


@contextlib.contextmanager
def no_grad():
    """Inside this block ops record no graph: outputs have requires_grad=False."""
    prev, _State.grad_enabled = _State.grad_enabled, False
    try:
        yield
    finally:
        _State.grad_enabled = prev


def is_grad_enabled():
    return _State.grad_enabled


@contextlib.contextmanager
def detect_anomaly():
    """Raise AnomalyError at the first op that creates a NaN/inf in forward, or sends a
    non-finite gradient in backward. Forward infinities are allowed when an input already had
    one, or when the op exists to write them (masked_fill with -inf)."""
    prev, _State.anomaly = _State.anomaly, True
    try:
        yield
    finally:
        _State.anomaly = prev


@contextlib.contextmanager
def fused_ops(enabled=True):
    """THE switch between the two implementations of softmax, log_softmax, cross_entropy,
    layer_norm, gelu, embedding, linear, the attention softmax and multi-head self-attention. Off (the default): composed from
    primitives, so a drawn graph shows every step. On: one fused op each with a hand-derived
    backward (tinygrad_tx/ops/fused.py): same values, much faster. Training turns it on."""
    prev, _State.fused = _State.fused, enabled
    try:
        yield
    finally:
        _State.fused = prev


def is_fused():
    return _State.fused


@contextlib.contextmanager
def scope(name):
    """Tag every tensor created inside with this (dotted) module scope, e.g. "h.0.attn"."""
    _State.scopes.append(str(name))
    _State.scope_name = ".".join(s for s in _State.scopes if s)
    try:
        yield
    finally:
        _State.scopes.pop()
        _State.scope_name = ".".join(s for s in _State.scopes if s)


def current_scope():
    return _State.scope_name


# ----------------------------------------------------------------------------- Function
class Function:
    """One op node. `apply` runs forward and links the output into the graph."""

    allows_inf = False          # True for ops whose job is to write infinities

    def __init__(self, parents, xp):
        self.parents = parents          # the input tensors, in order
        self.xp = xp                    # the array module (numpy or cupy)
        self.args = {}                  # non-tensor arguments (axis, exponent, ...)
        self.saved = ()
        self.used = False               # a backward without retain_graph went through it
        self.freed = False              # its saved buffers were released (training backward)

    @property
    def name(self):
        return type(self).__name__

    @property
    def rule(self):
        """The local derivative rule, from the class docstring."""
        return inspect.cleandoc(type(self).__doc__ or "")

    def label(self):
        """Op name with its arguments, e.g. 'Sum(axis=1)'."""
        if not self.args:
            return self.name
        def show(v):
            return f"array{tuple(v.shape)}" if getattr(v, "ndim", 0) else repr(v)
        return f"{self.name}({', '.join(f'{k}={show(v)}' for k, v in self.args.items())})"

    def save_for_backward(self, *arrays):
        self.saved = arrays

    @property
    def needs_grad(self):
        """Which parents want a gradient (ops may skip computing the others)."""
        return tuple(p.requires_grad for p in self.parents)

    @classmethod
    def apply(cls, *tensors, **args):
        try:
            xp = backend.array_module(*(t.data for t in tensors))
        except backend.DeviceError:
            raise backend.DeviceError(f"{cls.__name__}: inputs are on different devices: " + ", ".join(
                f"{t.name or 'tensor'}{tuple(t.shape)} on {backend.device_of(t.data)}" for t in tensors)) from None
        op = cls(tensors, xp)
        op.args = args
        data = op.forward(*(t.data for t in tensors), **args)
        requires_grad = _State.grad_enabled and any(t.requires_grad for t in tensors)
        out = type(tensors[0])._from_op(data, op if requires_grad else None, current_scope())
        if not requires_grad:
            op.saved, op.parents = (), ()       # nothing will call backward: drop references
        if _State.anomaly:
            _check_forward(op, tensors, out)
        return out

    def forward(self, *arrays, **args):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError


def _describe(tensors):
    return ", ".join(f"{t.name or 'tensor'}{tuple(t.shape)}" for t in tensors)


def _check_forward(op, tensors, out):
    if not backend.is_float(out.data) or backend.isfinite_all(out.data):
        return
    xp = op.xp
    has_nan = bool(xp.isnan(out.data).any())
    inputs_had_inf = any(backend.is_float(t.data) and not backend.isfinite_all(t.data) for t in tensors)
    if has_nan or not (inputs_had_inf or op.allows_inf):
        kind = "NaN" if has_nan else "inf"
        raise AnomalyError(f"detect_anomaly: forward of {op.label()} produced {kind} "
                           f"from inputs {_describe(tensors)}", tensor=out, op=op)


# ----------------------------------------------------------------------------- backward
def unbroadcast(grad, shape):
    """Sum a gradient back to `shape`: the one place broadcasting is undone.
    Broadcasting copies a value to many positions, so its gradient is the sum over them."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad


def toposort(root, every_tensor=False):
    """Tensors of root's graph, every tensor after its parents, root last. Iterative (no
    recursion limit) and deterministic (a node's first parent is visited first). By default
    only tensors that require grad (what backward walks); every_tensor=True also includes
    constants and inputs without grad (what a drawing shows)."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node.op is not None:
            for p in reversed(node.op.parents):
                if (every_tensor or p.requires_grad) and id(p) not in visited:
                    stack.append((p, False))
    return order


def _check_can_backward(op, replay):
    """Refuse a second pass through an op whose buffers are gone (a training backward freed
    them) or whose graph a backward already used (unless this is a replay)."""
    if op.freed:
        raise RuntimeError(f"backward: cannot go through {op.label()} again: a training backward "
                           "(leaves_only=True) freed its saved buffers as it went; run forward again"
                           + ("" if replay else ", or pass retain_graph=True to that first backward() call"))
    if op.used and not replay:
        raise RuntimeError(f"backward: trying to backward through {op.label()} a second time, but the "
                           "first backward used up its graph (PyTorch has freed its saved buffers by then). "
                           "Pass retain_graph=True to the first backward() call.")


def _fit_parent_grad(op, parent, pg):
    """The gradient op.backward returned for one parent, made to fit it: None where the parent
    wants none; summed over the axes its forward broadcast; in the parent's dtype. Its shape,
    and with detect_anomaly its finiteness, are checked."""
    if pg is None or not parent.requires_grad:
        return None
    pg = unbroadcast(pg, parent.shape)
    if pg.shape != parent.shape:
        raise RuntimeError(f"backward of {op.label()}: gradient shape {tuple(pg.shape)} does "
                           f"not match input {parent.name or 'tensor'} of shape {tuple(parent.shape)}")
    if pg.dtype != parent.data.dtype:
        pg = pg.astype(parent.data.dtype)
    if _State.anomaly and backend.is_float(pg) and not backend.isfinite_all(pg):
        raise AnomalyError(f"detect_anomaly: backward of {op.label()} produced a non-finite "
                           f"gradient for input {parent.name or 'tensor'}{tuple(parent.shape)} "
                           f"(inputs {_describe(op.parents)})", tensor=parent, op=op)
    return pg


def backward_steps(root, grad, retain_graph=False, leaves_only=False, store=None):
    """Run backward from `root`, yielding (tensor, grad_out, op, parent_grads) per op node in
    reverse topological order. `Tensor.backward` drains this; the viz stepper records it.

    store: a dict to replay into (the viz stepper's): each tensor's gradient goes to
    store[id(tensor)] instead of `.grad`, and the graph is left as it was, so a replay never
    changes `.grad` and works before or after `loss.backward()`. Without it a backward marks
    its graph as used (a second one needs retain_graph=True, as in PyTorch) but keeps the saved
    buffers for a replay; the training backward (leaves_only) frees them as it goes."""
    order = toposort(root)
    pending = {id(root): grad}                  # gradient flowing into each tensor, summed
    while order:
        node = order.pop()                      # reverse topological order, releasing as we go
        g = pending.pop(id(node), None)
        if g is None:
            continue
        if store is not None:
            store[id(node)] = g                 # a replay: record, leave .grad alone
        elif node.op is None or not leaves_only:
            node.grad = g if node.grad is None else node.grad + g     # accumulate, never assign over
        op = node.op
        if op is None:
            continue
        _check_can_backward(op, replay=store is not None)
        grads = op.backward(g)
        parent_grads = tuple(_fit_parent_grad(op, parent, pg)
                             for parent, pg in zip(op.parents, grads if isinstance(grads, tuple) else (grads,)))
        for parent, pg in zip(op.parents, parent_grads):
            if pg is not None:
                prev = pending.get(id(parent))
                pending[id(parent)] = pg if prev is None else prev + pg    # reuse: gradients add
        yield node, g, op, parent_grads
        if store is not None or retain_graph:
            continue
        op.used = True
        if leaves_only:
            # training: free the saved buffers and drop this node's graph edges too (as PyTorch
            # frees its graph), so an activation is freed as soon as backward is past it, unless
            # user code holds it
            op.saved, op.parents, op.freed = (), (), True
