"""The masked softmax of attention, forward and backward (fused.AttentionWeights and the
SelfAttention node), after llm.c's attention_forward / attention_backward without the GEMMs.
Scores (N, Tq, Tk), N = batch x heads; prange over the N * Tq query rows."""
import math

from . import prange, rows_kernel


@rows_kernel
def masked_softmax_forward(x, blocked, scale, y):
    """y[n, i, :] = softmax(scale * x[n, i, :]) with blocked keys (blocked[n or 0, i, j] True)
    at weight 0; a query with every key blocked gets all zeros. y may be x itself."""
    N, Tq, Tk = x.shape
    shared = blocked.shape[0] == 1                    # one (Tq, Tk) pattern for every n (causal)
    for r in prange(N * Tq):
        n, i = r // Tq, r % Tq
        nb = 0 if shared else n
        # pass 1: the row max over allowed keys (subtracting it keeps exp from overflowing)
        maxval = -math.inf
        for j in range(Tk):
            if not blocked[nb, i, j] and scale * x[n, i, j] > maxval:
                maxval = scale * x[n, i, j]
        if maxval == -math.inf:                       # every key blocked: zero weights, not 0/0
            for j in range(Tk):
                y[n, i, j] = 0.0
            continue
        # pass 2: exp and its sum;  pass 3: normalise
        expsum = 0.0
        for j in range(Tk):
            e = 0.0 if blocked[nb, i, j] else math.exp(scale * x[n, i, j] - maxval)
            y[n, i, j] = e
            expsum += e
        inv = 1.0 / expsum
        for j in range(Tk):
            y[n, i, j] *= inv


@rows_kernel
def softmax_backward(y, g, scale, dx):
    """Rows (R, T): dL/dx = scale * y * (dL/dy - sum_j dL/dy_j y_j)
    (the Jacobian diag(y) - y y^T applied to dL/dy; blocked keys have y = 0, so get 0).
    dx may be g itself."""
    R, T = y.shape
    for r in prange(R):
        dot = 0.0
        for j in range(T):
            dot += g[r, j] * y[r, j]
        for j in range(T):
            dx[r, j] = scale * y[r, j] * (g[r, j] - dot)


# ----------------------------------------------------------------------------- xp reference
def masked_softmax_forward_xp(xp, x, blocked, scale):
    """(N, Tq, Tk) scores, blocked (1 or N, Tq, Tk) -> weights, as whole-array passes."""
    s = xp.where(blocked, -xp.inf, x * x.dtype.type(scale))
    m = s.max(axis=-1, keepdims=True)
    m[xp.isneginf(m)] = 0                             # every key blocked: exp(-inf) = 0 below
    e = xp.exp(s - m)
    total = e.sum(axis=-1, keepdims=True)
    total[total == 0] = 1                             # ... and 0 / 1 = 0, not 0 / 0
    return e / total


def softmax_backward_xp(xp, y, g, scale):
    return g.dtype.type(scale) * y * (g - (g * y).sum(axis=-1, keepdims=True))
