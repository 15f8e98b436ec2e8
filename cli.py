"""`tx`: the command-line front door to tinygrad_tx.

    tx --version
    tx gradcheck [--op NAME ...] [--fused]
    tx graph PRESET [--out FILE] [--collapse N|repeats|SCOPE] [--rankdir TB|LR]
    tx graph --hf DIR --prompt TEXT [--collapse repeats]
    tx step PRESET [--all] [--out DIR]
    tx explore PRESET [--out FILE.html]
    tx why PRESET --tensor NAME [--out FILE]
    tx animate PRESET [--out FILE.gif|.svg|.mp4] [--fps N]
    tx train [--data FILE] [--out DIR] [--max-iters N] [--resume | --overwrite] [model options]
    tx sample [--ckpt DIR | --hf DIR] [--prompt TEXT] [--max-new-tokens N]
    tx attention --hf DIR --prompt TEXT --out heads.png
    tx export --ckpt RUN --out DIR
    tx seq2seq [--steps N] [--max-len N]
    tx figures --out DIR [--only NAME ...]
    tx bench [--config baby|large|both]
    tx dashboard RUN [--port N]
    tx report RUN [--out FILE.html] [--png DIR]

Installed as a console script by `pip install -e .` (see pyproject.toml). This module sits at
the top of the dependency chain (tinygrad_tx <- transformer <- viz <- cli): it may import any
of them, and none of them imports it.
"""
import contextlib
import dataclasses
import difflib
import importlib.util
import json
import math
import os
import pathlib
import shlex
import subprocess
import sys
import time

import click
import numpy as np

import tinygrad_tx
from tinygrad_tx import selfcheck
from transformer import (CheckpointError, GPTConfig, TextDataset, TrainConfig, Trainer, TrainingDiverged, causal_mask,
                         generate, load_model)
from transformer.gpt import ACTIVATIONS, NORMS, POSITIONS
from transformer.hf import HFError, load_gpt2, save_gpt2
from transformer.train import check_meta, holds_run
from transformer.reverse_task import BOS, DIGIT0, EOS, make_batch, train_reverse
from viz import examples as viz_examples
from viz import plots as viz_plots
from viz import draw_graph, explore, format_step, frame_graph, render, trace_backward
from viz import animate_backward, explain_grad, graph_nodes
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
        except tinygrad_tx.backend.DeviceError as e:      # e.g. TX_DEVICE=gpu without CuPy, in any command
            raise click.ClickException(str(e)) from None


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
    env = os.environ.get("TX_DEVICE")
    if env is not None and env not in tinygrad_tx.backend.DEVICES:
        raise OneLineUsageError(f"TX_DEVICE={env!r} is not a device; set it to "
                                f"{' or '.join(tinygrad_tx.backend.DEVICES)}, or unset it")


class OneLineUsageError(click.UsageError):
    """Bad input: print just `Error: ...` (no usage block, no traceback); exit status 2."""

    def show(self, file=None):
        click.echo(f"Error: {self.format_message()}", err=True)


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange that also refuses nan and inf: FloatRange lets nan through (every
    comparison with nan is False) and inf through an open upper end."""

    def convert(self, value, param, ctx):
        value = super().convert(value, param, ctx)
        if not math.isfinite(value):
            self.fail(f"{value} is not a finite number", param, ctx)
        return value


# the option types shared by every command: one definition each
SEED = click.IntRange(0, 2 ** 32 - 1)                  # numpy and torch seeds are unsigned 32-bit
COUNT = click.IntRange(1)
PROBABILITY = FiniteFloatRange(0, 1, max_open=True)


def _did_you_mean(name, names):
    """'did you mean a, b? ' naming up to 3 of `names` close to a mistyped `name`, else ''."""
    close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.6)
    return f"did you mean {', '.join(close)}? " if close else ""


def _check_case_names(names):
    """Every --op NAME must be a self-check case; otherwise a one-line usage error."""
    known = list(selfcheck.CASES)
    for name in names:
        if name not in selfcheck.CASES:
            raise OneLineUsageError(f"--op: unknown case {name!r}; {_did_you_mean(name, known)}"
                                    f"`tx gradcheck` lists all {len(known)} case names")


@main.command(epilog="""\b
Examples:
  tx gradcheck                         all cases
  tx gradcheck --op add --op softmax   only the cases named add and softmax
  tx gradcheck --fused                 every case composed, then again with the fused ops""")
@click.option("--op", "ops", metavar="NAME", multiple=True,
              help="Run only this case (a name from the first column); repeatable.")
@click.option("--fused", is_flag=True,
              help="Also run every case inside fused_ops(): the fused ops' hand-derived backwards.")
def gradcheck(ops, fused):
    """Check every op's backward pass against central differences.

    Each case builds a small float64 expression, computes its gradient with backward(), and
    compares it with (f(x + eps) - f(x - eps)) / (2 eps) for every input element. A case
    passes when the largest absolute difference is at most 1e-6. Exits 1 if any case fails.
    """
    _check_case_names(ops)
    rows = selfcheck.run_gradchecks(names=set(ops) or None)
    if fused:
        rows += [dict(r, name=f"{r['name']} [fused]") for r in selfcheck.run_gradchecks(names=set(ops) or None, fused=True)]

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
    """Fail early, in one line, when the GPU cannot be used (asked for by --device or $TX_DEVICE)."""
    if (device or tinygrad_tx.backend.default_device()) == "gpu":
        try:
            tinygrad_tx.backend.cupy_module()
        except tinygrad_tx.backend.DeviceError as e:
            _fail(f"{'--device gpu' if device else 'TX_DEVICE=gpu'}: {e}")


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


# `tx train`'s options are fields of the config dataclasses: field -> (click type, help). Each
# becomes --field-name with the field's default (a bool field: --name/--no-name); --resume
# inherits exactly these from the checkpoint (an option left at its default takes its value).
TRAIN_OPTIONS = {"max_iters": (COUNT, None), "eval_interval": (COUNT, None),
                 "eval_iters": (COUNT, "Batches per evaluation."), "batch_size": (COUNT, None),
                 "lr": (FiniteFloatRange(min=0, min_open=True), None), "warmup_iters": (click.IntRange(0), None),
                 "weight_decay": (FiniteFloatRange(min=0), None), "grad_clip": (FiniteFloatRange(min=0), None),
                 "seed": (SEED, None)}
MODEL_OPTIONS = {"block_size": (COUNT, None), "n_layer": (COUNT, None), "n_head": (COUNT, None),
                 "n_embd": (COUNT, None), "dropout": (PROBABILITY, None), "bias": (None, None),
                 "norm": (click.Choice(NORMS), None), "pos": (click.Choice(POSITIONS), None),
                 "activation": (click.Choice(ACTIVATIONS), None), "tie_weights": (None, None),
                 "causal": (None, "--no-causal removes the mask (to watch the future leak).")}
DIAGNOSTICS_OPTION = {"diagnostics_interval": (       # not inherited by --resume: it changes nothing in the run
    click.IntRange(0), "Record gradients, update ratios, activations and attention entropy to OUT/diagnostics.jsonl "
                       "every N steps (0: off); see tx dashboard / tx report.")}


def _config_options(config, table):
    """A decorator adding one click option per `table` field of the dataclass `config`, in
    the table's order, each defaulting to the field's default (shown in --help)."""
    defaults = {f.name: f.default for f in dataclasses.fields(config)}

    def decorate(command):
        for field, (kind, text) in reversed(table.items()):     # the option applied last is listed first
            flag = "--" + field.replace("_", "-")
            decl = f"{flag}/--no-{flag[2:]}" if isinstance(defaults[field], bool) else flag
            command = click.option(decl, field, default=defaults[field], show_default=True, type=kind,
                                   help=text)(command)
        return command
    return decorate


@main.command(epilog="""\b
Examples:
  tx train --max-iters 200 --out runs/tiny          a quick run on the shipped Shakespeare
  tx train --data my.txt --n-layer 2 --n-embd 64    your own text, a smaller model
  tx train --out runs/tiny --max-iters 400 --resume continue an interrupted run""")
@click.option("--data", type=click.Path(dir_okay=False), default=None,
              help="Text file to train on (default: the shipped tinyshakespeare).")
@click.option("--out", "out_dir", default="out", show_default=True, metavar="DIR",
              help="Folder for checkpoint and metrics.jsonl.")
@_config_options(TrainConfig, TRAIN_OPTIONS)
@click.option("--resume", is_flag=True,
              help="Continue from the checkpoint in --out; options you leave out take the checkpoint's values.")
@click.option("--overwrite", is_flag=True, help="Start again in an --out that already holds a run (replacing it).")
@_config_options(TrainConfig, DIAGNOSTICS_OPTION)
@_config_options(GPTConfig, MODEL_OPTIONS)
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default=None,
              help="Where arrays live (default: $TX_DEVICE or cpu); gpu needs CuPy and a CUDA device.")
@click.option("--threads", default=None, type=click.IntRange(1),
              help="BLAS and compiled-kernel threads (default: $TX_THREADS, else one per idle physical core).")
def train(data, out_dir, resume, overwrite, diagnostics_interval, progress, device, threads, **options):
    """Train a character-level GPT (nanoGPT's char recipe), printing the final val_loss.

    Evaluates train/val loss every --eval-interval steps on fixed batches, appends them to
    OUT/metrics.jsonl and writes a checkpoint (OUT/meta.json + arrays) that `tx sample` reads.
    An OUT that already holds a run is refused unless --resume or --overwrite. Ctrl-C saves a
    checkpoint at the current step; a NaN/inf loss stops the run (the last good checkpoint stays).
    """
    if resume and overwrite:
        raise OneLineUsageError("--resume continues the run in --out, --overwrite starts it again: pass one")
    if not resume and not overwrite and holds_run(out_dir):
        step = _checkpoint_step(out_dir)
        at = f" (checkpoint at step {step})" if step is not None else ""
        _fail(f"--out {out_dir} already holds a training run{at}; pass --resume to continue it or --overwrite "
              "to start again")
    if resume:
        options = _resume_options(click.get_current_context(), pathlib.Path(out_dir), options)
    block_size = options["block_size"]
    _set_threads(threads)
    trainer = None
    try:
        dataset = TextDataset.from_file(data)
        shortest = min(len(dataset.train), len(dataset.val))
        if block_size >= shortest:      # each example is block_size + 1 consecutive characters
            _fail(f"--block-size {block_size} is too long for this text: its shorter split has {shortest:,} "
                  f"characters and an example needs block_size + 1; use a smaller --block-size or more text")
        mconf = GPTConfig(vocab_size=dataset.tokenizer.vocab_size, **{k: options[k] for k in MODEL_OPTIONS})
        tconf = TrainConfig(diagnostics_interval=diagnostics_interval, **{k: options[k] for k in TRAIN_OPTIONS})
        out = _writable_dir(out_dir)
        _check_device(device)
        trainer = Trainer(mconf, tconf, dataset, out, resume=resume, progress=progress, device=device,
                          overwrite=overwrite)
        for note in trainer.notes:
            click.echo(f"note: {note}", err=True)
        click.echo(f"training {trainer.model.num_parameters():,} parameters on {len(dataset.train):,} "
                   f"characters; step {trainer.step} -> {options['max_iters']}", err=True)
        last = trainer.run()
    except UnicodeDecodeError as e:
        _fail(f"--data {data}: not UTF-8 text ({e.reason} at byte {e.start})")
    except TrainingDiverged as e:
        step = _checkpoint_step(out_dir)
        _fail(f"training stopped: {e}; the last good checkpoint (step {step}) is kept in {out_dir}; "
              "try a smaller --lr or a --grad-clip")
    except (OSError, ValueError, CheckpointError, tinygrad_tx.backend.DeviceError) as e:
        _fail(str(e))
    except MemoryError:
        _fail(f"out of memory: the attention scores alone hold batch_size x n_head x block_size^2 = "
              f"{options['batch_size'] * options['n_head'] * block_size ** 2:,} numbers per layer; use a smaller --block-size or --batch-size")
    except KeyboardInterrupt:
        _interrupted(trainer, out_dir, data, device)
    click.echo(f"step {last['step']}  train_loss {last['train_loss']:.4f}  val_loss {last['val_loss']:.4f}  "
               f"({last['elapsed']:.1f} s)")


def _checkpoint_step(out_dir):
    """The step of the checkpoint in out_dir, or None (no readable meta.json)."""
    try:
        step = json.loads((pathlib.Path(out_dir) / "meta.json").read_text())["step"]
        return step if isinstance(step, int) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _resume_options(ctx, out, options):
    """--resume: an option left at its default takes the checkpoint's value; one passed on
    the command line must equal it (except --max-iters, which extends the run)."""
    where = out / "meta.json"
    try:
        meta = json.loads(where.read_text())
        check_meta(meta, where, resume=True)
    except (OSError, ValueError):
        return options                            # the Trainer says what is missing or broken
    except CheckpointError as e:
        _fail(f"--resume: {e}")
    saved = {**meta["model_config"], **meta["train_config"]}
    params = {p.name: p for p in ctx.command.params}
    options = dict(options)
    for name in (*TRAIN_OPTIONS, *MODEL_OPTIONS):
        if name not in saved:
            continue
        if ctx.get_parameter_source(name) in (click.core.ParameterSource.DEFAULT,
                                              click.core.ParameterSource.DEFAULT_MAP):
            options[name] = saved[name]
        elif name != "max_iters" and options[name] != saved[name]:
            show = lambda v: _flag(params[name], v)            # noqa: E731
            raise OneLineUsageError(f"--resume: {params[name].opts[0]}: the checkpoint has {show(saved[name])}, "
                                    f"you passed {show(options[name])}; leave the option out to keep the "
                                    f"checkpoint's, or start a new run in another --out")
    return options


def _flag(param, value):
    """How a value is spelled on the command line: --bias / --no-bias for on/off flags."""
    if param.secondary_opts and isinstance(value, bool):
        return param.opts[0] if value else param.secondary_opts[0]
    return str(value)


def _interrupted(trainer, out_dir, data, device=None):
    """Ctrl-C: say where the run stopped and print the command that continues it on a line of
    its own (the progress bar was closed first); exit status 130, as for SIGINT."""
    command = "tx train --out " + shlex.quote(str(out_dir)) + " --resume"
    command += f" --data {shlex.quote(str(data))}" if data else ""
    command += f" --device {device}" if device else ""
    if trainer is None:
        click.echo("\ninterrupted before training started; nothing was written", err=True)
    elif trainer.interrupted_at is not None:
        click.echo(f"\ninterrupted: saved a checkpoint at step {trainer.interrupted_at} in {out_dir}. "
                   "To continue:", err=True)
        click.echo(command, err=True)
    else:
        click.echo(f"\ninterrupted at step {trainer.step}; the last checkpoint (step {_checkpoint_step(out_dir)}) "
                   "is kept. To continue from it:", err=True)
        click.echo(command, err=True)
    sys.exit(130)


# ---- Hugging Face GPT-2 folders: --hf DIR (transformer/hf.py)
HF_HELP = "A Hugging Face GPT-2 folder (config.json + model.safetensors [+ tokenizer.json]) instead of --ckpt."
IDS_HELP = "Comma-separated token ids instead of --prompt (for a folder without tokenizer.json)."


def _load_hf(folder, device=None):
    try:
        _check_device(device)
        model, tok = load_gpt2(folder)
    except (HFError, OSError) as e:
        _fail(str(e))
    return model.to(device) if device else model, tok


def _hf_ids(folder, tok, prompt, ids, vocab_size, min_len=1):
    """The prompt's token ids: --ids I,J,.. or --prompt through the folder's tokenizer.json."""
    if ids is not None:
        try:
            out = [int(i) for i in ids.replace(" ", "").split(",") if i]
        except ValueError:
            raise OneLineUsageError(f"--ids must be comma-separated integers, got {ids!r}") from None
        bad = [i for i in out if not 0 <= i < vocab_size]
        if bad:
            raise OneLineUsageError(f"--ids: {bad} outside the vocabulary 0..{vocab_size - 1}")
    elif tok is None:
        raise OneLineUsageError(f"{folder} has no tokenizer.json: pass the prompt as token ids, --ids 464,3290,...")
    else:
        try:
            out = tok.encode("\n" if prompt is None else prompt)
        except ValueError as e:
            _fail(f"--prompt: {e}")
    if len(out) < min_len:
        raise OneLineUsageError(f"the prompt has {len(out)} token(s); this needs at least {min_len}")
    return out


def _module_boxes(model):
    """One box per top-level module and per block, as the gpt preset draws."""
    return ["wte", "wpe", *(f"h.{i}" for i in range(model.config.n_layer)), "ln_f", "lm_head"]


def _decode(tok, ids):
    return tok.decode(ids) if tok is not None else ",".join(str(int(i)) for i in ids)


def _short(text, n=60):
    """A prompt for a title: its repr, cut to about n characters."""
    return repr(text) if len(text) <= n else repr(text[:n - 3]) + "..."


def _sample_hf(folder, prompt, ids, max_new_tokens, temperature, top_k, seed, no_cache, device):
    if folder is None:
        raise OneLineUsageError("--ids needs --hf DIR")
    model, tok = _load_hf(folder, device)
    idx = _hf_ids(folder, tok, prompt, ids, model.config.vocab_size)
    if len(idx) > model.config.block_size:
        click.echo(f"note: the prompt has {len(idx)} tokens, more than the model's block size "
                   f"{model.config.block_size}; only the last {model.config.block_size} condition the sample", err=True)
    out = generate(model, np.array([idx]), max_new_tokens, temperature=temperature, top_k=top_k,
                   rng=np.random.default_rng(seed), use_cache=not no_cache)
    click.echo(_decode(tok, out[0]))


def _hf_loss(folder, prompt, ids):
    """The model's next-token loss on the prompt (tokens 0..T-2 predict 1..T-1), after backward,
    every op composed from primitives (no fused ops) so the graph shows each step."""
    model, tok = _load_hf(folder)
    idx = _hf_ids(folder, tok, prompt, ids, model.config.vocab_size, min_len=2)
    if len(idx) > model.config.block_size + 1:
        raise OneLineUsageError(f"the prompt has {len(idx)} tokens; at most block_size + 1 = "
                                f"{model.config.block_size + 1} fit")
    x = np.array([idx])
    with tinygrad_tx.fused_ops(False):
        _, loss = model(x[:, :-1], x[:, 1:])                  # (1, T-1) inputs, next-token targets
        loss.named("loss").backward()
    return loss, model, tok, idx


@main.command(epilog="""\b
Examples:
  tx sample --ckpt out --prompt "ROMEO:" --max-new-tokens 200
  tx sample --ckpt out --temperature 0          greedy: always the most likely character
  tx sample --hf gpt2 --prompt "Hello" --max-new-tokens 20   a Hugging Face GPT-2 folder""")
@click.option("--ckpt", "ckpt_dir", default="out", show_default=True, metavar="DIR",
              help="Checkpoint folder written by tx train (its --out).")
@click.option("--prompt", default="\n", show_default="a newline", help="Text to continue.")
@click.option("--max-new-tokens", default=200, show_default=True, type=click.IntRange(0))
@click.option("--temperature", default=0.8, show_default=True, type=FiniteFloatRange(min=0),
              help="0 means greedy (argmax).")
@click.option("--top-k", default=None, type=COUNT, help="Sample only among the k most likely.")
@click.option("--seed", default=1337, show_default=True, type=SEED)
@click.option("--no-cache", is_flag=True, help="Recompute the whole context every step (no KV cache).")
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default=None,
              help="Where arrays live (default: $TX_DEVICE or cpu); gpu needs CuPy and a CUDA device.")
@click.option("--hf", "hf_dir", default=None, metavar="DIR", help=HF_HELP)
@click.option("--ids", default=None, metavar="I,J,..", help=IDS_HELP)
@click.option("--threads", default=None, type=click.IntRange(1),
              help="BLAS and compiled-kernel threads (default: $TX_THREADS, else one per idle physical core).")
def sample(ckpt_dir, prompt, max_new_tokens, temperature, top_k, seed, no_cache, device, hf_dir, ids, threads):
    """Generate text from a trained GPT checkpoint (or a Hugging Face GPT-2 folder: --hf)."""
    _set_threads(threads)
    if hf_dir is not None or ids is not None:
        return _sample_hf(hf_dir, prompt, ids, max_new_tokens, temperature, top_k, seed, no_cache, device)
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
    # stream: the prompt, then each character as soon as it is sampled (click.echo flushes)
    click.echo(prompt, nl=False)
    generate(model, np.array([ids]), max_new_tokens, temperature=temperature, top_k=top_k,
             rng=np.random.default_rng(seed), use_cache=not no_cache,
             on_token=lambda new: click.echo(tok.decode(new), nl=False))
    click.echo("")


@main.command(epilog="""\b
Examples:
  tx seq2seq                         train on reversing digit strings, report held-out accuracy
  tx seq2seq --steps 600 --max-len 5     learns the task in seconds: 100% of held-out strings""")
@click.option("--steps", default=1500, show_default=True, type=COUNT)
@click.option("--batch-size", default=64, show_default=True, type=COUNT)
@click.option("--max-len", default=8, show_default=True, type=click.IntRange(1, 30))
@click.option("--seed", default=0, show_default=True, type=SEED)
@click.option("--progress/--no-progress", default=True)
def seq2seq(steps, batch_size, max_len, seed, progress):
    """Train the encoder-decoder transformer to reverse digit strings and report exact-match
    accuracy on strings it never saw (greedy decoding). Prints a few of them as
    `input -> predicted (expected) ok/wrong`."""
    _check_device(None)
    model, result = train_reverse(steps=steps, batch_size=batch_size, max_len=max_len, seed=seed, progress=progress)
    src, _, tgt = make_batch(np.random.default_rng(seed + 2), 5, 1, max_len, held_out=True)
    pred = model.greedy_decode(src, BOS, max_len=tgt.shape[1], eos_id=EOS)
    for s, p, t in zip(src, pred, tgt):
        got, want = _digits(p), _digits(t)
        click.echo(f"  {_digits(s):>{max_len}} -> {got:<{max_len}} ({want}) {'ok' if got == want else 'wrong'}")
    click.echo(f"final train_loss {result['train_loss']:.4f}  held-out exact_match {result['exact_match']:.3f} "
               f"({result['exact_match']:.1%} of 500 strings never trained on)")


def _digits(tokens):
    """The digits of a token row, up to its first non-digit (EOS or padding)."""
    out = []
    for t in tokens:
        if int(t) < DIGIT0:
            break
        out.append(str(int(t) - DIGIT0))
    return "".join(out)


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
        raise OneLineUsageError(f"unknown preset {name!r}; {_did_you_mean(name, presets)}"
                                f"valid names: {', '.join(presets)}")


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
  tx graph gpt --collapse 0                 every node, no limit
  tx graph --hf gpt2 --prompt "Hello there" --collapse repeats   a Hugging Face GPT-2's backward""")
@click.argument("preset", required=False)
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
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of the preset's numbers.")
@click.option("--hf", "hf_dir", default=None, metavar="DIR",
              help="Instead of PRESET: a Hugging Face GPT-2 folder, its next-token loss on --prompt (default: one box per module).")
@click.option("--prompt", default=None, help="With --hf: the text (at least 2 tokens).")
@click.option("--ids", default=None, metavar="I,J,..", help="With --hf: " + IDS_HELP)
def graph_cmd(preset, out, fmt, collapse, values, max_nodes, rankdir, seed, hf_dir, prompt, ids):
    """Draw the computation graph of PRESET after backward: one box per tensor (shape, values,
    gradient in red), one node per op, modules grouped by scope. PRESET is one of the examples
    in viz/examples.py (neuron, mlp, attention, layernorm, gpt, ...); or, with --hf DIR, a
    Hugging Face GPT-2's next-token loss on --prompt."""
    if (preset is None) == (hf_dir is None):
        raise OneLineUsageError("tx graph needs a PRESET or --hf DIR, exactly one (see: tx graph --help)")
    if hf_dir is None and (prompt is not None or ids is not None):
        raise OneLineUsageError("--prompt and --ids go with --hf DIR")
    suffix = pathlib.Path(out).suffix.lower().lstrip(".") if out else ""
    if out is None:
        fmt = fmt or "svg"
        out = f"{preset or pathlib.Path(hf_dir).name}.{fmt}"
    elif suffix in GRAPH_FORMATS:
        if fmt and fmt != suffix:
            raise OneLineUsageError(f"--format {fmt} does not match the extension of --out {out!r}")
        fmt = suffix
    elif fmt:
        out = f"{out}.{fmt}"
    else:
        raise OneLineUsageError(f"--out {out!r}: cannot tell the format; end it with "
                                f"{', '.join('.' + f for f in GRAPH_FORMATS)} or pass --format")
    if max_nodes is None:
        max_nodes = None if collapse == 0 else 300
    if hf_dir is not None:
        loss, model, tok, idx = _hf_loss(hf_dir, prompt, ids)
        title = (f"{hf_dir}: next-token loss {loss.item():.4f} on {_short(_decode(tok, idx))} "
                 f"({len(idx) - 1} predictions, {model.num_parameters():,} parameters)")
        with _viz_errors(max_nodes_flag=True):
            path = render(draw_graph(loss, title=title, max_nodes=max_nodes, rankdir=rankdir or "TB",
                                     collapse=_module_boxes(model) if collapse is None else (collapse or None),
                                     show_values=values), out)
        click.echo(f"wrote {path}")
        return
    _check_preset(preset)
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
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of the preset's numbers.")
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
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of the preset's numbers.")
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

# ---- viz: why / animate
@main.command("why", epilog="""\b
Examples:
  tx why attention --tensor scores             why part of dL/dscores is zero (the causal mask)
  tx why attention --tensor scores --out w.svg  also draw the graph with the path in red""")
@click.argument("preset")
@click.option("--tensor", "name", required=True, metavar="NAME",
              help="The tensor to explain, by its name in the graph (of several, the one nearest the loss).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Also draw the graph with the path highlighted (.svg, .png, .pdf or .dot).")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of the preset's numbers.")
def why_cmd(preset, name, out, seed):
    """Explain why a tensor's gradient in PRESET is zero, tiny or missing: the cause (masked,
    saturated, dead_relu, ignored_target, cancelled, not_on_path, ...), the entries, and the
    ops from the loss down to it with the responsible one marked."""
    loss = _preset_loss(preset, seed, backward=True)
    named = [t for t in graph_nodes(loss) if t.name == name]
    if not named:
        names = list(dict.fromkeys(t.name for t in graph_nodes(loss) if t.name))
        raise OneLineUsageError(f"--tensor: no tensor named {name!r} in preset {preset}; "
                                f"{_did_you_mean(name, names)}its names: {', '.join(names)}")
    with _viz_errors():
        why = explain_grad(named[-1], loss)
        click.echo(str(why))
        if out:
            opts = viz_examples.draw_options(preset)
            click.echo(f"wrote {render(loss, out, explain=why, **opts)}")


@main.command("animate", epilog="""\b
Examples:
  tx animate attention --out backprop.gif      one frame per backward op, 2 frames a second
  tx animate neuron --out neuron.svg --fps 1   an animated SVG (plays inline in a web page)
  tx animate mlp --out mlp.mp4                 needs ffmpeg""")
@click.argument("preset")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="File to write: .gif, .svg (animated) or .mp4 (default: PRESET.gif).")
@click.option("--fps", default=2.0, show_default=True, type=click.FloatRange(0, 60, min_open=True),
              help="Frames per second.")
@click.option("--collapse", type=CollapseParam(), default=None, metavar="N|repeats|SCOPE", help=COLLAPSE_HELP)
@click.option("--rankdir", type=click.Choice(["TB", "LR"]), default=None, help=RANKDIR_HELP)
@click.option("--values", type=click.Choice(["auto", "all", "stats"]), default="auto", show_default=True,
              help="Values in the boxes: every element of small tensors (auto), up to 1024 (all), statistics (stats).")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of the preset's numbers.")
def animate_cmd(preset, out, fps, collapse, rankdir, values, seed):
    """Write the backward pass of PRESET as an animation: one frame per op (the current op in
    red, the gradient arriving at its output shown, finished ops green), plus a first and a
    last frame."""
    out = out or f"{preset}.gif"
    if pathlib.Path(out).suffix.lower() not in (".gif", ".svg", ".mp4"):
        raise OneLineUsageError(f"--out {out!r}: end the name with .gif, .svg or .mp4")
    loss = _preset_loss(preset, seed, backward=False)
    opts = viz_examples.draw_options(preset, **_given(collapse, rankdir))
    with _viz_errors():
        path = animate_backward(loss, out, fps=fps, collapse=opts.get("collapse"), rankdir=opts["rankdir"],
                                values=values, max_nodes=None if collapse == 0 else 300)
    click.echo(f"wrote {path}")


# ---- docs: figures
@main.command("figures", epilog="""\b
Examples:
  tx figures --out docs/figures                  every figure of docs/backprop.md (about a minute)
  tx figures --out /tmp/f --only attention.svg   just one; repeat --only for more""")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Folder to write the figures into (created if missing). Required.")
@click.option("--only", "names", multiple=True, metavar="NAME",
              help="Write only this figure, named by its file (attention.svg, scaling.png, ...); repeatable.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of every figure's numbers.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def figures_cmd(out_dir, names, seed, progress):
    """Write the figures of docs/backprop.md: computation graphs as SVG, plots as PNG, and the
    leakage samples as text. Two tiny models are trained on the way (about a minute on two
    cores). The same seed writes the same files."""
    if out_dir is None:
        raise OneLineUsageError("--out DIR is required: the folder to write into, e.g. tx figures --out docs/figures")
    for name in names:
        if name not in FIGURES:
            raise OneLineUsageError(f"--only: unknown figure {name!r}; {_did_you_mean(name, FIGURES)}"
                                    f"valid names: {', '.join(FIGURES)}")
    out = _writable_dir(out_dir)
    start = time.perf_counter()
    with _viz_errors():
        paths = make_figures(out, names=list(dict.fromkeys(names)) or None, progress=progress, seed=seed)
    for path in paths:
        click.echo(f"wrote {path}")
    click.echo(f"{len(paths)} files in {time.perf_counter() - start:.1f} s")


# ---- Hugging Face GPT-2: attention / export
@main.command("attention", epilog="""\b
Examples:
  tx attention --hf gpt2 --prompt "The cat sat on the mat" --out heads.png
  tx attention --hf gpt2 --ids 464,3797,3332 --out heads.svg
  tx attention --hf gpt2 --prompt "The cat sat on the mat" --layer 5 --out layer5.png""")
@click.option("--hf", "hf_dir", required=True, metavar="DIR", help="A Hugging Face GPT-2 folder.")
@click.option("--prompt", default=None, help="The text whose attention to draw.")
@click.option("--ids", default=None, metavar="I,J,..", help=IDS_HELP)
@click.option("--out", default="heads.png", show_default=True, type=click.Path(dir_okay=False),
              help="Image to write (.png or .svg).")
@click.option("--layer", default=None, type=click.IntRange(0), metavar="N",
              help="Draw only this layer's heads, larger (default: every layer).")
def attention_cmd(hf_dir, prompt, ids, out, layer):
    """Draw every head's attention weights (one row per layer, one column per head) of a
    Hugging Face GPT-2 on a prompt: row = query token, column = key token; the masked future hatched."""
    if pathlib.Path(out).suffix.lower() not in (".png", ".svg"):
        raise OneLineUsageError(f"--out {out!r}: end it with .png or .svg")
    model, tok = _load_hf(hf_dir)
    idx = _hf_ids(hf_dir, tok, prompt, ids, model.config.vocab_size)
    if len(idx) > model.config.block_size:
        raise OneLineUsageError(f"the prompt has {len(idx)} tokens, more than the block size {model.config.block_size}")
    if layer is not None and layer >= model.config.n_layer:
        raise OneLineUsageError(f"--layer {layer}: the model has layers 0..{model.config.n_layer - 1}")
    labels = [_decode(tok, [i]).replace(" ", "␣").replace("\n", "↵") for i in idx]
    title = f"{hf_dir}: attention on {_short(_decode(tok, idx))}"
    with tinygrad_tx.fused_ops():
        if layer is None:
            fig = viz_plots.attention_grid(model, np.array(idx), labels, title=title)
        else:
            with tinygrad_tx.no_grad():
                model(np.array([idx]))                            # eval mode: the weights the model uses
            fig = viz_plots.attention_heatmaps(model.h[layer].attn.weights, labels, mask=causal_mask(len(idx)),
                                               title=f"{title}, layer {layer}")
    with _viz_errors():
        path = viz_plots.save(fig, out, dpi=100)
    click.echo(f"wrote {path}")


@main.command("export", epilog="""\b
Examples:
  tx export --ckpt out --out out-hf        then: GPT2LMHeadModel.from_pretrained("out-hf")""")
@click.option("--ckpt", "ckpt_dir", default="out", show_default=True, metavar="RUN",
              help="Checkpoint folder written by tx train (its --out).")
@click.option("--out", "out_dir", required=True, metavar="DIR", help="Folder to write the Hugging Face layout into.")
def export_cmd(ckpt_dir, out_dir):
    """Turn a `tx train` checkpoint into a Hugging Face GPT-2 folder: config.json,
    model.safetensors, and the character vocabulary as tokenizer.json (needs the `hf` extra)."""
    try:
        model, tok = load_model(ckpt_dir)
    except (CheckpointError, ValueError, OSError) as e:
        _fail(str(e))
    _writable_dir(out_dir)
    try:
        folder = save_gpt2(model, out_dir, tokenizer=tok)
    except (HFError, OSError) as e:
        _fail(str(e))
    click.echo(f"wrote {folder}: config.json, model.safetensors, tokenizer.json "
               f"({model.num_parameters():,} parameters)")


# ---- bench
@main.command(epilog="""\b
Examples:
  tx bench --config baby                 our training step vs PyTorch eager, 3 alternating rounds
  tx bench --config baby --generate      also 200-token generation with and without the KV cache
  tx bench --device gpu                  on the GPU (CuPy) against torch CUDA""")
@click.option("--config", type=click.Choice(["baby", "large", "both"]), default="baby", show_default=True)
@click.option("--rounds", default=3, show_default=True, type=COUNT)
@click.option("--steps", default=None, type=COUNT, help="Timed steps per process.")
@click.option("--threads", default=None, type=COUNT,
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
    if not no_torch and importlib.util.find_spec("torch") is None:
        _fail("tx bench compares with PyTorch, which is not installed here: pip install torch, "
              "or pass --no-torch to time tinygrad_tx alone")
    _check_device(device)
    args = [sys.executable, str(script), "--config", config, "--rounds", str(rounds)]
    args += ["--steps", str(steps)] if steps else []
    args += ["--threads", str(threads)] if threads else []
    args += ["--generate"] if generate else []
    args += ["--no-torch"] if no_torch else []
    args += ["--device", device] if device else []
    raise SystemExit(subprocess.call(args))


# ---- diagnostics: dashboard / report
def _run_dir(run):
    p = pathlib.Path(run)
    if not p.is_dir():
        _fail(f"run folder {p} does not exist (the --out of tx train)")
    return p


@main.command(epilog="""\b
Examples:
  tx train --out runs/tiny & tx dashboard runs/tiny     watch a run while it trains
  tx dashboard runs/tiny --port 8123""")
@click.argument("run", metavar="RUN")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port on 127.0.0.1 (0: any free one).")
def dashboard(run, port):
    """Serve a live page of RUN/diagnostics.jsonl on http://127.0.0.1:PORT/.

    Loss, gradient norm per parameter over steps, update ratios with the 1e-3 line, attention
    entropy per layer and head, saturated non-linearity inputs; it polls every second, so it
    follows `tx train` while it writes. Ctrl-C stops it."""
    from viz.dashboard import serve
    try:
        srv = serve(_run_dir(run), port)
    except OSError as e:
        _fail(f"cannot listen on 127.0.0.1:{port}: {e.strerror or e}")
    click.echo(f"dashboard of {run} on {srv.url} (Ctrl-C stops it)")
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


@main.command(epilog="""\b
Examples:
  tx report runs/tiny --out report.html      one self-contained HTML file
  tx report runs/tiny --png figures/         the same views as PNGs""")
@click.argument("run", metavar="RUN")
@click.option("--out", default=None, metavar="FILE.html", help="Write the dashboard with the data embedded (default: RUN/report.html).")
@click.option("--png", "png_dir", default=None, metavar="DIR", help="Write one matplotlib PNG per view into DIR instead.")
def report(run, out, png_dir):
    """Write RUN's diagnostics as one HTML file, or as PNGs with --png."""
    from viz.dashboard import write_pngs, write_report
    run_dir = _run_dir(run)
    try:
        if png_dir:
            for path in write_pngs(run_dir, _writable_dir(png_dir)):
                click.echo(f"wrote {path}")
        if out or not png_dir:
            click.echo(f"wrote {write_report(run_dir, out or run_dir / 'report.html')}")
    except (OSError, ValueError) as e:
        _fail(str(e))


if __name__ == "__main__":
    main()
