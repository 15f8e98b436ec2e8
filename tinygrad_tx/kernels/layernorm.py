"""LayerNorm over the last axis, forward and backward (fused.LayerNorm), after llm.c's
layernorm_forward / layernorm_backward. Rows (N, C); prange over the N rows."""
import math

from . import prange, rows_kernel


@rows_kernel(reductions=True)
def layernorm_forward(x, w, b, eps, y, mean, rstd):
    """y = (x - mean) * rstd * w + b,  rstd = 1 / sqrt(var + eps), biased variance over the row.
    Keeps mean and rstd (N,) for backward, which recomputes xhat from them."""
    N, C = x.shape
    for i in prange(N):
        m = 0.0
        for c in range(C):
            m += x[i, c]
        m /= C
        v = 0.0
        for c in range(C):
            xc = x[i, c] - m
            v += xc * xc
        v /= C
        s = 1.0 / math.sqrt(v + eps)
        for c in range(C):
            y[i, c] = (x[i, c] - m) * s * w[c] + b[c]
        mean[i] = m
        rstd[i] = s


@rows_kernel(reductions=True)
def layernorm_backward(x, w, mean, rstd, g, dx):
    """With xhat = (x - mean) * rstd and dnorm = dL/dy * w (the gradient reaching xhat):
        dL/dx = rstd * (dnorm                          term 1: directly through xhat
                        - dnorm_mean                   term 2: through the mean
                        - xhat * dnorm_norm_mean)      term 3: through the variance
    dnorm_mean = mean(dnorm), dnorm_norm_mean = mean(dnorm * xhat), over the row."""
    N, C = x.shape
    for i in prange(N):
        dnorm_mean = 0.0
        dnorm_norm_mean = 0.0
        for c in range(C):
            xhat = (x[i, c] - mean[i]) * rstd[i]
            dnorm = g[i, c] * w[c]
            dnorm_mean += dnorm
            dnorm_norm_mean += dnorm * xhat
        dnorm_mean /= C
        dnorm_norm_mean /= C
        for c in range(C):
            xhat = (x[i, c] - mean[i]) * rstd[i]
            dnorm = g[i, c] * w[c]
            dx[i, c] = rstd[i] * (dnorm - dnorm_mean - xhat * dnorm_norm_mean)


@rows_kernel(parallel=False)
def layernorm_param_grads(x, mean, rstd, g, dw, db):
    """dL/dw = sum over rows of dL/dy * xhat,  dL/db = sum over rows of dL/dy (dw and db zeroed
    by the caller). One plain loop, as in llm.c: every row adds into the same dw and db, so
    rows cannot be shared among threads; along a row the channels vectorise (one thread:
    12 us at (768, 128), where channel slices on prange took 65-80 us)."""
    N, C = x.shape
    for i in range(N):
        for c in range(C):
            dw[c] += g[i, c] * (x[i, c] - mean[i]) * rstd[i]
            db[c] += g[i, c]


# ----------------------------------------------------------------------------- xp reference
def layernorm_forward_xp(xp, x, w, b, eps):
    """Rows (N, C) -> (y, mean (N,), rstd (N,))."""
    mean = x.mean(axis=-1)
    xc = x - mean[:, None]
    rstd = 1 / xp.sqrt((xc * xc).mean(axis=-1) + x.dtype.type(eps))
    return xc * rstd[:, None] * w + b, mean, rstd


def layernorm_backward_xp(xp, x, w, mean, rstd, g):
    """-> (dx, dw, db), the three terms as in layernorm_backward."""
    xhat = (x - mean[:, None]) * rstd[:, None]
    dnorm = g * w
    dnorm_mean = dnorm.mean(axis=-1, keepdims=True)
    dnorm_norm_mean = (dnorm * xhat).mean(axis=-1, keepdims=True)
    dx = rstd[:, None] * (dnorm - dnorm_mean - xhat * dnorm_norm_mean)
    return dx, (g * xhat).sum(axis=0), g.sum(axis=0)
