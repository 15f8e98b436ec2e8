"""GPT: a decoder-only transformer, with GPT-2/nanoGPT parameter names (wte, wpe, h.{i}.ln_1,
h.{i}.attn.c_attn, h.{i}.attn.c_proj, h.{i}.ln_2, h.{i}.mlp.c_fc, h.{i}.mlp.c_proj, ln_f,
lm_head). Linear weights are (in, out): y = x @ W + b."""
import dataclasses
import math
import numbers

from tinygrad_tx import Tensor, backend, functional as F, nn

from .blocks import ACTIVATIONS, Block
from .positional import SinusoidalPositions

NORMS = ("pre", "post")                 # where each block's LayerNorm sits
POSITIONS = ("learned", "sinusoidal")   # position embeddings: wpe or fixed sin/cos


@dataclasses.dataclass
class GPTConfig:
    vocab_size: int = 65
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True
    norm: str = "pre"               # "pre" (GPT-2) or "post" (original paper)
    pos: str = "learned"            # "learned" (wpe) or "sinusoidal"
    activation: str = "gelu"        # "gelu" (exact erf), "gelu_tanh" or "relu"
    tie_weights: bool = True        # lm_head uses wte's weight (transposed)
    causal: bool = True             # False only to demonstrate leakage of the future
    layer_norm_eps: float = 1e-5    # every LayerNorm's eps (GPT-2's layer_norm_epsilon)

    def __post_init__(self):
        problems = config_problems(self, ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"),
                                   ("bias", "tie_weights", "causal"))
        if self.norm not in NORMS:
            problems.append(f"norm must be 'pre' or 'post', got {self.norm!r}")
        if self.pos not in POSITIONS:
            problems.append(f"pos must be 'learned' or 'sinusoidal', got {self.pos!r}")
        if self.activation not in ACTIVATIONS:
            problems.append(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        eps = self.layer_norm_eps
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 < eps < math.inf:
            problems.append(f"layer_norm_eps must be a finite number > 0, got {eps!r}")
        if problems:
            raise ValueError("GPTConfig: " + "; ".join(problems))

    def to_dict(self):
        return dataclasses.asdict(self)


def config_problems(cfg, sizes, flags):
    """What is wrong with a model config's sizes (positive Python/numpy ints, not bools), its
    on/off flags (bools), dropout (a number in [0, 1); NaN is not) and n_embd / n_head."""
    problems = []
    for f in sizes:
        v = getattr(cfg, f)
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            problems.append(f"{f} must be an integer, got {v!r}")
        elif v <= 0:
            problems.append(f"{f} must be positive, got {v}")
    for f in flags:
        if not isinstance(getattr(cfg, f), bool):
            problems.append(f"{f} must be True or False, got {getattr(cfg, f)!r}")
    d = cfg.dropout
    if isinstance(d, bool) or not isinstance(d, numbers.Real) or not 0 <= d < 1:
        problems.append(f"dropout must be a number in [0, 1), got {d!r}")
    if not any(p.startswith(("n_embd", "n_head")) for p in problems) and cfg.n_embd % cfg.n_head:
        problems.append(f"n_embd={cfg.n_embd} is not divisible by n_head={cfg.n_head}")
    return problems


class TiedHead(nn.Module):
    """lm_head tied to the token embedding: logits = x @ wte.weight^T. `tied_weight` IS the
    embedding's (V, C) tensor, so it is one parameter with two uses (gradients add)."""

    def __init__(self, weight):
        self.tied_weight = weight

    def forward(self, x):
        return x @ self.tied_weight.T                                   # (B, T, V)


def as_ids(idx, what="idx", device="cpu"):
    """Integer numpy/backend array or integer Tensor -> backend int array (B, T) on `device`."""
    arr = backend.to_device(idx.data if isinstance(idx, Tensor) else backend.asarray(idx), device)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{what}: token ids must be integers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{what}: expected shape (B, T), got {tuple(arr.shape)}")
    if 0 in arr.shape:          # T = 0 has no token to predict from, B = 0 no sequence: a mean over nothing
        raise ValueError(f"{what}: empty (B, T) = {tuple(arr.shape)}; need at least one sequence of at least one token")
    return arr


class GPT(nn.Module):
    def __init__(self, config):
        self.config = c = config
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        self.wpe = nn.Embedding(c.block_size, c.n_embd) if c.pos == "learned" else SinusoidalPositions(c.block_size, c.n_embd)
        self.drop = nn.Dropout(c.dropout)
        self.h = nn.ModuleList(Block(c.n_embd, c.n_head, causal=c.causal, norm=c.norm, activation=c.activation,
                                     bias=c.bias, dropout=c.dropout, eps=c.layer_norm_eps) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd, eps=c.layer_norm_eps)
        self.lm_head = TiedHead(self.wte.weight) if c.tie_weights else nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self._init_weights()

    def _init_weights(self):
        """nanoGPT's init: N(0, 0.02) for Linear/Embedding weights, zero biases, and the
        residual projections (c_proj) scaled by 1/sqrt(2 n_layer) so the residual stream's
        variance does not grow with depth. LayerNorms keep weight 1, bias 0."""
        init_gpt_weights(self, self.config.n_layer)

    def forward(self, idx, targets=None, caches=None):
        """idx (B, T) int -> logits (B, T, V); with targets (B, T): (logits, loss).
        caches: one dict per layer (KV cache); positions continue after the cached length."""
        ids = as_ids(idx, device=self.wte.weight.device)
        B, T = ids.shape
        past = caches[0]["k"].shape[2] if caches and "k" in caches[0] else 0
        if past + T > self.config.block_size:
            raise ValueError(f"GPT: sequence length {past + T} exceeds block_size {self.config.block_size}")
        xp = backend.array_module(ids)
        tok = self.wte(ids).named("tok")                               # (B, T, C)
        pos = self.wpe(xp.arange(past, past + T)).named("pos")         # (T, C)
        x = self.drop(tok + pos)                                       # (B, T, C)
        for i, block in enumerate(self.h):
            x = block(x, cache=caches[i] if caches else None)          # (B, T, C)
        logits = self.lm_head(self.ln_f(x)).named("logits")            # (B, T, V)
        if targets is None:
            return logits
        return logits, F.cross_entropy(logits, as_ids(targets, "targets", logits.device))


def init_gpt_weights(model, n_layer):
    rng = backend.rng()
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj") else 0.02
            w = m.weight
            w.data[...] = backend.asarray(rng.normal(0.0, std, w.shape), w.dtype, w.device)
            if getattr(m, "bias", None) is not None:
                m.bias.data[...] = 0
