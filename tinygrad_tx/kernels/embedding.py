"""The gradient of an embedding lookup (fused.Embedding): dW[ids[n]] += dL/dy[n]."""
from . import rows_kernel


@rows_kernel(parallel=False)
def embedding_backward(ids, g, dw):
    """dW (V, C), zeroed by the caller;  dW[ids[n], :] += g[n, :] for every token n (a token
    that appears k times gets the sum of its k gradients). One plain loop over the tokens:
    two of them may add into the same row, so they cannot be shared among threads; along a
    row the channels vectorise (faster on one thread than channel slices on prange)."""
    N, C = g.shape
    for n in range(N):
        row = ids[n]
        for c in range(C):
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
