"""Selection ops: masked_fill and where. The boolean mask/condition is a parent tensor (so a
graph shows it) but never receives a gradient."""
import math

from .. import backend
from ..autograd import Function


class MaskedFill(Function):
    """y = value where mask else x;  dL/dx = dL/dy where NOT mask, 0 where mask
    (a filled position is a constant: with value = -inf before a softmax, its weight is
    exactly 0 and no gradient flows back through it)"""
    allows_inf = True

    def forward(self, x, mask, value):
        if mask.dtype != bool:
            raise TypeError(f"MaskedFill: mask must be boolean, got {mask.dtype}")
        try:                    # as torch's out-of-place masked_fill: x and mask broadcast together
            self.xp.broadcast_shapes(x.shape, mask.shape)
        except ValueError:
            raise ValueError(f"MaskedFill: mask of shape {tuple(mask.shape)} does not broadcast with x of shape "
                             f"{tuple(x.shape)}") from None
        if x.dtype.kind in "iu":
            info = self.xp.iinfo(x.dtype)       # torch refuses a value the dtype cannot hold (-inf)
            if not (math.isfinite(value) and info.min <= value <= info.max):
                raise ValueError(f"MaskedFill: value {value} cannot be converted to {x.dtype} without overflow")
        self.save_for_backward(mask)
        return self.xp.where(mask, value, x).astype(x.dtype, copy=False)

    def backward(self, g):
        (mask,) = self.saved
        return self.xp.where(mask, 0, g).astype(g.dtype, copy=False), None


class Where(Function):
    """y = a where cond else b;  dL/da = dL/dy where cond (else 0),  dL/db = dL/dy where NOT cond"""
    def forward(self, cond, a, b):
        if cond.dtype != bool:
            raise TypeError(f"Where: condition must be boolean, got {cond.dtype}")
        try:
            self.xp.broadcast_shapes(cond.shape, a.shape, b.shape)
        except ValueError:
            raise ValueError(f"Where: cannot broadcast cond {tuple(cond.shape)}, a {tuple(a.shape)}, "
                             f"b {tuple(b.shape)}") from None
        self.save_for_backward(cond)
        dt = backend.result_type(a, b)                  # torch's promotion of the two branches
        return self.xp.where(cond, a.astype(dt, copy=False), b.astype(dt, copy=False))

    def backward(self, g):
        (cond,) = self.saved
        zero = self.xp.zeros((), dtype=g.dtype)
        return None, self.xp.where(cond, g, zero), self.xp.where(cond, zero, g)
