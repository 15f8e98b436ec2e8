"""The gradient of an embedding lookup (fused.Embedding): dW[ids[n]] += dL/dy[n]."""
from . import prange, rows_kernel

CHANNELS_PER_TASK = 16


@rows_kernel
def embedding_backward(ids, g, dw):
    """dW (V, C), zeroed by the caller;  dW[ids[n], :] += g[n, :] for every token n (a token
    that appears k times gets the sum of its k gradients). prange over slices of the C
    channels: each thread owns its columns, so no two threads add into the same element."""
    N, C = g.shape
    for task in prange((C + CHANNELS_PER_TASK - 1) // CHANNELS_PER_TASK):
        c0 = task * CHANNELS_PER_TASK
        c1 = min(c0 + CHANNELS_PER_TASK, C)
        for n in range(N):
            row = ids[n]
            for c in range(c0, c1):
                dw[row, c] += g[n, c]


# ----------------------------------------------------------------------------- xp reference
def embedding_backward_xp(xp, ids, g, dw):
    """Scatter-add in place; onehot(ids)^T @ g when that matrix is small (a GEMM beats
    add.at's unbuffered scatter)."""
    V = dw.shape[0]
    if V * ids.shape[0] <= 1 << 22:
        dw += (ids[:, None] == xp.arange(V)[None, :]).astype(g.dtype).T @ g
    else:
        xp.add.at(dw, ids, g)
