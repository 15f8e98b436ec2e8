"""Fused ops: one node with a hand-derived backward for a composite that is otherwise built
from several primitives. Same numbers, fewer passes over memory and fewer temporaries.

The composed versions (Tensor.softmax, functional.layer_norm, ...) stay what graphs and docs
show; these run only inside `tinygrad_tx.fused_ops()` (what training uses). Each is tested
against its composed version and against PyTorch."""
import math

from .. import backend
from ..autograd import Function


class Softmax(Function):
    """y = softmax(x) along axis;  dL/dx = y * (dL/dy - sum(dL/dy * y, axis))
    (the Jacobian diag(y) - y y^T applied to dL/dy, without forming it)"""
    def forward(self, x, axis=-1):
        y = x - x.max(axis=axis, keepdims=True)
        self.xp.exp(y, out=y)
        y /= y.sum(axis=axis, keepdims=True)
        self.save_for_backward(y)
        return y

    def backward(self, g):
        (y,) = self.saved
        gy = g * y
        gy -= y * gy.sum(axis=self.args["axis"], keepdims=True)
        return gy


class LogSoftmax(Function):
    """y = x - log(sum(exp(x), axis));  dL/dx = dL/dy - softmax(x) * sum(dL/dy, axis)"""
    def forward(self, x, axis=-1):
        z = x - x.max(axis=axis, keepdims=True)
        z -= self.xp.log(self.xp.exp(z).sum(axis=axis, keepdims=True))
        self.save_for_backward(z)
        return z

    def backward(self, g):
        (y,) = self.saved
        return g - self.xp.exp(y) * g.sum(axis=self.args["axis"], keepdims=True)


class MaskedSoftmax(Function):
    """y = softmax(scale * x with blocked positions set to -inf), along the last axis;
    dL/dx = scale * y * (dL/dy - sum(dL/dy * y)). Blocked positions have y = 0, so their
    gradient is exactly 0. A row with every position blocked gives y = 0 (not 0/0 = NaN).
    `mask`: boolean, True = blocked, broadcastable to x."""
    def forward(self, x, mask=None, scale=1.0):
        xp = self.xp
        s = x * x.dtype.type(scale)
        if mask is not None:
            s = xp.where(mask, -xp.inf, s).astype(x.dtype, copy=False)
        m = s.max(axis=-1, keepdims=True)
        m = xp.where(xp.isneginf(m), 0, m).astype(x.dtype, copy=False)    # dead rows: avoid -inf - -inf
        xp.exp(s - m, out=s)
        total = s.sum(axis=-1, keepdims=True)
        s /= xp.where(total == 0, 1, total)                                 # dead rows stay all-zero
        self.save_for_backward(s)
        return s

    def backward(self, g):
        (y,) = self.saved
        gy = g * y
        gy -= y * gy.sum(axis=-1, keepdims=True)
        gy *= gy.dtype.type(self.args["scale"])
        return gy


class CrossEntropy(Function):
    """loss = -(1/n) sum_i log softmax(z_i)[t_i] over the n rows whose target is valid;
    dL/dz_i = dL/dloss * (softmax(z_i) - onehot(t_i)) / n  (0 for ignored rows)"""
    def forward(self, logits, targets, valid):
        xp = self.xp
        z = logits - logits.max(axis=-1, keepdims=True)                    # (N, V)
        p = xp.exp(z)
        sums = p.sum(axis=-1, keepdims=True)
        p /= sums
        rows = xp.arange(logits.shape[0])
        safe = xp.where(valid, targets, 0)
        logp_t = z[rows, safe] - xp.log(sums[:, 0])                         # (N,)
        n = int(valid.sum())
        self.save_for_backward(p, rows, safe, valid, n)
        return -(logp_t * valid).sum(dtype=logits.dtype) / logits.dtype.type(n)

    def backward(self, g):
        p, rows, safe, valid, n = self.saved
        d = p.copy()
        d[rows, safe] -= 1
        d *= (valid[:, None] * (g / n)).astype(d.dtype, copy=False)
        return d


class LayerNorm(Function):
    """y = xhat * w + b, xhat = (x - mean) / sqrt(var + eps) over the last axis.
    dL/dw = sum(dL/dy * xhat), dL/db = sum(dL/dy) over all but the last axis, and with
    d = dL/dy * w (the gradient reaching xhat):
      dL/dx = rstd * (d                       term 1: directly through xhat
                      - mean(d)               term 2: through the mean
                      - xhat * mean(d * xhat)) term 3: through the variance"""
    def forward(self, x, w, b, eps=1e-5):
        mu = x.mean(axis=-1, keepdims=True)
        xc = x - mu
        var = (xc * xc).mean(axis=-1, keepdims=True)
        rstd = 1 / self.xp.sqrt(var + x.dtype.type(eps))
        xhat = xc
        xhat *= rstd
        self.save_for_backward(xhat, rstd, w)
        return xhat * w + b

    def backward(self, g):
        xhat, rstd, w = self.saved
        lead = tuple(range(g.ndim - 1))
        dw = (g * xhat).sum(axis=lead)
        db = g.sum(axis=lead)
        d = g * w
        dx = d - d.mean(axis=-1, keepdims=True)
        dx -= xhat * (d * xhat).mean(axis=-1, keepdims=True)
        dx *= rstd
        return dx, dw, db


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


class Gelu(Function):
    """exact:  y = x Phi(x);  dy/dx = Phi(x) + x phi(x),  Phi(x) = (1 + erf(x/sqrt2))/2, phi = N(0,1) pdf
    tanh:   y = x (1 + tanh(u)) / 2, u = sqrt(2/pi) (x + 0.044715 x^3);
            dy/dx = (1 + t)/2 + x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2) / 2, t = tanh(u)"""
    def forward(self, x, approximate="none"):
        xp, one = self.xp, x.dtype.type(1)
        if approximate == "tanh":
            t = xp.tanh(x.dtype.type(_SQRT_2_OVER_PI) * (x + x.dtype.type(0.044715) * x * x * x))
            self.save_for_backward(x, t)
            return x.dtype.type(0.5) * x * (one + t)
        cdf = x.dtype.type(0.5) * (one + backend.erf(x * x.dtype.type(1 / math.sqrt(2))))
        self.save_for_backward(x, cdf)
        return x * cdf

    def backward(self, g):
        x, s = self.saved
        xp, dt = self.xp, x.dtype.type
        if self.args["approximate"] == "tanh":
            du = dt(_SQRT_2_OVER_PI) * (dt(1) + dt(3 * 0.044715) * x * x)
            return g * (dt(0.5) * (dt(1) + s) + dt(0.5) * x * (dt(1) - s * s) * du)
        pdf = xp.exp(dt(-0.5) * x * x) * dt(1 / math.sqrt(2 * math.pi))
        return g * (s + x * pdf)


class Embedding(Function):
    """y = W[ids];  dL/dW = sum of dL/dy rows into the rows named by ids (repeats add up),
    computed as onehot(ids)^T @ dL/dy when that matrix is small (one GEMM beats a scatter)"""
    def forward(self, weight, ids):
        self.in_shape = weight.shape
        return weight[ids]

    def backward(self, g):
        xp, ids = self.xp, self.args["ids"]
        V, C = self.in_shape
        flat_ids, flat_g = ids.reshape(-1), g.reshape(-1, C)
        if V * flat_ids.shape[0] <= 1 << 22:
            onehot = (flat_ids[:, None] == xp.arange(V)[None, :]).astype(g.dtype)   # (N, V)
            return onehot.T @ flat_g                                                 # (V, C)
        out = xp.zeros(self.in_shape, dtype=g.dtype)
        xp.add.at(out, flat_ids, flat_g)
        return out
