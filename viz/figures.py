"""Every figure of docs/backprop.md, rebuilt from code: `tx figures --out docs/figures`.

FIGURES maps a file name to (docs section, description, builder); `builder(out_dir, seed)`
writes that one file into out_dir and returns its path. Graphs are SVG (laid out by Graphviz
through viz.render), plots are PNG (matplotlib, saved without a timestamp or version stamp so
the same seed gives the same bytes). Everything is seeded: run twice, get the same files.

The slow figures share their training runs through a small cache (the tiny GPTs trained with
and without the causal mask feed leakage_curves.png, leakage_samples.txt and
attention_heads.png; the reverse-task encoder-decoder feeds cross_attention.png), so a full
run trains each model once.

Shapes: B batch, T time, C channels, H heads, hs head size, V vocab, S source length.
"""
import collections
import functools
import math
import pathlib
import tempfile

import numpy as np
from matplotlib.colors import TwoSlopeNorm
from tqdm.auto import tqdm

from tinygrad_tx import Tensor, backend, functional as F, fused_ops, no_grad, scope
from transformer import (Block, GPT, GPTConfig, MultiHeadAttention, TextDataset, TrainConfig, Trainer,
                         causal_mask, generate, scaled_dot_product_attention)
from transformer import reverse_task

from . import examples, plots
from .graph import (BOX_FILL, EDGE, GRAD, HEAD_CONST, HEAD_INNER, HEAD_PARAM, OP_FILL, GraphPlan,
                    draw_graph, esc, graph_nodes)
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


def _legend_grid(boxes=False):
    """The drawing legend as a two-row table, to sit under the title."""
    def cell(swatch, text, bg="white"):
        return f'<TD BGCOLOR="{bg}">{swatch}</TD><TD ALIGN="LEFT">{text}</TD>'
    row1 = [cell(f'<FONT COLOR="{EDGE}">&#8594;</FONT>', "forward: data flows along arrows"),
            cell(f'<FONT COLOR="{GRAD}">grad</FONT>', "dL/d(tensor): flows back against them"),
            cell("Op", "op node", OP_FILL)]
    row2 = [cell("name", "leaf needing grad", HEAD_PARAM), cell("name", "made by an op", HEAD_INNER),
            cell("name", "constant (no grad)", HEAD_CONST)]
    if boxes:
        row1.append(cell("scope", "collapsed module", BOX_FILL))
        row2.append("<TD></TD><TD></TD>")
    return (f'<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="2" COLOR="#cccccc">'
            f'<TR>{"".join(row1)}</TR><TR>{"".join(row2)}</TR></TABLE>')


def _graph(root, path, title, subtitle=None, rankdir="TB", collapse=None, max_nodes=300):
    """Draw root's graph and write it. Two touches over draw_graph: the graph's label holds a
    bold title, a subtitle line and a compact two-row legend (draw_graph's one-row legend node
    takes a whole rank of its own)."""
    dot = draw_graph(root, rankdir=rankdir, collapse=collapse, max_nodes=max_nodes, legend=False)
    plan = GraphPlan(root, collapse)
    rows = [f'<TR><TD ALIGN="LEFT"><FONT POINT-SIZE="16"><B>{esc(title)}</B></FONT></TD></TR>']
    if subtitle:
        rows.append(f'<TR><TD ALIGN="LEFT"><FONT POINT-SIZE="11" COLOR="#444444">{esc(subtitle)}</FONT></TD></TR>')
    rows.append(f'<TR><TD ALIGN="LEFT"><FONT POINT-SIZE="9">{_legend_grid(bool(plan.boxes))}</FONT></TD></TR>')
    dot.attr(label=f'<<TABLE BORDER="0" CELLSPACING="2" CELLPADDING="0">{"".join(rows)}</TABLE>>',
             labelloc="t", labeljust="l")
    return render(dot, path)


# ----------------------------------------------------------------------------- naming
# A drawing labels each tensor box with `t.name` ("tensor" when unnamed). The builders below
# name the steps a reader should find, by the shape of the graph around them.
def _name(t, name):
    """Name t unless it already has a name."""
    if t is not None and t.name is None:
        t.name = name


def _readers(order):
    """id(tensor) -> the tensors that read it."""
    readers = collections.defaultdict(list)
    for t in order:
        for p in t.parents:
            readers[id(p)].append(t)
    return readers


def _name_params(model, prefix=""):
    """Give every parameter its dotted module name ("h.0.attn.c_attn.weight")."""
    for name, p in model.named_parameters():
        p.name = prefix + name


def _name_scale(root):
    """The constant 1/sqrt(hs) that scaled_dot_product_attention multiplies the scores by."""
    for t in graph_nodes(root):
        if t.op is not None and t.op.name == "Mul" and t.name == "scores" and t.parents[1].size == 1:
            _name(t.parents[1], "1/sqrt(hs)")


def _name_divisor(root, name):
    """The constant divisor of every Div (the count n of a mean = sum / n)."""
    for t in graph_nodes(root):
        if t.op is not None and t.op.name == "Div" and t.parents[1].op is None:
            _name(t.parents[1], name)


def _name_outputs(root, labels):
    """For each scope prefix in `labels`, the tensors made inside that module and read outside
    it (or the root) get the label: the outputs of the boxes of a collapsed drawing."""
    order = graph_nodes(root)
    readers = _readers(order)

    def inside(t, prefix):
        return (t.scope or "") == prefix or (t.scope or "").startswith(prefix + ".")
    for t in order:
        for prefix, label in labels.items():
            if t.op is not None and inside(t, prefix) and (
                    t is root or any(not inside(r, prefix) for r in readers[id(t)])):
                _name(t, label)


def _name_gelu(root):
    """The steps of the exact GELU as Tensor.gelu composes it: 0.5 h * (1 + erf(h * 1/sqrt 2))."""
    order = graph_nodes(root)
    readers = _readers(order)
    for t in order:
        if t.op is None or t.op.name != "Erf":
            continue
        _name(t, "erf(h/sqrt2)")
        _name(t.parents[0], "h/sqrt2")
        _name(t.parents[0].parents[1], "1/sqrt2")
        for one_plus in (r for r in readers[id(t)] if r.op.name == "Add"):
            _name(one_plus, "1 + erf(h/sqrt2)")
            _name(one_plus.parents[0], "1")
            for out in (r for r in readers[id(one_plus)] if r.op.name == "Mul"):
                _name(out, "gelu(h) = 0.5h (1 + erf(h/sqrt2))")
                _name(out.parents[0], "0.5h")
                _name(out.parents[0].parents[0], "0.5")


def _fill_names(root):
    """Every tensor still unnamed gets a short name from its op and inputs ("sum(x)",
    "(x - mu)^2"), parents first; a leaf still unnamed is a constant: "const"."""
    def short(t):
        name = (t.name or "").split(" = ")[0]            # "z = logits - max" -> "z"
        return name if name and len(name) <= 14 else "..."
    for t in graph_nodes(root):
        if t.name is not None:
            continue
        if t.op is None:
            t.name = "const"
            continue
        op, ps = t.op.name, t.parents
        if op == "Sum":
            t.name = f"sum({short(ps[0])})"
        elif op == "Pow":
            t.name = f"({short(ps[0])})^{t.op.args.get('exponent')}"
        elif op in ("Exp", "Log", "Tanh", "Sqrt", "Erf"):
            t.name = f"{op.lower()}({short(ps[0])})"
        elif op == "Neg":
            t.name = f"-{short(ps[0])}"
        elif op == "Reshape":
            t.name = f"{short(ps[0])} {tuple(t.shape)}"
        elif op in ("Add", "Sub", "Mul", "Div") and len(ps) == 2:
            t.name = f"{short(ps[0])} {dict(Add='+', Sub='-', Mul='*', Div='/')[op]} {short(ps[1])}"
        else:
            t.name = op.lower()


# ----------------------------------------------------------------------------- 1. scalars
def neuron_svg(out_dir, seed):
    loss = examples.build("neuron", seed=seed)
    for t in graph_nodes(loss):
        if t.name == "n":
            t.parents[0].name = "sum(w*x)"
    return _graph(loss, out_dir / "neuron.svg", "a neuron: loss = (tanh(w.x + b) - y)^2",
                  "after loss.backward(): black = value, red = dloss/d(that tensor)", rankdir="LR")


def reuse_svg(out_dir, seed):
    a = _leaf(3.0, "a")
    b = a + a
    b.name = "b = a + a"
    c = b + b
    c.name = "c = b + b"
    c.backward()                     # dc/db = 1 + 1 = 2;  dc/da = 2 * (1 + 1) = 4
    return _graph(c, out_dir / "reuse.svg", "reuse: b = a + a;  c = b + b",
                  "each use sends its own gradient and they add: dc/db = 1 + 1 = 2, dc/da = 2 + 2 = 4", rankdir="LR")


# ----------------------------------------------------------------------------- 2. tensors
def matmul_svg(out_dir, seed):
    X = _leaf([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0]], "X")                  # (N, C_in) = (2, 3)
    W = _leaf([[1.0, -1.0], [0.5, 2.0], [0.0, 1.0]], "W")                 # (C_in, C_out) = (3, 2)
    Y = X @ W                                                             # (2, 2)
    Y.name = "Y = X @ W"
    Y.backward(np.array([[1.0, 0.0], [0.0, 2.0]]))                        # upstream dL/dY
    return _graph(Y, out_dir / "matmul.svg", "matmul: Y = X W",
                  "upstream dL/dY = [[1, 0], [0, 2]];  dL/dX = dL/dY W^T has X's shape (2, 3), "
                  "dL/dW = X^T dL/dY has W's shape (3, 2)", rankdir="LR")


def broadcast_svg(out_dir, seed):
    X = _leaf([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], "X")                    # (N, C) = (2, 3)
    b = _leaf([0.5, -0.5, 1.0], "b")                                      # (C,) added to every row
    Y = X + b
    Y.name = "Y = X + b"
    Y.backward(np.array([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]]))           # upstream dL/dY
    return _graph(Y, out_dir / "broadcast.svg", "broadcasting: Y = X + b",
                  "b (3,) is copied to both rows of X (2, 3); upstream dL/dY = [[1, 2, 3], [10, 20, 30]], "
                  "so dL/db = the sum over the rows = [11, 22, 33]", rankdir="LR")


# ----------------------------------------------------------------------------- 3. softmax
def softmax_jacobian_png(out_dir, seed):
    return _save_png(plots.softmax_jacobian_figure((1.0, 2.0, 0.5, -1.0)), out_dir / "softmax_jacobian.png")


def softmax_xent_svg(out_dir, seed):
    loss = examples.build("softmax-xent", seed=seed)
    _name_divisor(loss, "N")
    for t in graph_nodes(loss):
        if t.name == "z = logits - max":
            _name(t.parents[0], "logits (N, V)")
            _name(t.parents[1], "max (detached)")
    _fill_names(loss)
    return _graph(loss, out_dir / "softmax-xent.svg", "softmax + cross-entropy",
                  "logits (2, 4), targets [1, 3]: loss = -mean log_softmax(logits)[y];  "
                  "dL/dlogits = (softmax(logits) - onehot(y)) / 2")


# ----------------------------------------------------------------------------- 4. masking
def masked_softmax_svg(out_dir, seed):
    loss = examples.build("masked-softmax", seed=seed)
    _fill_names(loss)
    return _graph(loss, out_dir / "masked-softmax.svg", "causal masked softmax (3 x 3)",
                  "future scores set to -inf before the softmax: their weights are exactly 0, "
                  "and so is the gradient reaching them")


SCORE_TOKENS = ["the", "cat", "sat", "on", "it"]


def score_grads_data(seed=0):
    """One causal head on 5 tokens (hs = 4): (scores, weights, dL/dscores), float64."""
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
    fig.suptitle("one causal attention head on 5 tokens: hatched cells were set to -inf, so their weight "
                 "and their gradient are exactly 0", fontsize=10)
    return _save_png(fig, out_dir / "score_grads.png")


# ----------------------------------------------------------------------------- 5. attention
def attention_head(seed=0):
    """One causal attention head on T=4 positions (C=6, hs=4), backward from y with a fixed
    upstream gradient: q, k, v = x Wq, x Wk, x Wv; y = softmax(q kT / sqrt(hs) + mask) v."""
    rng = np.random.default_rng(seed)
    T, C, hs = 4, 6, 4
    with fused_ops(False):
        x = _leaf(rng.normal(size=(T, C)), "x", requires_grad=False)             # (T, C)
        Wq, Wk, Wv = (_leaf(rng.normal(size=(C, hs)) / math.sqrt(C), n) for n in ("Wq", "Wk", "Wv"))
        with scope("attention head"):
            q, k, v = x @ Wq, x @ Wk, x @ Wv                                      # (T, hs) each
            q.name, k.name, v.name = "q = x Wq", "k = x Wk", "v = x Wv"
            y, weights = scaled_dot_product_attention(q, k, v, mask=causal_mask(T))   # (T, hs), (T, T)
        y.name, weights.name = "y = weights @ v", "weights"
        examples._name_attention(y)
        _name_scale(y)
        y.backward(rng.normal(size=(T, hs)))                                      # upstream dL/dy
    return y


def attention_svg(out_dir, seed):
    y = attention_head(seed)
    return _graph(y, out_dir / "attention.svg", "one causal attention head, T = 4",
                  "y = softmax(mask(q kT / sqrt(hs))) v;  red: the gradients after y.backward(dL/dy)")


def scaling_png(out_dir, seed):
    return _save_png(plots.scaling_figure(seed=seed), out_dir / "scaling.png")


# ----------------------------------------------------------------------------- 6. multi-head
def multihead_svg(out_dir, seed):
    rng = np.random.default_rng(seed)
    with fused_ops(False):
        with backend.fork_rng(seed):
            mha = MultiHeadAttention(8, 2, causal=True)
        _name_params(mha, "attn.")
        x = _leaf(rng.normal(size=(1, 4, 8)), "x (B, T, C)", requires_grad=False)        # (B, T, C)
        with scope("attn"):
            y = mha(x)                                                                  # (B, T, C)
        y.name = "out = c_proj(heads) (B, T, C)"
        mha.weights.name = "weights"                                                    # (B, H, T, T)
        examples._name_attention(y)
        _name_scale(y)
        for t in graph_nodes(y):           # name the split / reshape / transpose steps of each head
            if t.name in ("q", "k", "v") and t.op is not None and t.op.name == "Permute":
                letter = t.name
                t.name = f"{letter} (B, H, T, hs)"
                split = t.parents[0]
                if split.op is not None and split.op.name == "Reshape":
                    split.name = f"{letter} (B, T, H, hs)"
                    flat = split.parents[0]
                    if flat.op is not None and flat.op.name == "GetItem":
                        flat.name = f"{letter} (B, T, C)"
                        _name(flat.parents[0], "q|k|v = c_attn(x) (B, T, 3C)")
            if t.op is not None and t.op.name == "Reshape" and t.parents[0].op is not None \
                    and t.parents[0].op.name == "Permute" and t.parents[0].parents[0].name == "y":
                t.name = "heads side by side (B, T, C)"
                t.parents[0].name = "y (B, T, H, hs)"
        y.backward(rng.normal(size=(1, 4, 8)))                                          # upstream dL/dout
    for t in graph_nodes(y):
        if t.name == "y" and t.op is not None and t.op.name == "MatMul":
            t.name = "y (B, H, T, hs)"
    return _graph(y, out_dir / "multihead.svg", "multi-head attention: C = 8, H = 2 heads of hs = 4",
                  "one projection to q|k|v, reshaped to (B, H, T, hs), attention in every head at once, "
                  "merged back, mixed by c_proj (W_O)", collapse=["attn.c_attn", "attn.c_proj"])


# ----------------------------------------------------------------------------- 7. layer norm
def layernorm_svg(out_dir, seed):
    loss = examples.build("layernorm", seed=seed)
    _name_divisor(loss, "C")
    for t in graph_nodes(loss):
        if t.name == "var + eps":
            _name(t.parents[1], "eps")
    _fill_names(loss)
    return _graph(loss, out_dir / "layernorm.svg", "layer norm of x (B, T, C) = (2, 4, 6)",
                  "mean and variance over the last axis: one pair per token, (2, 4, 1)")


def layernorm_terms_png(out_dir, seed):
    return _save_png(plots.layernorm_terms_figure(seed=seed), out_dir / "layernorm_terms.png")


# ----------------------------------------------------------------------------- 8. block, GPT
def positional_encoding_png(out_dir, seed):
    fig = plots.positional_encoding_heatmap(T=48, C=64, interleaved=False)
    return _save_png(fig, out_dir / "positional_encoding.png")


def gpt_block_svg(out_dir, seed):
    rng = np.random.default_rng(seed)
    with fused_ops(False):
        with backend.fork_rng(seed):
            block = Block(8, 2, causal=True, norm="pre")
        _name_params(block, "h.0.")
        x = _leaf(rng.normal(size=(1, 4, 8)), "x (B, T, C)")                          # (B, T, C)
        with scope("h.0"):
            y = block(x)                                                               # (B, T, C)
        y.name = "out = x1 + mlp(ln_2(x1))"
        y.parents[0].name = "x1 = x + attn(ln_1(x))"
        _name_outputs(y, {"h.0.ln_1": "ln_1(x)", "h.0.attn": "attn(ln_1(x))", "h.0.ln_2": "ln_2(x1)",
                          "h.0.mlp.c_fc": "h = c_fc(ln_2(x1)) (B, T, 4C)", "h.0.mlp.c_proj": "mlp(ln_2(x1))"})
        _name_gelu(y)
        y.backward(rng.normal(size=(1, 4, 8)))                                         # upstream dL/dout
    collapse = ["h.0.ln_1", "h.0.attn", "h.0.ln_2", "h.0.mlp.c_fc", "h.0.mlp.c_proj"]
    return _graph(y, out_dir / "gpt-block.svg", "one pre-norm transformer block",
                  "x1 = x + attn(ln_1(x));  out = x1 + mlp(ln_2(x1)).  Each residual Add passes its "
                  "gradient on unchanged", collapse=collapse)


def gpt_svg(out_dir, seed):
    rng = np.random.default_rng(seed)
    config = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
    with fused_ops(False):
        with backend.fork_rng(seed):
            model = GPT(config)
        _name_params(model)
        tokens = rng.integers(0, config.vocab_size, size=(1, 7))
        idx, targets = tokens[:, :-1], tokens[:, 1:]                                   # (B, T) next-token targets
        logits = model(idx)                                                            # (B, T, V)
        logits.name = "logits (B, T, V)"
        with scope("cross_entropy"):
            loss = F.cross_entropy(logits, targets)
        loss.name = "loss"
        _name_outputs(loss, {"wte": "token embeddings (B, T, C)", "wpe": "position embeddings (T, C)",
                             "h.0": "after block h.0", "h.1": "after block h.1", "ln_f": "ln_f(x)"})
        for t in graph_nodes(loss):
            if t.op is not None and t.op.name == "Add" and not t.scope:
                _name(t, "x = tokens + positions")
        loss.backward()
    collapse = ["wte", "wpe", "h.0", "h.1", "ln_f", "lm_head", "cross_entropy"]
    return _graph(loss, out_dir / "gpt.svg", "a whole GPT, one box per module",
                  "2 blocks, C = 8, V = 11, T = 6; wte.weight feeds the embedding and the tied lm_head, "
                  "so its two gradients add", collapse=collapse)


# ----------------------------------------------------------------------------- 9. training
LEAK_PROMPT = "ROMEO:"
LEAK_TEXT = "First Citizen:\nB"                  # 16 characters = block_size, for attention_heads.png


@functools.lru_cache(maxsize=2)
def leakage_runs(seed=0, max_iters=300):
    """Train two tiny GPTs (2 layers, 2 heads, C = 32, T = 16) on the shipped Shakespeare with
    the same seed and data, one WITH and one WITHOUT the causal mask. Returns {causal: run},
    run = {"rows": metrics rows, "model", "sample": greedy text, "generation_loss": the loss
    scored the way generation sees the model (prefixes only, last position)}."""
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
            with no_grad(), fused_ops():
                gen = [F.cross_entropy(model(x[:, :t])[:, -1, :], y[:, t - 1]).item() for t in range(1, 17)]
            runs[causal] = {"rows": rows, "model": model, "tokenizer": data.tokenizer, "sample": text,
                            "generation_loss": float(np.mean(gen))}
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
    lines = [f"Greedy samples (temperature 0, {80} new characters after the prompt {LEAK_PROMPT!r}), generated one",
             "character at a time with the KV cache, from two tiny GPTs trained for 300 steps on the shipped",
             "Shakespeare with the same seed and data; only the causal mask differs.", ""]
    for causal, label in ((True, "WITH the causal mask"), (False, "WITHOUT the causal mask (the future leaks)")):
        r = runs[causal]
        last = r["rows"][-1]
        lines += [f"--- trained {label}",
                  f"    final train loss {last['train_loss']:.2f}, val loss {last['val_loss']:.2f} (both scored in parallel);",
                  f"    scored as generation runs it (prefix only): {r['generation_loss']:.2f}",
                  r["sample"], ""]
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
    ("neuron.svg", (S1, "graph of (tanh(w.x + b) - y)^2 after backward: values and gradients", neuron_svg)),
    ("reuse.svg", (S1, "b = a + a; c = b + b: gradients accumulate on reuse (dc/da = 4)", reuse_svg)),
    ("matmul.svg", (S2, "Y = X W: dL/dX = dL/dY W^T, dL/dW = X^T dL/dY, shapes included", matmul_svg)),
    ("broadcast.svg", (S2, "bias add: the broadcast input's gradient is summed over the copies", broadcast_svg)),
    ("softmax_jacobian.png", (S3, "the softmax Jacobian diag(p) - p p^T as a heatmap", softmax_jacobian_png)),
    ("softmax-xent.svg", (S3, "cross-entropy from primitives: log-softmax, pick, mean", softmax_xent_svg)),
    ("masked-softmax.svg", (S4, "causal masked softmax: -inf in, exact zeros out", masked_softmax_svg)),
    ("score_grads.png", (S4, "attention weights and dL/dscores; masked cells exactly 0", score_grads_png)),
    ("attention.svg", (S5, "one causal attention head, T = 4, every step with its gradient", attention_svg)),
    ("scaling.png", (S5, "score std and softmax entropy vs d_k, with and without 1/sqrt(d_k)", scaling_png)),
    ("multihead.svg", (S6, "multi-head attention as one projection plus reshape/transpose", multihead_svg)),
    ("layernorm.svg", (S7, "layer norm from primitives: mean, centre, variance, rstd, scale, shift", layernorm_svg)),
    ("layernorm_terms.png", (S7, "the three terms of the layer norm backward for one token", layernorm_terms_png)),
    ("positional_encoding.png", (S8, "the sinusoidal positional encoding table", positional_encoding_png)),
    ("gpt-block.svg", (S8, "one pre-norm block: residual adds around attention and the MLP", gpt_block_svg)),
    ("gpt.svg", (S8, "a whole GPT, each module collapsed to one box", gpt_svg)),
    ("leakage_curves.png", (S9, "train/val loss with vs without the causal mask (two tiny GPTs, 300 steps)",
                            leakage_curves_png)),
    ("leakage_samples.txt", (S9, "greedy samples of both models, generated one character at a time",
                             leakage_samples_txt)),
    ("attention_heads.png", (S9, "per-layer, per-head attention of the trained causal GPT on a line of text",
                             attention_heads_png)),
    ("cross_attention.png", (S10, "cross-attention of an encoder-decoder trained to reverse digits: "
                                  "the anti-diagonal", cross_attention_png)),
])


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
    with backend.fork_rng(seed):                  # training reseeds the engine: give the caller its state back
        for name in bar:
            bar.set_postfix_str(name)
            written.append(pathlib.Path(FIGURES[name][2](out, seed)))
    bar.close()
    return written


__all__ = ["FIGURES", "make_figures", "leakage_runs", "reverse_model", "score_grads_data", "attention_head"]
