"""Generate docs/notebooks/backprop.ipynb, the backprop walkthrough as a notebook.

The notebook is written from the cells below, so it can be reviewed (and diffed) as code:

    python docs/notebooks/build_notebook.py               # (re)write backprop.ipynb, executed
    python docs/notebooks/build_notebook.py --no-execute  # the cells only, without outputs
    python docs/notebooks/build_notebook.py --check       # exit 1 if its cells are out of date

The committed notebook is executed (with nbclient, in a "python3" kernel) and carries its
outputs, so it reads with every graph and figure on a code host without running anything.
tests/test_notebook.py checks that this script's cells are the committed cells, that the
committed file has its outputs, and executes it afresh top to bottom. Every code cell that
makes a claim also checks it numerically (float64, so exact identities are exact).

Shapes: B batch, T time, C channels, H heads, hs head size (C // H), V vocab, N rows.
"""
import argparse
import pathlib
import sys
import textwrap

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NOTEBOOK = pathlib.Path(__file__).resolve().parent / "backprop.ipynb"

CELLS = []          # (kind, source) in order


def md(source):
    CELLS.append(("markdown", source))


def code(source):
    CELLS.append(("code", source))


# ============================================================================= intro
md(r"""
# Backpropagation, one graph at a time

This notebook walks through reverse-mode automatic differentiation with **tinygrad_tx**, a
small numpy autograd engine, and then through a transformer built from the engine's
primitives. Each section builds something small, shows its computation graph or a figure
inline, and checks the claim it makes with an `assert` that runs every time the notebook does
(`tests/test_notebook.py` executes it top to bottom).

Reading a graph: a rectangular box is a tensor (name, shape, values, and its gradient in red
once backward has run; the header is yellow for a leaf that needs a gradient, blue for a tensor
made by an op, grey for a constant), a blue rounded box is an op. Arrows point forward;
backward walks them in reverse. Each drawing carries this legend.

Shapes use one set of letters: B batch, T time (sequence position), C channels, H heads,
hs head size (C // H), V vocabulary, N rows.

The text version of this walkthrough is [docs/backprop.md](../backprop.md). To run the
notebook yourself: `make test` installs the package, `ipykernel` and `nbclient` into `.venv`
(the tests run it headless); for the Jupyter interface add it with
`.venv/bin/pip install jupyterlab` and start `.venv/bin/jupyter lab`. Drawing graphs needs
Graphviz's `dot` (or the `graphviz-pure` pip package).
""")

code(r"""
%matplotlib inline
import math
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")   # tqdm's notebook bar; we train with progress=False
import numpy as np

import tinygrad_tx
from tinygrad_tx import Tensor, no_grad
from tinygrad_tx import functional as F
from transformer import (GPT, Block, GPTConfig, MultiHeadAttention, causal_mask, generate,
                         merge_heads, scaled_dot_product_attention, split_heads)
from viz import draw_graph, examples, plots, format_step, trace_backward

tinygrad_tx.set_default_dtype("float64")   # exact identities below are checked in float64
tinygrad_tx.manual_seed(0)                 # parameter initialisation
rng = np.random.default_rng(0)             # every other random number
np.set_printoptions(precision=4, suppress=True)
""")

# ============================================================================= 1. scalars
md(r"""
## 1. A scalar graph, the chain rule, and reuse

Every operation records the op that made its output and the tensors it read. `backward()`
sorts that graph so each tensor comes after everything it depends on, seeds the loss with
gradient 1, and walks the order in reverse. At each op it multiplies the gradient arriving
at the output by the op's *local* derivative and passes the result to each input: the chain
rule, applied one node at a time.

Here is the neuron of the text, section 1, with the same numbers (and the same drawing as
`docs/figures/neuron.svg`): `loss = (tanh(w . x + b) - 1)^2` with w = [0.5, -1, 2],
x = [1, 2, 0.5], b = 0.3.
""")

code(r"""
w = Tensor([0.5, -1.0, 2.0], requires_grad=True, name="w")
x = Tensor([1.0, 2.0, 0.5], requires_grad=True, name="x")
b = Tensor(0.3, requires_grad=True, name="b")
wx = (w * x).named("w * x")
n = (wx.sum() + b).named("n")         # pre-activation: 0.5 - 2 + 1 + 0.3 = -0.2
o = n.tanh().named("o")
loss = ((o - 1.0) ** 2).named("loss")
loss.backward()
draw_graph(loss, rankdir="LR")
""")

md(r"""
The same gradients by hand. Going backward: d(loss)/do = 2(o - 1); tanh's derivative is
1 - o^2. Three gate patterns do the rest: an **add distributes** (each input gets the
upstream gradient unchanged, so `b` gets dL/dn), a **mul swaps** (each input gets the
upstream gradient times the *other* input, so `w` gets dL/dn * x), and a **max routes** (the
whole gradient to the winner).
""")

code(r"""
dL_do = 2 * (o.item() - 1.0)          # d/do (o - 1)^2
do_dn = 1 - o.item() ** 2             # tanh'(n) = 1 - tanh(n)^2
dL_dn = dL_do * do_dn                 # chain rule
print(f"n = {n.item():.3f}  o = {o.item():.4f}  dL/do = {dL_do:.3f}  dL/dn = {dL_dn:.3f}")
assert math.isclose(b.grad.item(), dL_dn, rel_tol=1e-12)              # + passes it on
np.testing.assert_allclose(w.grad, dL_dn * x.numpy(), rtol=1e-12)    # * swaps in the other input
np.testing.assert_allclose(x.grad, dL_dn * w.numpy(), rtol=1e-12)
""")

md(r"""
**What the gradient is for.** A small step against `w.grad` lowers the loss; repeated, that
is training (gradient descent). Gradients accumulate, so each step clears them first.
""")

code(r"""
losses = []
for step in range(3):
    for t in (w, x, b):
        t.zero_grad()
    loss_step = (((w * x).sum() + b).tanh() - 1.0) ** 2
    loss_step.backward()
    losses.append(round(loss_step.item(), 4))
    w.data -= 0.1 * w.grad                # one step downhill
    b.data -= 0.1 * b.grad
print(losses)
assert losses == [1.4337, 0.024, 0.0196]
""")

md(r"""
The engine can also run backward one op at a time, recording what arrives at each op and
what it sends on (`tx step neuron` does this in the terminal, `tx explore` in a browser).
Each step's rule is the docstring of the op's class.
""")

code(r"""
steps = trace_backward(examples.neuron(seed=0, backward=False))
for s in steps[:3]:
    print(format_step(s, len(steps)), end="\n\n")
# forward was Mul, Sum, Add, Tanh, Sub, Pow: backward meets the ops in exactly the reverse order
assert [s.op.name for s in steps] == ["Pow", "Sub", "Tanh", "Add", "Sum", "Mul"]
""")

md(r"""
**Reuse.** A tensor used twice gets the *sum* of the gradients from both uses, so the
backward driver accumulates (`+=`), never overwrites. With `b = a + a` and `c = b + b`,
c = 4a, so dc/da must be 4. A driver that assigned instead of adding would keep only one
use's share at each step and get dc/db = 1 and dc/da = 1.
""")

code(r"""
a = Tensor(3.0, requires_grad=True, name="a")
b2 = a + a;    b2.name = "b = a + a"
c = b2 + b2;   c.name = "c = b + b"
c.backward()
print("dc/db =", b2.grad, "  dc/da =", a.grad)
assert b2.grad == 2.0 and a.grad == 4.0
draw_graph(c)
""")

# ============================================================================= 2. shapes
md(r"""
## 2. Matmul and broadcasting: the gradient has the shape of the tensor

For `Y = X @ W + bias`, the loss is a scalar, so dL/dW has exactly W's shape, and the
matmul gradient can be found from the shapes alone: dL/dY is (N, C_out), and the only
product of X (N, C_in) and dL/dY that is (C_in, C_out) is `X^T @ dL/dY`. Likewise
dL/dX = `dL/dY @ W^T`.

`bias` (C_out,) is broadcast: the same vector is added to all N rows, so it is used N
times and its gradient is the sum over the rows. The engine undoes broadcasting in one
place (`unbroadcast` in `autograd.py`) and asserts every gradient's shape.
""")

code(r"""
N, C_in, C_out = 4, 3, 2
X = Tensor(rng.standard_normal((N, C_in)), requires_grad=True, name="X")        # (N, C_in)
W = Tensor(rng.standard_normal((C_in, C_out)), requires_grad=True, name="W")    # (C_in, C_out)
bias = Tensor(rng.standard_normal(C_out), requires_grad=True, name="bias")      # (C_out,)
XW = X @ W;         XW.name = "X @ W"                                           # (N, C_out)
Y = XW + bias;      Y.name = "Y"                                                # (N, C_out)
dY = rng.standard_normal((N, C_out))              # an upstream gradient dL/dY
Y.backward(dY)
for t in (X, W, bias):
    print(f"{t.name:5s} {t.shape}  grad {t.grad.shape}")
assert X.grad.shape == X.shape and W.grad.shape == W.shape and bias.grad.shape == bias.shape
np.testing.assert_allclose(W.grad, X.numpy().T @ dY, rtol=0, atol=1e-12)        # X^T dY
np.testing.assert_allclose(X.grad, dY @ W.numpy().T, rtol=0, atol=1e-12)        # dY W^T
np.testing.assert_allclose(bias.grad, dY.sum(axis=0), rtol=0, atol=1e-12)       # summed over rows
draw_graph(Y)
""")

# ============================================================================= 3. softmax + CE
md(r"""
## 3. Softmax and cross-entropy: the gradient is p - onehot

A language model's last layer produces logits (one score per vocabulary entry); softmax
turns them into probabilities p, and the loss is -log p[target]. Each softmax output
depends on every input (its Jacobian is `diag(p) - p p^T`), but pushed through -log p[y]
almost everything cancels: **dL/dlogits = p - onehot(y)**, divided by N for a mean over N
rows. The correct class is pushed up by 1 - p[y], every other class down by its
probability.

The engine writes cross-entropy from primitives (log_softmax, a pick, a mean), so the
graph shows each step, and the short formula comes out of the chain rule on its own.
""")

code(r"""
N, V = 3, 5
logits = Tensor(rng.standard_normal((N, V)), requires_grad=True, name="logits")   # (N, V)
targets = np.array([0, 3, 4])                                                      # (N,)
ce = F.cross_entropy(logits, targets);   ce.name = "loss"
ce.backward()
with no_grad():
    p = logits.softmax(axis=-1).numpy()                                            # (N, V)
onehot = np.eye(V)[targets]
print("N * dL/dlogits:\n", logits.grad * N, "\np - onehot:\n", p - onehot)
np.testing.assert_allclose(logits.grad, (p - onehot) / N, rtol=0, atol=1e-12)
draw_graph(ce)
""")

md(r"""
The softmax Jacobian for the first row. Rows sum to zero (adding a constant to every logit
changes no probability), and multiplying it by d(-log p_y)/dp = -onehot / p gives back
p - onehot.
""")

code(r"""
z0 = logits.numpy()[0]
J = plots.softmax_jacobian(z0)                                  # (V, V), J[i, j] = dp_i / dz_j
np.testing.assert_allclose(J.sum(axis=1), 0.0, atol=1e-15)
dL_dp = -onehot[0] / p[0]                                       # d(-log p_y) / dp
np.testing.assert_allclose(J.T @ dL_dp, p[0] - onehot[0], atol=1e-12)
plots.softmax_jacobian_figure(z0)
""")

# ============================================================================= 4. masked softmax
md(r"""
## 4. Masked softmax: zero weight and exactly zero gradient

To stop a position from attending to another (the future, or padding), its score is set
to -inf **before** the softmax. exp(-inf) is exactly 0, so the weight is exactly 0 (not
merely small), and `masked_fill` sends no gradient to the positions it overwrote, so the
masked scores receive exactly 0 gradient too. The mask convention throughout: `True` means
blocked.
""")

code(r"""
T = 4
scores = Tensor(rng.standard_normal((T, T)), requires_grad=True, name="scores")   # (Tq, Tk)
mask = causal_mask(T)                        # (T, T) True above the diagonal: the future
masked = scores.masked_fill(mask, float("-inf"));   masked.name = "masked_scores"
weights = masked.softmax(axis=-1);                  weights.name = "weights"
upstream = Tensor(rng.standard_normal((T, T)), name="upstream")
(weights * upstream).sum().backward()
print("weights:\n", weights.numpy(), "\ndL/dscores:\n", scores.grad)
assert np.all(weights.numpy()[mask] == 0.0)        # exactly zero weight
assert np.all(scores.grad[mask] == 0.0)            # exactly zero gradient
assert np.all(weights.numpy()[~mask] > 0.0)
np.testing.assert_allclose(weights.numpy().sum(axis=-1), 1.0, atol=1e-12)
""")

md(r"""
The same computation as a drawn preset (`tx graph masked-softmax`), with the steps inside
softmax named: the detached max, exp, the sum, the division.
""")

code(r"""
draw_graph(examples.masked_softmax(seed=0))
""")

# ============================================================================= 5. attention
md(r"""
## 5. Attention, forward and backward, and why divide by sqrt(d_k)

Attention is a soft lookup. Each token's **query** is compared (dot product) with every
token's **key**; softmax turns those scores into weights that sum to 1; the output is the
weighted sum of the **values**. Q, K and V are the same input multiplied by three learned
matrices. For a whole sequence at once: `softmax(Q K^T / sqrt(d_k)) V`, where the score
matrix is T x T, which is why attention costs O(T^2) in the sequence length.

Below, one causal head (T = 4, d_k = hs = 4) as the `attention` preset draws it
(`tx graph attention`).
""")

code(r"""
draw_graph(examples.attention(seed=0))
""")

md(r"""
Backward through `out = P V` gives dL/dP = dL/dout V^T. Through the softmax, row by row,
dL/dS = P * (dL/dP - sum_j P_j dL/dP_j): the Jacobian-vector product of section 3 without
building the Jacobian. Each row of dL/dS sums to zero, and the masked cells are exactly
zero. `plots.attention_score_grads` runs this through the engine; we check it against the
formula.
""")

code(r"""
T, hs = 5, 8
q, k, v = (rng.standard_normal((T, hs)) for _ in range(3))       # (T, hs) each
up = rng.standard_normal((T, hs))                                # dL/dout
mask = causal_mask(T)
sg = plots.attention_score_grads(q, k, v, mask=mask, upstream=up)
P = sg.weights                                                   # (T, T)
dP = up @ v.T                                                    # dL/dP
dS = P * (dP - (P * dP).sum(axis=-1, keepdims=True))             # softmax backward
np.testing.assert_allclose(sg.grad, dS, rtol=0, atol=1e-12)
np.testing.assert_allclose(sg.grad.sum(axis=-1), 0.0, atol=1e-12)
assert np.all(sg.grad[mask] == 0.0)
tokens = list("abcde")
plots.score_gradient_heatmap(sg.grad, tokens, mask=mask, weights=P)
""")

md(r"""
**Why sqrt(d_k).** If q and k have d_k independent unit-variance entries, q.k is a sum of
d_k such products: its variance is d_k and its spread grows like sqrt(d_k). Large scores
push the softmax towards one-hot, where its Jacobian diag(p) - p p^T is nearly zero, so
almost no gradient gets through. Dividing by sqrt(d_k) keeps the scores' spread near 1 for
any head size.
""")

code(r"""
stats = plots.scaling_stats(d_ks=(4, 16, 64, 256), n=2000, seed=0)
for d, s in stats.items():
    print(f"d_k={d:3d}  std unscaled {s['unscaled_std']:6.2f} (sqrt d_k = {math.sqrt(d):5.2f})  "
          f"scaled {s['scaled_std']:.2f}   entropy unscaled {s['unscaled_entropy']:.2f}  scaled {s['scaled_entropy']:.2f}")
    assert 0.9 < s["unscaled_std"] / math.sqrt(d) < 1.1 and 0.9 < s["scaled_std"] < 1.1
assert stats[256]["unscaled_entropy"] < 0.5 * stats[256]["scaled_entropy"]     # saturated

# the gradient through a saturated softmax: the size of its Jacobian, sum_ij |J_ij| = 2 (1 - sum p^2)
d = 256
qs, ks = rng.standard_normal((200, 1, d)), rng.standard_normal((200, 8, d))
raw = (qs * ks).sum(axis=-1)                                     # (200, 8) unscaled scores
jac = lambda s: np.mean([np.abs(plots.softmax_jacobian(row)).sum() for row in s])
print(f"mean sum |J_ij| over 200 queries: unscaled {jac(raw):.3f}  scaled {jac(raw / math.sqrt(d)):.3f}   "
      f"(scaling_stats: {stats[d]['unscaled_jacobian']:.3f} and {stats[d]['scaled_jacobian']:.3f})")
assert jac(raw) < 0.5 * jac(raw / math.sqrt(d))
assert stats[d]["unscaled_jacobian"] < 0.5 * stats[d]["scaled_jacobian"]
plots.scaling_figure()
""")

# ============================================================================= 6. multi-head
md(r"""
## 6. Multi-head attention is a reshape

Several heads let each position attend to different things at once. Rather than H separate
projections, one (C, 3C) projection makes q, k and v for all heads, and a reshape to
(B, H, T, hs) gives each head its own hs = C / H channels. Heads run in parallel as a batch
dimension; their outputs are concatenated back to (B, T, C) and mixed by W_O (`c_proj`).
The parameter count does not depend on H, and the work is about that of one full-width head.
""")

code(r"""
B, T, C, H = 1, 4, 8, 2
hs = C // H
tinygrad_tx.manual_seed(0)
mha = MultiHeadAttention(C, H, causal=True)
x = Tensor(rng.standard_normal((B, T, C)), name="x")               # (B, T, C)
y = mha(x)                                                          # (B, T, C)
q, k, v = mha.c_attn(x).split(C, axis=-1)                           # (B, T, C) each
qh = split_heads(q, H)                                              # (B, H, T, hs)
print("q", q.shape, "-> split_heads ->", qh.shape)
for h in range(H):   # head h is channels h*hs .. (h+1)*hs of q
    np.testing.assert_array_equal(qh.numpy()[:, h], q.numpy()[..., h * hs:(h + 1) * hs])
np.testing.assert_array_equal(merge_heads(qh).numpy(), q.numpy())  # merge undoes split

# H separate single-head attentions on the channel slices, concatenated, then W_O
heads = [scaled_dot_product_attention(q[..., h * hs:(h + 1) * hs], k[..., h * hs:(h + 1) * hs],
                                      v[..., h * hs:(h + 1) * hs], mask=causal_mask(T))[0]
         for h in range(H)]                                         # H x (B, T, hs)
separate = mha.c_proj(tinygrad_tx.concat(heads, axis=-1))           # (B, T, C)
np.testing.assert_allclose(separate.numpy(), y.numpy(), rtol=0, atol=1e-12)
assert mha.num_parameters() == MultiHeadAttention(C, 1).num_parameters() == 4 * C * C + 4 * C
plots.attention_heatmaps(mha.weights, list("abcd"), mask=causal_mask(T))
""")

code(r"""
draw_graph(examples.multihead(seed=0), show_values=False, rankdir="TB")   # Reshape + Permute make the heads
""")

# ============================================================================= 7. layer norm
md(r"""
## 7. Layer norm backward: three terms

Layer norm normalises each token's vector over its own C features (never across positions
or batch items, which is what separates it from batch norm):
`xhat = (x - mean) / sigma`, `sigma = sqrt(var + eps)`, `y = xhat * weight + bias`.

x_i reaches the loss along three paths, so its gradient has three terms (with
g = dL/dy * weight):

1. **direct**: x_i moves xhat_i: `g_i / sigma`;
2. **through the mean**: x_i moves the mean, which every xhat_j subtracts: `-mean(g) / sigma`;
3. **through the variance**: x_i moves sigma, which divides every xhat_j:
   `-xhat_i * mean(g * xhat) / sigma`.

The engine never uses this formula for the composed layer norm: it differentiates mean,
subtract, power and multiply one op at a time, and lands on the same numbers.
""")

code(r"""
xv = rng.standard_normal(8) * 2 + 1                     # one token, C = 8
upv = rng.standard_normal(8)                            # dL/dy
terms = plots.layernorm_backward_terms(xv, upstream=upv)
np.testing.assert_allclose(terms["direct"] + terms["mean"] + terms["variance"], terms["engine"], rtol=0, atol=1e-12)
np.testing.assert_allclose(terms["engine"].sum(), 0.0, atol=1e-12)   # shifting x by a constant changes nothing
plots.layernorm_terms_figure(xv, upstream=upv)
""")

md(r"""
Per-token statistics, checked: changing one token changes that token's output and no other.
""")

code(r"""
xs = rng.standard_normal((2, 3, 8))                         # (B, T, C)
base = F.layer_norm(Tensor(xs)).numpy()
xs2 = xs.copy(); xs2[1, 2] = rng.standard_normal(8) * 5     # a different token at b=1, t=2
out = F.layer_norm(Tensor(xs2)).numpy()
others = np.ones((2, 3), dtype=bool); others[1, 2] = False
assert np.array_equal(out[others], base[others]) and not np.allclose(out[1, 2], base[1, 2])
draw_graph(examples.layernorm(seed=0))
""")

# ============================================================================= 8. block + GPT
md(r"""
## 8. A block with residuals, and a whole GPT

A transformer block is attention followed by a position-wise feed-forward net (the MLP:
attention's output at each position is a convex combination of value vectors, and the MLP is
where each position computes new features from it), each wrapped in a residual connection and
a layer norm. In GPT-2's pre-norm form:
`x = x + attn(ln_1(x))`, then `x = x + mlp(ln_2(x))`.

The residual `x + f(x)` is a gradient highway: dL/dx receives dL/dy unchanged, plus
whatever flows back through f. With the output projections of attention and the MLP set to
zero, f contributes nothing and the gradient reaches x untouched.
""")

code(r"""
tinygrad_tx.manual_seed(0)
block = Block(C, H, causal=True, norm="pre")
xb = Tensor(rng.standard_normal((B, T, C)), requires_grad=True, name="x")   # (B, T, C)
dY = rng.standard_normal((B, T, C))
block(xb).backward(dY)
print("largest |dL/dx - dL/dy| with random weights:", np.abs(xb.grad - dY).max())
for lin in (block.attn.c_proj, block.mlp.c_proj):      # W_O and the MLP's second layer
    lin.weight.data[...] = 0.0
    lin.bias.data[...] = 0.0
xb.zero_grad()
block(xb).backward(dY)
np.testing.assert_array_equal(xb.grad, dY)             # only the highway is left
""")

md(r"""
The `gpt-block` preset with every module scope deeper than three levels folded into one box
(`collapse=3`): the two residual additions stay visible between the boxes `h.0.ln_1`,
`h.0.attn`, `h.0.ln_2` and `h.0.mlp`. (`ln_1` holds only 2 ops: its input x needs no
gradient, so the mean and variance of x are constants and the graph starts at `xhat * weight`.)
""")

code(r"""
draw_graph(examples.gpt_block(seed=0), collapse=3, show_values=False)
""")

md(r"""
A whole GPT (2 layers, 2 heads, C = 8, vocabulary 11) with its next-token cross-entropy.
Drawn flat it has hundreds of nodes; with `collapse=2` each layer `h.0`, `h.1` is one box
(`tx graph gpt` does the same). Note the token embedding's `weight` feeding both `wte` and
`lm_head`: the output layer reuses it (weight tying), so its gradient is the sum of both uses.
""")

code(r"""
gpt_loss = examples.gpt(seed=0)
draw_graph(gpt_loss, collapse=2, show_values=False, rankdir="TB")
""")

# ============================================================================= 9. causal mask
md(r"""
## 9. The causal mask, teacher forcing and autoregressive generation

At inference a decoder generates one token at a time, each conditioned on what it has
produced so far. Training does all T positions in one pass (**teacher forcing**: the true
previous tokens are the inputs). Without a mask that parallel pass would let position t see
token t+1, the very answer it is asked to predict, and the model would learn to copy it.
The causal mask (-inf above the diagonal) removes exactly that, so the parallel pass computes
the same logits that one-at-a-time generation does.
""")

code(r"""
cfg = dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16)
tinygrad_tx.manual_seed(0)
model = GPT(GPTConfig(**cfg)).eval()
ids = rng.integers(0, 11, size=(1, 8))                               # (B, T)
with no_grad():
    full = model(ids).numpy()                                        # (B, T, V) one parallel pass
    for t in range(1, 9):                                            # prefix by prefix, as generation sees it
        np.testing.assert_allclose(model(ids[:, :t]).numpy()[:, -1], full[:, t - 1], rtol=0, atol=1e-12)
    future = ids.copy(); future[0, 5] = (ids[0, 5] + 1) % 11         # change token 5 only
    changed = model(future).numpy()
assert np.array_equal(changed[:, :5], full[:, :5]) and not np.allclose(changed[:, 5:], full[:, 5:])

tinygrad_tx.manual_seed(0)
leaky = GPT(GPTConfig(**cfg, causal=False)).eval()                   # same weights, no mask
with no_grad():
    leak = np.abs(leaky(future).numpy()[:, 0] - leaky(ids).numpy()[:, 0]).max()
print(f"without the mask, changing token 5 moves position 0's logits by {leak:.2e}")
assert leak > 1e-6

greedy = generate(model, ids[:, :2], max_new_tokens=6, temperature=0)                  # KV cache
assert np.array_equal(greedy, generate(model, ids[:, :2], 6, temperature=0, use_cache=False))
print("greedy continuation of", ids[0, :2], "->", greedy[0, 2:], "(untrained: the tokens mean nothing yet)")
plots.attention_grid(model, ids[0])
""")

# ============================================================================= 10. seq2seq
md(r"""
## 10. Encoder-decoder and cross-attention

The original transformer translates: an **encoder** reads the source with unmasked
self-attention (every source token sees every other, only padding is blocked), and a
**decoder** writes the target with causal self-attention plus **cross-attention**, whose
queries come from the decoder and whose keys and values come from the encoder's output.
The final linear layer maps to vocabulary logits, and training minimises cross-entropy with
teacher forcing.

Two switches from the GPT of section 8, as in the paper: the blocks are **post-norm**
(`ln(x + f(x))`: the residual add sits inside a layer norm, so the identity path of the
gradient passes through one layer norm Jacobian per sub-layer) and the feed-forward net uses
**ReLU** (gradient exactly 0 for negative inputs). And because every decoder layer's
cross-attention reads the same encoder output, the encoder's gradient is the sum of one share
per decoder layer.

A small task makes cross-attention visible: reverse a digit string. Each output digit must
look at one particular source position, so after training the cross-attention weights form
an anti-diagonal. About 10 s of training (`tx seq2seq` runs the longer version).
""")

code(r"""
from transformer.reverse_task import BOS, DIGIT0, EOS, make_batch, train_reverse

tinygrad_tx.set_default_dtype("float32")                  # training speed; the checks here are not exact identities
s2s, result = train_reverse(steps=500, batch_size=32, max_len=5, seed=0, n_eval=200, progress=False)
print(result)
assert result["exact_match"] > 0.8                        # on held-out strings it never saw

src, tgt_in, tgt_out = make_batch(np.random.default_rng(3), 1, 5, 5, held_out=True)    # (1, 5), (1, 6), (1, 6)
with no_grad():
    logits = s2s(src, tgt_in)                             # (1, 6, V): teacher forcing, all positions at once
cross = s2s.decoder.h[-1].cross_attn.weights              # (B, H, T_tgt, T_src)
assert cross.shape == (1, s2s.config.n_head, tgt_in.shape[1], src.shape[1])
assert np.array_equal(logits.numpy().argmax(-1)[0], tgt_out[0])   # predicts the reversed digits, then EOS
digits = [str(t - DIGIT0) for t in src[0]]
plots.attention_heatmaps(cross, ["BOS"] + [str(t - DIGIT0) for t in tgt_in[0, 1:]], digits,
                         title="cross-attention, last decoder layer (query: decoder input, key: source digit)")
""")

md(r"""
What can see what, checked: the encoder is bidirectional (changing the **last** source digit
changes the encoder output at the **first** position), the decoder sees the whole source
through cross-attention, and it is causal in its own targets (changing a later decoder input
leaves earlier predictions alone).
""")

code(r"""
src2 = src.copy(); src2[0, -1] = DIGIT0 + (src[0, -1] - DIGIT0 + 1) % 10
tgt2 = tgt_in.copy(); tgt2[0, 4] = DIGIT0 + (tgt_in[0, 4] - DIGIT0 + 1) % 10
with no_grad():
    mem, _ = s2s.encode(src)
    mem2, _ = s2s.encode(src2)
    assert not np.allclose(mem.numpy()[0, 0], mem2.numpy()[0, 0])                      # encoder: no mask
    assert not np.allclose(s2s(src2, tgt_in).numpy()[0, 0], logits.numpy()[0, 0])      # cross-attention
    out2 = s2s(src, tgt2).numpy()
    assert np.allclose(out2[0, :4], logits.numpy()[0, :4], rtol=0, atol=1e-5)          # decoder: causal
    assert not np.allclose(out2[0, 4], logits.numpy()[0, 4])
print("source", "".join(digits), "-> greedy", "".join(str(t - DIGIT0) for t in s2s.greedy_decode(src, BOS, 6, eos_id=EOS)[0] if t >= DIGIT0))
""")

# ============================================================================= 11. depth
md(r"""
## 11. Gradients through depth

Through L layers the gradient is multiplied by L transposed Jacobians,
dL/dx_0 = J_1^T ... J_L^T dL/dx_L, so it scales like (gain per layer)^L: it vanishes below 1
and explodes above. Residual layers (`x + f(x)`, factor I + J_f) cannot vanish, and with the
branches scaled down by 1/sqrt(L) (GPT-2's init of `c_proj`) they do not explode either.
Clipping the global norm (`optim.clip_grad_norm_`, `tx train` clips at 1.0) caps a single bad
step.
""")

code(r"""
def depth_gain(gain, kind, L=20, C=32, seed=0):
    r = np.random.default_rng(seed)
    x0 = Tensor(r.normal(size=(8, C)), requires_grad=True)
    h = x0
    for _ in range(L):
        f = h @ Tensor(r.normal(size=(C, C)) * gain / np.sqrt(C))
        h = {"linear": f, "tanh": f.tanh(), "residual": h + f, "residual, scaled": h + f / np.sqrt(L)}[kind]
    g = r.normal(size=h.shape)
    h.backward(g)
    return float(np.linalg.norm(x0.grad) / np.linalg.norm(g))

kinds = ("linear", "tanh", "residual", "residual, scaled")
print("gain  " + "  ".join(f"{k:>16s}" for k in kinds))
for gain in (0.5, 1.0, 2.0):
    print(f"{gain:4.1f}  " + "  ".join(f"{depth_gain(gain, k):16.1e}" for k in kinds))
assert depth_gain(0.5, "linear") < 1e-5 and depth_gain(2.0, "linear") > 1e5             # vanish, explode
assert all(1.0 <= depth_gain(g, "residual, scaled") < 5.0 for g in (0.5, 1.0, 2.0))    # stays near 1
""")

# ============================================================================= 12. gradcheck
md(r"""
## 12. Numerical gradient checking

Central differences, (f(x + eps) - f(x - eps)) / (2 eps), have error O(eps^2) and check any
gradient without trusting the engine. Compare by the *relative* error; use float64 (in
float32 the difference of two nearly equal losses loses most of its digits, and a smaller eps
makes it worse); and stay away from kinks (ReLU at 0), where the two sides disagree.
`gradcheck` compares every input element in float64 (`tx gradcheck` runs one such case per op).
""")

code(r"""
def numeric_grad(f, x, eps):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += eps; down[i] -= eps
        g[i] = (f(up) - f(down)) / (2 * eps)
    return g

def rel_error(a, n):
    return float(np.max(np.abs(a - n) / np.maximum(np.maximum(np.abs(a), np.abs(n)), 1e-12)))

z0, y0 = np.array([0.5, -1.2, 2.0, 0.3, -0.4]), np.array([3])
zt = Tensor(z0[None], requires_grad=True)
F.cross_entropy(zt, y0).backward()
for dtype, eps in (("float64", 1e-6), ("float32", 1e-3), ("float32", 1e-6)):
    num = numeric_grad(lambda z: F.cross_entropy(Tensor(z[None], dtype=dtype), y0).item(), z0, eps)
    print(f"{dtype} eps={eps:g}: relative error {rel_error(zt.grad[0], num):.0e}")
assert rel_error(zt.grad[0], numeric_grad(lambda z: F.cross_entropy(Tensor(z[None]), y0).item(), z0, 1e-6)) < 1e-8
print("ReLU at its kink: central difference", numeric_grad(lambda v: Tensor(v).relu().sum().item(), np.zeros(1), 1e-6))
inputs = [Tensor(rng.standard_normal(3), requires_grad=True) for _ in range(3)]
assert tinygrad_tx.gradcheck(lambda x, w, b: ((x * w + b).tanh() - 1.0) ** 2, inputs)
""")

md(r"""
## Recap

* The engine records a graph; backward walks it in reverse, each op multiplying the upstream
  gradient by its local derivative (add distributes, mul swaps, max routes).
* A tensor used several times gets the **sum** of its gradients: reuse, broadcasting, the
  three projections of x, tied embeddings, the encoder output read by every decoder layer.
* `dL/dX` has the shape of X; a matmul's backward is two matmuls.
* Softmax + cross-entropy gives `p - onehot(y)`; masks act before the softmax and give exact
  zeros; `1/sqrt(d_k)` keeps the softmax and its Jacobian away from one-hot.
* Layer norm's backward has three terms; residuals are a gradient highway; depth multiplies
  Jacobians, which residuals, scaled init, normalisation and clipping keep near 1.
* The causal mask makes parallel training compute what generation computes.
* Check gradients numerically: central differences, float64, relative error, away from kinks.
""")

md(r"""
## Where next

* [docs/backprop.md](../backprop.md): the same walkthrough as text, with the references.
* `tx explore attention --out backprop.html`: step through this backward pass in a browser
  (`make demo` writes `demo/backprop.html`).
* [docs/cli.md](../cli.md) and [docs/api.md](../api.md): every command and every public name.
""")


# ============================================================================= writing
def build():
    """The notebook as an nbformat node: no outputs yet, stable cell ids (so its cells are
    byte-for-byte reproducible)."""
    nb = new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    for i, (kind, source) in enumerate(CELLS):
        source = textwrap.dedent(source).strip("\n")
        cell = new_markdown_cell(source) if kind == "markdown" else new_code_cell(source)
        cell.id = f"cell-{i:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def execute(nb):
    """Run every cell in a fresh "python3" kernel from this folder; the outputs stay in nb.
    No timing metadata, so two runs differ only where an output itself differs."""
    import nbclient
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=False,
                                     record_timing=False, resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    nb.metadata = build().metadata                # keep the kernelspec, drop the kernel's version details
    return nb


def cells(nb):
    """[(cell type, id, source)]: what the generator decides, outputs aside."""
    return [(c.cell_type, c.id, c.source) for c in nb.cells]


def render(executed=False):
    """The notebook file's exact text (executed: with outputs)."""
    nb = build()
    return nbformat.writes(execute(nb) if executed else nb) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the notebook's cells on disk are out of date")
    parser.add_argument("--no-execute", action="store_true", help="write the cells without running them")
    args = parser.parse_args(argv)
    if args.check:
        current = nbformat.read(NOTEBOOK, as_version=4) if NOTEBOOK.exists() else None
        if current is None or cells(current) != cells(build()):
            print(f"{NOTEBOOK} is out of date: run python {pathlib.Path(__file__).as_posix()}", file=sys.stderr)
            return 1
        print(f"{NOTEBOOK.name} is up to date")
        return 0
    NOTEBOOK.write_text(render(executed=not args.no_execute), encoding="utf-8")
    print(f"wrote {NOTEBOOK}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
