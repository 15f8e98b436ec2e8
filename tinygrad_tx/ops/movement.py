"""Ops that move data without arithmetic: reshape, permute, indexing, concat, stack.
Their backward moves the gradient back the same way."""
from .. import backend
from ..autograd import Function


class Reshape(Function):
    """y = x viewed with a new shape;  dL/dx = dL/dy reshaped back to x's shape"""
    def forward(self, x, shape):
        self.in_shape = x.shape
        try:
            return x.reshape(shape)
        except ValueError:
            raise ValueError(f"Reshape: cannot reshape {tuple(x.shape)} ({x.size} elements) "
                             f"into {tuple(shape)}") from None

    def backward(self, g):
        return g.reshape(self.in_shape)


class Permute(Function):
    """y = x with axes reordered by `axes`;  dL/dx = dL/dy with the inverse permutation"""
    def forward(self, x, axes):
        if (any(not -max(x.ndim, 1) <= a < max(x.ndim, 1) for a in axes)
                or sorted(a % max(x.ndim, 1) for a in axes) != list(range(x.ndim))):
            raise ValueError(f"Permute: {tuple(axes)} is not a permutation of the {x.ndim} axes of {tuple(x.shape)}")
        self.inverse = tuple(sorted(range(x.ndim), key=lambda i: axes[i] % x.ndim))
        return x.transpose(axes)

    def backward(self, g):
        return g.transpose(self.inverse)


def _is_basic(index):
    """Basic numpy indexing (ints, slices, None, ...) selects each element at most once."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (int, slice)) for p in parts)


class GetItem(Function):
    """y = x[index];  dL/dx = zeros with dL/dy scatter-ADDED at the indexed positions
    (an index repeated k times, as in an embedding lookup, receives the sum of its k gradients)"""
    def forward(self, x, index):
        self.in_shape, self.dtype = x.shape, x.dtype
        try:
            return x[index]
        except IndexError as e:
            raise IndexError(f"GetItem: index {self._index_repr()} is invalid for shape {tuple(x.shape)}: {e}") from None

    def backward(self, g):
        index = self.args["index"]
        grad = self.xp.zeros(self.in_shape, dtype=self.dtype)
        if _is_basic(index):
            grad[index] = g
        else:
            self.xp.add.at(grad, index, g)
        return grad

    def _index_repr(self):
        parts = self.args["index"] if isinstance(self.args["index"], tuple) else (self.args["index"],)
        return "[" + ", ".join(f"array{tuple(p.shape)}" if hasattr(p, "shape") else repr(p) for p in parts) + "]"

    def label(self):
        return f"GetItem{self._index_repr()}"


class Concat(Function):
    """y = concat(x_1..x_n, axis);  dL/dx_i = the slice of dL/dy that x_i filled"""
    def forward(self, *xs, axis=0):
        shapes = [tuple(x.shape) for x in xs]
        ndim = xs[0].ndim
        if any(x.ndim != ndim for x in xs) or not -ndim <= axis < ndim:
            raise ValueError(f"Concat: cannot concatenate shapes {shapes} along axis {axis}")
        ax = axis % ndim
        if any(s[:ax] + s[ax + 1:] != shapes[0][:ax] + shapes[0][ax + 1:] for s in shapes):
            raise ValueError(f"Concat: shapes {shapes} differ outside axis {axis}")
        self.sizes = [s[ax] for s in shapes]
        dt = backend.result_type(*xs)                   # torch's promotion: int with float32 is float32
        return self.xp.concatenate([x.astype(dt, copy=False) for x in xs], axis=ax)

    def backward(self, g):
        ax = self.args["axis"] % g.ndim
        cuts, total = [], 0
        for n in self.sizes[:-1]:
            total += n
            cuts.append(total)
        return tuple(self.xp.split(g, cuts, axis=ax))


class Stack(Function):
    """y = stack(x_1..x_n, axis) (a new axis);  dL/dx_i = dL/dy taken at position i of that axis"""
    def forward(self, *xs, axis=0):
        shapes = [tuple(x.shape) for x in xs]
        if len(set(shapes)) != 1:
            raise ValueError(f"Stack: all shapes must be equal, got {shapes}")
        if not -xs[0].ndim - 1 <= axis <= xs[0].ndim:
            raise ValueError(f"Stack: axis {axis} is out of range for stacking shape {shapes[0]} "
                             f"(expected an axis in [{-xs[0].ndim - 1}, {xs[0].ndim}])")
        dt = backend.result_type(*(x if x.ndim else x.reshape(1) for x in xs))   # stacked 0-d: as 1-d
        return self.xp.stack([x.astype(dt, copy=False) for x in xs], axis=axis)

    def backward(self, g):
        ax = self.args["axis"] % g.ndim
        return tuple(self.xp.take(g, i, axis=ax) for i in range(len(self.parents)))


class ToDevice(Function):
    """y = x copied to another device ("cpu" <-> "gpu");  dL/dx = dL/dy copied back"""
    def forward(self, x, device):
        self.source = backend.device_of(x)
        return backend.to_device(x, device)

    def backward(self, g):
        return backend.to_device(g, self.source)
