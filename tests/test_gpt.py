"""GPT and the encoder-decoder: parameter names, parallel == autoregressive, KV cache,
causality (exact zeros), inputs and errors, gradcheck, padding, sinusoidal positions, generation.

Float64 throughout (the autouse fixture). Shapes: B batch, T time, C n_embd, H heads, V vocab.
Parameters are re-drawn larger than nanoGPT's N(0, 0.02) init so attention is far from uniform
and every comparison below is sensitive."""
import numpy as np
import pytest

import tinygrad_tx
from tinygrad_tx import Tensor, backend, functional as F, gradcheck, no_grad
from transformer import GPT, GPTConfig, Transformer, TransformerConfig, generate, sample_next, sinusoidal_table

NORMS_POS = [(n, p) for n in ("pre", "post") for p in ("learned", "sinusoidal")]


@pytest.fixture(autouse=True)
def _float64():
    tinygrad_tx.set_default_dtype("float64")      # conftest restores the default afterwards


def randomize(model, seed=0, scale=0.5):
    """Redraw every parameter: LayerNorm weights near 1, everything else N(0, scale)."""
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        near_one = name.endswith("weight") and ("ln_" in name)
        p.data[...] = (1.0 if near_one else 0.0) + rng.normal(0.0, 0.1 if near_one else scale, p.shape)
    return model


def tiny_gpt(seed=0, **kw):
    cfg = dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16)
    cfg.update(kw)
    backend.manual_seed(seed)
    return randomize(GPT(GPTConfig(**cfg)), seed)


def tiny_seq2seq(seed=0, **kw):
    cfg = dict(src_vocab_size=9, tgt_vocab_size=7, block_size=8, n_layer=2, n_head=2, n_embd=16, pad_id=0)
    cfg.update(kw)
    backend.manual_seed(seed)
    return randomize(Transformer(TransformerConfig(**cfg)), seed)


def ids(rng, B, T, V, low=0):
    return rng.integers(low, V, size=(B, T))


# ---------------------------------------------------------------- parameters

def test_parameter_names_and_shapes_tied():
    C, V, L, bs = 16, 11, 2, 8
    model = GPT(GPTConfig(vocab_size=V, block_size=bs, n_layer=L, n_head=2, n_embd=C))
    shapes = {name: p.shape for name, p in model.named_parameters()}
    expected = {"wte.weight": (V, C), "wpe.weight": (bs, C), "ln_f.weight": (C,), "ln_f.bias": (C,)}
    for i in range(L):
        expected.update({
            f"h.{i}.ln_1.weight": (C,), f"h.{i}.ln_1.bias": (C,),
            f"h.{i}.attn.c_attn.weight": (C, 3 * C), f"h.{i}.attn.c_attn.bias": (3 * C,),
            f"h.{i}.attn.c_proj.weight": (C, C), f"h.{i}.attn.c_proj.bias": (C,),
            f"h.{i}.ln_2.weight": (C,), f"h.{i}.ln_2.bias": (C,),
            f"h.{i}.mlp.c_fc.weight": (C, 4 * C), f"h.{i}.mlp.c_fc.bias": (4 * C,),
            f"h.{i}.mlp.c_proj.weight": (4 * C, C), f"h.{i}.mlp.c_proj.bias": (C,)})
    assert shapes == expected
    # tied: lm_head holds the very same tensor, and it is counted once
    assert model.lm_head.tied_weight is model.wte.weight
    params = model.parameters()
    assert len({id(p) for p in params}) == len(params) == len(expected)
    assert model.num_parameters() == sum(int(np.prod(s)) for s in expected.values())
    assert set(model.state_dict()) == set(expected)


def test_parameter_names_untied_and_sinusoidal():
    C, V = 8, 5
    model = GPT(GPTConfig(vocab_size=V, block_size=4, n_layer=1, n_head=2, n_embd=C, tie_weights=False))
    named = dict(model.named_parameters())
    assert named["lm_head.weight"].shape == (C, V)
    assert named["lm_head.weight"] is not named["wte.weight"]
    model = GPT(GPTConfig(vocab_size=V, block_size=4, n_layer=1, n_head=2, n_embd=C, pos="sinusoidal"))
    names = {n for n, _ in model.named_parameters()}
    assert "wpe.weight" not in names and not any(n.startswith("wpe") for n in names)
    assert "lm_head.weight" not in names


# ---------------------------------------------------------------- parallel == autoregressive

@pytest.mark.parametrize("norm,pos", NORMS_POS)
def test_parallel_forward_equals_token_by_token(rng, norm, pos):
    model = tiny_gpt(norm=norm, pos=pos)
    idx = ids(rng, 2, 8, 11)
    full = model(idx).numpy()                                            # (B, T, V)
    for t in range(idx.shape[1]):
        prefix = model(idx[:, :t + 1]).numpy()[:, -1]                     # (B, V)
        np.testing.assert_allclose(full[:, t], prefix, atol=1e-10, rtol=0, err_msg=f"position {t}")


@pytest.mark.parametrize("norm,pos", NORMS_POS)
def test_seq2seq_decoder_parallel_equals_prefixes(rng, norm, pos):
    model = tiny_seq2seq(norm=norm, pos=pos)
    src = ids(rng, 2, 6, 9, low=1)
    src[1, 4:] = 0                                                       # one padded source
    tgt_in = ids(rng, 2, 7, 7, low=1)                                    # no padding in the target
    memory, src_mask = model.encode(src)
    full = model.decode(tgt_in, memory, src_mask).numpy()
    np.testing.assert_array_equal(full, model(src, tgt_in).numpy())
    for t in range(tgt_in.shape[1]):
        prefix = model.decode(tgt_in[:, :t + 1], memory, src_mask).numpy()[:, -1]
        np.testing.assert_allclose(full[:, t], prefix, atol=1e-10, rtol=0, err_msg=f"position {t}")


# ---------------------------------------------------------------- KV cache

@pytest.mark.parametrize("norm,pos", NORMS_POS)
def test_kv_cache_matches_uncached(rng, norm, pos):
    model = tiny_gpt(norm=norm, pos=pos)
    idx = ids(rng, 2, 8, 11)
    full = model(idx).numpy()
    caches = [{} for _ in model.h]
    np.testing.assert_allclose(model(idx[:, :3], caches=caches).numpy(), full[:, :3], atol=1e-10, rtol=0)
    for t in range(3, idx.shape[1]):
        step = model(idx[:, t:t + 1], caches=caches).numpy()             # (B, 1, V)
        np.testing.assert_allclose(step[:, 0], full[:, t], atol=1e-10, rtol=0, err_msg=f"position {t}")
    assert caches[0]["k"].shape == (2, 2, 8, 8)                          # (B, H, T, hs)
    with pytest.raises(ValueError, match="block_size"):                 # the cache is full
        model(idx[:, :1], caches=caches)


def greedy_reference(model, prompt, n):
    """Plain greedy decoding: argmax of the last logits of the cropped context, no cache."""
    idx = prompt.copy()
    for _ in range(n):
        logits = model(idx[:, -model.config.block_size:]).numpy()[:, -1]
        idx = np.concatenate([idx, logits.argmax(-1)[:, None]], axis=1)
    return idx


@pytest.mark.parametrize("prompt_len,n", [(2, 4), (3, 9)])              # the second runs past block_size
def test_generate_cached_equals_uncached_greedy(rng, prompt_len, n):
    model = tiny_gpt(block_size=6, pos="learned")
    prompt = ids(rng, 2, prompt_len, 11)
    with_cache = generate(model, prompt, n, temperature=0, use_cache=True)
    without = generate(model, prompt, n, temperature=0, use_cache=False)
    assert with_cache.shape == (2, prompt_len + n)
    np.testing.assert_array_equal(with_cache, without)
    np.testing.assert_array_equal(with_cache, greedy_reference(model, prompt, n))
    np.testing.assert_array_equal(with_cache[:, :prompt_len], prompt)
    assert len(np.unique(with_cache[:, prompt_len:])) > 1               # not a degenerate constant


# ---------------------------------------------------------------- causality

@pytest.mark.parametrize("norm,pos", NORMS_POS)
def test_future_token_changes_no_earlier_logit(rng, norm, pos):
    model = tiny_gpt(norm=norm, pos=pos)
    idx = ids(rng, 2, 8, 11)
    base = model(idx).numpy()
    for t in (2, 5, 7):
        changed = idx.copy()
        changed[:, t] = (changed[:, t] + 1) % 11
        out = model(changed).numpy()
        np.testing.assert_array_equal(out[:, :t], base[:, :t])           # bitwise: no leak at all
        assert np.abs(out[:, t] - base[:, t]).max() > 1e-6


def forward_by_hand(model, idx):
    """GPT.forward's few lines, keeping the token-embedding tensor (B, T, C) for its gradient."""
    T = idx.shape[1]
    tok = model.wte(idx)                                                 # (B, T, C)
    x = model.drop(tok + model.wpe(np.arange(T)))
    for block in model.h:
        x = block(x)
    return tok, model.lm_head(model.ln_f(x))                             # (B, T, V)


@pytest.mark.parametrize("norm,pos", NORMS_POS)
def test_loss_at_t_has_exactly_zero_gradient_on_later_inputs(rng, norm, pos):
    model = tiny_gpt(norm=norm, pos=pos)
    idx, tgt = ids(rng, 2, 8, 11), ids(rng, 2, 8, 11)
    for t in (0, 3, 6):
        tok, logits = forward_by_hand(model, idx)
        np.testing.assert_array_equal(logits.numpy(), model(idx).numpy())
        F.cross_entropy(logits[:, t], tgt[:, t]).backward()
        assert (tok.grad[:, t + 1:] == 0.0).all(), f"loss at {t} leaks into later positions"
        assert (tok.grad[:, :t + 1] != 0.0).any(axis=-1).all()           # every earlier position matters


def test_non_causal_model_does_leak(rng):
    """The check above can fail: without the causal mask, gradients reach the future."""
    model = tiny_gpt(causal=False)
    tok, logits = forward_by_hand(model, ids(rng, 1, 6, 11))
    F.cross_entropy(logits[:, 2], np.array([1])).backward()
    assert (tok.grad[:, 3:] != 0.0).any()


# ---------------------------------------------------------------- inputs and errors

def test_forward_signatures_and_input_types(rng):
    model = tiny_gpt()
    idx, tgt = ids(rng, 3, 5, 11), ids(rng, 3, 5, 11)
    logits = model(idx)
    assert isinstance(logits, Tensor) and logits.shape == (3, 5, 11)
    logits2, loss = model(idx, tgt)
    assert loss.shape == () and np.isfinite(loss.item())
    np.testing.assert_array_equal(logits2.numpy(), logits.numpy())
    logp = logits.numpy() - np.log(np.exp(logits.numpy()).sum(-1, keepdims=True))
    ref = -np.take_along_axis(logp, tgt[..., None], -1).mean()
    assert abs(loss.item() - ref) < 1e-12
    _, loss_t = model(Tensor(idx), Tensor(tgt))                          # integer Tensors
    _, loss_32 = model(idx.astype(np.int32), tgt.astype(np.uint8))
    assert loss_t.item() == loss.item() == loss_32.item()


def test_forward_errors(rng):
    model = tiny_gpt()
    with pytest.raises(TypeError):
        model(np.zeros((1, 3)))                                          # float ids
    with pytest.raises(TypeError):
        model(Tensor(np.zeros((1, 3))))
    with pytest.raises(ValueError, match="block_size"):
        model(ids(rng, 1, 9, 11))                                        # T = 9 > block_size = 8
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_embd=10, n_head=3)


# ---------------------------------------------------------------- gradcheck

def test_gradcheck_gpt():
    model = tiny_gpt(vocab_size=5, block_size=3, n_layer=1, n_head=2, n_embd=4, tie_weights=True)
    idx, tgt = np.array([[1, 4, 0], [2, 2, 3]]), np.array([[4, 0, 1], [3, 1, 2]])
    named = dict(model.named_parameters())
    picked = ["wte.weight", "wpe.weight", "h.0.ln_1.weight", "h.0.attn.c_attn.weight", "h.0.attn.c_proj.bias",
              "h.0.mlp.c_fc.weight", "ln_f.bias"]
    params = [named[n] for n in picked]
    # the inputs ARE the model's parameters: gradcheck nudges them in place
    assert gradcheck(lambda *ps: model(idx, tgt)[1], params, atol=1e-7, rtol=1e-5)


def test_gradcheck_encoder_decoder():
    model = tiny_seq2seq(src_vocab_size=6, tgt_vocab_size=5, block_size=4, n_layer=1, n_head=2, n_embd=4)
    src = np.array([[3, 4, 5, 0], [1, 2, 0, 0]])
    tgt_in, tgt_out = np.array([[1, 3, 4], [1, 2, 0]]), np.array([[3, 4, 2], [2, 3, 0]])
    named = dict(model.named_parameters())
    picked = ["encoder.wte.weight", "encoder.h.0.attn.c_attn.weight", "decoder.wte.weight",
              "decoder.h.0.cross_attn.c_q.weight", "decoder.h.0.cross_attn.c_kv.weight",
              "decoder.h.0.ln_cross.weight", "lm_head.weight"]
    params = [named[n] for n in picked]
    assert gradcheck(lambda *ps: model(src, tgt_in, tgt_out)[1], params, atol=1e-7, rtol=1e-5)


# ---------------------------------------------------------------- padding, positions

@pytest.mark.parametrize("pos", ["learned", "sinusoidal"])
def test_seq2seq_padding_length_does_not_change_real_outputs(rng, pos):
    model = tiny_seq2seq(pos=pos, block_size=10)
    src = np.array([[3, 4, 5, 0], [6, 7, 8, 2]])                         # batch 0 already has one pad
    tgt_in = np.array([[1, 3, 0], [1, 6, 5]])
    base = model(src, tgt_in).numpy()
    real = tgt_in != 0
    for extra in (1, 3):
        src_p = np.pad(src, ((0, 0), (0, extra)), constant_values=0)
        tgt_p = np.pad(tgt_in, ((0, 0), (0, extra)), constant_values=0)
        out = model(src_p, tgt_p).numpy()
        np.testing.assert_allclose(out[:, :3][real], base[real], atol=1e-12, rtol=0)
    assert np.abs(base[0, 0] - base[1, 0]).max() > 1e-6                 # different sources, different outputs


def test_sinusoidal_offset_is_a_fixed_rotation():
    T, C = 64, 8
    pe = sinusoidal_table(T, C)                                          # (T, C)
    assert pe.shape == (T, C)
    np.testing.assert_allclose(pe[0], np.tile([0.0, 1.0], C // 2), atol=0)
    freqs = 1.0 / 10000 ** (np.arange(0, C, 2) / C)
    for k in (1, 3, 7):
        X, Y = pe[:T - k], pe[k:]
        Mt = np.linalg.lstsq(X, Y, rcond=None)[0]                        # Y = X @ M^T
        M = Mt.T
        assert np.abs(X @ Mt - Y).max() < 1e-10
        for i, w in enumerate(freqs):                                    # block i rotates (sin, cos) by k*w
            c, s = np.cos(k * w), np.sin(k * w)
            blk = slice(2 * i, 2 * i + 2)
            np.testing.assert_allclose(M[blk, blk], [[c, s], [-s, c]], atol=1e-8)
            off = M[blk].copy()
            off[:, blk] = 0
            assert np.abs(off).max() < 1e-8                              # nothing outside the block


# ---------------------------------------------------------------- sampling

def test_temperature_zero_is_greedy_and_top_k_one_too(rng):
    logits = rng.standard_normal((4, 9))
    with np.errstate(all="raise"):                                       # no division by zero
        np.testing.assert_array_equal(sample_next(logits, temperature=0), logits.argmax(-1))
    np.testing.assert_array_equal(sample_next(logits, temperature=1.0, top_k=1, rng=np.random.default_rng(0)),
                                  logits.argmax(-1))
    model = tiny_gpt()
    prompt = ids(rng, 2, 2, 11)
    greedy = generate(model, prompt, 4, temperature=0)
    np.testing.assert_array_equal(generate(model, prompt, 4, temperature=0.7, top_k=1,
                                           rng=np.random.default_rng(1)), greedy)


def test_seeded_sampling_is_reproducible(rng):
    model = tiny_gpt()
    prompt = ids(rng, 2, 2, 11)
    runs = [generate(model, prompt, 6, temperature=1.5, top_k=5, rng=np.random.default_rng(7)) for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])
    counts = np.bincount(sample_next(np.zeros((1, 3)).repeat(300, 0), 1.0, rng=np.random.default_rng(0)), minlength=3)
    assert counts.min() > 60                                             # uniform logits: every token drawn


def test_negative_temperature_is_rejected(rng):
    with pytest.raises(ValueError, match="temperature"):
        sample_next(rng.standard_normal((1, 4)), temperature=-0.5)
    with pytest.raises(ValueError, match="temperature"):
        generate(tiny_gpt(), np.array([[1]]), 2, temperature=-1.0)


def test_generate_restores_training_mode_and_records_no_graph(rng):
    model = tiny_gpt(dropout=0.1)
    model.train()
    out = generate(model, ids(rng, 1, 2, 11), 3, temperature=0)
    assert out.shape == (1, 5) and model.training
    with no_grad():
        assert not model(ids(rng, 1, 2, 11)).requires_grad
