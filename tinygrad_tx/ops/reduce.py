"""Reductions. Both keep the reduced axes (keepdims) internally so the gradient can be
broadcast straight back over them."""
from ..autograd import Function


class AxisError(ValueError, IndexError):
    """An axis out of range or repeated (a ValueError as numpy's, an IndexError as torch's)."""


def normalize_axis(axis, shape, opname):
    """None -> all axes; int or tuple (negatives allowed) -> sorted tuple of positive axes.
    A 0-d tensor accepts axis 0 and -1, as torch does (its one "axis" is the value itself),
    and reduces over nothing. An axis named twice is an error (as numpy and torch)."""
    ndim = len(shape)
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    lo, hi = -max(ndim, 1), max(ndim, 1) - 1
    out = []
    for a in axes:
        if isinstance(a, bool) or not isinstance(a, int):
            raise TypeError(f"{opname}: axis must be an int or a tuple of ints, got {axis!r}")
        if not lo <= a <= hi:
            raise AxisError(f"{opname}: axis {a} is out of range for shape {tuple(shape)} "
                            f"(expected an axis in [{lo}, {hi}])")
        if ndim and a % ndim in out:
            raise AxisError(f"{opname}: axis {a} appears more than once in axis={axis!r}")
        if ndim:
            out.append(a % ndim)
    return tuple(sorted(out))


def _keepdims_shape(shape, axes):
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


class Sum(Function):
    """y = sum of x over axes;  dL/dx = dL/dy broadcast back over the summed axes
    (every summed element contributed with slope 1)"""
    def forward(self, x, axis=None, keepdims=False):
        self.axes = normalize_axis(axis, x.shape, "Sum")
        self.in_shape = x.shape
        return x.sum(axis=self.axes, keepdims=keepdims)

    def backward(self, g):
        g = g.reshape(_keepdims_shape(self.in_shape, self.axes))
        return self.xp.broadcast_to(g, self.in_shape).copy()


class Max(Function):
    """y = max of x over axes;  dL/dx = dL/dy at the argmax, 0 elsewhere.
    Ties: the gradient is split evenly among all maximal elements (as torch.amax and
    torch.max() without a dim do), so the gradient still sums to dL/dy."""
    def forward(self, x, axis=None, keepdims=False):
        self.axes = normalize_axis(axis, x.shape, "Max")
        if any(x.shape[a] == 0 for a in self.axes):         # torch.amax refuses the same
            raise ValueError(f"Max: cannot take the max over an empty axis: shape {tuple(x.shape)}, "
                             f"axis {axis}")
        y = x.max(axis=self.axes, keepdims=True)
        self.save_for_backward(x, y)
        return y if keepdims else y.reshape(tuple(n for i, n in enumerate(x.shape) if i not in self.axes))

    def backward(self, g):
        x, y = self.saved
        is_max = (x == y)
        count = is_max.sum(axis=self.axes, keepdims=True)
        g = g.reshape(y.shape)
        return is_max * (g / count).astype(x.dtype)
