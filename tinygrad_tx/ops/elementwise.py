"""Elementwise ops. Each backward returns gradients of the OUTPUT's shape; the backward driver
sums them back to each input's shape (broadcasting), so no op here repeats that logic."""
import math

from ..autograd import Function
from .. import backend


def _check_broadcast(op, a, b):
    try:
        op.xp.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{op.name}: cannot broadcast shapes {tuple(a.shape)} and {tuple(b.shape)}") from None


def _promote(op, a, b):
    """Both inputs in the result dtype, PyTorch's promotion (backend.result_type): int32 with
    float32 computes in float32, not numpy's float64."""
    _check_broadcast(op, a, b)
    dt = backend.result_type(a, b)
    return a.astype(dt, copy=False), b.astype(dt, copy=False)


def _as_float(x):
    """An integer or bool input of a float function (exp, log, ...) is read in the default
    float dtype, as torch does (numpy would give float64)."""
    return x.astype(backend.float_dtype(x.dtype), copy=False)


class Add(Function):
    """y = a + b;  dL/da = dL/dy,  dL/db = dL/dy"""
    def forward(self, a, b):
        a, b = _promote(self, a, b)
        return a + b

    def backward(self, g):
        return g, g


class Sub(Function):
    """y = a - b;  dL/da = dL/dy,  dL/db = -dL/dy"""
    def forward(self, a, b):
        if a.dtype == bool or b.dtype == bool:
            raise TypeError("Sub: subtraction with a bool tensor is not supported (as torch); use ^ or ~ for masks")
        a, b = _promote(self, a, b)
        return a - b

    def backward(self, g):
        return g, -g


class Mul(Function):
    """y = a * b;  dL/da = dL/dy * b,  dL/db = dL/dy * a"""
    def forward(self, a, b):
        a, b = _promote(self, a, b)
        self.save_for_backward(a, b)
        return a * b

    def backward(self, g):
        a, b = self.saved
        need_a, need_b = self.needs_grad
        return (g * b if need_a else None), (g * a if need_b else None)


class Div(Function):
    """y = a / b;  dL/da = dL/dy / b,  dL/db = -dL/dy * a / b^2
    (true division: integers divide as floats, in the default float dtype, as torch)"""
    def forward(self, a, b):
        a, b = _promote(self, a, b)
        a, b = _as_float(a), _as_float(b)
        self.save_for_backward(a, b)
        return a / b

    def backward(self, g):
        a, b = self.saved
        need_a, need_b = self.needs_grad
        ga = g / b if need_a else None
        gb = -g * a / (b * b) if need_b else None
        return ga, gb


class Neg(Function):
    """y = -x;  dL/dx = -dL/dy"""
    def forward(self, x):
        if x.dtype == bool:
            raise TypeError("Neg: negating a bool tensor is not supported (as torch); use ~ to invert a mask")
        return -x

    def backward(self, g):
        return -g


class Pow(Function):
    """y = x^p (p a constant);  dL/dx = dL/dy * p * x^(p-1)
    (p = 0: y = 1 everywhere, so the slope is 0, also at x = 0 where p * x^(p-1) is 0 * inf)"""
    def forward(self, x, exponent):
        if x.dtype == bool:
            x = x.astype("int64")                                   # as torch: bool ** 2 is int64
        if x.dtype.kind in "iu":
            if isinstance(exponent, float):
                x = _as_float(x)                                    # int ** 2.5 is a float
            elif exponent < 0:
                raise ValueError(f"Pow: integer tensor to a negative integer power ({exponent}) "
                                 "is not allowed (as torch); use a float tensor")
        self.save_for_backward(x)
        return _power(self.xp, x, exponent)

    def backward(self, g):
        (x,) = self.saved
        p = self.args["exponent"]
        if p == 0:
            return self.xp.zeros_like(g)
        return g * (p * _power(self.xp, x, p - 1))


def _power(xp, x, p):
    # small integer powers by multiplication: float32 x**3 through pow() is ~100x slower
    if p == 0:
        return xp.ones_like(x)
    if p == 1:
        return x.copy()
    if p == 2:
        return x * x
    if p == 3:
        return x * x * x
    if p == 0.5 and backend.is_float(x):            # as torch: sqrt, so sqrt(-0) = -0 and its slope -inf
        return xp.sqrt(x)
    if p == -0.5 and backend.is_float(x):
        return 1 / xp.sqrt(x)
    return xp.power(x, xp.asarray(p, dtype=x.dtype)) if backend.is_float(x) else xp.power(x, p)


class RPow(Function):
    """y = base^x (base a constant number);  dL/dx = dL/dy * y * ln(base)
    base 0: y = 0, 1 or inf and the slope is 0 where x >= 0 (-inf where x < 0), as torch;
    a negative base gives exact values at integer x, NaN elsewhere, and a NaN slope."""
    def forward(self, x, base):
        dt = backend.scalar_dtype(base, x.dtype)
        x = x.astype(dt, copy=False)
        if dt.kind in "iu" and bool((x < 0).any()):
            raise ValueError(f"RPow: integer base {base} to negative integer powers is not allowed; "
                             "use a float tensor")
        y = self.xp.power(self.xp.asarray(base, dtype=dt), x)
        self.save_for_backward(x, y)
        return y

    def backward(self, g):
        x, y = self.saved
        base = self.args["base"]
        if base == 0:
            return g * self.xp.where(x >= 0, 0, -math.inf).astype(g.dtype)    # y ln 0 = -inf at x < 0
        return g * (y * g.dtype.type(math.log(base) if base > 0 else math.nan))  # ln(base < 0): NaN


class Exp(Function):
    """y = exp(x);  dL/dx = dL/dy * y"""
    def forward(self, x):
        x = _as_float(x)
        y = self.xp.exp(x)
        self.save_for_backward(y)
        return y

    def backward(self, g):
        (y,) = self.saved
        return g * y


class Log(Function):
    """y = log(x);  dL/dx = dL/dy / x"""
    def forward(self, x):
        x = _as_float(x)
        self.save_for_backward(x)
        return self.xp.log(x)

    def backward(self, g):
        (x,) = self.saved
        return g / x


class Sqrt(Function):
    """y = sqrt(x);  dL/dx = dL/dy / (2 y)"""
    def forward(self, x):
        x = _as_float(x)
        y = self.xp.sqrt(x)
        self.save_for_backward(y)
        return y

    def backward(self, g):
        (y,) = self.saved
        return g / (2 * y)


class Tanh(Function):
    """y = tanh(x);  dL/dx = dL/dy * (1 - y^2)"""
    def forward(self, x):
        x = _as_float(x)
        y = self.xp.tanh(x)
        self.save_for_backward(y)
        return y

    def backward(self, g):
        (y,) = self.saved
        return g * (1 - y * y)


class Sigmoid(Function):
    """y = 1 / (1 + exp(-x));  dL/dx = dL/dy * y * (1 - y)"""
    def forward(self, x):
        xp, x = self.xp, _as_float(x)
        # stable: exp of a non-positive number only, so nothing overflows
        e = xp.exp(-xp.abs(x))
        y = xp.where(x >= 0, 1 / (1 + e), e / (1 + e))
        self.save_for_backward(y)
        return y

    def backward(self, g):
        (y,) = self.saved
        return g * y * (1 - y)


class Relu(Function):
    """y = max(x, 0);  dL/dx = dL/dy * [x > 0]  (subgradient 0 at x = 0, as PyTorch;
    a NaN input is "not <= 0" there and passes its gradient, as PyTorch's)"""
    def forward(self, x):
        if x.dtype == bool:
            raise TypeError("Relu: bool inputs are not supported (as torch)")
        self.save_for_backward(~(x <= 0))
        return self.xp.maximum(x, 0)

    def backward(self, g):
        (positive,) = self.saved
        return g * positive


class Erf(Function):
    """y = erf(x);  dL/dx = dL/dy * 2/sqrt(pi) * exp(-x^2)"""
    def forward(self, x):
        x = _as_float(x)
        self.save_for_backward(x)
        return backend.erf(x)

    def backward(self, g):
        (x,) = self.saved
        return g * ((2 / math.sqrt(math.pi)) * self.xp.exp(-x * x))
