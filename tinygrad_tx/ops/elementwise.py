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


class Add(Function):
    """y = a + b;  dL/da = dL/dy,  dL/db = dL/dy"""
    def forward(self, a, b):
        _check_broadcast(self, a, b)
        return a + b

    def backward(self, g):
        return g, g


class Sub(Function):
    """y = a - b;  dL/da = dL/dy,  dL/db = -dL/dy"""
    def forward(self, a, b):
        _check_broadcast(self, a, b)
        return a - b

    def backward(self, g):
        return g, -g


class Mul(Function):
    """y = a * b;  dL/da = dL/dy * b,  dL/db = dL/dy * a"""
    def forward(self, a, b):
        _check_broadcast(self, a, b)
        self.save_for_backward(a, b)
        return a * b

    def backward(self, g):
        a, b = self.saved
        need_a, need_b = self.needs_grad
        return (g * b if need_a else None), (g * a if need_b else None)


class Div(Function):
    """y = a / b;  dL/da = dL/dy / b,  dL/db = -dL/dy * a / b^2"""
    def forward(self, a, b):
        _check_broadcast(self, a, b)
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
        return -x

    def backward(self, g):
        return -g


class Pow(Function):
    """y = x^p (p a constant);  dL/dx = dL/dy * p * x^(p-1)"""
    def forward(self, x, exponent):
        self.save_for_backward(x)
        return _power(self.xp, x, exponent)

    def backward(self, g):
        (x,) = self.saved
        p = self.args["exponent"]
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
    return xp.power(x, xp.asarray(p, dtype=x.dtype)) if backend.is_float(x) else xp.power(x, p)


class Exp(Function):
    """y = exp(x);  dL/dx = dL/dy * y"""
    def forward(self, x):
        y = self.xp.exp(x)
        self.save_for_backward(y)
        return y

    def backward(self, g):
        (y,) = self.saved
        return g * y


class Log(Function):
    """y = log(x);  dL/dx = dL/dy / x"""
    def forward(self, x):
        self.save_for_backward(x)
        return self.xp.log(x)

    def backward(self, g):
        (x,) = self.saved
        return g / x


class Sqrt(Function):
    """y = sqrt(x);  dL/dx = dL/dy / (2 y)"""
    def forward(self, x):
        y = self.xp.sqrt(x)
        self.save_for_backward(y)
        return y

    def backward(self, g):
        (y,) = self.saved
        return g / (2 * y)


class Tanh(Function):
    """y = tanh(x);  dL/dx = dL/dy * (1 - y^2)"""
    def forward(self, x):
        y = self.xp.tanh(x)
        self.save_for_backward(y)
        return y

    def backward(self, g):
        (y,) = self.saved
        return g * (1 - y * y)


class Sigmoid(Function):
    """y = 1 / (1 + exp(-x));  dL/dx = dL/dy * y * (1 - y)"""
    def forward(self, x):
        xp = self.xp
        # stable: exp of a non-positive number only, so nothing overflows
        e = xp.exp(-xp.abs(x))
        y = xp.where(x >= 0, 1 / (1 + e), e / (1 + e))
        self.save_for_backward(y)
        return y

    def backward(self, g):
        (y,) = self.saved
        return g * y * (1 - y)


class Relu(Function):
    """y = max(x, 0);  dL/dx = dL/dy * [x > 0]  (subgradient 0 at x = 0, as PyTorch)"""
    def forward(self, x):
        self.save_for_backward(x > 0)
        return self.xp.maximum(x, 0)

    def backward(self, g):
        (positive,) = self.saved
        return g * positive


class Erf(Function):
    """y = erf(x);  dL/dx = dL/dy * 2/sqrt(pi) * exp(-x^2)"""
    def forward(self, x):
        self.save_for_backward(x)
        return backend.erf(x)

    def backward(self, g):
        (x,) = self.saved
        return g * ((2 / math.sqrt(math.pi)) * self.xp.exp(-x * x))
