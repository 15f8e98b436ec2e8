"""Autoregressive generation from a GPT: greedy, temperature and top-k sampling, with an
optional KV cache (each step then feeds only the newest token; its logits equal the
uncached ones)."""
import numpy as np

from tinygrad_tx import Tensor, backend, fused_ops, no_grad


def sample_next(logits, temperature=1.0, top_k=None, rng=None):
    """logits (B, V) host array -> next ids (B,). temperature 0 means greedy (argmax), never a
    division by zero; top_k keeps only the k most likely tokens before sampling."""
    if temperature < 0:
        raise ValueError(f"sample_next: temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(axis=-1)
    logits = logits / temperature
    if top_k is not None:
        if top_k <= 0:
            raise ValueError(f"sample_next: top_k must be positive, got {top_k}")
        k = min(top_k, logits.shape[-1])
        kth = np.sort(logits, axis=-1)[:, -k][:, None]                   # (B, 1) k-th largest
        logits = np.where(logits < kth, -np.inf, logits)
    probs = Tensor(logits).softmax(axis=-1).numpy().astype(np.float64)  # (B, V)
    probs /= probs.sum(axis=-1, keepdims=True)
    rng = rng or np.random.default_rng()
    return np.array([rng.choice(len(p), p=p) for p in probs])


def generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, rng=None, use_cache=True):
    """idx (B, T0) int ids -> (B, T0 + max_new_tokens). The context is cropped to the last
    block_size tokens; once it no longer fits, the cache is rebuilt from the cropped window."""
    block = model.config.block_size
    idx = np.asarray(idx.numpy() if isinstance(idx, Tensor) else idx, dtype=np.int64)
    if idx.ndim != 2 or idx.shape[1] == 0:
        raise ValueError(f"generate: expected a (B, T) prompt with T >= 1, got shape {idx.shape}")
    was_training = model.training
    model.eval()
    caches = None
    try:
        with no_grad(), fused_ops():
            for _ in range(max_new_tokens):
                if use_cache and caches is not None and idx.shape[1] <= block:
                    logits = model(idx[:, -1:], caches=caches)           # newest token only
                else:
                    context = idx[:, -block:]
                    caches = [{} for _ in model.h] if use_cache and idx.shape[1] < block else None
                    logits = model(context, caches=caches)               # (B, T, V)
                last = backend.to_numpy(logits.data[:, -1, :])            # (B, V)
                nxt = sample_next(last, temperature, top_k, rng)
                idx = np.concatenate([idx, nxt[:, None].astype(np.int64)], axis=1)
    finally:
        model.train(was_training)
    return idx
