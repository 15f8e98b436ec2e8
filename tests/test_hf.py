"""GPT-2 in the Hugging Face layout (transformer/hf.py) against transformers' GPT2LMHeadModel.

Everything is made here: randomly initialised models written with save_pretrained, a small
tokenizer built with the tokenizers library. Nothing is downloaded (no hub names)."""
import json
import pathlib
import struct

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")
import torch.nn.functional as TF  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

from tinygrad_tx import backend  # noqa: E402
from transformer import GPT, GPTConfig, CharTokenizer  # noqa: E402
from transformer.hf import HFError, HFTokenizer, char_tokenizer, load_gpt2, save_gpt2  # noqa: E402

REL_TOL = 1e-10
V, T = 17, 8


def rel_err(ours, theirs):
    return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-300))


def hf_model(tmp_path, seed=0, **config):
    """A random float64 GPT2LMHeadModel, every parameter jittered (biases and LayerNorms are not
    left at 0 and 1: a sharper test), saved with save_pretrained. Returns (model, folder)."""
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(**{**dict(vocab_size=V, n_positions=T, n_embd=16, n_layer=2, n_head=2,
                                           bos_token_id=None, eos_token_id=None), **config})
    model = transformers.GPT2LMHeadModel(cfg).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    out = tmp_path / "hf"
    model.save_pretrained(out)
    return model, out


def tokens(seed=1, shape=(2, T)):
    t = np.random.default_rng(seed).integers(0, V, shape)
    return t[:, :-1], t[:, 1:]                                   # (B, T-1) inputs and next-token targets


def hf_grad(model, name):
    """transformers' gradient of our parameter `name` (lm_head is (V, C) there, (C, V) here)."""
    params = dict(model.named_parameters())
    if name == "lm_head.weight":
        return params[name].grad.numpy().T
    return params["transformer." + name].grad.numpy()


@pytest.mark.parametrize("config", [
    dict(),                                                                    # GPT-2's own: tied, gelu_new, 1e-5
    dict(tie_word_embeddings=False, layer_norm_epsilon=1e-3),
    dict(activation_function="gelu", layer_norm_epsilon=1e-6),
    dict(activation_function="relu", tie_word_embeddings=False, n_layer=3),
    dict(activation_function="gelu_pytorch_tanh", n_head=4, n_inner=64),
], ids=["gpt2", "untied-eps1e-3", "gelu-eps1e-6", "relu-untied-3layers", "pytorch-tanh-4heads"])
def test_loaded_model_matches_transformers_float64(tmp_path, config):
    hf, folder = hf_model(tmp_path, **config)
    model, tok = load_gpt2(folder, dtype="float64")
    assert tok is None and not model.training
    assert model.config.tie_weights == hf.config.tie_word_embeddings
    assert model.config.layer_norm_eps == hf.config.layer_norm_epsilon == model.h[0].ln_1.eps == model.ln_f.eps
    idx, tgt = tokens()

    logits, loss = model(idx, tgt)
    loss.backward()
    t_logits = hf(torch.from_numpy(idx)).logits                                 # (B, T, V)
    t_loss = TF.cross_entropy(t_logits.reshape(-1, V), torch.from_numpy(tgt).reshape(-1))
    t_loss.backward()

    assert logits.dtype == np.float64
    assert rel_err(logits.numpy(), t_logits.detach().numpy()) <= REL_TOL
    assert abs(loss.item() - t_loss.item()) <= REL_TOL * abs(t_loss.item())
    names = [n for n, _ in model.named_parameters()]
    assert len(names) == len(list(hf.parameters()))                             # every one compared
    for name, p in model.named_parameters():
        g = hf_grad(hf, name)
        assert np.abs(g).max() > 0, name
        assert rel_err(p.grad, g) <= REL_TOL, name


def test_default_dtype_and_explicit_dtype(tmp_path):
    _, folder = hf_model(tmp_path)
    model, _ = load_gpt2(folder)
    assert all(p.dtype == backend.default_dtype() == np.float32 for p in model.parameters())
    backend.set_default_dtype("float64")
    assert load_gpt2(folder)[0].wte.weight.dtype == np.float64
    assert load_gpt2(folder, dtype="float32")[0].wte.weight.dtype == np.float32


def test_loading_leaves_the_callers_random_stream_alone(tmp_path):
    _, folder = hf_model(tmp_path)
    backend.manual_seed(5)
    expected = backend.rng().random()
    backend.manual_seed(5)
    load_gpt2(folder)
    assert backend.rng().random() == expected


def test_unprefixed_names_and_old_mask_buffers_load(tmp_path):
    """GPT2Model-style files (no "transformer." prefix, as the hub's gpt2) with the causal-mask
    buffers older exports kept, and a stored copy of the tied lm_head."""
    hf, folder = hf_model(tmp_path)
    state = {k.removeprefix("transformer."): v.detach().numpy() for k, v in hf.state_dict().items()}
    state["h.0.attn.bias"] = np.tril(np.ones((1, 1, T, T)))
    state["lm_head.weight"] = state["wte.weight"].copy()
    save_file(state, str(folder / "model.safetensors"))
    model, _ = load_gpt2(folder, dtype="float64")
    idx, _ = tokens()
    assert rel_err(model(idx).numpy(), hf(torch.from_numpy(idx)).logits.detach().numpy()) <= REL_TOL


# ----------------------------------------------------------------------------- saving
@pytest.mark.parametrize("config", [
    dict(),
    dict(tie_weights=False, activation="gelu_tanh", layer_norm_eps=1e-6),
    dict(activation="relu", bias=False),                  # zero biases written: the same forward
    dict(pos="sinusoidal", n_head=4),                     # the table written as wpe: the same forward
], ids=["default", "untied-tanh", "relu-nobias", "sinusoidal"])
def test_round_trip_through_from_pretrained(tmp_path, config):
    backend.set_default_dtype("float64")
    backend.manual_seed(0)
    model = GPT(GPTConfig(**{**dict(vocab_size=V, block_size=T, n_layer=2, n_head=2, n_embd=16), **config})).eval()
    rng = np.random.default_rng(2)
    for p in model.parameters():
        p.data += rng.normal(0, 0.3, p.shape)
    save_gpt2(model, tmp_path / "out")
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out").eval()
    assert hf.dtype == torch.float64 and hf.config.tie_word_embeddings == model.config.tie_weights
    idx, _ = tokens()
    ours = model(idx).numpy()
    assert rel_err(ours, hf(torch.from_numpy(idx)).logits.detach().numpy()) <= REL_TOL
    again, _ = load_gpt2(tmp_path / "out")                 # and back into ours
    assert rel_err(again(idx).numpy(), ours) <= REL_TOL


def test_saved_files_are_ordinary_files(tmp_path):
    import os
    model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=1, n_head=2, n_embd=8))
    save_gpt2(model, tmp_path / "out", tokenizer=CharTokenizer(list("abc")))
    umask = os.umask(0)
    os.umask(umask)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]   # no temporaries left
    for name in names:
        assert (tmp_path / "out" / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_save_float32_model_loads_as_float32(tmp_path):
    backend.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=1, n_head=2, n_embd=8)).eval()
    save_gpt2(model, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "config.json").read_text())["dtype"] == "float32"
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out").eval()
    idx, _ = tokens()
    assert hf.dtype == torch.float32
    assert rel_err(model(idx).numpy(), hf(torch.from_numpy(idx)).logits.detach().numpy()) <= 1e-5


@pytest.mark.parametrize("field, value, message", [
    ("norm", "post", "norm = 'post' cannot be saved as GPT-2"),
    ("causal", False, "causal = False cannot be saved as GPT-2"),
])
def test_save_refuses_what_gpt2_cannot_express(tmp_path, field, value, message):
    model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=1, n_head=2, n_embd=8, **{field: value}))
    with pytest.raises(HFError, match=message):
        save_gpt2(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- tokenizers
def test_char_tokenizer_round_trip_and_transformers_reads_it(tmp_path):
    text = "hello world\nthe end\t!"
    chars = CharTokenizer.from_text(text)
    model = GPT(GPTConfig(vocab_size=chars.vocab_size, block_size=T, n_layer=1, n_head=2, n_embd=8))
    save_gpt2(model, tmp_path / "out", tokenizer=chars)
    _, tok = load_gpt2(tmp_path / "out")
    assert isinstance(tok, HFTokenizer) and tok.vocab_size == chars.vocab_size
    assert tok.encode(text) == chars.encode(text)
    assert tok.decode(chars.encode(text)) == text
    with pytest.raises(ValueError, match="tokenizer: cannot encode 'xyz': characters not in the vocabulary: 'xyz'"):
        tok.encode("xyz")
    fast = transformers.AutoTokenizer.from_pretrained(tmp_path / "out")     # tokenizer_config.json
    assert fast(text)["input_ids"] == chars.encode(text)


def test_bpe_tokenizer_json_is_loaded(tmp_path):
    """A byte-level BPE (GPT-2's kind), trained here on a few lines."""
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=300, initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(["the cat sat on the mat", "the dog ate the cat"] * 20, trainer)
    _, folder = hf_model(tmp_path, vocab_size=bpe.get_vocab_size())
    bpe.save(str(folder / "tokenizer.json"))
    model, tok = load_gpt2(folder)
    ids = tok.encode("the cat sat")
    assert ids == bpe.encode("the cat sat").ids and len(ids) < len("the cat sat")
    assert tok.decode(ids) == "the cat sat"
    assert model(np.array([ids])).shape == (1, len(ids), bpe.get_vocab_size())


def test_tokenizer_larger_than_the_vocab_is_refused(tmp_path):
    _, folder = hf_model(tmp_path, vocab_size=5)
    char_tokenizer(list("abcdefg")).tokenizer.save(str(folder / "tokenizer.json"))
    with pytest.raises(HFError, match="7 tokens but the model's vocab_size is 5"):
        load_gpt2(folder)


# ----------------------------------------------------------------------------- bad input
@pytest.fixture
def folder(tmp_path):
    return hf_model(tmp_path)[1]


def edit_config(folder, **changes):
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


def test_missing_config(folder):
    (folder / "config.json").unlink()
    with pytest.raises(HFError, match=r"no config.json \(not a Hugging Face model folder\?\)"):
        load_gpt2(folder)


def test_missing_weights(folder):
    (folder / "model.safetensors").unlink()
    with pytest.raises(HFError, match="no model.safetensors"):
        load_gpt2(folder)


def test_not_a_folder(tmp_path):
    with pytest.raises(HFError, match="not a folder"):
        load_gpt2(tmp_path / "nope")


def test_bert_config_is_refused(folder):
    transformers.BertConfig(vocab_size=V, hidden_size=16, num_hidden_layers=1, num_attention_heads=2).save_pretrained(folder)
    with pytest.raises(HFError, match="model_type 'bert' is not supported; only 'gpt2'"):
        load_gpt2(folder)


@pytest.mark.parametrize("changes, message", [
    (dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx = True cannot be represented"),
    (dict(scale_attn_weights=False), "scale_attn_weights = False cannot be represented"),
    (dict(activation_function="swish"), "activation_function = 'swish' cannot be represented"),
    (dict(n_inner=40), "n_inner = 40 cannot be represented"),
    (dict(add_cross_attention=True), "add_cross_attention = True cannot be represented"),
    (dict(attn_pdrop=0.0), "resid_pdrop, embd_pdrop and attn_pdrop differ"),
    (dict(n_embd="16"), "n_embd must be an integer, got '16'"),
    (dict(n_head=3), "n_embd=16 is not divisible by n_head=3"),
])
def test_unrepresentable_config_names_the_field(folder, changes, message):
    edit_config(folder, **changes)
    with pytest.raises(HFError, match=message):
        load_gpt2(folder)


def test_config_not_json(folder):
    (folder / "config.json").write_text("{not json")
    with pytest.raises(HFError, match="config.json: not valid JSON"):
        load_gpt2(folder)


def test_wrong_shape_is_named(folder):
    edit_config(folder, n_positions=T + 1)          # the config now needs a (9, 16) wpe
    with pytest.raises(HFError, match=r"transformer.wpe.weight has shape \[8, 16\] but the config needs \[9, 16\]"):
        load_gpt2(folder)


def test_missing_and_unexpected_tensors_are_named(folder):
    edit_config(folder, n_layer=3)
    with pytest.raises(HFError, match=r"missing tensors h\.2\.ln_1\.weight"):
        load_gpt2(folder)
    edit_config(folder, n_layer=1)
    with pytest.raises(HFError, match=r"unexpected tensor transformer\.h\.1\.ln_1\.bias"):
        load_gpt2(folder)


def test_untied_config_without_lm_head_is_refused(folder):
    edit_config(folder, tie_word_embeddings=False)
    with pytest.raises(HFError, match="missing tensors lm_head.weight"):
        load_gpt2(folder)


def test_lm_head_that_differs_from_a_tied_wte_is_refused(folder):
    path = folder / "model.safetensors"
    from safetensors.numpy import load_file
    state = load_file(str(path))
    state["lm_head.weight"] = state["transformer.wte.weight"] + 1
    save_file(state, str(path))
    with pytest.raises(HFError, match="lm_head.weight differs from wte.weight, but config.json has tie_word_embeddings"):
        load_gpt2(folder)


def test_integer_tensor_is_refused(folder):
    path = folder / "model.safetensors"
    from safetensors.numpy import load_file
    state = load_file(str(path))
    state["transformer.ln_f.bias"] = np.zeros(16, dtype=np.int32)
    save_file(state, str(path))
    with pytest.raises(HFError, match="transformer.ln_f.bias has dtype I32"):
        load_gpt2(folder)


def test_truncated_safetensors(folder):
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(HFError, match="not a valid safetensors file .*not fully covered"):
        load_gpt2(folder)


def _rewrite_header(path, edit):
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    edit(header)
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + raw[8 + n:])


def test_header_that_lies_about_sizes(folder):
    path = folder / "model.safetensors"
    _rewrite_header(path, lambda h: h["transformer.wte.weight"].update(data_offsets=[0, 10**9]))
    with pytest.raises(HFError, match="not a valid safetensors file .*invalid offset"):
        load_gpt2(folder)


def test_header_shape_that_does_not_match_its_bytes(folder):
    path = folder / "model.safetensors"
    _rewrite_header(path, lambda h: h["transformer.wte.weight"].update(shape=[V * 2, 16]))
    with pytest.raises(HFError, match="not a valid safetensors file"):
        load_gpt2(folder)


def test_header_length_beyond_the_file(folder):
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", 2**40) + b"{}")
    with pytest.raises(HFError, match="not a valid safetensors file .*header too large"):
        load_gpt2(folder)


def test_a_pickle_is_never_executed(folder, tmp_path):
    """A pickle renamed to model.safetensors is rejected by the format; its code never runs."""
    import pickle
    marker = tmp_path / "ran"

    class Boom:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))
    (folder / "model.safetensors").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(HFError, match="not a valid safetensors file"):
        load_gpt2(folder)
    assert not marker.exists()
