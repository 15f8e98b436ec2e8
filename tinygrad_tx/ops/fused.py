"""Fused ops: one node with a hand-derived backward for a composite that is otherwise built
from several primitives. Same numbers, fewer passes over memory and fewer temporaries.

The composed versions (Tensor.softmax, functional.layer_norm, ...) stay what graphs and docs
show; these run only inside `tinygrad_tx.fused_ops()` (what training uses). Each is tested
against its composed version and against PyTorch."""
import math

from .. import backend
from ..autograd import Function


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


def additive_mask(xp, mask, shape, dtype):
    """A boolean mask (True = blocked) broadcastable to shape (.., Tq, Tk) as a float bias, 0
    where allowed and -inf where blocked: (Tq, Tk) when one pattern is shared by every batch
    and head (causal), else (N, Tq, Tk), N the product of the leading dims. Adding the bias is
    one pass; filling by boolean index is ~25x slower."""
    Tq, Tk = shape[-2:]
    if mask.ndim <= 2 or all(d == 1 for d in mask.shape[:-2]):
        mask = xp.broadcast_to(mask.reshape(mask.shape[-2:]) if mask.ndim > 2 else mask, (Tq, Tk))
    else:
        mask = flat_rows(xp.broadcast_to(mask, shape), 2)
    bias = xp.zeros(mask.shape, dtype=dtype)
    bias[mask] = -xp.inf
    return bias


def masked_softmax(xp, x, mask, scale, out=None):
    """softmax(scale * x) over the last axis with blocked positions (mask True) at weight 0;
    a row with every position blocked gives all zeros (not 0/0 = NaN). Writes a new array, or
    `out` (which may be x itself). Runs over blocks of whole (Tq, Tk) score matrices (see backend.map_blocks)."""
    Tq, Tk = x.shape[-2:]
    if x.size == 0:                                                         # no scores: nothing to normalise
        return x.copy() if out is None else out
    mats = flat_rows(x, 2)                                                  # (N, Tq, Tk)
    y = xp.empty_like(mats) if out is None else flat_rows(out, 2)
    bias = None if mask is None else additive_mask(xp, mask, x.shape, x.dtype)   # (Tq, Tk) or (N, Tq, Tk)
    dead_rows = bias is not None and bool(xp.isneginf(bias).all(axis=-1).any())
    sc = x.dtype.type(scale)
    scale_pass = scale != 1 or out is not x                                 # else: already in place

    def kernel(xb, yb, bb=None):
        if scale_pass:
            xp.multiply(xb, sc, out=yb)
        if bb is not None:
            yb += bb                                                        # blocked: -inf
        m = yb.max(axis=-1, keepdims=True)
        if dead_rows:
            m[xp.isneginf(m)] = 0                                           # dead rows: avoid -inf - -inf
        yb -= m
        xp.exp(yb, out=yb)
        total = row_sum(xp, yb)
        if dead_rows:
            total[total == 0] = 1                                           # dead rows stay all-zero
        yb /= total
    if bias is not None and bias.ndim == 2:                                 # shared: broadcast to each block
        backend.map_blocks(lambda xb, yb: kernel(xb, yb, bias), mats, y)
    else:
        backend.map_blocks(kernel, mats, y, *(() if bias is None else (bias,)))
    return y.reshape(x.shape)


def masked_softmax_backward(xp, y, g, scale, out=None):
    """dL/dx = scale * y * (dL/dy - sum(dL/dy * y)) row by row (blocked positions: y = 0, so 0)."""
    T = y.shape[-1]
    sc = g.dtype.type(scale)
    out = xp.empty(y.shape, dtype=g.dtype) if out is None else out

    def kernel(gb, yb, ob):
        xp.multiply(gb, yb, out=ob)
        ob -= yb * row_sum(xp, ob)
        if scale != 1:
            ob *= sc
    backend.map_blocks(kernel, flat_rows(g), flat_rows(y), flat_rows(out))
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
        # where, not * valid: an ignored row adds 0 even if its logits are NaN (0 * NaN = NaN)
        return -xp.where(valid, logp_t, 0).sum(dtype=logits.dtype) / logits.dtype.type(n)

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
                      - xhat * mean(d * xhat)) term 3: through the variance
    Row means are matrix-vector products (see row_sum): mean(d) = (dL/dy @ w) / C and
    mean(d * xhat) = ((dL/dy * xhat) @ w) / C, the product dL/dy * xhat being the one dL/dw
    needs anyway. Rows are processed in cache-sized blocks (backend.map_blocks)."""
    def forward(self, x, w, b, eps=1e-5):
        xp, C = self.xp, x.shape[-1]
        inv_c, eps = x.dtype.type(1 / C), x.dtype.type(eps)
        rows = flat_rows(x)
        y, xhat = xp.empty_like(rows), xp.empty_like(rows)
        rstd = xp.empty((rows.shape[0], 1), dtype=x.dtype)

        def kernel(xb, yb, hb, rb):
            xp.subtract(xb, row_sum(xp, xb) * inv_c, out=hb)                # x - mean
            xp.multiply(hb, hb, out=yb)                                     # (yb as scratch)
            var = row_sum(xp, yb) * inv_c                                   # biased variance
            xp.sqrt(var + eps, out=rb)
            xp.divide(1, rb, out=rb)                                        # rstd
            hb *= rb                                                        # xhat
            xp.multiply(hb, w, out=yb)
            yb += b
        backend.map_blocks(kernel, rows, y, xhat, rstd)
        self.save_for_backward(xhat, rstd, w)
        return y.reshape(x.shape)

    def backward(self, g):
        xhat, rstd, w = self.saved
        xp, C = self.xp, g.shape[-1]
        inv_c = g.dtype.type(1 / C)
        g2 = flat_rows(g)                                                   # (N, C)
        gh = g2 * xhat                                                      # dL/dy * xhat
        dw, db = lead_sum(xp, gh), lead_sum(xp, g2)
        mean_d = (g2 @ w)[:, None] * inv_c                                  # (N, 1) mean(d)
        mean_dh = (gh @ w)[:, None] * inv_c                                 # (N, 1) mean(d * xhat)
        dx = gh                                                             # gh is spent: reuse it

        def kernel(gb, hb, rb, mb, mhb, ob):
            xp.multiply(gb, w, out=ob)                                      # term 1
            ob -= mb                                                        # term 2
            hb = hb * mhb
            ob -= hb                                                        # term 3
            ob *= rb
        backend.map_blocks(kernel, g2, xhat, rstd, mean_d, mean_dh, dx)
        return dx.reshape(g.shape), dw, db


class Linear(Function):
    """y = x @ W + b (one node for nn.Linear);  dL/dx = dL/dy @ W^T,  dL/dW = x^T @ dL/dy
    (all rows of the batch folded into one GEMM),  dL/db = sum of dL/dy over the rows"""
    def forward(self, x, w, b):
        dt = backend.result_type(x, w)                                        # as MatMul promotes
        rows, w = flat_rows(x).astype(dt, copy=False), w.astype(dt, copy=False)   # (N, in)
        y = rows @ w                                                          # (N, out)
        y += b
        self.save_for_backward(rows, w, x.shape)
        return y.reshape(x.shape[:-1] + (w.shape[1],))

    def backward(self, g):
        rows, w, in_shape = self.saved
        g2 = flat_rows(g)                                                     # (N, out)
        need_x, need_w, need_b = self.needs_grad
        dx = (g2 @ w.T).reshape(in_shape) if need_x else None
        dw = rows.T @ g2 if need_w else None
        db = lead_sum(self.xp, g2) if need_b else None
        return dx, dw, db


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


class Gelu(Function):
    """exact:  y = x Phi(x);  dy/dx = Phi(x) + x phi(x),  Phi(x) = (1 + erf(x/sqrt2))/2,
            phi(x) = exp(-x^2/2) / sqrt(2 pi)  (exp(-x^2/2) is computed once, shared by Phi and phi)
    tanh:   y = x (1 + tanh(u)) / 2, u = sqrt(2/pi) (x + 0.044715 x^3);
            dy/dx = (1 + t)/2 + x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2) / 2, t = tanh(u)"""
    def forward(self, x, approximate="none"):
        xp, dt = self.xp, x.dtype.type
        flat = x.reshape(-1)
        if approximate == "tanh":
            y, tanh_u = xp.empty_like(flat), xp.empty_like(flat)

            def tanh_kernel(xb, yb, tb):
                xp.multiply(xb, xb, out=tb)
                tb *= dt(0.044715)
                tb += dt(1)
                tb *= xb
                tb *= dt(_SQRT_2_OVER_PI)                             # u = sqrt(2/pi) x (1 + 0.044715 x^2)
                xp.tanh(tb, out=tb)                                   # t
                xp.add(tb, dt(1), out=yb)
                yb *= xb
                yb *= dt(0.5)
            backend.map_blocks(tanh_kernel, flat, y, tanh_u)
            self.save_for_backward(x, tanh_u)
            return y.reshape(x.shape)
        y, cdf, gauss = xp.empty_like(flat), xp.empty_like(flat), xp.empty_like(flat)

        def kernel(xb, yb, cb, gb):
            xp.multiply(xb, xb, out=gb)
            gb *= dt(-0.5)
            xp.exp(gb, out=gb)                                        # exp(-x^2/2), shared with phi(x)
            backend.normal_cdf(xb, gb, out=cb)                        # Phi(x)
            xp.multiply(xb, cb, out=yb)
        backend.map_blocks(kernel, flat, y, cdf, gauss)
        self.save_for_backward(x, cdf, gauss)
        return y.reshape(x.shape)

    def backward(self, g):
        xp, dt = self.xp, g.dtype.type
        if self.args["approximate"] == "tanh":
            x, t = self.saved
            out = xp.empty(t.shape, dtype=g.dtype)

            def tanh_kernel(xb, tb, gb, ob):
                du = xb * xb
                du *= dt(0.5 * _SQRT_2_OVER_PI * 3 * 0.044715)
                du += dt(0.5 * _SQRT_2_OVER_PI)                       # du/dx / 2
                xp.multiply(tb, tb, out=ob)
                xp.subtract(dt(1), ob, out=ob)                        # 1 - t^2
                ob *= du
                ob *= xb                                              # x (1 - t^2) du/dx / 2
                ob += dt(0.5)
                du = xp.multiply(tb, dt(0.5), out=du)
                ob += du                                              # + (1 + t) / 2
                ob *= gb
            backend.map_blocks(tanh_kernel, x.reshape(-1), t, g.reshape(-1), out)
            return out.reshape(g.shape)
        x, cdf, gauss = self.saved
        out = xp.empty(cdf.shape, dtype=g.dtype)

        def kernel(xb, cb, gsb, gb, ob):
            xp.multiply(xb, gsb, out=ob)
            ob *= dt(1 / math.sqrt(2 * math.pi))                      # x phi(x)
            ob += cb
            ob *= gb
        backend.map_blocks(kernel, x.reshape(-1), cdf, gauss, g.reshape(-1), out)
        return out.reshape(g.shape)


class Embedding(Function):
    """y = W[ids];  dL/dW = sum of dL/dy rows into the rows named by ids (repeats add up),
    computed as onehot(ids)^T @ dL/dy when that matrix is small (one GEMM beats a scatter)"""
    def forward(self, weight, ids):
        self.in_shape = weight.shape
        return weight[ids]

    def backward(self, g):
        xp, ids = self.xp, self.args["ids"]
        V, C = self.in_shape
        flat_ids, flat_g = ids.reshape(-1), flat_rows(g)
        if V * flat_ids.shape[0] <= 1 << 22:
            onehot = (flat_ids[:, None] == xp.arange(V)[None, :]).astype(g.dtype)   # (N, V)
            return onehot.T @ flat_g                                                 # (V, C)
        out = xp.zeros(self.in_shape, dtype=g.dtype)
        xp.add.at(out, flat_ids, flat_g)
        return out
