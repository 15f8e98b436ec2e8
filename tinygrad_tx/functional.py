"""Loss and layer functions, each written as a composition of primitive ops so that a drawn
graph shows every step (their backward is just the chain rule through those ops)."""

from . import backend
from .autograd import is_fused
from .ops import fused
from .tensor import Tensor, where


def _int_array(ids, opname, device):
    arr = ids.data if isinstance(ids, Tensor) else backend.asarray(ids)
    arr = backend.to_device(arr, device)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{opname}: indices must be integers, got dtype {arr.dtype}")
    return arr


def cross_entropy(logits, targets, ignore_index=None):
    """Mean negative log-likelihood of the targets under softmax(logits).

    logits (..., V), targets (...) integers. loss = -mean_n log_softmax(logits_n)[y_n] over the
    positions whose target is not `ignore_index`. Its gradient w.r.t. the logits works out to
    (softmax(logits) - onehot(y)) / N: the chain rule through log_softmax and the pick."""
    t = _int_array(targets, "cross_entropy", logits.device)
    V = logits.shape[-1]
    if tuple(t.shape) != logits.shape[:-1]:
        raise ValueError(f"cross_entropy: targets of shape {tuple(t.shape)} do not match logits "
                         f"{logits.shape} (expected {logits.shape[:-1]})")
    t = t.reshape(-1)                                               # (N,)
    xp = backend.array_module(t)
    valid = t != ignore_index if ignore_index is not None else xp.ones(t.shape, dtype=bool)
    n_valid = int(valid.sum())
    if n_valid == 0:
        raise ValueError(f"cross_entropy: every target equals ignore_index={ignore_index}; the mean is undefined")
    bad = valid & ((t < 0) | (t >= V))
    if bad.any():
        raise ValueError(f"cross_entropy: target values {sorted(set(t[bad].tolist()))[:5]} are out of range "
                         f"for {V} classes")
    if is_fused():
        return fused.CrossEntropy.apply(logits.reshape(-1, V), targets=t, valid=valid)
    logp = logits.reshape(-1, V).log_softmax(axis=-1).named("log_probs")            # (N, V)
    picked = logp[xp.arange(t.shape[0]), xp.where(valid, t, 0)].named("picked")     # (N,) log p of each target
    if n_valid < t.shape[0]:
        picked = picked.masked_fill(~valid, 0.0).named("picked")        # ignored positions add nothing
    return (-picked.sum() / n_valid).named("loss")


def _check_linear(x, weight, bias):
    """One check for the composed and the fused path, so a shape mistake reads the same."""
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-d (in, out), got shape {weight.shape}")
    if x.ndim == 0 or x.shape[-1] != weight.shape[0]:
        raise ValueError(f"linear: input of shape {x.shape} does not match weight of shape {weight.shape} "
                         f"(expected input (..., {weight.shape[0]}))")
    if bias is not None and bias.shape != (weight.shape[1],):
        raise ValueError(f"linear: bias of shape {bias.shape} does not match weight of shape {weight.shape} "
                         f"(expected ({weight.shape[1]},))")


def linear(x, weight, bias=None):
    """y = x @ W + b with W (in, out): (.., in) -> (.., out)."""
    _check_linear(x, weight, bias)
    if is_fused() and bias is not None:
        return fused.Linear.apply(x, weight, bias)                   # one node, one GEMM, bias in place
    y = x @ weight                                                   # (.., out)
    return y + bias if bias is not None else y


def layer_norm(x, weight=None, bias=None, eps=1e-5):
    """Normalise each vector over its last axis (per token: statistics are never shared across
    positions or batch items), then scale and shift:
        y = (x - mean) / sqrt(var + eps) * weight + bias
    with the biased variance and eps inside the sqrt, as PyTorch defines it."""
    if x.ndim == 0 or not backend.is_float(x.data):
        raise ValueError(f"layer_norm: needs a float input with at least 1 dim, got shape {x.shape} dtype {x.dtype}")
    for key, p in (("weight", weight), ("bias", bias)):            # one check for both paths
        if p is not None and p.shape != x.shape[-1:]:
            raise ValueError(f"layer_norm: {key} of shape {p.shape} does not match input of shape {x.shape} "
                             f"(expected {x.shape[-1:]})")
    if is_fused() and weight is not None and bias is not None:
        return fused.LayerNorm.apply(x, weight, bias, eps=eps)
    mu = x.mean(axis=-1, keepdims=True).named("mean")                   # (..., 1)
    xc = (x - mu).named("xc")                                           # (..., C)
    var = (xc ** 2).mean(axis=-1, keepdims=True).named("var")           # (..., 1) biased
    rstd = ((var + eps) ** -0.5).named("rstd")                          # (..., 1)
    y = (xc * rstd).named("xhat")                                       # (..., C)
    if weight is not None:
        y = (y * weight).named("xhat * weight")
    if bias is not None:
        y = (y + bias).named("layer_norm")
    return y


def dropout(x, p=0.5, training=True, generator=None):
    """Zero each element with probability p and scale the rest by 1/(1-p), so the expected
    value is unchanged ('inverted dropout'). Identity when not training or p == 0.
    The mask comes from `generator` (a numpy Generator) or the engine's seeded one."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0.0
    keep = (generator or backend.rng()).random(x.shape) >= p
    scale = backend.asarray(keep / (1 - p), x.dtype, x.device)       # mask drawn on the host
    return x * Tensor(scale)


def embedding(weight, ids):
    """Row lookup: out[..., :] = weight[ids[...], :]. Backward scatter-adds into the rows used
    (a token appearing k times gets the sum of its k gradients)."""
    arr = _int_array(ids, "embedding", weight.device)
    num = weight.shape[0]
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= num):
        raise IndexError(f"embedding: ids must be in [0, {num}), got min {int(arr.min())} max {int(arr.max())}")
    if is_fused() and weight.ndim == 2:
        return fused.Embedding.apply(weight, ids=arr)
    return weight[arr]


def gelu(x, approximate="none"):
    return x.gelu(approximate)


def softmax(x, axis=-1):
    return x.softmax(axis)


def log_softmax(x, axis=-1):
    return x.log_softmax(axis)


__all__ = ["linear", "cross_entropy", "layer_norm", "dropout", "embedding", "gelu", "softmax", "log_softmax",
           "where"]
