"""Training a GPT on a character corpus with nanoGPT's char recipe: AdamW (betas 0.9/0.99,
weight decay 0.1 on 2-d weights only), linear warmup then cosine decay to lr/10, gradient
clipping at 1.0, periodic evaluation on fixed batches, metrics.jsonl and checkpoints."""
import contextlib
import dataclasses
import json
import math
import numbers
import os
import pathlib
import signal
import threading
import time

import numpy as np
from tqdm.auto import tqdm

from tinygrad_tx import backend, fused_ops, no_grad, optim

from .checkpoint import CheckpointError, NonFiniteState, load_checkpoint, save_checkpoint
from .diagnostics import Diagnostics
from .gpt import GPT, GPTConfig
from .memory import keep_freed_memory
from .tokenizer import CharTokenizer


@dataclasses.dataclass
class TrainConfig:
    max_iters: int = 2000
    eval_interval: int = 250
    eval_iters: int = 20
    batch_size: int = 12
    lr: float = 1e-3
    min_lr: float = None            # default lr / 10
    warmup_iters: int = 100
    weight_decay: float = 0.1
    betas: tuple = (0.9, 0.99)
    grad_clip: float = 1.0
    seed: int = 1337
    diagnostics_interval: int = 10  # RUN/diagnostics.jsonl every N steps (0: off); ~1.5% of step time at 10

    def __post_init__(self):
        self.betas = tuple(self.betas)
        if self.min_lr is None:
            self.min_lr = self.lr / 10
        for f, least in (("max_iters", 1), ("eval_interval", 1), ("eval_iters", 1), ("batch_size", 1),
                         ("warmup_iters", 0), ("seed", 0), ("diagnostics_interval", 0)):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < least:
                raise ValueError(f"TrainConfig: {f} must be an integer >= {least}, got {v!r}")
        for f in ("lr", "min_lr", "weight_decay", "grad_clip"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 <= v < math.inf:   # also refuses NaN
                raise ValueError(f"TrainConfig: {f} must be a finite number >= 0, got {v!r}")
        if len(self.betas) != 2 or not all(isinstance(b, numbers.Real) and 0 <= b < 1 for b in self.betas):
            raise ValueError(f"TrainConfig: betas must be two numbers in [0, 1), got {self.betas!r}")

    def to_dict(self):
        return dataclasses.asdict(self)


def lr_at(step, cfg):
    """Linear warmup for warmup_iters steps, then cosine decay from lr to min_lr at max_iters."""
    if step < cfg.warmup_iters:
        return cfg.lr * (step + 1) / (cfg.warmup_iters + 1)
    if step >= cfg.max_iters:
        return cfg.min_lr
    ratio = (step - cfg.warmup_iters) / max(1, cfg.max_iters - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * ratio)) * (cfg.lr - cfg.min_lr)


def make_optimizer(model, cfg):
    """Weight decay on 2-d tensors (matmul weights, embeddings) only; none on biases and norms."""
    params = model.parameters()
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=cfg.betas)


def estimate_loss(model, batches):
    """Mean loss over fixed batches, in eval mode, without recording a graph."""
    was_training = model.training
    model.eval()
    with no_grad():
        losses = [model(x, y)[1].item() for x, y in batches]
    model.train(was_training)
    return float(np.mean(losses))


class TrainingDiverged(FloatingPointError):
    """The loss or the gradient norm became NaN or inf: training stopped, nothing was saved."""


def optimizer_step(loss, optimizer, grad_clip, step, before_backward=None, before_update=None):
    """One update from a scalar loss, shared by the GPT Trainer and the reverse task: backward
    (parameters only), clip the gradients to a global norm of grad_clip (0: no clipping), step.
    A NaN/inf loss or gradient norm raises TrainingDiverged naming `step` before anything
    reaches the weights. `before_backward()` runs while the graph still exists (diagnostics);
    `before_update()` just before the weights change. Returns (loss value, gradient norm
    before clipping; None without clipping)."""
    value = loss.item()
    if not math.isfinite(value):             # stop before a NaN reaches the weights
        raise TrainingDiverged(f"the loss became {value} at step {step}")
    if before_backward:
        before_backward()
    optimizer.zero_grad()
    loss.backward(leaves_only=True)          # only parameters need .grad here
    norm = None
    if grad_clip:
        try:
            norm = optim.clip_grad_norm_(optimizer.params(), grad_clip)
        except FloatingPointError:
            raise TrainingDiverged(f"the gradient norm became non-finite at step {step}") from None
    if before_update:
        before_update()
    optimizer.step()
    return value, norm


def holds_run(out_dir):
    """Whether out_dir already holds a training run (a checkpoint or metrics)."""
    d = pathlib.Path(out_dir)
    return d.is_dir() and any((d / name).exists() for name in ("meta.json", "metrics.jsonl"))


def _strict_json(row):
    """One metrics line: strict JSON, so NaN/inf (not JSON) are written as null."""
    return json.dumps({k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in row.items()},
                      allow_nan=False)


class Trainer:
    """Owns the model, optimizer, data and the RNGs; `run()` trains to max_iters, evaluating
    and checkpointing every eval_interval steps. `resume=True` continues from out_dir's
    checkpoint to the same result as an uninterrupted run; without it, an out_dir that already
    holds a run is refused unless `overwrite=True` (the old checkpoint is then replaced by the
    first save, atomically, not deleted up front).

    Nothing is lost: a NaN/inf loss or gradient norm raises TrainingDiverged at once (the last
    good checkpoint stays); Ctrl-C (SIGINT) finishes the current step, saves a checkpoint there
    and raises KeyboardInterrupt (`interrupted_at` holds the saved step, None if nothing could
    be saved). `notes` collects remarks for the user (e.g. a dropped truncated metrics line)."""

    def __init__(self, model_config, train_config, dataset, out_dir, resume=False, progress=True, callback=None,
                 device=None, overwrite=False):
        self.cfg, self.data, self.out = train_config, dataset, pathlib.Path(out_dir)
        self.progress, self.callback = progress, callback
        self.notes, self.interrupted_at = [], None
        self._step_start, self._updating = None, False      # where the step in progress began; mid-update?
        if not resume and not overwrite and holds_run(self.out):
            raise CheckpointError(f"{self.out} already holds a training run; resume=True continues it, "
                                  "overwrite=True starts again")
        self.out.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.out / "metrics.jsonl"
        backend.manual_seed(train_config.seed)                        # parameter init + dropout
        self.model = GPT(model_config)
        if device:
            self.model.to(device)                                       # before the optimizer sees it
        self.optimizer = make_optimizer(self.model, train_config)
        self.rng = np.random.default_rng(train_config.seed)            # training batches
        eval_rng = np.random.default_rng(train_config.seed + 1)        # fixed evaluation batches
        B, T = train_config.batch_size, model_config.block_size
        self.eval_batches = {split: [dataset.get_batch(split, B, T, eval_rng) for _ in range(train_config.eval_iters)]
                             for split in ("train", "val")}
        self.step, self.elapsed_before = 0, 0.0
        self._fresh_metrics = not resume          # the first evaluation replaces metrics.jsonl
        if resume:
            self._resume()
        self.diagnostics = (Diagnostics(self.model, self.out / "diagnostics.jsonl", start_step=self.step)
                            if train_config.diagnostics_interval else None)

    def _resume(self):
        try:
            state, meta, optim_state = load_checkpoint(self.out)
            check_meta(meta, self.out / "meta.json", resume=True)
        except CheckpointError as e:
            raise CheckpointError(f"--resume: {e}") from None
        self._check_same_data(meta)                # first: another text also changes vocab_size
        # a field added since the checkpoint was written (layer_norm_eps) counts as its default
        defaults = {f.name: f.default for f in dataclasses.fields(GPTConfig) if f.default is not dataclasses.MISSING}
        diff = config_diff({**defaults, **meta["model_config"]}, self.model.config.to_dict())
        if diff:
            raise CheckpointError(f"--resume: the model config differs from the checkpoint's: {diff}")
        # everything but max_iters (and diagnostics_interval, which changes nothing) must match,
        # or the resumed run is not the same run
        saved = {k: (tuple(v) if isinstance(v, list) else v) for k, v in meta["train_config"].items()}
        diff = config_diff(saved, {k: v for k, v in self.cfg.to_dict().items()
                                   if k not in ("max_iters", "diagnostics_interval")})
        if diff:
            raise CheckpointError(f"--resume: the training settings differ from the checkpoint's: {diff}")
        _check_arrays(self.model, state, self.out / "meta.json")
        try:
            self.model.load_state_dict(state)
            self.optimizer.load_state_dict(optim_state)
            self.rng.bit_generator.state = meta["batch_rng"]
            backend.set_rng_state(meta["engine_rng"])
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise CheckpointError(f"--resume: {self.out / 'meta.json'}: cannot restore the run: {e}") from None
        self.step, self.elapsed_before = meta["step"], meta["elapsed"]
        if self.metrics_path.exists():             # drop evals from the checkpoint's step on: run() redoes that one
            self._trim_metrics()

    def _check_same_data(self, meta):
        """The corpus must be the checkpoint's: same vocabulary and (since recorded) same SHA-256."""
        vocab, chars = meta["vocab"], self.data.tokenizer.chars
        if vocab != chars:
            extra, gone = sorted(set(chars) - set(vocab)), sorted(set(vocab) - set(chars))
            few = lambda cs: repr("".join(cs[:20])) + ("..." if len(cs) > 20 else "")   # noqa: E731
            raise CheckpointError(f"--resume: this text's vocabulary differs from the checkpoint's: {len(vocab)} "
                                  f"characters there, {len(chars)} here (new: {few(extra)}, "
                                  f"missing: {few(gone)}); resume with the same --data")
        saved, now = meta.get("data", {}).get("sha256"), getattr(self.data, "sha256", None)
        if saved is None:
            self.notes.append("this checkpoint predates corpus hashes: only its vocabulary could be checked "
                              "against the text")
        elif now is not None and saved != now:
            n = meta["data"].get("num_chars")
            raise CheckpointError(f"--resume: this is not the text the checkpoint was trained on (sha256 "
                                  f"{saved[:12]}..., {n:,} characters there; {now[:12]}..., "
                                  f"{self.data.num_chars:,} here); resume with the same --data")

    def _trim_metrics(self):
        """Keep the rows before the checkpoint's step. A last line cut short by a crash
        mid-write is dropped with a note; a broken line elsewhere is an error."""
        lines = self.metrics_path.read_text().splitlines()
        rows = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                step = row["step"]
            except (json.JSONDecodeError, TypeError, KeyError):
                if i == len(lines) - 1:
                    self.notes.append(f"{self.metrics_path}: dropped a truncated last line (a crash while writing it)")
                    continue
                raise CheckpointError(f"--resume: {self.metrics_path} line {i + 1} is not a metrics row") from None
            if step < self.step:
                rows.append(_strict_json(row))
        _atomic_write_text(self.metrics_path, "".join(r + "\n" for r in rows))

    def save(self, elapsed):
        meta = {"model_config": self.model.config.to_dict(), "train_config": self.cfg.to_dict(),
                "vocab": self.data.tokenizer.chars, "step": self.step, "elapsed": elapsed,
                "batch_rng": self.rng.bit_generator.state, "engine_rng": backend.get_rng_state()}
        if getattr(self.data, "sha256", None):
            meta["data"] = {"sha256": self.data.sha256, "num_chars": self.data.num_chars}
        try:
            save_checkpoint(self.out, self.model.state_dict(), meta, self.optimizer.state_dict())
        except NonFiniteState as e:
            raise TrainingDiverged(f"the weights became non-finite by step {self.step} ({e})") from None

    def evaluate(self, elapsed):
        row = {"step": self.step, "train_loss": estimate_loss(self.model, self.eval_batches["train"]),
               "val_loss": estimate_loss(self.model, self.eval_batches["val"]),
               "lr": lr_at(self.step, self.cfg), "elapsed": round(elapsed, 3)}
        return row

    def _write_metrics(self, row):
        if self._fresh_metrics:                  # a new run (or --overwrite): replace the old file whole
            _atomic_write_text(self.metrics_path, _strict_json(row) + "\n")
            self._fresh_metrics = False
        else:
            with open(self.metrics_path, "a") as f:
                f.write(_strict_json(row) + "\n")

    def train_step(self):
        self._step_start = (self.rng.bit_generator.state, backend.get_rng_state())   # to undo a half step
        x, y = self.data.get_batch("train", self.cfg.batch_size, self.model.config.block_size, self.rng)
        self.optimizer.lr = lr_at(self.step, self.cfg)
        _, loss = self.model(x, y)
        watch = self.diagnostics is not None and self.step % self.cfg.diagnostics_interval == 0
        value, norm = optimizer_step(loss, self.optimizer, self.cfg.grad_clip, self.step,
                                     before_backward=(lambda: self.diagnostics.watch(loss)) if watch else None,
                                     before_update=self._begin_update)
        if watch:
            self.diagnostics.record(self.step, lr=self.optimizer.lr, grad_norm_before_clip=norm)
        self.step += 1
        self._step_start, self._updating = None, False
        return value

    def _begin_update(self):
        self._updating = True                    # from here until step += 1 the state is half-updated

    def run(self):
        keep_freed_memory()
        with fused_ops():           # the training path: fused ops with hand-derived backward
            return self._run()

    def _run(self):
        start = time.perf_counter()
        elapsed = lambda: self.elapsed_before + time.perf_counter() - start   # noqa: E731
        bar = _progress(self.cfg.max_iters, self.step, self.progress)
        last = None
        try:
            with _sigint_between_steps() as stop:
                while True:
                    if self.step % self.cfg.eval_interval == 0 or self.step == self.cfg.max_iters:
                        last = self.evaluate(elapsed())
                        self.save(elapsed())         # refuses NaN/inf weights: the last good one stays
                        self._write_metrics(last)
                        bar.set_postfix(val_loss=f"{last['val_loss']:.4f}")
                    if self.step >= self.cfg.max_iters:
                        break
                    loss = self.train_step()
                    bar.update(1)
                    shown = {"val_loss": f"{last['val_loss']:.4f}"} if last else {}   # none yet after a Ctrl-C resume
                    bar.set_postfix(loss=f"{loss:.4f}", **shown, refresh=False)
                    if self.callback:
                        self.callback(self.step, loss)
                    if stop.is_set():
                        raise KeyboardInterrupt
        except KeyboardInterrupt:
            bar.close()                              # ends the bar's line: later messages start on their own
            self._save_interrupted(elapsed())
            raise
        finally:
            bar.close()
        return last

    def _save_interrupted(self, elapsed):
        """Ctrl-C: save at the current step. Interrupted inside a step but before its update,
        the step is undone by restoring the RNG states it started from; during the update the
        state is torn, so the last checkpoint is kept."""
        if self._updating:
            return
        if self._step_start is not None:
            self.rng.bit_generator.state, engine_state = self._step_start
            backend.set_rng_state(engine_state)
            self._step_start = None
        try:
            self.save(elapsed)
            self.interrupted_at = self.step
        except TrainingDiverged:              # non-finite weights: the last good checkpoint stays
            pass


@contextlib.contextmanager
def _sigint_between_steps():
    """The first Ctrl-C sets a flag that the loop checks after each step, so the interrupt
    never lands inside an update; a second Ctrl-C interrupts at once. Only in the main thread
    (where Python delivers signals), and not where SIGINT is ignored."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) in (
            signal.SIG_IGN, None):
        yield stop
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        stop.set()
        signal.signal(signal.SIGINT, previous)
    signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _atomic_write_text(path, text):
    """Write a temporary file beside `path`, then rename it over `path` (all or nothing)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _progress(total, initial, enabled):
    return tqdm(total=total, initial=initial, disable=not enabled, desc="train", unit="step", dynamic_ncols=True, mininterval=1.0)


def config_diff(saved, now):
    """'field: checkpoint has X, requested Y' for each field of `now` whose value differs."""
    return "; ".join(f"{k}: checkpoint has {saved[k] if k in saved else 'nothing'}, requested {v}"
                     for k, v in now.items() if k not in saved or saved[k] != v)


_RESUME_KEYS = {"train_config": dict, "step": int, "elapsed": (int, float), "batch_rng": dict, "engine_rng": dict}


def check_meta(meta, where, resume=False):
    """Every key a GPT checkpoint needs, of the right type: model_config (a valid GPTConfig),
    vocab (distinct single characters, vocab_size of them) and, to resume, the training state.
    Raises CheckpointError naming the key."""
    def bad(what):
        raise CheckpointError(f"checkpoint: {where}: {what}")
    if not isinstance(meta, dict):
        bad("is not a JSON object")
    mc = meta.get("model_config")
    if not isinstance(mc, dict):
        bad("model_config is missing or not an object")
    fields = {f.name for f in dataclasses.fields(GPTConfig)}
    if set(mc) - fields:
        bad(f"model_config has unknown keys {sorted(set(mc) - fields)}")
    try:
        config = GPTConfig(**mc)
    except (TypeError, ValueError) as e:
        bad(f"model_config: {e}")
    vocab = meta.get("vocab")
    if not isinstance(vocab, list) or not all(isinstance(c, str) and len(c) == 1 for c in vocab):
        bad("vocab must be a list of single characters")
    if len(set(vocab)) != len(vocab):
        bad("vocab has repeated characters")
    if len(vocab) != config.vocab_size:
        bad(f"vocab has {len(vocab)} characters but model_config.vocab_size is {config.vocab_size}")
    if resume:
        if isinstance(meta.get("train_config"), dict):
            try:
                TrainConfig(**meta["train_config"])
            except (TypeError, ValueError) as e:
                bad(f"train_config: {e}")
        for key, kind in _RESUME_KEYS.items():
            if isinstance(meta.get(key), bool) or not isinstance(meta.get(key), kind):
                bad(f"{key} is missing or mistyped (got {type(meta.get(key)).__name__})")
        if meta["step"] < 0:
            bad(f"step must be >= 0, got {meta['step']}")
        if not isinstance(meta.get("files"), dict) or "optim" not in meta["files"]:
            bad("holds no optimizer state, so the run cannot be resumed")
    return config


def _check_arrays(model, state, where):
    """The checkpoint's arrays are exactly the model's parameters, with their shapes."""
    expected = model.state_dict()
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or extra:
        raise CheckpointError(f"checkpoint: {where}: the arrays do not match the model config "
                              f"(missing {missing or 'none'}, unexpected {extra or 'none'})")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape) or state[k].dtype.kind != "f":
            raise CheckpointError(f"checkpoint: {where}: {k} has shape {tuple(state[k].shape)} {state[k].dtype}, "
                                  f"the model config needs {tuple(v.shape)} float")


def load_model(ckpt_dir, device=None):
    """A trained GPT and its tokenizer from a checkpoint folder (written on any device)."""
    state, meta, _ = load_checkpoint(ckpt_dir)
    where = pathlib.Path(ckpt_dir) / "meta.json"
    model = GPT(check_meta(meta, where))
    _check_arrays(model, state, where)
    if device:
        model.to(device)
    model.load_state_dict(state)
    model.eval()
    return model, CharTokenizer(meta["vocab"])
