"""Backward passes derived by hand, in plain numpy: one causal attention head and layer norm.

Written the way llm.c writes its `attention_backward` and `layernorm_backward`: each backward
line sits under a comment restating the forward line it differentiates, and each term has a
name. Nothing here imports the engine; the tests (tests/test_claims.py) build the same
computation from engine Tensors and compare every gradient with `compare`, then print the
table from `report`. Use the same two functions to check a derivation of your own: compute
your gradients, then `print(report([compare(name, yours, reference), ...]))`.

Shapes: T time, C channels (the width of x), hs head size. Mask convention as in
transformer/masks.py: True = blocked (this query may not look at this key).
"""
import numpy as np


def attention_head_backward(x, Wq, Wk, Wv, mask, dout):
    """One attention head, forward then backward by hand.

    x (T, C), Wq/Wk/Wv (C, hs), mask (T, T) bool (True = blocked), dout (T, hs) = dL/dout.
    Returns {"out", "p"} (forward values) and the gradients {"dv", "dp", "ds", "dq", "dk",
    "dWq", "dWk", "dWv", "dx"}. `ds` is dL/ds for the scaled scores s (before masking);
    blocked entries of ds are exactly 0."""
    hs = Wq.shape[1]
    scale = 1.0 / np.sqrt(hs)

    # ---------------------------------------------------------------- forward
    q = x @ Wq                                          # (T, hs)
    k = x @ Wk                                          # (T, hs)
    v = x @ Wv                                          # (T, hs)
    s = (q @ k.T) * scale                               # (T, T) scaled scores
    s_masked = np.where(mask, -np.inf, s)               # (T, T) blocked keys -> -inf
    e = np.exp(s_masked - s_masked.max(axis=-1, keepdims=True))   # exp(-inf) = 0 exactly
    p = e / e.sum(axis=-1, keepdims=True)               # (T, T) attention weights, rows sum to 1
    out = p @ v                                         # (T, hs)

    # ---------------------------------------------------------------- backward
    # out = p @ v
    dv = p.T @ dout                                     # (T, hs) each value gets what its weights sent
    dp = dout @ v.T                                     # (T, T)

    # p = softmax(s_masked) along each row: dp -> ds through the Jacobian diag(p) - p p^T,
    # applied row by row without forming it:  ds_ij = p_ij (dp_ij - sum_k dp_ik p_ik).
    # Blocked entries have p = 0, so ds = 0 there: the -inf mask passes no gradient.
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))   # (T, T)

    # s = (q @ k^T) * scale
    datt = ds * scale                                   # (T, T) gradient of the raw q k^T
    dq = datt @ k                                       # (T, hs)
    dk = datt.T @ q                                     # (T, hs)

    # q = x @ Wq;  k = x @ Wk;  v = x @ Wv
    dWq = x.T @ dq                                      # (C, hs)
    dWk = x.T @ dk
    dWv = x.T @ dv
    # x feeds all three projections: its gradient is the sum of the three paths
    dx = dq @ Wq.T + dk @ Wk.T + dv @ Wv.T              # (T, C)

    return {"out": out, "p": p, "dv": dv, "dp": dp, "ds": ds, "dq": dq, "dk": dk,
            "dWq": dWq, "dWk": dWk, "dWv": dWv, "dx": dx}


def layer_norm_backward(x, w, b, dout, eps=1e-5):
    """Layer norm over the last axis, forward then backward by hand.

    x (..., C), w and b (C,), dout (..., C) = dL/dout. Returns {"out"} and the gradients
    {"dx", "dw", "db"}, plus the three terms of dx ("dx_direct", "dx_mean", "dx_var")."""
    # ---------------------------------------------------------------- forward
    mean = x.mean(axis=-1, keepdims=True)               # (..., 1) per token, over its C features
    xc = x - mean                                       # (..., C)
    var = (xc ** 2).mean(axis=-1, keepdims=True)        # (..., 1) biased: divide by C (as PyTorch)
    rstd = 1.0 / np.sqrt(var + eps)                     # (..., 1) eps inside the sqrt
    xhat = xc * rstd                                    # (..., C)
    out = xhat * w + b                                  # (..., C)

    # ---------------------------------------------------------------- backward
    lead = tuple(range(x.ndim - 1))                     # every axis but the features
    # out = xhat * w + b: w and b are shared by all tokens, so their gradients sum over them
    dw = (dout * xhat).sum(axis=lead)                   # (C,)
    db = dout.sum(axis=lead)                            # (C,)
    dxhat = dout * w                                    # (..., C)

    # xhat = (x - mean) * rstd, and both mean and rstd depend on every x_j of the token.
    # term 1: directly through xhat (mean and rstd held fixed)
    dx_direct = dxhat * rstd
    # term 2: through the mean (d mean / d x_j = 1/C for every j)
    dx_mean = -dxhat.mean(axis=-1, keepdims=True) * rstd
    # term 3: through the variance (d rstd / d x_j = -rstd^3 (x_j - mean) / C = -rstd^2 xhat_j / C)
    dx_var = -xhat * (dxhat * xhat).mean(axis=-1, keepdims=True) * rstd
    dx = dx_direct + dx_mean + dx_var                   # (..., C)

    return {"out": out, "dx": dx, "dw": dw, "db": db,
            "dx_direct": dx_direct, "dx_mean": dx_mean, "dx_var": dx_var}


def compare(name, ours, engine, tol=1e-10):
    """-> (name, "exact" | "close" | "DIFFERENT", max abs difference). "close" means every entry
    is within `tol` (floating point sums in another order differ in the last bits)."""
    ours, engine = np.asarray(ours), np.asarray(engine)
    if ours.shape != engine.shape:
        return name, "DIFFERENT", float("inf")
    diff = float(np.max(np.abs(ours - engine))) if ours.size else 0.0
    if np.array_equal(ours, engine):
        return name, "exact", diff
    return name, ("close" if diff <= tol else "DIFFERENT"), diff


def report(rows):
    """A printable table of `compare` rows."""
    width = max([len("tensor")] + [len(r[0]) for r in rows])
    lines = [f"{'tensor':<{width}}  {'result':<9}  max |ours - engine|",
             f"{'-' * width}  {'-' * 9}  {'-' * 19}"]
    lines += [f"{name:<{width}}  {status:<9}  {diff:.3e}" for name, status, diff in rows]
    return "\n".join(lines)
