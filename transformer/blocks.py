"""A transformer block: attention, then a position-wise feed-forward net, each wrapped in a
residual connection and a layer norm. The feed-forward net is where the non-linearity lives:
attention alone only re-averages value vectors.

  pre-norm (GPT-2):            x = x + attn(ln_1(x));   x = x + mlp(ln_2(x))
  post-norm (original paper):  x = ln_1(x + attn(x));   x = ln_2(x + mlp(x))

The residual `x + f(x)` is a gradient highway: dL/dx gets dL/dy unchanged plus f's share."""
from tinygrad_tx import nn

from .attention import MultiHeadAttention

ACTIVATIONS = ("gelu", "gelu_tanh", "relu")


class MLP(nn.Module):
    """Linear (C -> 4C), activation, Linear (4C -> C), applied to every position alone."""

    def __init__(self, n_embd, activation="gelu", bias=True, dropout=0.0):
        if activation not in ACTIVATIONS:
            raise ValueError(f"MLP: activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.activation = activation
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        h = self.c_fc(x).named("h")                                  # (B, T, 4C)
        if self.activation == "relu":
            h = h.relu()
        else:
            h = h.gelu("tanh" if self.activation == "gelu_tanh" else "none")
        return self.dropout(self.c_proj(h)).named("mlp")             # (B, T, C)


class Block(nn.Module):
    """One layer. `causal` masks the future in self-attention (GPT, decoder); `cross` adds a
    cross-attention sub-layer (decoder of the encoder-decoder) whose queries come from this
    stream and whose keys/values come from the encoder output."""

    def __init__(self, n_embd, n_head, causal=True, cross=False, norm="pre", activation="gelu",
                 bias=True, dropout=0.0, eps=1e-5):
        if norm not in ("pre", "post"):
            raise ValueError(f"Block: norm must be 'pre' or 'post', got {norm!r}")
        self.norm = norm
        self.ln_1 = nn.LayerNorm(n_embd, eps)
        self.attn = MultiHeadAttention(n_embd, n_head, causal=causal, bias=bias, dropout=dropout)
        if cross:
            self.ln_cross = nn.LayerNorm(n_embd, eps)
            self.cross_attn = MultiHeadAttention(n_embd, n_head, cross=True, bias=bias, dropout=dropout)
        self.ln_2 = nn.LayerNorm(n_embd, eps)
        self.mlp = MLP(n_embd, activation, bias, dropout)

    def forward(self, x, mask=None, memory=None, memory_mask=None, cache=None):
        """x (B, T, C) -> (B, T, C). mask: extra self-attention mask (padding); memory (B, Tk, C)
        and memory_mask for cross-attention; cache: KV cache dict for self-attention."""
        def sublayer(x, ln, f, what):
            if self.norm == "pre":
                return (x + f(ln(x))).named(f"x + {what}")
            return ln((x + f(x)).named(f"x + {what}"))
        x = sublayer(x, self.ln_1, lambda h: self.attn(h, mask=mask, cache=cache), "attn")
        if hasattr(self, "cross_attn"):
            x = sublayer(x, self.ln_cross, lambda h: self.cross_attn(h, memory=memory, mask=memory_mask), "cross_attn")
        return sublayer(x, self.ln_2, self.mlp, "mlp")
