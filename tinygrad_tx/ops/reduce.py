"""Reductions. Both keep the reduced axes (keepdims) internally so the gradient can be
broadcast straight back over them."""
from ..autograd import Function


def normalize_axis(axis, ndim, opname):
    """None -> all axes; int or tuple (negatives allowed) -> sorted tuple of positive axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"{opname}: axis {a} is out of range for a tensor with {ndim} dims")
        out.append(a % ndim if ndim else 0)
    return tuple(sorted(set(out)))


def _keepdims_shape(shape, axes):
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


class Sum(Function):
    """y = sum of x over axes;  dL/dx = dL/dy broadcast back over the summed axes
    (every summed element contributed with slope 1)"""
    def forward(self, x, axis=None, keepdims=False):
        self.axes = normalize_axis(axis, x.ndim, "Sum")
        self.in_shape = x.shape
        return x.sum(axis=self.axes, keepdims=keepdims)

    def backward(self, g):
        g = g.reshape(_keepdims_shape(self.in_shape, self.axes))
        return self.xp.broadcast_to(g, self.in_shape).copy()


class Max(Function):
    """y = max of x over axes;  dL/dx = dL/dy at the argmax, 0 elsewhere.
    Ties: the gradient is split evenly among all maximal elements (as torch.amax does),
    so the gradient still sums to dL/dy."""
    def forward(self, x, axis=None, keepdims=False):
        self.axes = normalize_axis(axis, x.ndim, "Max")
        if x.size == 0:
            raise ValueError(f"Max: cannot take the max of an empty tensor of shape {tuple(x.shape)}")
        y = x.max(axis=self.axes, keepdims=True)
        self.save_for_backward(x, y)
        return y if keepdims else y.reshape(tuple(n for i, n in enumerate(x.shape) if i not in self.axes))

    def backward(self, g):
        x, y = self.saved
        is_max = (x == y)
        count = is_max.sum(axis=self.axes, keepdims=True)
        g = g.reshape(y.shape)
        return is_max * (g / count).astype(x.dtype)
