"""The masked softmax of attention, forward and backward (fused.AttentionWeights and the
SelfAttention node), after llm.c's attention_forward / attention_backward without the GEMMs.
Scores (N, Tq, Tk), N = batch x heads; prange over the N * Tq query rows."""
import math

from . import prange, rows_kernel


def masked_softmax_forward(xp, x, blocked, scale, y):
    """y[n, i, :] = softmax(scale * x[n, i, :]) with blocked keys (blocked[n or 0, i, j] True)
    at weight 0; a query with every key blocked gets all zeros. y may be x itself. Three
    passes: the shifted scores (a loop), their exp (numpy's vectorised exp: numba's is a
    scalar libm call here, ~10x slower), the normalisation (a loop)."""
    scores_minus_max(x, blocked, scale, y)
    xp.exp(y, out=y)                                  # exp(-inf) = 0: blocked keys weigh 0
    normalise_rows(y.reshape(-1, y.shape[-1]))


@rows_kernel(reductions=True)
def scores_minus_max(x, blocked, scale, z):
    """z[n, i, j] = scale * x[n, i, j] - max_j(allowed scale * x[n, i, :]), -inf where blocked
    (and in a row with every key blocked). Subtracting the max keeps exp from overflowing."""
    N, Tq, Tk = x.shape
    shared = blocked.shape[0] == 1                    # one (Tq, Tk) pattern for every n (causal)
    for r in prange(N * Tq):
        n, i = r // Tq, r % Tq
        nb = 0 if shared else n
        maxval = -math.inf
        for j in range(Tk):
            maxval = max(maxval, -math.inf if blocked[nb, i, j] else scale * x[n, i, j])
        for j in range(Tk):
            z[n, i, j] = -math.inf if blocked[nb, i, j] or maxval == -math.inf else scale * x[n, i, j] - maxval


@rows_kernel(reductions=True)
def normalise_rows(e):
    """e[r, :] /= sum(e[r, :]); a row of zeros (every key blocked) stays zeros, not 0/0."""
    R, T = e.shape
    for r in prange(R):
        expsum = 0.0
        for j in range(T):
            expsum += e[r, j]
        if expsum > 0:
            inv = 1.0 / expsum
            for j in range(T):
                e[r, j] *= inv


@rows_kernel(reductions=True)
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
