"""Attention masks. Convention: a boolean array where True means BLOCKED (this query may not
look at this key). Masks broadcast against scores of shape (B, H, Tq, Tk); they are constants
(no gradient) built with the engine's array module."""
from tinygrad_tx import Tensor, backend


def causal_mask(T, offset=0, device=None):
    """(T, offset + T): query i (at absolute position offset + i) may see keys 0..offset + i.
    True above that diagonal: the future is blocked."""
    xp = backend.xp(device)
    q = xp.arange(T)[:, None] + offset          # (T, 1) absolute query positions
    k = xp.arange(offset + T)[None, :]          # (1, Tk) key positions
    return k > q                                # (T, Tk)


def padding_mask(lengths=None, ids=None, pad_id=None, T=None, device=None):
    """(B, 1, 1, T): True at padding positions (keys that hold no token).
    Give either `lengths` (real length of each sequence, with T the padded length) or
    `ids` (B, T) with `pad_id`."""
    xp = backend.xp()
    if ids is not None:
        ids = ids.data if isinstance(ids, Tensor) else xp.asarray(ids)
        if pad_id is None:
            raise ValueError("padding_mask: pass pad_id together with ids")
        pad = ids == pad_id                                      # (B, T)
    elif lengths is not None:
        xp = backend.xp(device)
        lengths = xp.asarray(lengths)
        T = int(lengths.max()) if T is None else T
        if int(lengths.max()) > T:
            raise ValueError(f"padding_mask: a length {int(lengths.max())} exceeds T={T}")
        pad = xp.arange(T)[None, :] >= lengths[:, None]          # (B, T)
    else:
        raise ValueError("padding_mask: give lengths or ids")
    return pad[:, None, None, :]                                 # (B, 1, 1, T)


def combine_masks(*masks):
    """A position is blocked if ANY mask blocks it (logical or, with broadcasting)."""
    masks = [m for m in masks if m is not None]
    if not masks:
        return None
    out = masks[0]
    for m in masks[1:]:
        out = out | m
    return out
