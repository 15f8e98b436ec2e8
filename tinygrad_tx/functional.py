"""Loss and layer functions, each written as a composition of primitive ops so that a drawn
graph shows every step (their backward is just the chain rule through those ops).

The one switch between composed and fused: inside `fused_ops()` each function here returns
one node of ops/fused.py instead, whose backward is derived by hand (each docstring says which;
Tensor.gelu/softmax/log_softmax come here too)."""
import math

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
    (softmax(logits) - onehot(y)) / N: the chain rule through log_softmax and the pick.
    Fused: one node, ops/fused.py CrossEntropy (that gradient by hand; kernels/cross_entropy.py)."""
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
    """y = x @ W + b with W (in, out): (.., in) -> (.., out).
    Fused (with a bias): one node, ops/fused.py Linear (hand-derived backward, one GEMM each)."""
    _check_linear(x, weight, bias)
    if is_fused() and bias is not None:
        return fused.Linear.apply(x, weight, bias)                   # one node, one GEMM, bias in place
    y = x @ weight                                                   # (.., out)
    return y + bias if bias is not None else y


def layer_norm(x, weight=None, bias=None, eps=1e-5):
    """Normalise each vector over its last axis (per token: statistics are never shared across
    positions or batch items), then scale and shift:
        y = (x - mean) / sqrt(var + eps) * weight + bias
    with the biased variance and eps inside the sqrt, as PyTorch defines it.
    Fused (with weight and bias): one node, ops/fused.py LayerNorm (hand-derived backward;
    its loops in kernels/layernorm.py)."""
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
    (a token appearing k times gets the sum of its k gradients).
    Fused: one node, ops/fused.py Embedding (the scatter-add in kernels/embedding.py)."""
    arr = _int_array(ids, "embedding", weight.device)
    num = weight.shape[0]
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= num):
        raise IndexError(f"embedding: ids must be in [0, {num}), got min {int(arr.min())} max {int(arr.max())}")
    if is_fused() and weight.ndim == 2:
        return fused.Embedding.apply(weight, ids=arr)
    return weight[arr]


def gelu(x, approximate="none"):
    """GELU, named as in PyTorch. "none": x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)).
    "tanh": 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), the GPT-2 approximation.
    Fused: one node, ops/fused.py Gelu (hand-derived backward; its loop in kernels/gelu.py)."""
    if not backend.is_float(x.data):
        raise TypeError(f"gelu: needs a float tensor (as torch), got dtype {x.dtype}")
    if approximate in ("none", "tanh") and is_fused():
        return fused.Gelu.apply(x, approximate=approximate)
    if approximate == "none":
        half = (0.5 * x).named("0.5 x")
        two_phi = (1 + (x * (1 / math.sqrt(2))).named("x / sqrt2").erf()).named("1 + erf")   # 2 Phi(x)
        return (half * two_phi).named("gelu")
    if approximate == "tanh":
        inner = (math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)).named("inner")
        half = (0.5 * x).named("0.5 x")
        return (half * (1 + inner.tanh()).named("1 + tanh")).named("gelu")
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def softmax(x, axis=-1):
    """softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m), m = max(x): subtracting the max
    changes nothing mathematically and keeps exp from overflowing. m is detached: the
    result does not depend on it, so no gradient needs to flow through it.
    Fused: one node, ops/fused.py Softmax (hand-derived backward)."""
    axis = x._softmax_axis(axis, "softmax")
    if x.size == 0:            # nothing to normalise: torch returns the empty tensor as it is
        return x.reshape(x.shape)
    if is_fused() and x.ndim:
        return fused.Softmax.apply(x, axis=axis)
    m = x.max(axis=axis, keepdims=True).detach().named("max")
    e = (x - m).named("z - max").exp().named("exp")
    return (e / e.sum(axis=axis, keepdims=True).named("sum")).named("softmax")


def log_softmax(x, axis=-1):
    """log_softmax(x) = (x - m) - log(sum exp(x - m)): stable, never log(0) for finite x.
    Fused: one node, ops/fused.py LogSoftmax (hand-derived backward)."""
    axis = x._softmax_axis(axis, "log_softmax")
    if x.size == 0:
        return x.reshape(x.shape)
    if is_fused() and x.ndim:
        return fused.LogSoftmax.apply(x, axis=axis)
    z = (x - x.max(axis=axis, keepdims=True).detach().named("max")).named("z - max")
    lse = z.exp().named("exp").sum(axis=axis, keepdims=True).named("sum").log().named("logsumexp")
    return (z - lse).named("log_softmax")


def attention_weights(q, k, mask=None, scale=1.0):
    """The attention weights softmax(mask(q k^T * scale)): q (.., Tq, hs), k (.., Tk, hs) ->
    (.., Tq, Tk). mask: a boolean array (True = blocked) broadcastable to the scores, already
    checked by the caller (transformer.attention.check_mask). Blocked scores become -inf BEFORE
    the softmax, so their weight is exactly 0 and they pass exactly 0 gradient.
    A row with EVERY key blocked (a query with nothing to look at) would be softmax of all -inf
    = 0/0 = NaN: such rows are left unmasked for the softmax and their weights then set to 0,
    so the output there is 0 and no gradient flows through them.
    Fused: one node, ops/fused.py AttentionWeights (hand-derived backward)."""
    if is_fused():
        return fused.AttentionWeights.apply(q, k, mask=mask, scale=scale)
    scores = ((q @ k.swapaxes(-1, -2).named("kT")) * scale).named("scores")     # (.., Tq, Tk)
    if mask is None:
        return scores.softmax(axis=-1).named("weights")
    dead = mask.all(axis=-1, keepdims=True)                                     # (.., Tq, 1)
    blocked = Tensor(mask & ~dead, name="mask")                                 # (.., Tq, Tk)
    weights = scores.masked_fill(blocked, float("-inf")).named("masked_scores").softmax(axis=-1)
    if dead.any():
        weights = weights.masked_fill(Tensor(dead, name="dead rows"), 0.0)
    return weights.named("weights")


__all__ = ["linear", "cross_entropy", "layer_norm", "dropout", "embedding", "gelu", "softmax", "log_softmax",
           "attention_weights", "where"]
