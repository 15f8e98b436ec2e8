"""The AdamW update of one parameter (optim.AdamW), in place, over its flat elements."""
import math

from . import prange, rows_kernel


@rows_kernel
def adamw_update(p, g, m, v, b1, b2, eps, decay, step_size, inv_bc2):
    """PyTorch's order, per element:
        p <- p * decay                                  decay = 1 - lr * weight_decay
        m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
        p <- p - step_size * m / (sqrt(v) * inv_bc2 + eps)
    step_size = lr / (1 - b1^t), inv_bc2 = 1 / sqrt(1 - b2^t) (the bias corrections)."""
    for i in prange(p.shape[0]):
        m[i] = b1 * m[i] + (1.0 - b1) * g[i]
        v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i]
        p[i] = p[i] * decay - step_size * m[i] / (math.sqrt(v[i]) * inv_bc2 + eps)


# ----------------------------------------------------------------------------- xp reference
def adamw_update_xp(xp, p, g, m, v, b1, b2, eps, decay, step_size, inv_bc2):
    """The same update as whole-array passes, in place (any layout)."""
    p *= decay
    m *= b1
    m += (1 - b1) * g
    v *= b2
    v += (1 - b2) * (g * g)
    p -= step_size * (m / (xp.sqrt(v) * inv_bc2 + eps))
