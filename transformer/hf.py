"""GPT-2 weights in the Hugging Face layout: a folder with config.json, model.safetensors and
(optionally) tokenizer.json, as `GPT2LMHeadModel.save_pretrained` writes it.

Our GPT already uses GPT-2's parameter names and its Conv1D (in, out) weight layout, so a load
is a rename (drop the "transformer." prefix) and a copy; only an untied lm_head is stored the
other way round (V, C) by transformers' nn.Linear, and is transposed. Weights are read with
safetensors' numpy API: the format is a JSON header and raw little-endian arrays, so loading
never unpickles and never runs code. Every name, shape and dtype is checked against the model
before the first number is copied; anything we cannot represent is refused with the field named.

    model, tok = load_gpt2("gpt2-dir")                 # GPT (eval mode), HFTokenizer or None
    save_gpt2(model, "out-dir", tokenizer=tok)         # GPT2LMHeadModel.from_pretrained("out-dir")
"""
import json
import os
import pathlib
import tempfile

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from tinygrad_tx import backend

from .gpt import GPT, GPTConfig
from .positional import SinusoidalPositions
from .tokenizer import CharTokenizer

try:                                # the optional extra `hf`: pip install "tinygrad_tx[hf]"
    import tokenizers
except ImportError:                 # pragma: no cover - exercised only without the extra
    tokenizers = None

CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE = "config.json", "model.safetensors", "tokenizer.json"
PREFIX = "transformer."             # GPT2LMHeadModel's body; GPT2Model (and the hub's gpt2) has none

# transformers' GPT2Config defaults, used for fields a config.json leaves out
HF_DEFAULTS = dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12, n_inner=None,
                   activation_function="gelu_new", resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1,
                   layer_norm_epsilon=1e-5, scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False,
                   add_cross_attention=False, tie_word_embeddings=True)
# activation_function -> GPTConfig.activation. gelu_new is GPT-2's tanh approximation,
# 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); "gelu" is the exact erf form.
ACTIVATIONS_IN = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}
ACTIVATIONS_OUT = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}
# Old exports keep the causal mask as buffers; they are constants we rebuild, not weights.
MASK_BUFFERS = ("attn.bias", "attn.masked_bias")
FLOAT_DTYPES = {"F16": "float16", "F32": "float32", "F64": "float64"}


class HFError(ValueError):
    """A folder, config or weights file we cannot load (or a model we cannot save) as GPT-2."""


# ----------------------------------------------------------------------------- config
def config_from_hf(hf, where=CONFIG_FILE):
    """A GPT-2 config.json (dict) -> GPTConfig, or HFError naming the field we cannot represent."""
    if not isinstance(hf, dict):
        raise HFError(f"{where}: expected a JSON object, got {type(hf).__name__}")
    if hf.get("model_type") != "gpt2":
        raise HFError(f"{where}: model_type {hf.get('model_type')!r} is not supported; only 'gpt2' "
                      "(GPT2LMHeadModel / GPT2Model) can be loaded")
    c = {**HF_DEFAULTS, **{k: v for k, v in hf.items() if k in HF_DEFAULTS}}
    for f in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
        if isinstance(c[f], bool) or not isinstance(c[f], int):
            raise HFError(f"{where}: {f} must be an integer, got {c[f]!r}")
    checks = [                                  # (field, representable here?, what we support)
        ("activation_function", c["activation_function"] in ACTIVATIONS_IN, f"one of {sorted(ACTIVATIONS_IN)}"),
        ("n_inner", c["n_inner"] in (None, 4 * c["n_embd"]), f"null or 4 * n_embd = {4 * c['n_embd']}"),  # C -> 4C -> C
        ("scale_attn_weights", c["scale_attn_weights"] is True, "true"),          # we always divide by sqrt(hs)
        ("scale_attn_by_inverse_layer_idx", not c["scale_attn_by_inverse_layer_idx"], "false"),
        ("add_cross_attention", not c["add_cross_attention"], "false"),
    ]
    for field, ok, supported in checks:
        if not ok:
            raise HFError(f"{where}: {field} = {c[field]!r} cannot be represented by this GPT (it supports {supported})")
    drops = {f: c[f] for f in ("resid_pdrop", "embd_pdrop", "attn_pdrop")}
    if len(set(drops.values())) != 1:       # GPTConfig has one dropout for all three places
        raise HFError(f"{where}: resid_pdrop, embd_pdrop and attn_pdrop differ ({drops}); this GPT "
                      "has one dropout rate for all three")
    try:
        return GPTConfig(vocab_size=c["vocab_size"], block_size=c["n_positions"], n_layer=c["n_layer"],
                         n_head=c["n_head"], n_embd=c["n_embd"], dropout=float(c["resid_pdrop"]),
                         activation=ACTIVATIONS_IN[c["activation_function"]],
                         layer_norm_eps=float(c["layer_norm_epsilon"]), tie_weights=bool(c["tie_word_embeddings"]))
    except (ValueError, TypeError) as e:
        raise HFError(f"{where}: {e}") from None


def config_to_hf(config, dtype):
    """GPTConfig -> a GPT2Config dict for config.json; HFError for what GPT-2 cannot express."""
    if config.norm != "pre":
        raise HFError(f"save_gpt2: norm = {config.norm!r} cannot be saved as GPT-2 (GPT-2 is pre-norm)")
    if not config.causal:
        raise HFError("save_gpt2: causal = False cannot be saved as GPT-2 (GPT-2 always masks the future)")
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
            "vocab_size": config.vocab_size, "n_positions": config.block_size, "n_embd": config.n_embd,
            "n_layer": config.n_layer, "n_head": config.n_head, "n_inner": None,
            "activation_function": ACTIVATIONS_OUT[config.activation],
            "resid_pdrop": config.dropout, "embd_pdrop": config.dropout, "attn_pdrop": config.dropout,
            "layer_norm_epsilon": config.layer_norm_eps, "initializer_range": 0.02,
            "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
            "add_cross_attention": False, "tie_word_embeddings": config.tie_weights, "use_cache": True,
            "bos_token_id": None, "eos_token_id": None, "dtype": str(dtype)}


# ----------------------------------------------------------------------------- load
def _read_json(path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HFError(f"{path.parent}: no {path.name} (not a Hugging Face model folder?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HFError(f"{path}: not valid JSON: {e}") from None


def _our_name(hf_name):
    return hf_name[len(PREFIX):] if hf_name.startswith(PREFIX) else hf_name


def _check_tensors(f, model, path):
    """The file's tensor table (names, shapes, dtypes; no data read) against the model's
    parameters. Returns [(file name, our parameter, transpose?)] to copy."""
    params = dict(model.named_parameters())
    plan, seen, problems = [], {}, []
    for key in f.keys():
        name = _our_name(key)
        if name in seen:
            problems.append(f"{key} and {seen[name]} are the same parameter {name}")
            continue
        seen[name] = key
        if name.split(".", 2)[-1] in MASK_BUFFERS and name.startswith("h."):
            continue
        sl = f.get_slice(key)
        shape, dtype = tuple(sl.get_shape()), sl.get_dtype()
        if dtype not in FLOAT_DTYPES:
            problems.append(f"{key} has dtype {dtype}; only {', '.join(FLOAT_DTYPES)} can be read with numpy")
            continue
        if name == "lm_head.weight" and model.config.tie_weights:
            plan.append((key, None, False))          # a stored copy of the tied wte: checked below
            continue
        if name not in params:
            problems.append(f"unexpected tensor {key} {list(shape)}")
            continue
        transpose = name == "lm_head.weight"        # nn.Linear (V, C) in transformers, (C, V) here
        want = params[name].shape[::-1] if transpose else params[name].shape
        if shape != want:
            problems.append(f"{key} has shape {list(shape)} but the config needs {list(want)}")
        plan.append((key, params[name], transpose))
    missing = [n for n in params if n not in seen]
    if missing:
        problems.append("missing tensors " + ", ".join(missing))
    if problems:
        raise HFError(f"{path}: " + "; ".join(problems))
    return plan


def _load_weights(path, model):
    """Check the whole tensor table, then copy tensor by tensor (one file tensor in memory at a time)."""
    if not path.is_file():
        raise HFError(f"{path.parent}: no {WEIGHTS_FILE} (only safetensors weights are read; "
                      "pytorch_model.bin would need unpickling)")
    try:
        with safe_open(str(path), framework="np") as f:
            plan = _check_tensors(f, model, path)
            for key, p, transpose in plan:
                if p is not None:
                    arr = f.get_tensor(key)
                    p.data[...] = backend.asarray(arr.T if transpose else arr, p.dtype, p.device)
            wte = backend.to_numpy(model.wte.weight.data)
            for key, p, _ in plan:
                if p is None:               # a stored copy of the tied head must BE wte
                    arr = f.get_tensor(key)
                    if arr.shape != wte.shape or not np.array_equal(arr.astype(wte.dtype), wte):
                        raise HFError(f"{path}: {key} differs from wte.weight, but config.json has "
                                      "tie_word_embeddings = true")
    except SafetensorError as e:
        raise HFError(f"{path}: not a valid safetensors file ({e})") from None


def load_gpt2(path, dtype=None):
    """A Hugging Face GPT-2 folder -> (GPT in eval mode, HFTokenizer or None).

    Parameters are in the default float dtype (tinygrad_tx.set_default_dtype) unless `dtype`
    ("float32", "float64") is given. The tokenizer is read from tokenizer.json when the folder
    has one (needs the `tokenizers` package: the `hf` extra); without it, None."""
    d = pathlib.Path(path)
    if not d.is_dir():
        raise HFError(f"{d}: not a folder (expected a Hugging Face model folder with {CONFIG_FILE} "
                      f"and {WEIGHTS_FILE})")
    config = config_from_hf(_read_json(d / CONFIG_FILE), where=str(d / CONFIG_FILE))
    tok = load_tokenizer(d / TOKENIZER_FILE) if (d / TOKENIZER_FILE).is_file() else None
    if tok is not None and tok.vocab_size > config.vocab_size:
        raise HFError(f"{d / TOKENIZER_FILE}: {tok.vocab_size} tokens but the model's vocab_size is "
                      f"{config.vocab_size}")
    with backend.fork_rng(0):                  # the random init is overwritten; leave the caller's rng alone
        model = GPT(config)
    if dtype is not None:
        model.to(dtype=dtype)
    _load_weights(d / WEIGHTS_FILE, model)
    return model.eval(), tok


# ----------------------------------------------------------------------------- save
def _atomic(path, write):
    """write(tmp_path), then rename over `path`: a crash never leaves a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)           # mkstemp makes 0600; a saved model is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def hf_state(model):
    """Our parameters under transformers' GPT2LMHeadModel names, as host arrays. A sinusoidal
    position table is written as wpe (a learned table initialised to it: the same forward); a
    model without biases gets zero biases (the same forward)."""
    c = model.config
    state = {}
    for name, p in model.named_parameters():
        arr = backend.to_numpy(p.data)
        if name == "lm_head.weight":            # untied: transformers' nn.Linear stores (V, C)
            state[name] = arr.T
        else:
            state[PREFIX + name] = arr
    if isinstance(model.wpe, SinusoidalPositions):
        state[PREFIX + "wpe.weight"] = backend.to_numpy(model.wpe.table.data)
    dt = np.dtype(model.wte.weight.dtype)
    for i in range(c.n_layer):
        for lin, width in (("attn.c_attn", 3 * c.n_embd), ("attn.c_proj", c.n_embd),
                           ("mlp.c_fc", 4 * c.n_embd), ("mlp.c_proj", c.n_embd)):
            state.setdefault(f"{PREFIX}h.{i}.{lin}.bias", np.zeros(width, dtype=dt))
    return {k: np.ascontiguousarray(v) for k, v in state.items()}


def save_gpt2(model, path, tokenizer=None):
    """Write `model` as a Hugging Face GPT-2 folder: config.json, model.safetensors and, given a
    tokenizer (CharTokenizer, HFTokenizer or tokenizers.Tokenizer), tokenizer.json (plus
    tokenizer_config.json so transformers' AutoTokenizer reads it). A CharTokenizer is saved as a
    character-level tokenizers.Tokenizer (needs the `hf` extra). Returns the folder."""
    if not isinstance(model, GPT):
        raise HFError(f"save_gpt2: expected a transformer.GPT, got {type(model).__name__}")
    d = pathlib.Path(path)
    config = config_to_hf(model.config, model.wte.weight.dtype)
    tok = None if tokenizer is None else as_hf_tokenizer(tokenizer)
    if tok is not None and tok.vocab_size > model.config.vocab_size:
        raise HFError(f"save_gpt2: the tokenizer has {tok.vocab_size} tokens, more than the model's "
                      f"vocab_size {model.config.vocab_size}")
    d.mkdir(parents=True, exist_ok=True)
    state = hf_state(model)
    _atomic(d / WEIGHTS_FILE, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    _atomic(d / CONFIG_FILE, lambda tmp: pathlib.Path(tmp).write_text(json.dumps(config, indent=2) + "\n"))
    if tok is not None:
        _atomic(d / TOKENIZER_FILE, lambda tmp: tok.tokenizer.save(tmp))
        tok_config = {"tokenizer_class": "PreTrainedTokenizerFast"}
        _atomic(d / "tokenizer_config.json",
                lambda tmp: pathlib.Path(tmp).write_text(json.dumps(tok_config, indent=2) + "\n"))
    return d


# ----------------------------------------------------------------------------- tokenizer
def _need_tokenizers(what):
    if tokenizers is None:
        raise HFError(f"{what} needs the `tokenizers` package: pip install 'tinygrad_tx[hf]'")


class HFTokenizer:
    """A `tokenizers.Tokenizer` with CharTokenizer's interface: encode(text) -> ids, decode(ids)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    @property
    def vocab_size(self):
        return self.tokenizer.get_vocab_size()

    def encode(self, text):
        try:
            return list(self.tokenizer.encode(text, add_special_tokens=False).ids)
        except Exception as e:          # tokenizers raises a bare Exception (e.g. a character not in a WordLevel vocab)
            unknown = sorted({ch for ch in text if self.tokenizer.token_to_id(ch) is None})
            why = f"characters not in the vocabulary: {''.join(unknown)!r}" if unknown else str(e)
            raise ValueError(f"tokenizer: cannot encode {text!r}: {why}") from None

    def decode(self, ids):
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)


def char_tokenizer(chars):
    """A character-level tokenizers.Tokenizer: every character (code point) is one token, id =
    its index in `chars`, decoding concatenates (no spaces added)."""
    _need_tokenizers("a character-level tokenizer.json")
    from_models, pre, dec = tokenizers.models, tokenizers.pre_tokenizers, tokenizers.decoders
    tok = tokenizers.Tokenizer(from_models.WordLevel({ch: i for i, ch in enumerate(chars)}, unk_token=None))
    # Oniguruma's (?m) is "dot matches newline": every single character is its own piece
    tok.pre_tokenizer = pre.Split(tokenizers.Regex("(?m)."), behavior="isolated")
    tok.decoder = dec.Fuse()
    return HFTokenizer(tok)


def as_hf_tokenizer(tokenizer):
    if isinstance(tokenizer, HFTokenizer):
        return tokenizer
    if isinstance(tokenizer, CharTokenizer):
        return char_tokenizer(tokenizer.chars)
    if tokenizers is not None and isinstance(tokenizer, tokenizers.Tokenizer):
        return HFTokenizer(tokenizer)
    raise HFError(f"save_gpt2: tokenizer must be a CharTokenizer, HFTokenizer or tokenizers.Tokenizer, "
                  f"got {type(tokenizer).__name__}")


def load_tokenizer(path):
    """tokenizer.json -> HFTokenizer."""
    _need_tokenizers(f"reading {path}")
    try:
        return HFTokenizer(tokenizers.Tokenizer.from_file(str(path)))
    except Exception as e:              # tokenizers reports a bad file as a bare Exception
        raise HFError(f"{path}: not a valid tokenizer.json ({str(e).splitlines()[0]})") from None
