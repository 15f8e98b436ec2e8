"""The encoder-decoder transformer of "Attention Is All You Need".

  encoder: source tokens -> embeddings + positions -> blocks with UNMASKED self-attention
           (every source token sees every other; only padding is blocked)
  decoder: target tokens -> embeddings + positions -> blocks with causal self-attention,
           cross-attention (queries from the decoder, keys/values from the encoder output),
           feed-forward -> ln_f -> lm_head -> logits over the target vocabulary

Training uses teacher forcing: the decoder input is the TRUE target shifted right (BOS first),
so all positions train in parallel; the causal mask keeps each position from seeing its own
answer. Inference is autoregressive: feed back the decoder's own previous outputs."""
import dataclasses
import numbers

from tinygrad_tx import backend, functional as F, nn, no_grad

from .blocks import ACTIVATIONS, Block
from .gpt import as_ids, config_problems, init_gpt_weights
from .masks import padding_mask
from .positional import SinusoidalPositions


@dataclasses.dataclass
class TransformerConfig:
    src_vocab_size: int = 16
    tgt_vocab_size: int = 16
    block_size: int = 32
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    dropout: float = 0.0
    bias: bool = True
    norm: str = "post"              # the original paper's post-norm; "pre" also works
    pos: str = "sinusoidal"         # or "learned"
    activation: str = "relu"        # the paper's FFN uses ReLU
    pad_id: int = 0

    def __post_init__(self):
        problems = config_problems(self, ("src_vocab_size", "tgt_vocab_size", "block_size", "n_layer", "n_head",
                                          "n_embd"), ("bias",))
        vocab = None if problems else min(self.src_vocab_size, self.tgt_vocab_size)
        if isinstance(self.pad_id, bool) or not isinstance(self.pad_id, int) or vocab and not 0 <= self.pad_id < vocab:
            problems.append(f"pad_id must be a token id in both vocabularies, got {self.pad_id!r}")
        if self.activation not in ACTIVATIONS or self.norm not in ("pre", "post") or self.pos not in ("learned", "sinusoidal"):
            problems.append(f"bad norm/pos/activation {self.norm!r}/{self.pos!r}/{self.activation!r}")
        if problems:
            raise ValueError("TransformerConfig: " + "; ".join(problems))

    def to_dict(self):
        return dataclasses.asdict(self)


class Stack(nn.Module):
    """Token embedding + positions + n_layer blocks: the shared shape of encoder and decoder."""

    def __init__(self, c, vocab_size, decoder):
        self.wte = nn.Embedding(vocab_size, c.n_embd)
        self.wpe = nn.Embedding(c.block_size, c.n_embd) if c.pos == "learned" else SinusoidalPositions(c.block_size, c.n_embd)
        self.drop = nn.Dropout(c.dropout)
        self.h = nn.ModuleList(Block(c.n_embd, c.n_head, causal=decoder, cross=decoder, norm=c.norm,
                                     activation=c.activation, bias=c.bias, dropout=c.dropout)
                               for _ in range(c.n_layer))
        self.block_size = c.block_size

    def forward(self, ids, mask, memory=None, memory_mask=None):
        T = ids.shape[1]
        if T > self.block_size:
            raise ValueError(f"Transformer: sequence length {T} exceeds block_size {self.block_size}")
        xp = backend.array_module(ids)
        x = self.drop(self.wte(ids) + self.wpe(xp.arange(T)))             # (B, T, C)
        for block in self.h:
            x = block(x, mask=mask, memory=memory, memory_mask=memory_mask)
        return x


class Transformer(nn.Module):
    def __init__(self, config):
        self.config = c = config
        self.encoder = Stack(c, c.src_vocab_size, decoder=False)
        self.decoder = Stack(c, c.tgt_vocab_size, decoder=True)
        self.ln_f = nn.LayerNorm(c.n_embd)
        self.lm_head = nn.Linear(c.n_embd, c.tgt_vocab_size, bias=False)
        init_gpt_weights(self, 2 * c.n_layer)

    def encode(self, src):
        """src (B, S) -> memory (B, S, C) and the source padding mask (B, 1, 1, S)."""
        src = as_ids(src, "src", self.lm_head.weight.device)
        src_mask = padding_mask(ids=src, pad_id=self.config.pad_id)
        return self.encoder(src, src_mask), src_mask

    def decode(self, tgt_in, memory, src_mask):
        """tgt_in (B, T) -> logits (B, T, V). Self-attention is causal (inside the blocks) and
        also blocks padded target keys; cross-attention blocks padded source keys."""
        tgt_in = as_ids(tgt_in, "tgt_in", self.lm_head.weight.device)
        tgt_mask = padding_mask(ids=tgt_in, pad_id=self.config.pad_id)
        x = self.decoder(tgt_in, tgt_mask, memory=memory, memory_mask=src_mask)   # (B, T, C)
        return self.lm_head(self.ln_f(x))                                        # (B, T, V)

    def forward(self, src, tgt_in, tgt_out=None):
        """Teacher forcing: logits for every target position at once; with tgt_out, also the
        cross-entropy over non-pad targets."""
        memory, src_mask = self.encode(src)
        logits = self.decode(tgt_in, memory, src_mask)
        if tgt_out is None:
            return logits
        return logits, F.cross_entropy(logits, as_ids(tgt_out, "tgt_out", logits.device), ignore_index=self.config.pad_id)

    def greedy_decode(self, src, bos_id, max_len, eos_id=None):
        """Autoregressive inference: start from BOS, append the argmax token, repeat.
        Returns (B, <= max_len) int array of generated tokens (without BOS)."""
        V = self.config.tgt_vocab_size
        if isinstance(max_len, bool) or not isinstance(max_len, numbers.Integral) or max_len < 0:
            raise ValueError(f"greedy_decode: max_len must be an integer >= 0, got {max_len!r}")
        for name, tok in (("bos_id", bos_id), ("eos_id", eos_id)):
            if (tok is not None or name == "bos_id") and not (isinstance(tok, numbers.Integral) and 0 <= tok < V):
                raise ValueError(f"greedy_decode: {name} must be a target token id in [0, {V}), got {tok!r}")
        with no_grad():
            memory, src_mask = self.encode(src)
            xp = backend.array_module(memory.data)
            out = xp.full((memory.shape[0], 1), bos_id, dtype="int64")
            for _ in range(max_len):
                logits = self.decode(out, memory, src_mask)                          # (B, t, V)
                nxt = logits.data[:, -1, :].argmax(axis=-1)[:, None]                 # (B, 1), on the model's device
                out = xp.concatenate([out, nxt.astype("int64")], axis=1)
                if eos_id is not None and bool((out == eos_id).any(axis=1).all()):
                    break
        return backend.to_numpy(out[:, 1:])



