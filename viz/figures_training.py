"""The failure modes of "Yes you should understand backprop" (Karpathy, 2016), each shown on a
short seeded run of this engine with the Diagnostics recorder on, next to a control run:

  1. vanishing gradients through saturated tanh   (too-large bias init vs a scaled init)
  2. dead ReLUs after a too-high learning rate      (Adam lr 0.05 vs 0.001)
  3. exploding gradients                            (SGD without vs with clipping)
  4. post-norm vs pre-norm in an 8-layer stack      (gradient norm per layer)
  5. attention heads that collapse                  (a copy task vs targets with no pattern)

`*_run(seed)` returns the records and the key numbers (tests assert each effect by a margin);
`*_png(out_dir, seed)` draws the figure for `tx figures`. Each run takes seconds.

Shapes: B batch, T time, C channels, H heads, V vocab, D input features."""
import functools

import numpy as np

from tinygrad_tx import Tensor, backend, fused_ops, nn, optim
from transformer import GPT, Diagnostics, GPTConfig, TextDataset

from . import diagnostics_plots as dplots

PNG_DPI = 150
SECTION = "14. Gradients over training"


def _save_png(fig, path):
    fig.savefig(path, format="png", dpi=PNG_DPI, metadata={"Software": None})
    return path


# ----------------------------------------------------------------------------- MLP runs
class Dense(nn.Module):
    """Linear then an optional non-linearity, one module so the recorder's keys read
    "layers.2:tanh" (the op's scope is the module that applied it)."""

    def __init__(self, n_in, n_out, activation=None):
        self.lin = nn.Linear(n_in, n_out)
        self.activation = activation

    def forward(self, x):
        h = self.lin(x)                                               # (B, n_out)
        return getattr(h, self.activation)() if self.activation else h


class DeepMLP(nn.Module):
    """sizes[0] -> sizes[1] -> ... -> sizes[-1], the activation after every layer but the last."""

    def __init__(self, sizes, activation):
        last = len(sizes) - 2
        self.layers = nn.ModuleList(Dense(a, b, activation if k < last else None)
                                    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def _init_mlp(model, weight_gain, bias_std, seed):
    """W ~ N(0, gain^2 / fan_in) (gain 1 keeps a tanh layer's input at unit scale), hidden
    biases ~ N(0, bias_std^2), the output layer's bias 0."""
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        if p.ndim == 2:
            p.data[...] = rng.normal(0.0, weight_gain / np.sqrt(p.shape[0]), p.shape)
        else:
            p.data[...] = rng.normal(0.0, bias_std, p.shape)
    model.layers[len(model.layers) - 1].lin.bias.data[...] = 0


def train_mlp(activation, sizes, steps, lr, weight_gain=1.0, bias_std=0.0, clip=None, adam=False, seed=0):
    """A regression y = sin(x.w / 2) (D = sizes[0]) with mini-batches of 64, diagnostics every
    step. Stops early if the loss becomes non-finite. Returns the records."""
    with backend.fork_rng(seed):                  # the caller's random stream is left as it was
        return _train_mlp(activation, sizes, steps, lr, weight_gain, bias_std, clip, adam, seed)


def _train_mlp(activation, sizes, steps, lr, weight_gain, bias_std, clip, adam, seed):
    model = DeepMLP(sizes, activation)
    _init_mlp(model, weight_gain, bias_std, seed)
    opt = (optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0) if adam
           else optim.SGD(model.parameters(), lr=lr))
    rng = np.random.default_rng(seed + 1)
    x = rng.normal(size=(256, sizes[0]))                                # (N, D)
    y = np.sin(x @ rng.normal(size=(sizes[0], 1)) / 2)                  # (N, 1)
    diag = Diagnostics(model)
    for step in range(steps):
        i = rng.integers(0, len(x), 64)
        loss = ((model(Tensor(x[i])) - Tensor(y[i])) ** 2).mean()
        diag.watch(loss)
        opt.zero_grad()
        loss.backward()
        pre_clip = optim.clip_grad_norm_(model.parameters(), clip) if clip else None
        opt.step()
        diag.record(step, lr=lr, grad_norm_before_clip=pre_clip)
        if not np.isfinite(loss.item()) or not all(np.isfinite(p.data).all() for p in model.parameters()):
            break
    return diag.records


def layer_grad_norms(record, prefix, n):
    """Gradient norm of each layer's weight matrix: prefix "layers." -> [layers.0.lin.weight, ...]."""
    return [record["params"][f"{prefix}{k}.lin.weight"]["grad_norm"] for k in range(n)]


TANH_SIZES = [16] + [64] * 6 + [1]


@functools.lru_cache(maxsize=4)
def tanh_run(seed=0):
    """A 6-hidden-layer tanh MLP with hidden biases drawn N(0, 8^2): every pre-activation sits
    far out on the flat part of tanh, tanh' ~ 0, and each layer multiplies the backward signal
    by it. Control: biases N(0, 0), the same scaled weights. 60 SGD steps, lr 0.01."""
    runs = {name: train_mlp("tanh", TANH_SIZES, 60, 0.01, bias_std=b, seed=seed)
            for name, b in (("saturated", 8.0), ("control", 0.0))}
    n = len(TANH_SIZES) - 1
    first = {k: r[0]["params"]["layers.0.lin.weight"]["grad_norm"] for k, r in runs.items()}
    numbers = {"first_layer_grad": first, "ratio": first["control"] / first["saturated"],
               "saturated_fraction": {k: r[0]["activations"]["layers.0:tanh"]["saturated"] for k, r in runs.items()},
               "per_layer": {k: layer_grad_norms(r[0], "layers.", n) for k, r in runs.items()}}
    return runs, numbers


def tanh_png(out_dir, seed):
    runs, num = tanh_run(seed)
    fig = dplots.paired_layers_figure(
        num["per_layer"], "layer", "gradient norm of W at step 0",
        [{k: [r["params"]["layers.0.lin.weight"]["grad_norm"] for r in rs] for k, rs in runs.items()},
         "step", "layer 0's gradient norm"],
        title=f"saturated tanh: layer 0 gets a {num['ratio']:.0f}x smaller gradient "
              f"({num['saturated_fraction']['saturated']:.0%} of its inputs have |x| > 2)")
    return _save_png(fig, out_dir / "training_tanh.png")


@functools.lru_cache(maxsize=4)
def relu_run(seed=0):
    """A ReLU MLP (16 -> 128 -> 128 -> 1) trained with Adam at lr 0.05 (too high) and 0.001:
    big first steps push many second-layer units negative for every input; a dead unit gets
    no gradient, so nothing brings it back."""
    runs = {name: train_mlp("relu", [16, 128, 128, 1], 60, lr, weight_gain=1.41, adam=True, seed=seed)
            for name, lr in (("lr 0.05", 0.05), ("lr 0.001", 0.001))}
    dead = {k: [r["activations"]["layers.1:relu"]["dead"] for r in rs] for k, rs in runs.items()}
    return runs, {"dead": dead, "final_dead": {k: v[-1] for k, v in dead.items()}}


def relu_png(out_dir, seed):
    runs, num = relu_run(seed)
    fig = dplots.curves_figure([(num["dead"], "dead fraction of layer-1 units", False),
                                ({k: [r["loss"] for r in rs] for k, rs in runs.items()}, "loss", True)],
                               title=f"dead ReLUs: {num['final_dead']['lr 0.05']:.0%} of the units dead at lr 0.05, "
                                     f"{num['final_dead']['lr 0.001']:.0%} at lr 0.001")
    return _save_png(fig, out_dir / "training_relu.png")


@functools.lru_cache(maxsize=4)
def clip_run(seed=0):
    """An 8-hidden-layer tanh MLP with weights N(0, 3^2 / fan_in) (the chaotic regime: each
    layer multiplies the backward signal by more than 1), SGD lr 0.2, without and with
    clipping the global gradient norm to 1. Without: a big step makes bigger gradients, the
    loop feeds itself and overflows; with: every step is at most lr * 1 long."""
    with np.errstate(over="ignore", invalid="ignore"):          # the overflow is the point
        runs = {name: train_mlp("tanh", [16] + [64] * 8 + [1], 60, 0.2, weight_gain=3.0, clip=c, seed=seed)
                for name, c in (("no clipping", None), ("clip at 1.0", 1.0))}
    norms = {k: [r["grad_norm"] if r["grad_norm_before_clip"] is None else r["grad_norm_before_clip"] for r in rs]
             for k, rs in runs.items()}
    finite = lambda xs: [x for x in xs if x is not None]          # noqa: E731
    return runs, {"grad_norm": norms, "max_norm": {k: max(finite(v)) for k, v in norms.items()},
                  "final_loss": {k: rs[-1]["loss"] for k, rs in runs.items()},
                  "steps": {k: len(rs) for k, rs in runs.items()}}


def clip_png(out_dir, seed):
    runs, num = clip_run(seed)
    fig = dplots.curves_figure([(num["grad_norm"], "global gradient norm (before clipping)", True),
                                ({k: [r["loss"] for r in rs] for k, rs in runs.items()}, "loss", True)],
                               title=f"exploding gradients: the norm reaches {num['max_norm']['no clipping']:.1e} "
                                     f"without clipping (then overflows), stays <= {num['max_norm']['clip at 1.0']:.0f} with it")
    return _save_png(fig, out_dir / "training_clip.png")


# ----------------------------------------------------------------------------- GPT runs
def train_gpt(config, batches, steps, lr, seed=0):
    """AdamW (no weight decay) on `batches(rng) -> (x, y)`, fused ops on as in training,
    diagnostics every step. Returns (model, records)."""
    with backend.fork_rng(seed):                  # the caller's random stream is left as it was
        return _train_gpt(config, batches, steps, lr, seed)


def _train_gpt(config, batches, steps, lr, seed):
    model = GPT(config)
    opt = optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    diag = Diagnostics(model)
    rng = np.random.default_rng(seed)
    with fused_ops():
        for step in range(steps):
            x, y = batches(rng)
            _, loss = model(x, y)
            diag.watch(loss)
            opt.zero_grad()
            loss.backward(leaves_only=True)
            opt.step()
            diag.record(step, lr=lr)
    return model, diag.records


def block_grad_norms(record, n_layer):
    """The gradient norm of each block's parameters together (h.i.*)."""
    return [float(np.sqrt(sum(v["grad_norm"] ** 2 for k, v in record["params"].items() if k.startswith(f"h.{i}."))))
            for i in range(n_layer)]


NORM_LAYERS = 8


@functools.lru_cache(maxsize=4)
def norm_run(seed=0, steps=61):
    """An 8-layer GPT (C = 32, 2 heads, T = 16) on the shipped Shakespeare, post-norm vs
    pre-norm, 60 AdamW steps at lr 1e-3. Post-norm puts a layer norm ON the residual path,
    so the gradient reaching block i is rescaled by every norm above it: after training it
    grows toward the output; pre-norm's identity path keeps the layers together."""
    data = TextDataset.from_file(None)
    batches = lambda rng: data.get_batch("train", 8, 16, rng)      # noqa: E731
    runs, per_layer = {}, {}
    for norm in ("post", "pre"):
        cfg = GPTConfig(vocab_size=data.tokenizer.vocab_size, n_layer=NORM_LAYERS, n_head=2, n_embd=32,
                        block_size=16, norm=norm)
        runs[f"{norm}-norm"] = train_gpt(cfg, batches, steps, 1e-3, seed)[1]
    for k, rs in runs.items():
        per_layer[k] = {"init": block_grad_norms(rs[0], NORM_LAYERS), "trained": block_grad_norms(rs[-1], NORM_LAYERS)}
    # the growth from block 1 to the last block (block 0 also gets the embeddings' scale)
    growth = {k: v["trained"][-1] / v["trained"][1] for k, v in per_layer.items()}
    return runs, {"per_layer": per_layer, "growth": growth}


def norm_png(out_dir, seed):
    runs, num = norm_run(seed)
    fig = dplots.paired_layers_figure(
        {k: v["init"] for k, v in num["per_layer"].items()}, "block", "gradient norm at init",
        [{k: v["trained"] for k, v in num["per_layer"].items()}, "block", "gradient norm after 60 steps"],
        title=f"post-norm vs pre-norm, 8 blocks: last / block-1 gradient {num['growth']['post-norm']:.0f}x (post) "
              f"vs {num['growth']['pre-norm']:.2f}x (pre)", second_is_layers=True)
    return _save_png(fig, out_dir / "training_norm.png")


ATTN_V, ATTN_T = 16, 16


def _copy_batches(rng):
    """Random tokens; the target at t is the token at t - 1 (one key matters per query)."""
    x = rng.integers(0, ATTN_V, (16, ATTN_T))                          # (B, T)
    return x, np.concatenate([x[:, :1], x[:, :-1]], axis=1)


def _noise_batches(rng):
    """Random tokens and random targets: no key is worth looking at more than another."""
    return rng.integers(0, ATTN_V, (16, ATTN_T)), rng.integers(0, ATTN_V, (16, ATTN_T))


@functools.lru_cache(maxsize=4)
def attention_run(seed=0):
    """A 1-layer, 2-head GPT (C = 32, T = 16), 150 AdamW steps at lr 1e-2, on the copy-the-
    previous-token task (its heads collapse onto one key: entropy -> 0) and on targets with
    no pattern (they stay spread, near the uniform log(t + 1) averaged over queries)."""
    cfg = GPTConfig(vocab_size=ATTN_V, n_layer=1, n_head=2, n_embd=32, block_size=ATTN_T)
    runs, models = {}, {}
    for name, batches in (("copy task", _copy_batches), ("no pattern", _noise_batches)):
        models[name], runs[name] = train_gpt(cfg, batches, 150, 1e-2, seed)
    entropy = {k: [r["attention"]["h.0.attn"]["entropy"] for r in rs] for k, rs in runs.items()}
    final = {k: v[-1] for k, v in entropy.items()}
    x, _ = _copy_batches(np.random.default_rng(seed + 7))
    weights = {}
    for name, model in models.items():                 # one sequence through each trained model
        with fused_ops():
            model(x[:1])
        weights[name] = model.h[0].attn.weights.numpy()[0]             # (H, T, T)
    collapsed = int(np.argmin(final["copy task"]))
    spread = int(np.argmax(final["no pattern"]))
    return runs, {"entropy": entropy, "final": final, "uniform": float(np.mean(np.log(np.arange(1, ATTN_T + 1)))),
                  "heatmaps": {"collapsed": weights["copy task"][collapsed], "spread": weights["no pattern"][spread]},
                  "heads": {"collapsed": collapsed, "spread": spread}}


def attention_png(out_dir, seed):
    runs, num = attention_run(seed)
    fig = dplots.entropy_figure(num["entropy"], num["heatmaps"], num["heads"], num["uniform"],
                                title=f"attention collapse: head entropy {min(num['final']['copy task']):.2f} nats "
                                      f"(copy task) vs {max(num['final']['no pattern']):.2f} (no pattern; "
                                      f"uniform {num['uniform']:.2f})")
    return _save_png(fig, out_dir / "training_attention.png")


FIGURES = [
    ("training_tanh.png", "vanishing gradients: a saturated deep tanh MLP vs a scaled init, gradient norm per layer", tanh_png),
    ("training_relu.png", "dead ReLUs: dead fraction over steps at a too-high learning rate vs a sane one", relu_png),
    ("training_clip.png", "exploding gradients: gradient norm and loss without vs with clipping", clip_png),
    ("training_norm.png", "post-norm vs pre-norm, 8 blocks: gradient norm per block at init and after training", norm_png),
    ("training_attention.png", "attention heads that collapse vs stay spread: entropy over steps and two heatmaps",
     attention_png),
]
