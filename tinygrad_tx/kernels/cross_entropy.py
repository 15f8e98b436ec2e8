"""Cross-entropy of logits (N, V) against integer targets, forward and backward
(fused.CrossEntropy), after llm.c's crossentropy_forward / crossentropy_softmax_backward.
prange over the N rows."""
import math

from . import prange, rows_kernel


def cross_entropy_forward(xp, z, targets, valid, probs, losses):
    """probs[i] = softmax(z[i]);  losses[i] = -log probs[i, t_i] = logsumexp(z[i]) - z[i, t_i]
    (0 for a row whose target is ignored: it adds nothing, even if its logits are NaN).
    Three passes, as the attention softmax: the shifted logits (a loop), their exp (numpy's
    vectorised exp: numba's is a scalar libm call here, ~10x slower), the normalisation (a loop)."""
    logits_minus_max(z, targets, valid, probs, losses)
    xp.exp(probs, out=probs)
    normalise_and_add_log_sum(probs, valid, losses)


@rows_kernel(reductions=True)
def logits_minus_max(z, targets, valid, shifted, losses):
    """shifted[i] = z[i] - max(z[i]) (exp of it cannot overflow);  losses[i] = -shifted[i, t_i]
    (0 for an ignored row), the loss but for logsumexp(shifted[i]), added next."""
    N, V = z.shape
    for i in prange(N):
        maxval = -math.inf
        for j in range(V):
            maxval = max(maxval, z[i, j])
        for j in range(V):
            shifted[i, j] = z[i, j] - maxval
        losses[i] = maxval - z[i, targets[i]] if valid[i] else 0.0


@rows_kernel(reductions=True)
def normalise_and_add_log_sum(e, valid, losses):
    """e[i] /= sum(e[i]) (exp of the shifted logits -> probabilities);
    losses[i] += log(sum(e[i])) for a valid row: logsumexp(z[i]) - z[i, t_i]."""
    N, V = e.shape
    for i in prange(N):
        expsum = 0.0
        for j in range(V):
            expsum += e[i, j]
        inv = 1.0 / expsum
        for j in range(V):
            e[i, j] *= inv
        if valid[i]:
            losses[i] += math.log(expsum)


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
