"""Cross-entropy of logits (N, V) against integer targets, forward and backward
(fused.CrossEntropy), after llm.c's crossentropy_forward / crossentropy_softmax_backward.
prange over the N rows."""
import math

from . import prange, rows_kernel


@rows_kernel
def cross_entropy_forward(z, targets, valid, probs, losses):
    """probs[i] = softmax(z[i]);  losses[i] = -log probs[i, t_i] = logsumexp(z[i]) - z[i, t_i]
    (0 for a row whose target is ignored: it adds nothing, even if its logits are NaN)."""
    N, V = z.shape
    for i in prange(N):
        maxval = -math.inf
        for j in range(V):
            if z[i, j] > maxval:
                maxval = z[i, j]
        expsum = 0.0
        for j in range(V):
            e = math.exp(z[i, j] - maxval)
            probs[i, j] = e
            expsum += e
        inv = 1.0 / expsum
        for j in range(V):
            probs[i, j] *= inv
        losses[i] = math.log(expsum) + maxval - z[i, targets[i]] if valid[i] else 0.0


@rows_kernel
def cross_entropy_backward(probs, targets, valid, scale, dz):
    """dL/dz[i] = scale * (probs[i] - onehot(t_i)), scale = dL/dloss / n; 0 for ignored rows."""
    N, V = probs.shape
    for i in prange(N):
        s = scale if valid[i] else 0.0
        for j in range(V):
            indicator = 1.0 if j == targets[i] else 0.0
            dz[i, j] = s * (probs[i, j] - indicator)


# ----------------------------------------------------------------------------- xp reference
def cross_entropy_forward_xp(xp, z, targets, valid):
    """-> (probs (N, V), losses (N,)); `targets` already 0 where not valid."""
    shifted = z - z.max(axis=-1, keepdims=True)
    e = xp.exp(shifted)
    sums = e.sum(axis=-1)
    rows = xp.arange(z.shape[0])
    # where, not * valid: an ignored row adds 0 even if its logits are NaN (0 * NaN = NaN)
    return e / sums[:, None], xp.where(valid, xp.log(sums) - shifted[rows, targets], 0).astype(z.dtype)


def cross_entropy_backward_xp(xp, probs, targets, valid, scale):
    d = probs.copy()
    d[xp.arange(probs.shape[0]), targets] -= 1
    return xp.where(valid[:, None], d * probs.dtype.type(scale), 0).astype(probs.dtype, copy=False)
