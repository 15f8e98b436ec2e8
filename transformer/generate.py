"""Autoregressive generation from a GPT: greedy, temperature and top-k sampling, with an
optional KV cache (each step then feeds only the newest token; its logits equal the
uncached ones)."""
import numbers

import numpy as np

from tinygrad_tx import Tensor, backend, fused_ops, no_grad


def check_sampling(temperature, top_k, what="sample_next"):
    """temperature: a finite number >= 0 (0 = greedy); top_k: None or a positive int."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not 0 <= temperature < np.inf:
        raise ValueError(f"{what}: temperature must be a finite number >= 0 (0 means greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k <= 0):
        raise ValueError(f"{what}: top_k must be a positive integer or None, got {top_k!r}")


def sample_next(logits, temperature=1.0, top_k=None, rng=None):
    """logits (B, V) host array -> next ids (B,). temperature 0 means greedy (argmax), never a
    division by zero, as in llama.cpp and the OpenAI API (Hugging Face refuses 0); top_k keeps
    only the k most likely tokens before sampling (k > V keeps all of them).

    Stable for any temperature: softmax((l - max l) / t) equals softmax(l / t), but the largest
    scaled logit is exactly 0 and the others are <= 0, so a tiny t (1e-30) sends them to -inf
    (weight 0) instead of overflowing l / t to inf (inf - inf = NaN). As t -> 0 this is the
    greedy choice, shared evenly among exact ties."""
    check_sampling(temperature, top_k)
    if temperature == 0:
        return logits.argmax(axis=-1)
    if top_k is not None:
        k = min(top_k, logits.shape[-1])
        kth = np.sort(logits, axis=-1)[:, -k][:, None]                   # (B, 1) k-th largest
        logits = np.where(logits < kth, -np.inf, logits)
    logits = logits.astype(np.float64)               # a float32 logit / 1e-300 would divide by float32 zero
    with np.errstate(over="ignore"):
        logits = (logits - logits.max(axis=-1, keepdims=True)) / temperature   # (B, V), max is 0
    probs = Tensor(logits).softmax(axis=-1).numpy().astype(np.float64)  # (B, V)
    probs /= probs.sum(axis=-1, keepdims=True)
    rng = rng or np.random.default_rng()
    return np.array([rng.choice(len(p), p=p) for p in probs])


def generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, rng=None, use_cache=True, on_token=None):
    """idx (B, T0) int ids -> (B, T0 + max_new_tokens). The context is cropped to the last
    block_size tokens; once it no longer fits, the cache is rebuilt from the cropped window.
    on_token(ids (B,)) is called with each new token as soon as it is chosen (for streaming)."""
    block, V = model.config.block_size, model.config.vocab_size
    idx = np.asarray(idx.numpy() if isinstance(idx, Tensor) else idx)
    if idx.dtype.kind not in "iu":      # never truncate 1.7 to token 1
        raise TypeError(f"generate: the prompt must hold integer token ids, got dtype {idx.dtype}")
    if idx.ndim != 2 or 0 in idx.shape:
        raise ValueError(f"generate: expected a (B, T) prompt with B >= 1 and T >= 1, got shape {idx.shape}")
    if idx.min() < 0 or idx.max() >= V:
        raise ValueError(f"generate: prompt ids must be in [0, {V}), got min {idx.min()} max {idx.max()}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral) or max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    check_sampling(temperature, top_k, "generate")
    idx = idx.astype(np.int64)
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
                if on_token:
                    on_token(idx[:, -1])
    finally:
        model.train(was_training)
    return idx
