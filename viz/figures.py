"""Every figure of docs/backprop.md, rebuilt from code: `tx figures --out docs/figures`.

FIGURES maps a file name to (docs section, description, builder); `builder(out_dir, seed)`
writes that one file into out_dir and returns its path. Graphs are SVG (laid out by Graphviz
through viz.render): a preset's figure NAME.svg is `examples.draw_preset(NAME)`, exactly what
`tx graph NAME` draws; plots are PNG (matplotlib, saved without a timestamp or version stamp so
the same seed gives the same bytes). Everything is seeded: run twice, get the same files.

The slow figures share their training runs through a small cache (the tiny GPTs trained with
and without the causal mask feed leakage_curves.png, leakage_samples.txt and
attention_heads.png; the reverse-task encoder-decoder feeds cross_attention.png), so a full
run trains each model once.

Shapes: B batch, T time, C channels, H heads, hs head size, V vocab, S source length.
"""
import collections
import functools
import pathlib
import tempfile

import numpy as np
from matplotlib.colors import TwoSlopeNorm
from tqdm.auto import tqdm

from tinygrad_tx import Tensor, backend, functional as F, fused_ops, no_grad, threads
from transformer import GPTConfig, TextDataset, TrainConfig, Trainer, causal_mask, generate
from transformer import reverse_task

from . import examples, figures_debug, figures_training, plots
from .graph import draw_graph
from .render import render

PNG_DPI = 150


# ----------------------------------------------------------------------------- saving
def _save_png(fig, path):
    """A matplotlib figure as PNG, without the "Software" stamp: same figure, same bytes."""
    fig.savefig(path, format="png", dpi=PNG_DPI, metadata={"Software": None})
    return pathlib.Path(path)


def _leaf(arr, name, requires_grad=True):
    return Tensor(np.asarray(arr, dtype=np.float64), requires_grad=requires_grad, dtype=backend.default_dtype(),
                  name=name)


def _graph(root, path, title, rankdir="TB"):
    """A graph that is not a preset, drawn by draw_graph as `tx graph` draws the presets."""
    return render(draw_graph(root, title=title, rankdir=rankdir), path)


def _preset_svg(name):
    """The builder of NAME.svg: exactly what `tx graph NAME` draws (examples.draw_preset)."""
    def preset_svg(out_dir, seed):
        return render(examples.draw_preset(name, seed=seed), out_dir / f"{name}.svg")
    return preset_svg


# ----------------------------------------------------------------------------- 1. scalars
def reuse_svg(out_dir, seed):
    a = _leaf(3.0, "a")
    b = a + a
    b.name = "b = a + a"
    c = b + b
    c.name = "c = b + b"
    c.backward()                     # dc/db = 1 + 1 = 2;  dc/da = 2 * (1 + 1) = 4
    return _graph(c, out_dir / "reuse.svg", "reuse: b = a + a;  c = b + b;  the uses' gradients add", rankdir="LR")


def modes_png(out_dir, seed):
    return _save_png(plots.forward_reverse_figure(), out_dir / "modes.png")


# ----------------------------------------------------------------------------- 2. tensors
def matmul_svg(out_dir, seed):
    X = _leaf([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0]], "X")                  # (N, C_in) = (2, 3)
    W = _leaf([[1.0, -1.0], [0.5, 2.0], [0.0, 1.0]], "W")                 # (C_in, C_out) = (3, 2)
    Y = X @ W                                                             # (2, 2)
    Y.name = "Y = X @ W"
    Y.backward(np.array([[1.0, 0.0], [0.0, 2.0]]))                        # upstream dL/dY
    return _graph(Y, out_dir / "matmul.svg", "matmul: Y = X W;  dL/dX = dL/dY W^T,  dL/dW = X^T dL/dY",
                  rankdir="LR")


def broadcast_svg(out_dir, seed):
    X = _leaf([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], "X")                    # (N, C) = (2, 3)
    b = _leaf([0.5, -0.5, 1.0], "b")                                      # (C,) added to every row
    Y = X + b
    Y.name = "Y = X + b"
    Y.backward(np.array([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]]))           # upstream dL/dY
    return _graph(Y, out_dir / "broadcast.svg", "broadcasting: Y = X + b;  dL/db sums dL/dY over the rows",
                  rankdir="LR")


# ----------------------------------------------------------------------------- 3. softmax
def softmax_jacobian_png(out_dir, seed):
    return _save_png(plots.softmax_jacobian_figure((1.0, 2.0, 0.5, -1.0)), out_dir / "softmax_jacobian.png")


# ----------------------------------------------------------------------------- 4. masking
SCORE_TOKENS = [f"pos {t}" for t in range(5)]   # random q, k, v: positions, not words


def score_grads_data(seed=0):
    """One causal head on 5 positions with random unit-normal q, k, v and upstream gradient
    (hs = 4, no trained model): (scores, weights, dL/dscores), float64."""
    rng = np.random.default_rng(seed)
    T, hs = len(SCORE_TOKENS), 4
    q, k, v, up = (rng.normal(size=(T, hs)) for _ in range(4))
    return plots.attention_score_grads(q, k, v, mask=causal_mask(T), upstream=up)


def score_grads_png(out_dir, seed):
    res = score_grads_data(seed)
    mask = causal_mask(len(SCORE_TOKENS))
    fig = plots._figure(9.0, 4.4)
    ax_w, ax_g = fig.subplots(1, 2)
    im_w = plots._heatmap(ax_w, res.weights, mask, SCORE_TOKENS, SCORE_TOKENS, "viridis", vmin=0.0, vmax=1.0)
    ax_w.set_title("attention weights = softmax(masked scores)", fontsize=10)
    fig.colorbar(im_w, ax=ax_w, label="weight", shrink=0.8)
    bound = float(np.abs(res.grad).max())
    im_g = plots._heatmap(ax_g, res.grad, mask, SCORE_TOKENS, SCORE_TOKENS, "RdBu_r",
                          norm=TwoSlopeNorm(vcenter=0.0, vmin=-bound, vmax=bound), fmt="{:+.2f}")
    ax_g.set_title("dL/dscores (before the mask and softmax)", fontsize=10)
    fig.colorbar(im_g, ax=ax_g, label="gradient", shrink=0.8)
    fig.suptitle("one causal attention head on 5 positions, random q, k, v (no trained model): hatched cells "
                 "were set to -inf,\nso their weight and their gradient are exactly 0; each gradient row sums to 0",
                 fontsize=10)
    return _save_png(fig, out_dir / "score_grads.png")


# ----------------------------------------------------------------------------- 5. attention
def scaling_png(out_dir, seed):
    return _save_png(plots.scaling_figure(seed=seed), out_dir / "scaling.png")


# ----------------------------------------------------------------------------- 6. multi-head
# ----------------------------------------------------------------------------- 7. layer norm
def layernorm_terms_png(out_dir, seed):
    return _save_png(plots.layernorm_terms_figure(seed=seed), out_dir / "layernorm_terms.png")


# ----------------------------------------------------------------------------- 8. block, GPT
PE_PAIR, PE_SHIFT = 4, 3                       # the (sin, cos) pair and the shift the rotation panel draws


def positional_encoding_png(out_dir, seed):
    fig = plots.positional_encoding_figure(T=48, C=64, pair=PE_PAIR, k=PE_SHIFT)
    return _save_png(fig, out_dir / "positional_encoding.png")


# ----------------------------------------------------------------------------- 9. training
LEAK_PROMPT = "ROMEO:"
LEAK_TEMPERATURE = 0.8                          # sampled text: greedy decoding of a small model loops
LEAK_TEXT = "First Citizen:\nB"                  # 16 characters = block_size, for attention_heads.png


@functools.lru_cache(maxsize=2)
def leakage_runs(seed=0, max_iters=300):
    """Train two tiny GPTs (2 layers, 2 heads, C = 32, T = 16) on the shipped Shakespeare with
    the same seed and data, one WITH and one WITHOUT the causal mask. Returns {causal: run},
    run = {"rows": metrics rows, "model", "sample": greedy text, "sampled": text sampled at
    LEAK_TEMPERATURE, "generation_loss": the loss on a fixed validation batch scored the way
    generation sees the model (prefixes only, last position), "parallel_loss": the loss on the
    same batch scored in one parallel pass (equal to generation_loss for a causal model)}."""
    data = TextDataset.from_file()
    V = data.tokenizer.vocab_size
    x, y = data.get_batch("val", 16, 16, np.random.default_rng(seed + 7))             # (B, T) fixed batch
    prompt = np.array([data.tokenizer.encode(LEAK_PROMPT)])                          # (1, 6)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for causal in (True, False):
            tconf = TrainConfig(max_iters=max_iters, eval_interval=25, eval_iters=4, batch_size=32, lr=1e-2,
                                warmup_iters=20, seed=seed)
            mconf = GPTConfig(vocab_size=V, block_size=16, n_layer=2, n_head=2, n_embd=32, causal=causal)
            out = pathlib.Path(tmp) / ("causal" if causal else "no_mask")
            trainer = Trainer(mconf, tconf, data, out, progress=False)
            trainer.run()
            rows = plots._read_rows(out / "metrics.jsonl")
            model = trainer.model.eval()
            text = data.tokenizer.decode(generate(model, prompt, 80, temperature=0)[0])
            sampled = data.tokenizer.decode(generate(model, prompt, 80, temperature=LEAK_TEMPERATURE,
                                                     rng=np.random.default_rng(seed))[0])
            with no_grad(), fused_ops():
                gen = [F.cross_entropy(model(x[:, :t])[:, -1, :], y[:, t - 1]).item() for t in range(1, 17)]
                parallel = F.cross_entropy(model(x), y).item()          # the same batch, all positions at once
            runs[causal] = {"rows": rows, "model": model, "tokenizer": data.tokenizer, "sample": text,
                            "sampled": sampled, "generation_loss": float(np.mean(gen)),
                            "parallel_loss": parallel}
    return runs


def leakage_curves_png(out_dir, seed):
    runs = leakage_runs(seed)
    fig = plots.loss_curves([runs[True]["rows"], runs[False]["rows"]], ["causal mask", "no mask"],
                            title="a tiny GPT trained in parallel with and without the causal mask")
    ax = fig.axes[0]
    colours = [line.get_color() for line in ax.get_lines()[::2]]
    for (causal, label), colour in zip(((True, "causal mask"), (False, "no mask")), colours):
        g = runs[causal]["generation_loss"]
        ax.axhline(g, color=colour, linestyle=":", linewidth=1.5)
        x, ha = (0.98, "right") if causal else (0.02, "left")
        what = "scored as generation runs it" if causal else \
            "the same model scored as generation runs it (prefix only, no future to copy)"
        ax.annotate(f"{label}, {what}: {g:.2f}",
                    (x, g), xycoords=("axes fraction", "data"), xytext=(0, -3), textcoords="offset points",
                    ha=ha, va="top", fontsize=8, color=colour)
    ax.set_ylim(0, max(5.0, runs[False]["generation_loss"] + 0.8))
    ax.legend(fontsize=8, loc="center right")
    return _save_png(fig, out_dir / "leakage_curves.png")


def leakage_samples_txt(out_dir, seed):
    runs = leakage_runs(seed)
    lines = [f"Samples of 80 new characters after the prompt {LEAK_PROMPT!r}, generated one character at a time",
             "with the KV cache, from two tiny GPTs trained for 300 steps on the shipped Shakespeare with the",
             f"same seed and data; only the causal mask differs. Greedy: temperature 0; sampled: temperature",
             f"{LEAK_TEMPERATURE}, seed {seed}.", ""]
    for causal, label in ((True, "WITH the causal mask"), (False, "WITHOUT the causal mask (the future leaks)")):
        r = runs[causal]
        last = r["rows"][-1]
        lines += [f"--- trained {label}",
                  f"    final train loss {last['train_loss']:.2f}, val loss {last['val_loss']:.2f} (both scored in parallel);",
                  f"    on one fixed validation batch: {r['parallel_loss']:.2f} scored in parallel, "
                  f"{r['generation_loss']:.2f} scored as generation runs it (prefix only)",
                  "greedy:", r["sample"], f"sampled (temperature {LEAK_TEMPERATURE}):", r["sampled"], ""]
    path = out_dir / "leakage_samples.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _char_label(ch):
    return {" ": "␣", "\n": "↵"}.get(ch, ch)


def attention_heads_png(out_dir, seed):
    run = leakage_runs(seed)[True]
    model, tok = run["model"], run["tokenizer"]
    ids = np.array(tok.encode(LEAK_TEXT))
    with fused_ops():
        fig = plots.attention_grid(model, ids, [_char_label(c) for c in LEAK_TEXT])
    fig.set_size_inches(9.5, 9.0)                     # 16 x 16 cells: room for every character label
    fig.suptitle(f"attention of the tiny causal GPT (trained 300 steps) on {LEAK_TEXT!r}\nrows: queries (each "
                 "sums to 1); hatched: the masked future;  ␣ = space, ↵ = newline", fontsize=11)
    return _save_png(fig, out_dir / "attention_heads.png")


# ----------------------------------------------------------------------------- 10. seq2seq
REVERSE_STEPS = 600


@functools.lru_cache(maxsize=1)
def reverse_model(seed=0, steps=REVERSE_STEPS):
    """The encoder-decoder (2 + 2 layers, 4 heads, C = 64) trained on reversing digit strings."""
    return reverse_task.train_reverse(steps=steps, seed=seed, n_eval=200, progress=False)


def held_out_example(seed=0, n=6):
    """A digit string of length n that training never sees (reverse_task.is_held_out)."""
    rng = np.random.default_rng(seed + 100)
    while True:
        digits = rng.integers(0, 10, n)
        if reverse_task.is_held_out(digits):
            return digits


def cross_attention_data(seed=0):
    """Cross-attention weights of the trained reverse model on one held-out string, source
    padded to max_len. Returns (weights (L, H, Tq, S), src tokens, decoder input, prediction)."""
    model, result = reverse_model(seed)
    digits = held_out_example(seed)
    n, S = len(digits), 8
    src = np.full((1, S), reverse_task.PAD, dtype=np.int64)                            # (1, S)
    src[0, :n] = digits + reverse_task.DIGIT0
    tgt_in = np.concatenate([[reverse_task.BOS], digits[::-1] + reverse_task.DIGIT0])[None]   # (1, n + 1)
    with no_grad(), fused_ops():
        model(src, tgt_in)
    weights = np.stack([b.cross_attn.weights.numpy()[0] for b in model.decoder.h])     # (L, H, n + 1, S)
    pred = model.greedy_decode(src, reverse_task.BOS, max_len=S + 1, eos_id=reverse_task.EOS)[0]
    return weights, src[0], tgt_in[0], pred, result


def cross_attention_png(out_dir, seed):
    weights, src, tgt_in, pred, result = cross_attention_data(seed)
    L, H, Tq, S = weights.shape
    digit = lambda t: str(int(t) - reverse_task.DIGIT0) if t >= reverse_task.DIGIT0 else "pad"   # noqa: E731
    keys = [digit(t) for t in src]
    outs = [digit(t) for t in tgt_in[1:]] + ["eos"]
    queries = [f"{'bos' if i == 0 else digit(t)} → {o}" for i, (t, o) in enumerate(zip(tgt_in, outs))]
    mask = np.broadcast_to(src == reverse_task.PAD, (Tq, S))                             # padding keys blocked
    fig = plots._figure(2.3 * H + 1.6, 2.6 * L + 1.0)
    axes = fig.subplots(L, H, squeeze=False)
    for layer in range(L):
        for h in range(H):
            ax = axes[layer, h]
            im = plots._heatmap(ax, weights[layer, h], mask, queries, keys, "viridis", vmin=0.0, vmax=1.0,
                                annotate=False)
            ax.set_title(f"decoder layer {layer}, head {h}", fontsize=9)
            ax.set_xlabel("key: source digit" if layer == L - 1 else "")
            ax.set_ylabel("query: decoder input → output" if h == 0 else "")
            if h:
                ax.set_yticklabels([])
    fig.colorbar(im, ax=axes.ravel().tolist(), label="cross-attention weight", shrink=0.8)
    src_s = "".join(k for k in keys if k != "pad")
    pred_s = "".join(digit(t) for t in pred if t >= reverse_task.DIGIT0)
    fig.suptitle(f"encoder-decoder trained {REVERSE_STEPS} steps to reverse digit strings: cross-attention on the "
                 f"held-out source {src_s} (greedy output {pred_s})\nqueries come from the decoder, keys and values "
                 f"from the encoder; padded keys hatched; held-out exact match {result['exact_match']:.0%}",
                 fontsize=10)
    return _save_png(fig, out_dir / "cross_attention.png")


# ----------------------------------------------------------------------------- registry
S1 = "1. A scalar expression as a graph"
S2 = "2. From scalars to tensors"
S3 = "3. Softmax and cross-entropy"
S4 = "4. Masked softmax"
S5 = "5. Scaled dot-product attention"
S6 = "6. Multi-head attention"
S7 = "7. Layer norm"
S8 = "8. A transformer block, positions, the whole GPT"
S9 = "9. Parallel training, autoregressive generation, leakage"
S10 = "10. The encoder-decoder"

FIGURES = collections.OrderedDict([
    ("neuron.svg", (S1, "graph of (tanh(w.x + b) - y)^2 after backward, with section 1's numbers",
                    _preset_svg("neuron"))),
    ("modes.png", (S1, "forward mode (JVP, one pass per input) vs reverse mode (VJP, one pass for all)", modes_png)),
    ("reuse.svg", (S1, "b = a + a; c = b + b: gradients accumulate on reuse (dc/da = 4)", reuse_svg)),
    ("matmul.svg", (S2, "Y = X W: dL/dX = dL/dY W^T, dL/dW = X^T dL/dY, shapes included", matmul_svg)),
    ("broadcast.svg", (S2, "bias add: the broadcast input's gradient is summed over the copies", broadcast_svg)),
    ("softmax_jacobian.png", (S3, "the softmax Jacobian diag(p) - p p^T as a heatmap", softmax_jacobian_png)),
    ("softmax-xent.svg", (S3, "cross-entropy from primitives: log-softmax, pick, mean", _preset_svg("softmax-xent"))),
    ("masked-softmax.svg", (S4, "causal masked softmax: -inf in, exact zeros out", _preset_svg("masked-softmax"))),
    ("score_grads.png", (S4, "attention weights and dL/dscores for random q, k, v; masked cells exactly 0",
                         score_grads_png)),
    ("attention.svg", (S5, "one causal attention head, T = 4, every step with its gradient; dL/dx sums three paths",
                       _preset_svg("attention"))),
    ("scaling.png", (S5, "score std, softmax entropy and Jacobian size sum|J| vs d_k, with and without "
                         "1/sqrt(d_k)", scaling_png)),
    ("multihead.svg", (S6, "multi-head attention as one projection plus reshape/transpose", _preset_svg("multihead"))),
    ("layernorm.svg", (S7, "layer norm from primitives: mean, centre, variance, rstd, scale, shift",
                       _preset_svg("layernorm"))),
    ("layernorm_terms.png", (S7, "the three terms of the layer norm backward for one token", layernorm_terms_png)),
    ("positional_encoding.png", (S8, "the sinusoidal table (sin columns first, real dims on the ticks) and "
                                     "PE(pos + k) = R_k PE(pos)", positional_encoding_png)),
    ("gpt-block.svg", (S8, "one pre-norm block: residual adds around attention and the MLP", _preset_svg("gpt-block"))),
    ("gpt.svg", (S8, "a whole GPT, each module collapsed to one box", _preset_svg("gpt"))),
    ("leakage_curves.png", (S9, "train/val loss with vs without the causal mask (two tiny GPTs, 300 steps)",
                            leakage_curves_png)),
    ("leakage_samples.txt", (S9, "greedy and sampled text of both models, and their losses scored in parallel "
                                 "and from prefixes",
                             leakage_samples_txt)),
    ("attention_heads.png", (S9, "per-layer, per-head attention of the trained causal GPT on a line of text",
                             attention_heads_png)),
    ("cross_attention.png", (S10, "cross-attention of an encoder-decoder trained to reverse digits: "
                                  "the anti-diagonal", cross_attention_png)),
    ("compare-bug.svg", ("13. Check your own derivation", "compare_backward finds a custom op's wrong backward",
                         figures_debug.compare_bug_svg)),
])
FIGURES.update((name, (figures_training.SECTION, desc, builder)) for name, desc, builder in figures_training.FIGURES)


def make_figures(out_dir, names=None, progress=True, seed=0):
    """Write the figures `names` (default: all of FIGURES, in order) into out_dir; returns the
    written paths. Unknown names raise ValueError listing the valid ones."""
    names = list(FIGURES) if names is None else list(names)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise ValueError(f"unknown figure {unknown[0]!r}; valid names: {', '.join(FIGURES)}")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    bar = tqdm(names, desc="figures", unit="fig", disable=not progress, dynamic_ncols=True)
    # one thread: a sum split over more threads rounds differently, and the default count
    # follows the machine's load, so the trained figures would change from run to run
    before = threads.num_threads()
    threads.set_threads(1)
    try:
        with backend.fork_rng(seed):              # training reseeds the engine: give the caller its state back
            for name in bar:
                bar.set_postfix_str(name)
                written.append(pathlib.Path(FIGURES[name][2](out, seed)))
    finally:
        threads.set_threads(before)
        bar.close()
    return written


__all__ = ["FIGURES", "make_figures", "leakage_runs", "reverse_model", "score_grads_data"]
