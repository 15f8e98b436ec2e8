"""Scaled dot-product attention and multi-head attention, from engine primitives.

Shapes: B batch, T time, C = n_embd, H heads, hs = C // H head size; Tq/Tk query/key lengths.
Attention is a soft key/value lookup: each query is compared with every key (a dot product),
softmax turns the scores into weights that sum to 1, and the output is the weighted sum of the
values. The T x T score matrix is why attention costs O(T^2)."""
import math
import numbers

from tinygrad_tx import Tensor, backend, concat, is_fused, nn
from tinygrad_tx import functional as F
from tinygrad_tx.ops.fused import SelfAttention

from .masks import causal_mask, combine_masks


def check_mask(mask, scores_shape, where):
    """One check for the composed and the fused paths: a boolean mask (True = blocked) that
    broadcasts to the scores (.., Tq, Tk). An integer mask is refused, never read as indices."""
    if mask is None:
        return
    if getattr(mask, "dtype", None) != bool:
        raise TypeError(f"{where}: mask must be a boolean array (True = blocked), got "
                        f"{getattr(mask, 'dtype', type(mask).__name__)}")
    try:
        ok = backend.xp("cpu").broadcast_shapes(tuple(mask.shape), tuple(scores_shape)) == tuple(scores_shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{where}: mask of shape {tuple(mask.shape)} does not broadcast to the scores "
                         f"{tuple(scores_shape)}")


def _check_qkv(q, k, v):
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2 or q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"attention: expected q (.., Tq, hs), k (.., Tk, hs), v (.., Tk, hv), "
                         f"got q {q.shape}, k {k.shape}, v {v.shape}")
    try:
        batch = backend.xp("cpu").broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except ValueError:
        raise ValueError(f"attention: batch dims of q {q.shape}, k {k.shape}, v {v.shape} do not broadcast") from None
    return batch + (q.shape[-2], k.shape[-2])                           # the scores' shape (.., Tq, Tk)


def scaled_dot_product_attention(q, k, v, mask=None, dropout=None):
    """softmax(q k^T / sqrt(hs)) v. Returns (output (.., Tq, hs), weights (.., Tq, Tk)).

    mask: boolean, True = blocked, broadcastable to (.., Tq, Tk). Blocked scores are set to -inf
    BEFORE the softmax, so their weight is exactly 0 and they pass exactly 0 gradient.
    Dividing by sqrt(hs): for random q, k with unit-variance entries, q.k has variance hs, so
    unscaled scores grow like sqrt(hs) and saturate the softmax (tiny gradients).
    dropout: optional callable applied to the weights before they mix the values."""
    hs = q.shape[-1]
    mask = mask.data if isinstance(mask, Tensor) else mask
    check_mask(mask, _check_qkv(q, k, v), "attention")                 # the same for both paths
    if mask is not None:
        mask = backend.to_device(mask, q.device)
    weights = F.attention_weights(q, k, mask, scale=1.0 / math.sqrt(hs))   # (.., Tq, Tk); fused: one node
    return (dropout(weights) if dropout else weights) @ v, weights   # (.., Tq, hs), (.., Tq, Tk)


def split_heads(x, n_head):
    """(B, T, C) -> (B, H, T, hs): each head sees its own hs-wide slice of the channels."""
    B, T, C = x.shape
    return x.reshape(B, T, n_head, C // n_head).transpose(0, 2, 1, 3)


def merge_heads(y):
    """(B, H, T, hs) -> (B, T, C): concatenate the heads' outputs along channels."""
    B, H, T, hs = y.shape
    return y.transpose(0, 2, 1, 3).reshape(B, T, H * hs)


class MultiHeadAttention(nn.Module):
    """H attention heads computed at once. Self-attention: one fused projection c_attn (C, 3C)
    makes q|k|v; cross-attention (`cross=True`): c_q (C, C) on the decoder stream and c_kv
    (C, 2C) on the encoder output ("memory"). c_proj (C, C) is W_O, mixing the heads."""

    def __init__(self, n_embd, n_head, causal=False, cross=False, bias=True, dropout=0.0):
        for name, n in (("n_embd", n_embd), ("n_head", n_head)):
            if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n <= 0:
                raise ValueError(f"MultiHeadAttention: {name} must be a positive integer, got {n!r}")
        if n_embd % n_head:
            raise ValueError(f"MultiHeadAttention: n_embd={n_embd} is not divisible by n_head={n_head}")
        self.n_embd, self.n_head, self.causal, self.cross = n_embd, n_head, causal, cross
        if cross:
            self.c_q = nn.Linear(n_embd, n_embd, bias=bias)
            self.c_kv = nn.Linear(n_embd, 2 * n_embd, bias=bias)
        else:
            self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.attn_dropout = nn.Dropout(dropout)
        self.resid_dropout = nn.Dropout(dropout)
        self.weights = None            # the last attention weights (B, H, Tq, Tk), for plots

    def forward(self, x, memory=None, mask=None, cache=None):
        """x (B, T, C); memory (B, Tk, C) for cross-attention; mask True = blocked, broadcast to
        (B, H, T, Tk); cache: a dict holding past "k", "v" (B, H, Tpast, hs), extended in place
        (self-attention only; used by generation)."""
        C = self.n_embd
        if x.ndim != 3 or x.shape[-1] != C:
            raise ValueError(f"MultiHeadAttention: x must be (B, T, C) with C = n_embd = {C}, got shape {x.shape}")
        drop = self.attn_dropout if self.attn_dropout.p and self.training else None
        if is_fused() and not self.cross and cache is None and drop is None:
            return self._fused_self_attention(x, mask)
        if self.cross:
            if memory is None:
                raise ValueError("MultiHeadAttention(cross=True): forward needs the encoder output `memory`")
            q = self.c_q(x)                                            # (B, T, C)
            k, v = self.c_kv(memory).named("kv").split(C, axis=-1)     # (B, Tk, C) each
        else:
            q, k, v = self.c_attn(x).named("qkv").split(C, axis=-1)    # (B, T, C) each
        q = split_heads(q.named("q"), self.n_head).named("q heads")    # (B, H, T, hs)
        k = split_heads(k.named("k"), self.n_head).named("k heads")    # (B, H, Tk, hs)
        v = split_heads(v.named("v"), self.n_head).named("v heads")    # (B, H, Tk, hs)
        past = 0
        if cache is not None:
            if "k" in cache:
                past = cache["k"].shape[2]
                k = concat([cache["k"], k], axis=2)                    # (B, H, Tpast + T, hs)
                v = concat([cache["v"], v], axis=2)
            cache["k"], cache["v"] = k, v
        if self.causal:
            mask = combine_masks(causal_mask(q.shape[2], offset=past, device=q.device), mask)   # (T, past+T) | mask
        y, self.weights = scaled_dot_product_attention(q, k, v, mask, drop)    # (B, H, T, hs)
        out = self.resid_dropout(self.c_proj(merge_heads(y).named("merged heads")))    # (B, T, C)
        return out.named("cross_attn" if self.cross else "attn")

    def _fused_self_attention(self, x, mask):
        """The training path (inside tinygrad_tx.fused_ops()): the same math as forward, with
        split, heads, q k^T, mask, softmax, @ v and the head merge as one node (SelfAttention)."""
        B, T, C = x.shape
        if self.causal:
            mask = combine_masks(causal_mask(T, device=x.device), mask)       # (T, T) | mask
        mask = None if mask is None else backend.to_device(mask.data if isinstance(mask, Tensor) else mask, x.device)
        check_mask(mask, (B, self.n_head, T, T), "attention")             # as the composed path checks
        weights = backend.xp(x.device).empty((B, self.n_head, T, T), dtype=x.dtype)   # (B, H, T, T)
        y = SelfAttention.apply(self.c_attn(x), n_head=self.n_head, mask=mask,
                                scale=1.0 / math.sqrt(C // self.n_head), weights=weights)   # (B, T, C)
        self.weights = Tensor(weights)                                  # for plots; no graph
        return self.resid_dropout(self.c_proj(y))                       # (B, T, C)
