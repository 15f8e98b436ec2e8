"""Matrix multiply, with numpy's rules: 2-d, 1-d vectors, and batched n-d with broadcast batch
dims. The batch-dim gradient sum is left to the backward driver's unbroadcast."""
import math

from .. import backend
from ..autograd import Function


def _rows(x):
    """(.., K) -> (rows, K); reshape(-1, K) cannot infer the rows when K is 0."""
    return x.reshape(math.prod(x.shape[:-1]), x.shape[-1])


def _mm(a, b):
    """a @ b; a stack of matrices times ONE matrix is done as a single large GEMM
    ((.., M, K) -> (rows, K)), which BLAS runs far faster than a loop of small ones."""
    if b.ndim == 2 and a.ndim > 2:
        return (_rows(a) @ b).reshape(a.shape[:-1] + (b.shape[-1],))
    return a @ b


class MatMul(Function):
    """Y = A @ B;  dL/dA = dL/dY @ B^T,  dL/dB = A^T @ dL/dY
    (shapes: A (.., M, K), B (.., K, N), Y (.., M, N); each gradient has its input's shape)"""
    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"MatMul: operands must have at least 1 dim, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ValueError(f"MatMul: inner dimensions differ: {tuple(a.shape)} @ {tuple(b.shape)} "
                             f"({a.shape[-1]} != {b.shape[-2 if b.ndim > 1 else 0]})")
        try:
            self.xp.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ValueError(f"MatMul: batch dims do not broadcast: {tuple(a.shape)} @ {tuple(b.shape)}") from None
        dt = backend.result_type(a, b)      # mixed dtypes promote as in + and * (torch would refuse)
        a, b = a.astype(dt, copy=False), b.astype(dt, copy=False)
        self.save_for_backward(a, b)
        return _mm(a, b)

    def backward(self, g):
        a, b = self.saved
        # treat vectors as matrices: a (K,) -> (1, K), b (K,) -> (K, 1), and g to match
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        if a.ndim == 1 and b.ndim == 1:
            g = g.reshape(1, 1)
        elif a.ndim == 1:
            g = g[..., None, :]
        elif b.ndim == 1:
            g = g[..., None]
        need_a, need_b = self.needs_grad
        ga = _mm(g, b2.swapaxes(-1, -2)) if need_a else None   # (.., M, K); a vector's (.., 1, K) sums to (K,)
        gb = None
        if need_b and b2.ndim == 2 and a2.ndim > 2:
            # one B shared by the whole batch: sum_batch A_i^T G_i = (all rows of A)^T (all rows of G)
            gb = _rows(a2).T @ _rows(g)                                         # (K, N)
        elif need_b:
            gb = a2.swapaxes(-1, -2) @ g                        # (.., K, N)
        if gb is not None and b.ndim == 1:
            gb = gb[..., 0]                                     # (.., K, 1) -> (.., K); unbroadcast sums the rest
        return ga, gb
