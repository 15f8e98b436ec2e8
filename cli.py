"""`tx`: the command-line front door to tinygrad_tx.

    tx --version
    tx gradcheck [--op NAME ...]
    tx graph PRESET [--out FILE] [--collapse N|repeats|SCOPE] [--rankdir TB|LR]
    tx step PRESET [--all] [--out DIR]
    tx explore PRESET [--out FILE.html]
    tx train [--data FILE] [--out DIR] [--max-iters N] [model options]
    tx sample [--ckpt DIR] [--prompt TEXT] [--max-new-tokens N]
    tx seq2seq [--steps N] [--max-len N]
    tx figures --out DIR [--only NAME ...]
    tx bench [--config baby|large|both]

Installed as a console script by `pip install -e .` (see pyproject.toml). This module sits at
the top of the dependency chain (tinygrad_tx <- transformer <- viz <- cli): it may import any
of them, and none of them imports it.
"""
import contextlib
import difflib
import pathlib
import subprocess
import sys
import time

import click
import numpy as np

import tinygrad_tx
from tinygrad_tx import selfcheck
from transformer import CheckpointError, GPTConfig, TextDataset, TrainConfig, Trainer, generate, load_model
from transformer.reverse_task import BOS, DIGIT0, EOS, make_batch, train_reverse
from viz import examples as viz_examples
from viz import explore, format_step, frame_graph, render, trace_backward
from viz.graph import TooManyNodesError
from viz.figures import FIGURES, make_figures


class TxGroup(click.Group):
    """Click's own usage errors below `tx` (a value out of range, a missing argument, an unknown
    command) print one line too, like every other error: `Error: ... (see: tx CMD --help)`."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OneLineUsageError:
            raise
        except click.UsageError as e:
            where = e.ctx.command_path if e.ctx is not None else ctx.command_path
            raise OneLineUsageError(f"{e.format_message()} (see: {where} --help)") from None


@click.group(cls=TxGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Run `tx COMMAND --help` for a command's options and an example.")
@click.version_option(tinygrad_tx.__version__, "--version", prog_name="tx",
                      message="%(prog)s, version %(version)s")
def main():
    """tinygrad_tx: a small reverse-mode autograd engine, built to make backprop visible.

    \b
    Example:
      tx gradcheck             check every op's backward against finite differences
    """


class OneLineUsageError(click.UsageError):
    """Bad input: print just `Error: ...` (no usage block, no traceback); exit status 2."""

    def show(self, file=None):
        click.echo(f"Error: {self.format_message()}", err=True)


def _check_case_names(names):
    """Every --op NAME must be a self-check case; otherwise a one-line usage error."""
    known = list(selfcheck.CASES)
    for name in names:
        if name not in selfcheck.CASES:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise OneLineUsageError(f"--op: unknown case {name!r}; {hint}"
                                    f"`tx gradcheck` lists all {len(known)} case names")


@main.command(epilog="""\b
Examples:
  tx gradcheck                         all cases
  tx gradcheck --op add --op softmax   only the cases named add and softmax""")
@click.option("--op", "ops", metavar="NAME", multiple=True,
              help="Run only this case (a name from the first column); repeatable.")
def gradcheck(ops):
    """Check every op's backward pass against central differences.

    Each case builds a small float64 expression, computes its gradient with backward(), and
    compares it with (f(x + eps) - f(x - eps)) / (2 eps) for every input element. A case
    passes when the largest absolute difference is at most 1e-6. Exits 1 if any case fails.
    """
    _check_case_names(ops)
    rows = selfcheck.run_gradchecks(names=set(ops) or None)

    w_name = max(len("case"), *(len(r["name"]) for r in rows))
    w_op = max(len("op"), *(len(r["op"]) for r in rows))
    click.echo(f"{'case':<{w_name}}  {'op':<{w_op}}  {'max abs err':>11}  {'time ms':>8}  result")
    for r in rows:
        verdict = click.style("PASS", fg="green") if r["ok"] else click.style("FAIL", fg="red", bold=True)
        click.echo(f"{r['name']:<{w_name}}  {r['op']:<{w_op}}  {r['max_abs_err']:>11.1e}  "
                   f"{r['seconds'] * 1e3:>8.1f}  {verdict}")

    passed = sum(r["ok"] for r in rows)
    largest = max(r["max_abs_err"] for r in rows)
    click.echo(f"{passed}/{len(rows)} cases passed, {len({r['op'] for r in rows})} distinct ops, "
               f"largest error {largest:.1e}")
    if passed < len(rows):
        failed = ", ".join(r["name"] for r in rows if not r["ok"])
        click.echo(f"FAILED: {failed}", err=True)
        click.get_current_context().exit(1)


# ---- transformer: train / sample / seq2seq
def _fail(message):
    """One-line error, exit status 1, no traceback."""
    raise click.ClickException(message)


def _check_device(device):
    """Fail early, in one line, when the GPU cannot be used."""
    if device == "gpu":
        try:
            tinygrad_tx.backend.cupy_module()
        except tinygrad_tx.backend.DeviceError as e:
            _fail(str(e))


def _set_threads(n):
    """--threads (None: $TX_THREADS, else one per idle physical core): tinygrad_tx/threads.py."""
    try:
        tinygrad_tx.threads.set_threads(n)
    except ValueError as e:                     # a bad TX_THREADS
        _fail(str(e))


def _writable_dir(path):
    p = pathlib.Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / ".tx-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        _fail(f"cannot write to output folder {p}: {e.strerror or e}")
    return p


@main.command(epilog="""\b
Examples:
  tx train --max-iters 200 --out runs/tiny          a quick run on the shipped Shakespeare
  tx train --data my.txt --n-layer 2 --n-embd 64    your own text, a smaller model
  tx train --out runs/tiny --max-iters 400 --resume continue an interrupted run""")
@click.option("--data", type=click.Path(dir_okay=False), default=None,
              help="Text file to train on (default: the shipped tinyshakespeare).")
@click.option("--out", "out_dir", default="out", show_default=True, metavar="DIR",
              help="Folder for checkpoint and metrics.jsonl.")
@click.option("--max-iters", default=2000, show_default=True, type=click.IntRange(1))
@click.option("--eval-interval", default=250, show_default=True, type=click.IntRange(1))
@click.option("--eval-iters", default=20, show_default=True, type=click.IntRange(1), help="Batches per evaluation.")
@click.option("--batch-size", default=12, show_default=True, type=click.IntRange(1))
@click.option("--lr", default=1e-3, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--warmup-iters", default=100, show_default=True, type=click.IntRange(0))
@click.option("--weight-decay", default=0.1, show_default=True, type=click.FloatRange(min=0))
@click.option("--grad-clip", default=1.0, show_default=True, type=click.FloatRange(min=0))
@click.option("--seed", default=1337, show_default=True, type=int)
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in --out.")
@click.option("--block-size", default=64, show_default=True, type=click.IntRange(1))
@click.option("--n-layer", default=4, show_default=True, type=click.IntRange(1))
@click.option("--n-head", default=4, show_default=True, type=click.IntRange(1))
@click.option("--n-embd", default=128, show_default=True, type=click.IntRange(1))
@click.option("--dropout", default=0.0, show_default=True, type=click.FloatRange(0, 1, max_open=True))
@click.option("--bias/--no-bias", default=True, show_default=True)
@click.option("--norm", type=click.Choice(["pre", "post"]), default="pre", show_default=True)
@click.option("--pos", type=click.Choice(["learned", "sinusoidal"]), default="learned", show_default=True)
@click.option("--activation", type=click.Choice(["gelu", "gelu_tanh", "relu"]), default="gelu", show_default=True)
@click.option("--tie-weights/--no-tie-weights", default=True, show_default=True)
@click.option("--causal/--no-causal", default=True, show_default=True,
              help="--no-causal removes the mask (to watch the future leak).")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default=None,
              help="Where arrays live (default: $TX_DEVICE or cpu); gpu needs CuPy and a CUDA device.")
@click.option("--threads", default=None, type=click.IntRange(1),
              help="BLAS and compiled-kernel threads (default: $TX_THREADS, else one per idle physical core).")
def train(data, out_dir, max_iters, eval_interval, eval_iters, batch_size, lr, warmup_iters, weight_decay,
          grad_clip, seed, resume, block_size, n_layer, n_head, n_embd, dropout, bias, norm, pos, activation,
          tie_weights, causal, progress, device, threads):
    """Train a character-level GPT (nanoGPT's char recipe), printing the final val_loss.

    Evaluates train/val loss every --eval-interval steps on fixed batches, appends them to
    OUT/metrics.jsonl and writes a checkpoint (OUT/meta.json + arrays) that `tx sample` reads.
    """
    _set_threads(threads)
    try:
        dataset = TextDataset.from_file(data)
        shortest = min(len(dataset.train), len(dataset.val))
        if block_size >= shortest:      # each example is block_size + 1 consecutive characters
            _fail(f"--block-size {block_size} is too long for this text: its shorter split has {shortest:,} "
                  f"characters and an example needs block_size + 1; use a smaller --block-size or more text")
        mconf = GPTConfig(vocab_size=dataset.tokenizer.vocab_size, block_size=block_size, n_layer=n_layer,
                          n_head=n_head, n_embd=n_embd, dropout=dropout, bias=bias, norm=norm, pos=pos,
                          activation=activation, tie_weights=tie_weights, causal=causal)
        tconf = TrainConfig(max_iters=max_iters, eval_interval=eval_interval, eval_iters=eval_iters,
                            batch_size=batch_size, lr=lr, warmup_iters=warmup_iters, weight_decay=weight_decay,
                            grad_clip=grad_clip, seed=seed)
        out = _writable_dir(out_dir)
        _check_device(device)
        trainer = Trainer(mconf, tconf, dataset, out, resume=resume, progress=progress, device=device)
        click.echo(f"training {trainer.model.num_parameters():,} parameters on {len(dataset.train):,} "
                   f"characters; step {trainer.step} -> {max_iters}", err=True)
        last = trainer.run()
    except UnicodeDecodeError as e:
        _fail(f"--data {data}: not UTF-8 text ({e.reason} at byte {e.start})")
    except (OSError, ValueError, CheckpointError, tinygrad_tx.backend.DeviceError) as e:
        _fail(str(e))
    except MemoryError:
        _fail(f"out of memory: the attention scores alone hold batch_size x n_head x block_size^2 = "
              f"{batch_size * n_head * block_size ** 2:,} numbers per layer; use a smaller --block-size or --batch-size")
    except KeyboardInterrupt:
        _fail(f"interrupted; resume from the last checkpoint with: tx train --out {out_dir} --resume")
    click.echo(f"step {last['step']}  train_loss {last['train_loss']:.4f}  val_loss {last['val_loss']:.4f}  "
               f"({last['elapsed']:.1f} s)")


@main.command(epilog="""\b
Examples:
  tx sample --ckpt out --prompt "ROMEO:" --max-new-tokens 200
  tx sample --ckpt out --temperature 0          greedy: always the most likely character""")
@click.option("--ckpt", "ckpt_dir", default="out", show_default=True, metavar="DIR",
              help="Checkpoint folder written by tx train (its --out).")
@click.option("--prompt", default="\n", show_default="a newline", help="Text to continue.")
@click.option("--max-new-tokens", default=200, show_default=True, type=click.IntRange(0))
@click.option("--temperature", default=0.8, show_default=True, type=click.FloatRange(min=0),
              help="0 means greedy (argmax).")
@click.option("--top-k", default=None, type=click.IntRange(1), help="Sample only among the k most likely.")
@click.option("--seed", default=1337, show_default=True, type=int)
@click.option("--no-cache", is_flag=True, help="Recompute the whole context every step (no KV cache).")
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default=None,
              help="Where arrays live (default: $TX_DEVICE or cpu); gpu needs CuPy and a CUDA device.")
@click.option("--threads", default=None, type=click.IntRange(1),
              help="BLAS and compiled-kernel threads (default: $TX_THREADS, else one per idle physical core).")
def sample(ckpt_dir, prompt, max_new_tokens, temperature, top_k, seed, no_cache, device, threads):
    """Generate text from a trained GPT checkpoint."""
    _set_threads(threads)
    try:
        _check_device(device)
        model, tok = load_model(ckpt_dir, device=device)
    except (CheckpointError, ValueError, OSError) as e:
        _fail(str(e))
    unknown = sorted({ch for ch in prompt if ch not in tok.stoi})
    if unknown:
        _fail(f"--prompt has characters the model was not trained on: {''.join(unknown)!r} "
              f"(its vocabulary has {tok.vocab_size} characters)")
    ids = tok.encode(prompt)
    if not ids:
        _fail("--prompt must contain at least one character")
    if len(ids) > model.config.block_size:   # generate() crops the context, as nanoGPT does
        click.echo(f"note: the prompt has {len(ids)} characters, more than the model's block size "
                   f"{model.config.block_size}; only the last {model.config.block_size} condition the sample", err=True)
    out = generate(model, np.array([ids]), max_new_tokens, temperature=temperature, top_k=top_k,
                   rng=np.random.default_rng(seed), use_cache=not no_cache)
    click.echo(tok.decode(out[0]))


@main.command(epilog="""\b
Examples:
  tx seq2seq                         train on reversing digit strings, report held-out accuracy
  tx seq2seq --steps 300 --max-len 5""")
@click.option("--steps", default=1500, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@click.option("--max-len", default=8, show_default=True, type=click.IntRange(1, 30))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--progress/--no-progress", default=True)
def seq2seq(steps, batch_size, max_len, seed, progress):
    """Train the encoder-decoder transformer to reverse digit strings and report exact-match
    accuracy on strings it never saw (greedy decoding)."""
    model, result = train_reverse(steps=steps, batch_size=batch_size, max_len=max_len, seed=seed, progress=progress)
    src, _, tgt = make_batch(np.random.default_rng(seed + 2), 3, 1, max_len, held_out=True)
    pred = model.greedy_decode(src, BOS, max_len=tgt.shape[1], eos_id=EOS)
    for s, p in zip(src, pred):
        click.echo(f"  {_digits(s)}  ->  {_digits(p)}")
    click.echo(f"final train_loss {result['train_loss']:.4f}  held-out exact_match {result['exact_match']:.3f}")


def _digits(tokens):
    return "".join(str(int(t) - DIGIT0) for t in tokens if int(t) >= DIGIT0) if len(tokens) else ""


# ---- viz: graph / step / explore
GRAPH_FORMATS = ("svg", "png", "pdf", "dot")
COLLAPSE_HELP = ("N: fold module scopes deeper than N levels into one box each (0: draw every node); "
                 "repeats: draw the first of identical blocks (h.0) and fold the rest (h.1 - h.3) into one box; "
                 "SCOPE: fold that scope (default: the preset's own, one box per module for gpt).")
RANKDIR_HELP = "Layout direction: top to bottom or left to right (default: the preset's own, TB for most)."


class CollapseParam(click.ParamType):
    """--collapse N (an int >= 0), --collapse repeats, or --collapse SCOPE (a scope name)."""
    name = "collapse"

    def convert(self, value, param, ctx):
        if isinstance(value, int) or not str(value).lstrip("-").isdigit():
            return value
        if int(value) < 0:
            self.fail(f"{value} is not >= 0 (use --collapse N, --collapse repeats or --collapse SCOPE)", param, ctx)
        return int(value)


def _check_preset(name):
    """Unknown viz.examples preset -> one-line error listing them."""
    presets = viz_examples.PRESETS
    if name not in presets:
        close = difflib.get_close_matches(name, list(presets), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise OneLineUsageError(f"unknown preset {name!r}; {hint}valid names: {', '.join(presets)}")


def _preset_loss(name, seed, backward):
    """The loss tensor of a viz.examples preset."""
    _check_preset(name)
    return viz_examples.build(name, seed=seed, backward=backward)


def _given(collapse=None, rankdir=None, values=True):
    """The drawing flags the user gave, to override the preset's own (viz.examples.DRAW_DEFAULTS)."""
    given = {} if collapse is None else {"collapse": collapse or None}
    given.update({"rankdir": rankdir} if rankdir else {})
    given.update({} if values else {"show_values": False})
    return given


def _preset_title(name):
    doc = (viz_examples.PRESETS[name].__doc__ or "").strip()
    return f"{name}: {doc.splitlines()[0]}" if doc else name


@contextlib.contextmanager
def _viz_errors(max_nodes_flag=False):
    """Drawing problems (too many nodes, no Graphviz, unwritable file) -> one line, exit 1. The
    node-limit hint names this command's flags, not draw_graph's keyword arguments."""
    try:
        yield
    except TooManyNodesError as e:
        fold = ("--collapse 2, --collapse repeats or --collapse SCOPE to fold modules into boxes" if e.has_scopes
                else "--collapse 0 to draw them all (the graph has no module scopes to fold)")
        limit = f" --max-nodes {e.max_nodes}" if max_nodes_flag else f" the limit of {e.max_nodes}"
        more = ", or raise --max-nodes" if max_nodes_flag else ""
        raise click.ClickException(f"the graph has {e.total} nodes ({e.counts[0]} tensors, {e.counts[1]} ops, "
                                   f"{e.counts[2]} boxes), more than{limit}; pass {fold}{more}") from None
    except OSError as e:
        where = f"cannot write {e.filename}: " if e.filename else ""
        why = "a file of that name is in the way" if isinstance(e, FileExistsError) else e.strerror
        raise click.ClickException(f"{where}{why or str(e).splitlines()[0]}") from None
    except (ValueError, RuntimeError) as e:
        line = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise click.ClickException("--" + line if line.startswith("collapse: ") else line) from None


@main.command("graph", epilog="""\b
Examples:
  tx graph neuron                           writes neuron.svg: every op, value and gradient
  tx graph attention --out attn.png         the format follows the extension
  tx graph gpt --collapse 1 --format pdf    each top-level module folded into one box
  tx graph gpt --collapse repeats           block h.0 drawn, h.1 folded into one box
  tx graph gpt --collapse 0                 every node, no limit""")
@click.argument("preset")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="File to write (default: PRESET.FORMAT).")
@click.option("--format", "fmt", type=click.Choice(GRAPH_FORMATS), default=None,
              help="Output format (default: from --out's extension, else svg).")
@click.option("--collapse", type=CollapseParam(), default=None, metavar="N|repeats|SCOPE", help=COLLAPSE_HELP)
@click.option("--values/--no-values", default=True, show_default=True,
              help="Show values and gradients inside the tensor boxes.")
@click.option("--max-nodes", type=click.IntRange(min=1), default=None, metavar="N",
              help="Refuse to draw more nodes than this (default: 300; no limit with --collapse 0).")
@click.option("--rankdir", type=click.Choice(["TB", "LR"]), default=None, help=RANKDIR_HELP)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the preset's numbers.")
def graph_cmd(preset, out, fmt, collapse, values, max_nodes, rankdir, seed):
    """Draw the computation graph of PRESET after backward: one box per tensor (shape, values,
    gradient in red), one node per op, modules grouped by scope. PRESET is one of the examples
    in viz/examples.py (neuron, mlp, attention, layernorm, gpt, ...)."""
    suffix = pathlib.Path(out).suffix.lower().lstrip(".") if out else ""
    if out is None:
        fmt = fmt or "svg"
        out = f"{preset}.{fmt}"
    elif suffix in GRAPH_FORMATS:
        if fmt and fmt != suffix:
            raise OneLineUsageError(f"--format {fmt} does not match the extension of --out {out!r}")
        fmt = suffix
    elif fmt:
        out = f"{out}.{fmt}"
    else:
        raise OneLineUsageError(f"--out {out!r}: cannot tell the format; end it with "
                                f"{', '.join('.' + f for f in GRAPH_FORMATS)} or pass --format")
    _check_preset(preset)
    if max_nodes is None:
        max_nodes = None if collapse == 0 else 300
    with _viz_errors(max_nodes_flag=True):
        path = render(viz_examples.draw_preset(preset, seed=seed, max_nodes=max_nodes,
                                               **_given(collapse, rankdir, values)), out)
    click.echo(f"wrote {path}")


@main.command("step", epilog="""\b
Examples:
  tx step neuron                 one backward step per Enter (q + Enter stops)
  tx step attention --all        print every step at once
  tx step mlp --out frames/      also write frames/frame_000.svg, ... one per step""")
@click.argument("preset")
@click.option("--all", "show_all", is_flag=True,
              help="Print every step without pausing (the default when stdin is not a terminal).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Also write one SVG per step into DIR: the current op in red, finished ones green.")
@click.option("--rankdir", type=click.Choice(["TB", "LR"]), default=None,
              help="Layout direction of the --out frames (default: the preset's own, TB for most).")
@click.option("--collapse", type=CollapseParam(), default=None, metavar="N|repeats|SCOPE", help=COLLAPSE_HELP)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the preset's numbers.")
def step_cmd(preset, show_all, out_dir, collapse, rankdir, seed):
    """Step through the backward pass of PRESET one op at a time, from the loss back to the
    inputs: the gradient arriving at each op's output, what it sends to each input, and the
    local rule that turns one into the other."""
    loss = _preset_loss(preset, seed, backward=False)
    opts = viz_examples.draw_options(preset, **_given(collapse, rankdir))
    with _viz_errors():
        steps = trace_backward(loss)
        if out_dir:
            folder = pathlib.Path(out_dir)
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(len(steps)):
                render(frame_graph(loss, steps, i, collapse=opts.get("collapse"), rankdir=opts["rankdir"],
                                   max_nodes=None), folder / f"frame_{i:03d}.svg")
            click.echo(f"wrote {len(steps)} frames to {folder}/frame_000.svg ...")
    interactive = not show_all and sys.stdin.isatty()
    click.echo(f"{_preset_title(preset)}\n{len(steps)} backward steps"
               + ("  (Enter: next step, q then Enter: stop)" if interactive else ""))
    for i, s in enumerate(steps):
        click.echo("")
        click.echo(format_step(s, len(steps)))
        if interactive and i < len(steps) - 1:
            line = sys.stdin.readline()
            if not line:                           # stdin closed: print the rest
                interactive = False
            elif line.strip().lower() in ("q", "quit"):
                return
    click.echo("\ndone: that was a replay; no tensor's .grad was changed (loss.backward() fills them)")


@main.command("explore", epilog="""\b
Examples:
  tx explore attention                     writes attention.html; open it in a browser
  tx explore gpt --out gpt.html            larger graphs fold modules into boxes (--collapse)""")
@click.argument("preset")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="HTML file to write (default: PRESET.html).")
@click.option("--collapse", type=CollapseParam(), default=None, metavar="N|repeats|SCOPE", help=COLLAPSE_HELP)
@click.option("--rankdir", type=click.Choice(["TB", "LR"]), default=None, help=RANKDIR_HELP)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the preset's numbers.")
def explore_cmd(preset, out, collapse, rankdir, seed):
    """Write one self-contained HTML page (works offline) to step through the backward pass of
    PRESET: Prev/Next or the arrow keys move from op to op, the current op is outlined in red,
    and clicking a node shows its value and its gradient at that step."""
    out = out or f"{preset}.html"
    if pathlib.Path(out).suffix.lower() not in (".html", ".htm"):
        raise OneLineUsageError(f"--out {out!r}: the explorer writes an HTML page; end the name with .html")
    loss = _preset_loss(preset, seed, backward=False)
    opts = viz_examples.draw_options(preset, **_given(collapse, rankdir))
    with _viz_errors():
        path = explore(loss, out, title=opts["title"], collapse=opts.get("collapse"), rankdir=opts["rankdir"],
                       max_nodes=None if collapse == 0 else 300)
    click.echo(f"wrote {path}: open it in a browser")

# ---- docs: figures
@main.command("figures", epilog="""\b
Examples:
  tx figures --out docs/figures                  every figure of docs/backprop.md (about a minute)
  tx figures --out /tmp/f --only attention.svg   just one; repeat --only for more""")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Folder to write the figures into (created if missing). Required.")
@click.option("--only", "names", multiple=True, metavar="NAME",
              help="Write only this figure, named by its file (attention.svg, scaling.png, ...); repeatable.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of every figure's numbers.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def figures_cmd(out_dir, names, seed, progress):
    """Write the figures of docs/backprop.md: computation graphs as SVG, plots as PNG, and the
    leakage samples as text. Two tiny models are trained on the way (about a minute on two
    cores). The same seed writes the same files."""
    if out_dir is None:
        raise OneLineUsageError("--out DIR is required: the folder to write into, e.g. tx figures --out docs/figures")
    for name in names:
        if name not in FIGURES:
            close = difflib.get_close_matches(name, list(FIGURES), n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise OneLineUsageError(f"--only: unknown figure {name!r}; {hint}valid names: {', '.join(FIGURES)}")
    out = _writable_dir(out_dir)
    start = time.perf_counter()
    with _viz_errors():
        paths = make_figures(out, names=list(dict.fromkeys(names)) or None, progress=progress, seed=seed)
    for path in paths:
        click.echo(f"wrote {path}")
    click.echo(f"{len(paths)} files in {time.perf_counter() - start:.1f} s")


# ---- bench
@main.command(epilog="""\b
Examples:
  tx bench --config baby                 our training step vs PyTorch eager, 3 alternating rounds
  tx bench --config baby --generate      also 200-token generation with and without the KV cache
  tx bench --device gpu                  on the GPU (CuPy) against torch CUDA""")
@click.option("--config", type=click.Choice(["baby", "large", "both"]), default="baby", show_default=True)
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(1))
@click.option("--steps", default=None, type=click.IntRange(1), help="Timed steps per process.")
@click.option("--threads", default=None, type=click.IntRange(1),
              help="Threads of each side: BLAS, compiled kernels, torch (default: $TX_THREADS, else one per idle physical core).")
@click.option("--generate", is_flag=True, help="Also time generating 200 tokens.")
@click.option("--no-torch", is_flag=True, help="Time only tinygrad_tx.")
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default=None,
              help="Where arrays live (default: $TX_DEVICE or cpu); gpu needs CuPy and a CUDA device.")
def bench(config, rounds, steps, threads, generate, no_torch, device):
    """Time a GPT training step (forward, loss, backward, AdamW) against PyTorch eager.

    Runs bench/gpt_step.py from the source checkout: each side in its own process,
    alternating, and prints median ms/step, the ratio, peak memory and achieved GFLOP/s."""
    script = pathlib.Path(__file__).resolve().parent / "bench" / "gpt_step.py"
    if not script.is_file():
        _fail(f"tx bench needs the source checkout (no {script})")
    _check_device(device)
    args = [sys.executable, str(script), "--config", config, "--rounds", str(rounds)]
    args += ["--steps", str(steps)] if steps else []
    args += ["--threads", str(threads)] if threads else []
    args += ["--generate"] if generate else []
    args += ["--no-torch"] if no_torch else []
    args += ["--device", device] if device else []
    raise SystemExit(subprocess.call(args))


if __name__ == "__main__":
    main()
