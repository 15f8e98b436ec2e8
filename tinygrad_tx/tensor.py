"""Tensor: an array plus the graph links autograd needs.

Graph fields (read by the viz layer): `op` is the Function node that produced this tensor
(None for a leaf), `parents` its input tensors, `op_name` a readable name, `scope` the module
that created it ("h.0.attn"). Shapes in comments use one convention throughout the project:
B batch, T time (sequence), C channels (n_embd), H heads, hs head size (C // H), V vocab.
"""
import math

from . import backend
from .autograd import backward_steps, current_scope
from .ops.reduce import normalize_axis
from .ops import (Add, Sub, Mul, Div, Neg, Pow, Exp, Log, Sqrt, Tanh, Sigmoid, Relu, Erf,
                  Sum, Max, MatMul, RPow, Reshape, Permute, GetItem, Concat, Stack, MaskedFill, Where, ToDevice)


class Tensor:
    __slots__ = ("data", "grad", "requires_grad", "name", "op", "scope", "__weakref__")
    __array_ufunc__ = None      # numpy defers to us: np.float32(2) * t and mask * t call t.__rmul__

    def __init__(self, data, requires_grad=False, dtype=None, name=None, device=None):
        if isinstance(data, Tensor):
            data = data.data
        if data is None:
            raise TypeError("Tensor: data must be a number, a (nested) list or an array, got None")
        if device is None:      # GPU arrays stay on the GPU; everything else goes to the default device
            device = "gpu" if backend.is_array(data) and backend.device_of(data) == "gpu" else backend.default_device()
        try:
            self.data = backend.asarray(data, dtype, device)
        except ValueError as e:                     # ragged nested lists, unparsable strings
            raise ValueError(f"Tensor: cannot make a tensor from this data: {e}") from None
        if self.data.dtype.kind not in "biuf":
            raise TypeError(f"Tensor: data must be numbers (bool, int or float), got dtype {self.data.dtype}")
        if requires_grad and not backend.is_float(self.data):
            raise TypeError(f"Tensor: only float tensors can require grad, got dtype {self.data.dtype}"
                            + (f" (name {name!r})" if name else ""))
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.name = name
        self.op = None
        self.scope = current_scope()

    @classmethod
    def _from_op(cls, data, op, scope):
        out = cls.__new__(cls)
        out.data = data if backend.is_array(data) else backend.asarray(data, getattr(data, "dtype", None))
        out.grad, out.name, out.scope = None, None, scope
        out.op = op
        out.requires_grad = op is not None
        return out

    # ------------------------------------------------------------------ graph fields
    @property
    def parents(self):
        return self.op.parents if self.op is not None else ()

    @property
    def op_name(self):
        return self.op.label() if self.op is not None else None

    @property
    def is_leaf(self):
        return self.op is None

    # ------------------------------------------------------------------ array facts
    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self):
        """"cpu" (numpy) or "gpu" (CuPy)."""
        return backend.device_of(self.data)

    def to(self, device):
        """This tensor on another device; differentiable (the gradient moves back)."""
        return self if device == self.device else ToDevice.apply(self, device=device)

    def cpu(self):
        return self.to("cpu")

    @property
    def size(self):
        return int(self.data.size)

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def numpy(self):
        """The values as a numpy array (a copy on the host for GPU tensors)."""
        return backend.to_numpy(self.data)

    def item(self):
        if self.size != 1:
            raise ValueError(f"item: only a tensor with one element can be converted, got shape {self.shape}")
        return self.data.reshape(()).item()

    # a one-element tensor converts by its value, as in torch; any other size is ambiguous
    def __bool__(self):
        if self.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with {'no values' if self.size == 0 else 'more than one value'} "
                               f"is ambiguous (shape {self.shape})")
        return bool(self.item())

    def __float__(self): return float(self.item())
    def __int__(self): return int(self.item())

    def __index__(self):
        if self.size != 1 or self.dtype.kind not in "iu":
            raise TypeError(f"only integer tensors of a single element can be converted to an index "
                            f"(got dtype {self.dtype}, shape {self.shape})")
        return int(self.item())

    def detach(self):
        """The same values, cut from the graph (no gradient flows through)."""
        return Tensor._from_op(self.data, None, current_scope())

    def zero_grad(self):
        self.grad = None

    def named(self, name):
        """Give this tensor a display name and return it, so the name sits where the math is
        written: `scores = (q @ kT).named("scores")`. The viz layer shows it on the tensor's box."""
        if not isinstance(name, str):
            raise TypeError(f"named: name must be a str, got {type(name).__name__} {name!r}")
        self.name = name
        return self

    def __repr__(self):
        parts = [f"shape={self.shape}", f"dtype={self.dtype}"]
        if self.op is not None:
            parts.append(f"op={self.op_name}")
        if self.name:
            parts.append(f"name={self.name!r}")
        if self.requires_grad and self.op is None:
            parts.append("requires_grad=True")
        if self.size <= 8:
            parts.insert(0, str(backend.to_numpy(self.data).tolist()))
        return f"Tensor({', '.join(parts)})"

    # ------------------------------------------------------------------ autograd
    def backward(self, grad=None, retain_graph=False, leaves_only=False):
        """Backpropagate from this tensor: every tensor in its graph that requires grad gets
        (accumulates into) `.grad`. `leaves_only=True` is the training mode: `.grad` on leaves
        only, and the graph is released as backward walks it (intermediate values are freed
        early unless your code holds them), for speed and memory. Like PyTorch, a second
        backward through the same graph needs `retain_graph=True` on the first one (without it
        the saved buffers are still kept, outside training, so a replay with
        `backward_steps(..., store={})` can walk the graph again)."""
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad (no graph was recorded: "
                               "were its inputs created with requires_grad=True, outside no_grad()?)")
        if grad is None:
            if self.size != 1:
                raise RuntimeError(f"backward: called on a non-scalar tensor of shape {self.shape} "
                                   "without grad; pass grad= of the same shape (or reduce to a scalar first)")
            grad = backend.array_module(self.data).ones_like(self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else backend.asarray(grad, self.dtype, self.device)
            if tuple(grad.shape) != self.shape:
                raise ValueError(f"backward: grad of shape {tuple(grad.shape)} does not match tensor shape {self.shape}")
        for _ in backward_steps(self, grad, retain_graph=retain_graph, leaves_only=leaves_only):
            pass

    # ------------------------------------------------------------------ arithmetic
    def _lift(self, other):
        """Python (and numpy) scalars and arrays become constant tensors. A scalar takes this
        tensor's dtype unless it is of a higher kind (bool < int < float): a float beside an
        int tensor becomes the default float dtype, as in torch. Arrays keep their dtype."""
        if isinstance(other, Tensor):
            return other
        return Tensor(other, dtype=backend.scalar_dtype(other, self.dtype), device=self.device)

    def __add__(self, o): return Add.apply(self, self._lift(o))
    def __radd__(self, o): return Add.apply(self._lift(o), self)
    def __sub__(self, o): return Sub.apply(self, self._lift(o))
    def __rsub__(self, o): return Sub.apply(self._lift(o), self)
    def __mul__(self, o): return Mul.apply(self, self._lift(o))
    def __rmul__(self, o): return Mul.apply(self._lift(o), self)
    def __truediv__(self, o): return Div.apply(self, self._lift(o))
    def __rtruediv__(self, o): return Div.apply(self._lift(o), self)
    def __neg__(self): return Neg.apply(self)
    def __matmul__(self, o): return MatMul.apply(self, self._lift(o))
    def __rmatmul__(self, o): return MatMul.apply(self._lift(o), self)

    def __pow__(self, exponent):
        if backend.scalar_dtype(exponent, self.dtype) is None or isinstance(exponent, bool):
            raise TypeError(f"pow: the exponent must be a Python number, got {type(exponent).__name__} "
                            "(use exp/log for tensor exponents)")
        return Pow.apply(self, exponent=exponent)

    def __rpow__(self, base):
        if backend.scalar_dtype(base, self.dtype) is None or isinstance(base, bool):
            raise TypeError(f"pow: the base of base ** tensor must be a Python number, got {type(base).__name__}")
        return RPow.apply(self, base=base)

    # ------------------------------------------------------------------ elementwise
    def exp(self): return Exp.apply(self)
    def log(self): return Log.apply(self)
    def sqrt(self): return Sqrt.apply(self)
    def tanh(self): return Tanh.apply(self)
    def sigmoid(self): return Sigmoid.apply(self)
    def relu(self): return Relu.apply(self)
    def erf(self): return Erf.apply(self)

    def gelu(self, approximate="none"):
        """GELU, named as in PyTorch: functional.gelu (composed, or one fused node)."""
        from . import functional        # the switch between composed and fused ops lives there
        return functional.gelu(self, approximate)

    # ------------------------------------------------------------------ reductions
    def sum(self, axis=None, keepdims=False): return Sum.apply(self, axis=axis, keepdims=keepdims)
    def max(self, axis=None, keepdims=False): return Max.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        """mean = sum / n, n the number of elements reduced over (a float tensor only, as torch)."""
        if not backend.is_float(self.data):
            raise TypeError(f"mean: needs a float tensor (as torch), got dtype {self.dtype}")
        n = math.prod(self.shape[a] for a in normalize_axis(axis, self.shape, "mean"))
        return self.sum(axis=axis, keepdims=keepdims) / n

    def var(self, axis=None, keepdims=False):
        """Biased variance: mean((x - mean(x))^2), dividing by n (as layer norm uses)."""
        centered = self - self.mean(axis=axis, keepdims=True)
        return (centered ** 2).mean(axis=axis, keepdims=keepdims)

    def softmax(self, axis=-1):
        """softmax along axis: functional.softmax (composed, or one fused node)."""
        from . import functional
        return functional.softmax(self, axis)

    def log_softmax(self, axis=-1):
        """log_softmax along axis: functional.log_softmax (composed, or one fused node)."""
        from . import functional
        return functional.log_softmax(self, axis)

    def _softmax_axis(self, axis, opname):
        """Check the one axis (a float tensor only, as torch); a 0-d tensor's axis 0 or -1 is
        its value itself: reduce over no axis, axis ()."""
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise TypeError(f"{opname}: axis must be an int, got {axis!r}")
        normalize_axis(axis, self.shape, opname)
        if not backend.is_float(self.data) and self.size:     # torch runs no kernel on an empty one
            raise TypeError(f"{opname}: needs a float tensor (as torch), got dtype {self.dtype}")
        return axis if self.ndim else ()

    def argmax(self, axis=-1):
        """Index of the max (no gradient: an integer tensor)."""
        return Tensor(backend.array_module(self.data).argmax(self.data, axis=axis))

    # ------------------------------------------------------------------ movement
    def reshape(self, *shape):
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return Reshape.apply(self, shape=shape)

    def transpose(self, *axes):
        """Permute axes (numpy semantics); no axes reverses them. For swapping two axes use swapaxes."""
        axes = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return Permute.apply(self, axes=axes or tuple(reversed(range(self.ndim))))

    permute = transpose

    @property
    def T(self):
        return self.transpose()

    def swapaxes(self, a, b):
        normalize_axis(a, self.shape, "swapaxes")
        normalize_axis(b, self.shape, "swapaxes")
        if self.ndim == 0:
            return Permute.apply(self, axes=())          # 0-d: axes 0 and -1 are the value itself
        axes = list(range(self.ndim))
        axes[a], axes[b] = axes[b], axes[a]
        return Permute.apply(self, axes=tuple(axes))

    def __getitem__(self, index):
        parts = index if isinstance(index, tuple) else (index,)
        parts = tuple(p.data if isinstance(p, Tensor) else p for p in parts)
        parts = tuple(backend.asarray(p, device=self.device) if isinstance(p, list) or backend.is_array(p) else p
                      for p in parts)
        return GetItem.apply(self, index=parts if isinstance(index, tuple) else parts[0])

    def split(self, size_or_sizes, axis=0):
        """Split along an axis: an int is the chunk size (the last chunk may be smaller), a list
        gives each chunk's size (as torch.split)."""
        if self.ndim == 0:
            raise ValueError("split: needs a tensor with at least 1 dim, got a 0-d tensor")
        (axis,) = normalize_axis(axis, self.shape, "split")
        n = self.shape[axis]
        if isinstance(size_or_sizes, int):
            if size_or_sizes <= 0:
                raise ValueError(f"split: chunk size must be positive, got {size_or_sizes}")
            sizes = [min(size_or_sizes, n - s) for s in range(0, n, size_or_sizes)] or [0]
        else:
            sizes = list(size_or_sizes)
            if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in sizes):
                raise ValueError(f"split: sizes must be non-negative ints, got {sizes}")
            if sum(sizes) != n:
                raise ValueError(f"split: sizes {sizes} sum to {sum(sizes)}, but axis {axis} has length {n}")
        pieces, start = [], 0
        lead = (slice(None),) * axis
        for s in sizes:
            pieces.append(self[lead + (slice(start, start + s),)])
            start += s
        return pieces

    def masked_fill(self, mask, value):
        """Positions where mask is True become `value` (may be -inf); they pass no gradient."""
        mask = mask if isinstance(mask, Tensor) else Tensor(mask, device=self.device)
        return MaskedFill.apply(self, mask, value=value)


def concat(tensors, axis=0):
    """Join tensors along an existing axis."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concat: needs at least one tensor")
    return Concat.apply(*tensors, axis=axis)


def stack(tensors, axis=0):
    """Join same-shaped tensors along a new axis."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: needs at least one tensor")
    return Stack.apply(*tensors, axis=axis)


def where(cond, a, b):
    """Elementwise choice: a where cond is True, else b (a, b tensors or numbers)."""
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    cond = cond if isinstance(cond, Tensor) else Tensor(cond, device=like.device if like is not None else None)
    lift = like._lift if like is not None else Tensor
    return Where.apply(cond, lift(a), lift(b))
