"""Fused ops: one node with a hand-derived backward for a composite that is otherwise built
from several primitives. Same numbers, fewer passes over memory and fewer temporaries.

The composed versions (Tensor.softmax, functional.layer_norm, ...) stay what graphs and docs
show; these run only inside `tinygrad_tx.fused_ops()` (what training uses). Each is tested
against its composed version and against PyTorch.

On the CPU the inner loops are the compiled kernels of tinygrad_tx/kernels/ (one loop over
rows each); on the GPU, or without numba, the xp formulation written beside each kernel."""
import math

from .. import backend, kernels
from ..autograd import Function
from ..kernels import cross_entropy as ce_k, embedding as embedding_k, gelu as gelu_k
from ..kernels import layernorm as layernorm_k, softmax as softmax_k


def flat_rows(x, n_last=1):
    """x as (N, *last n_last dims): reshape(-1, ...) cannot infer N when a last dim is 0."""
    return x.reshape((math.prod(x.shape[:x.ndim - n_last]),) + tuple(x.shape[x.ndim - n_last:]))


def row_sum(xp, x):
    """sum over the last axis (keepdims) as a matrix-vector product: for short rows BLAS is
    several times faster than numpy's reduction."""
    C = x.shape[-1]
    return (flat_rows(x) @ xp.ones(C, dtype=x.dtype)).reshape(x.shape[:-1] + (1,))


def lead_sum(xp, x):
    """sum over every axis but the last: (.., C) -> (C,), as ones^T @ rows."""
    rows = flat_rows(x)
    return xp.ones(rows.shape[0], dtype=x.dtype) @ rows


class Softmax(Function):
    """y = softmax(x) along axis;  dL/dx = y * (dL/dy - sum(dL/dy * y, axis))
    (the Jacobian diag(y) - y y^T applied to dL/dy, without forming it)"""
    def forward(self, x, axis=-1):
        y = x - x.max(axis=axis, keepdims=True)
        self.xp.exp(y, out=y)
        y /= row_sum(self.xp, y) if axis in (-1, x.ndim - 1) else y.sum(axis=axis, keepdims=True)
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


def blocked_keys(xp, mask, shape):
    """A boolean mask (True = blocked) broadcastable to scores of shape (.., Tq, Tk) as
    (1, Tq, Tk) when one pattern is shared by every batch and head (causal; also no mask: all
    False), else (N, Tq, Tk), N the product of the leading dims (a broadcast view, no copy
    where the strides allow)."""
    Tq, Tk = shape[-2:]
    if mask is None:
        return xp.zeros((1, Tq, Tk), dtype=bool)
    if mask.ndim <= 2 or all(d == 1 for d in mask.shape[:-2]):
        return xp.broadcast_to(mask.reshape(mask.shape[-2:]) if mask.ndim > 2 else mask, (Tq, Tk))[None]
    return flat_rows(xp.broadcast_to(mask, shape), 2)


def masked_softmax(xp, x, mask, scale, out=None):
    """softmax(scale * x) over the last axis with blocked positions (mask True) at weight 0;
    a row with every position blocked gives all zeros (not 0/0 = NaN). Writes a new array, or
    `out` (which may be x itself). kernels/softmax.py: the loops and their xp reference."""
    if x.size == 0:                                                         # no scores: nothing to normalise
        return x.copy() if out is None else out
    mats = flat_rows(x, 2)                                                  # (N, Tq, Tk)
    y = xp.empty_like(mats) if out is None else flat_rows(out, 2)
    blocked = blocked_keys(xp, mask, x.shape)                               # (1 or N, Tq, Tk)
    if kernels.compiled(mats, blocked):
        softmax_k.masked_softmax_forward(xp, mats, blocked, float(scale), y)
    else:
        y[...] = softmax_k.masked_softmax_forward_xp(xp, mats, blocked, scale)
    return y.reshape(x.shape)


def masked_softmax_backward(xp, y, g, scale, out=None):
    """dL/dx = scale * y * (dL/dy - sum(dL/dy * y)) row by row (blocked positions: y = 0, so 0).
    `out` may be g itself."""
    out = xp.empty(y.shape, dtype=g.dtype) if out is None else out
    rows_y, rows_g, rows_out = flat_rows(y), flat_rows(g), flat_rows(out)   # (R, Tk)
    if kernels.compiled(rows_y, rows_g):
        softmax_k.softmax_backward(rows_y, rows_g, float(scale), rows_out)
    else:
        rows_out[...] = softmax_k.softmax_backward_xp(xp, rows_y, rows_g, scale)
    return out


class AttentionWeights(Function):
    """W = softmax(mask(q k^T * scale)) over the keys, in one node: the (.., Tq, Tk) scores are
    never kept. Backward (S = q k^T * scale, blocked scores fixed at -inf):
      dL/dS = W * (dL/dW - sum_k(dL/dW * W))    softmax backward; 0 where blocked
      dL/dq = scale * dL/dS @ k,   dL/dk = scale * dL/dS^T @ q
    A query with every key blocked gets all-zero weights and no gradient."""
    def forward(self, q, k, mask=None, scale=1.0):
        y = masked_softmax(self.xp, q @ k.swapaxes(-1, -2), mask, scale)     # (.., Tq, Tk)
        self.save_for_backward(q, k, y)
        return y

    def backward(self, g):
        q, k, y = self.saved
        ds = masked_softmax_backward(self.xp, y, g, self.args["scale"])     # scale included
        need_q, need_k = self.needs_grad
        return (ds @ k if need_q else None), (ds.swapaxes(-1, -2) @ q if need_k else None)


def matmul_into(xp, a, b, out):
    """out[...] = a @ b, written in place (out may be a strided view): numpy hands the strides
    to BLAS; elsewhere (CuPy) the product is computed, then copied."""
    if backend.device_of(out) == "cpu":
        xp.matmul(a, b, out=out)
    else:
        out[...] = a @ b


def split_qkv(qkv, n_head):
    """(B, T, 3C) -> q, k, v as (B, H, T, hs) views (no copy): channels [q | k | v], each split
    into H heads of hs = C / H."""
    B, T, C3 = qkv.shape
    parts = qkv.reshape(B, T, 3, n_head, C3 // (3 * n_head))               # (B, T, 3, H, hs)
    return tuple(parts[:, :, i].transpose(0, 2, 1, 3) for i in range(3))


class SelfAttention(Function):
    """Multi-head self-attention after the q|k|v projection, in one node (llm.c's attention):
        q, k, v = split_qkv(qkv)                       (B, H, T, hs) each
        W = softmax(mask(q k^T * scale))               (B, H, T, T), blocked keys weigh 0
        y = merge_heads(W v)                           (B, T, C)
    Backward, per head, with dL/dY the incoming gradient split into heads:
        dL/dv = W^T dL/dY,   dL/dW = dL/dY v^T
        dL/dS = W * (dL/dW - sum_k(dL/dW * W))          (softmax backward; 0 where blocked)
        dL/dq = scale * dL/dS k,     dL/dk = dL/dS^T (scale * q)
    written straight into one (B, T, 3C) gradient: the split and the head reshapes cost nothing.
    The scale is applied to q (T x hs) rather than to the scores (T x T).
    `weights`: an optional (B, H, T, T) array that receives W (MultiHeadAttention keeps it for
    plots)."""
    def forward(self, qkv, n_head, mask=None, scale=1.0, weights=None):
        xp = self.xp
        B, T, C3 = qkv.shape
        q, k, v = split_qkv(qkv, n_head)                                     # (B, H, T, hs) views
        qs = q * qkv.dtype.type(scale)                                       # (B, H, T, hs), contiguous
        w = xp.empty((B, n_head, T, T), dtype=qkv.dtype) if weights is None else weights
        matmul_into(xp, qs, k.swapaxes(-1, -2), w)                           # scores S (B, H, T, T)
        masked_softmax(xp, w, mask, 1.0, out=w)                              # W, in place
        y = xp.empty((B, T, n_head, C3 // (3 * n_head)), dtype=qkv.dtype)   # (B, T, H, hs)
        matmul_into(xp, w, v, y.transpose(0, 2, 1, 3))                       # heads merged in place
        self.save_for_backward(qkv, qs, w)
        return y.reshape(B, T, C3 // 3)

    def backward(self, g):
        xp = self.xp
        qkv, qs, w = self.saved
        B, T, C3 = qkv.shape
        H = self.args["n_head"]
        _, k, v = split_qkv(qkv, H)
        gy = g.reshape(B, T, H, C3 // (3 * H)).transpose(0, 2, 1, 3)         # (B, H, T, hs)
        dqkv = xp.empty(qkv.shape, dtype=g.dtype)                            # (B, T, 3C)
        dq, dk, dv = split_qkv(dqkv, H)
        matmul_into(xp, w.swapaxes(-1, -2), gy, dv)
        dw = gy @ v.swapaxes(-1, -2)                                          # (B, H, T, T)
        ds = masked_softmax_backward(xp, w, dw, 1.0, out=dw)                  # dL/dS, in place
        matmul_into(xp, ds, k, dq)
        dq *= g.dtype.type(self.args["scale"])
        matmul_into(xp, ds.swapaxes(-1, -2), qs, dk)
        return dqkv


class CrossEntropy(Function):
    """loss = -(1/n) sum_i log softmax(z_i)[t_i] over the n rows whose target is valid;
    dL/dz_i = dL/dloss * (softmax(z_i) - onehot(t_i)) / n  (0 for ignored rows).
    kernels/cross_entropy.py: the loops and their xp reference."""
    def forward(self, logits, targets, valid):
        xp = self.xp
        safe = xp.where(valid, targets, 0)                                  # (N,) an index for every row
        if kernels.compiled(logits, safe, valid):
            probs, losses = xp.empty_like(logits), xp.empty(logits.shape[0], dtype=logits.dtype)
            ce_k.cross_entropy_forward(xp, logits, safe, valid, probs, losses)
        else:
            probs, losses = ce_k.cross_entropy_forward_xp(xp, logits, safe, valid)
        self.n = int(valid.sum())
        self.save_for_backward(probs, safe, valid)
        return losses.sum(dtype=logits.dtype) / logits.dtype.type(self.n)

    def backward(self, g):
        probs, safe, valid = self.saved
        scale = float(g) / self.n
        if kernels.compiled(probs, safe, valid):
            d = self.xp.empty_like(probs)
            ce_k.cross_entropy_backward(probs, safe, valid, scale, d)
            return d
        return ce_k.cross_entropy_backward_xp(self.xp, probs, safe, valid, scale)


class LayerNorm(Function):
    """y = xhat * w + b, xhat = (x - mean) / sqrt(var + eps) over the last axis.
    dL/dw = sum(dL/dy * xhat), dL/db = sum(dL/dy) over all but the last axis, and with
    d = dL/dy * w (the gradient reaching xhat):
      dL/dx = rstd * (d                       term 1: directly through xhat
                      - mean(d)               term 2: through the mean
                      - xhat * mean(d * xhat)) term 3: through the variance
    kernels/layernorm.py: the loops (llm.c's layernorm_forward/backward) and their xp reference."""
    def forward(self, x, w, b, eps=1e-5):
        xp = self.xp
        rows = flat_rows(x)                                                 # (N, C)
        if kernels.compiled(rows, w, b):
            y = xp.empty_like(rows)
            mean, rstd = xp.empty(rows.shape[0], dtype=x.dtype), xp.empty(rows.shape[0], dtype=x.dtype)
            layernorm_k.layernorm_forward(rows, w, b, float(eps), y, mean, rstd)
        else:
            y, mean, rstd = layernorm_k.layernorm_forward_xp(xp, rows, w, b, eps)
        self.save_for_backward(rows, w, mean, rstd)
        return y.reshape(x.shape).astype(x.dtype, copy=False)

    def backward(self, g):
        rows, w, mean, rstd = self.saved
        xp, g2 = self.xp, flat_rows(g)                                      # (N, C)
        if kernels.compiled(rows, g2):
            dx, dw, db = xp.empty_like(g2), xp.zeros(w.shape, dtype=g.dtype), xp.zeros(w.shape, dtype=g.dtype)
            layernorm_k.layernorm_backward(rows, w, mean, rstd, g2, dx)
            layernorm_k.layernorm_param_grads(rows, mean, rstd, g2, dw, db)
        else:
            dx, dw, db = layernorm_k.layernorm_backward_xp(xp, rows, w, mean, rstd, g2)
        return dx.reshape(g.shape), dw, db


class Linear(Function):
    """y = x @ W + b (one node for nn.Linear);  dL/dx = dL/dy @ W^T,  dL/dW = x^T @ dL/dy
    (all rows of the batch folded into one GEMM),  dL/db = sum of dL/dy over the rows"""
    def forward(self, x, w, b):
        dt = backend.result_type(x, w)                                        # as MatMul promotes
        rows, w = flat_rows(x).astype(dt, copy=False), w.astype(dt, copy=False)   # (N, in)
        y = rows @ w                                                          # (N, out)
        y += b
        self.in_shape = x.shape
        self.save_for_backward(rows, w)
        return y.reshape(x.shape[:-1] + (w.shape[1],))

    def backward(self, g):
        rows, w = self.saved
        g2 = flat_rows(g)                                                     # (N, out)
        need_x, need_w, need_b = self.needs_grad
        dx = (g2 @ w.T).reshape(self.in_shape) if need_x else None
        dw = rows.T @ g2 if need_w else None
        db = lead_sum(self.xp, g2) if need_b else None
        return dx, dw, db


class Gelu(Function):
    """exact:  y = x Phi(x);  dy/dx = Phi(x) + x phi(x),  Phi(x) = (1 + erf(x/sqrt2))/2,
            phi(x) = exp(-x^2/2) / sqrt(2 pi)
    tanh:   y = x (1 + tanh(u)) / 2, u = sqrt(2/pi) (x + 0.044715 x^3);
            dy/dx = (1 + t)/2 + x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2) / 2, t = tanh(u)
    kernels/gelu.py: the loops and their xp reference."""
    def forward(self, x, approximate="none"):
        xp, flat = self.xp, x.reshape(-1)
        on_kernels = kernels.compiled(flat)
        if approximate == "tanh":
            if on_kernels:
                y, t = xp.empty_like(flat), gelu_k.tanh_u_xp(xp, flat)
                gelu_k.gelu_tanh_forward(flat, t, y)
            else:
                y, t = gelu_k.gelu_tanh_forward_xp(xp, flat)
            self.save_for_backward(flat, t)
            return y.reshape(x.shape)
        if on_kernels:
            y, cdf = xp.empty_like(flat), xp.empty_like(flat)
            pdf = gelu_k.gauss_xp(xp, flat)                                   # exp(-x^2/2), becomes phi(x)
            gelu_k.gelu_forward(flat, pdf, y, cdf, pdf, x.dtype.itemsize == 4)   # float32: polynomial Phi
        else:
            y, cdf, pdf = gelu_k.gelu_forward_xp(xp, backend.erf, flat)
        self.save_for_backward(flat, cdf, pdf)
        return y.reshape(x.shape)

    def backward(self, g):
        xp, g1 = self.xp, g.reshape(-1)
        on_kernels = kernels.compiled(g1)
        if self.args["approximate"] == "tanh":
            x, t = self.saved
            if on_kernels:
                dx = xp.empty(g1.shape, dtype=g.dtype)
                gelu_k.gelu_tanh_backward(x, t, g1, dx)
            else:
                dx = gelu_k.gelu_tanh_backward_xp(xp, x, t, g1)
            return dx.reshape(g.shape)
        x, cdf, pdf = self.saved
        if on_kernels:
            dx = xp.empty(g1.shape, dtype=g.dtype)
            gelu_k.gelu_backward(x, cdf, pdf, g1, dx)
        else:
            dx = gelu_k.gelu_backward_xp(xp, x, cdf, pdf, g1)
        return dx.reshape(g.shape)


class Embedding(Function):
    """y = W[ids];  dL/dW = sum of dL/dy rows into the rows named by ids (repeats add up).
    kernels/embedding.py: the loop and its xp reference."""
    def forward(self, weight, ids):
        self.in_shape = weight.shape
        return weight[ids]

    def backward(self, g):
        xp, ids = self.xp, self.args["ids"]
        flat_ids, flat_g = ids.reshape(-1), flat_rows(g)
        dw = xp.zeros(self.in_shape, dtype=g.dtype)                         # (V, C)
        if kernels.compiled(flat_ids, flat_g):
            embedding_k.embedding_backward(flat_ids, flat_g, dw)
        else:
            embedding_k.embedding_backward_xp(xp, flat_ids, flat_g, dw)
        return dw
