"""A toy task for the encoder-decoder: reverse a random digit string ("1234" -> "4321").
Each output token must attend to a specific source position, so it exercises cross-attention;
exact-match accuracy on held-out strings tells whether the model learned the rule."""
import numpy as np
from tqdm.auto import tqdm

from tinygrad_tx import backend, fused_ops, optim

from .seq2seq import Transformer, TransformerConfig
from .train import lr_at, optimizer_step, TrainConfig

PAD, BOS, EOS = 0, 1, 2
DIGIT0 = 3                       # digits 0..9 are tokens 3..12
VOCAB = 13


def is_held_out(digits):
    """A fixed ~10% of all strings is never trained on: those whose digits, read with their
    length as a number, fall in one residue class of a multiplicative hash."""
    key = len(digits) * 10 ** 9 + int("".join(str(int(d)) for d in digits))
    return (key * 2654435761) % 1000003 % 10 == 0


def make_batch(rng, batch_size, min_len, max_len, held_out):
    """src (B, L), tgt_in (B, L+1), tgt_out (B, L+1); L = max_len, padded with PAD.
    tgt_in = BOS + reversed; tgt_out = reversed + EOS (teacher forcing shifts by one)."""
    src = np.full((batch_size, max_len), PAD, dtype=np.int64)
    tgt_in = np.full((batch_size, max_len + 1), PAD, dtype=np.int64)
    tgt_out = np.full((batch_size, max_len + 1), PAD, dtype=np.int64)
    for b in range(batch_size):
        while True:
            n = int(rng.integers(min_len, max_len + 1))
            digits = rng.integers(0, 10, n)
            if is_held_out(digits) == held_out:
                break
        toks = digits + DIGIT0
        src[b, :n] = toks
        tgt_in[b, 0], tgt_in[b, 1:n + 1] = BOS, toks[::-1]
        tgt_out[b, :n], tgt_out[b, n] = toks[::-1], EOS
    return src, tgt_in, tgt_out


def exact_match(model, src, tgt_out):
    """Fraction of sequences whose greedy decoding equals the target up to and including EOS."""
    L = tgt_out.shape[1]
    pred = model.greedy_decode(src, BOS, max_len=L, eos_id=EOS)
    pred = np.pad(pred, ((0, 0), (0, L - pred.shape[1])), constant_values=PAD)
    ok = []
    for p, t in zip(pred, tgt_out):
        n = int(np.argmax(t == EOS)) + 1
        ok.append(bool((p[:n] == t[:n]).all()))
    return float(np.mean(ok))


def train_reverse(steps=1500, batch_size=64, min_len=1, max_len=8, seed=0, n_eval=500, progress=True,
                  config=None):
    """Train the encoder-decoder on reversal; returns (model, {"train_loss", "exact_match"})."""
    backend.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cfg = config or TransformerConfig(src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, block_size=max_len + 1,
                                      n_layer=2, n_head=4, n_embd=64, pad_id=PAD)
    model = Transformer(cfg)
    with fused_ops():
        return _train(model, cfg, steps, batch_size, min_len, max_len, seed, n_eval, progress, rng)


def _train(model, cfg, steps, batch_size, min_len, max_len, seed, n_eval, progress, rng):
    sched = TrainConfig(max_iters=steps, lr=3e-3, warmup_iters=min(100, steps // 10))
    opt = optim.AdamW(model.parameters(), lr=sched.lr, betas=(0.9, 0.98), weight_decay=0.0)
    losses = []
    for step in tqdm(range(steps), disable=not progress, desc="seq2seq", unit="step", mininterval=1.0):
        src, tgt_in, tgt_out = make_batch(rng, batch_size, min_len, max_len, held_out=False)
        opt.lr = lr_at(step, sched)
        _, loss = model(src, tgt_in, tgt_out)
        value, _ = optimizer_step(loss, opt, sched.grad_clip, step)     # clips at 1.0
        losses.append(value)
    model.eval()
    src, _, tgt_out = make_batch(np.random.default_rng(seed + 1), n_eval, min_len, max_len, held_out=True)
    return model, {"train_loss": float(np.mean(losses[-20:])), "exact_match": exact_match(model, src, tgt_out)}
