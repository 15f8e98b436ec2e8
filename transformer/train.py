"""Training a GPT on a character corpus with nanoGPT's char recipe: AdamW (betas 0.9/0.99,
weight decay 0.1 on 2-d weights only), linear warmup then cosine decay to lr/10, gradient
clipping at 1.0, periodic evaluation on fixed batches, metrics.jsonl and checkpoints."""
import dataclasses
import json
import math
import pathlib
import time

import numpy as np
from tqdm.auto import tqdm

from tinygrad_tx import backend, fused_ops, no_grad, optim

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
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

    def __post_init__(self):
        self.betas = tuple(self.betas)
        if self.min_lr is None:
            self.min_lr = self.lr / 10
        for f in ("max_iters", "eval_interval", "eval_iters", "batch_size"):
            if getattr(self, f) <= 0:
                raise ValueError(f"TrainConfig: {f} must be positive, got {getattr(self, f)}")

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


class Trainer:
    """Owns the model, optimizer, data and the RNGs; `run()` trains to max_iters, evaluating
    and checkpointing every eval_interval steps. `resume=True` continues from out_dir's
    checkpoint to the same result as an uninterrupted run."""

    def __init__(self, model_config, train_config, dataset, out_dir, resume=False, progress=True, callback=None,
                 device=None):
        self.cfg, self.data, self.out = train_config, dataset, pathlib.Path(out_dir)
        self.progress, self.callback = progress, callback
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
        if resume:
            self._resume()
        elif self.metrics_path.exists():
            self.metrics_path.unlink()

    def _resume(self):
        try:
            state, meta, optim_state = load_checkpoint(self.out)
        except CheckpointError as e:
            raise CheckpointError(f"--resume: {e}") from None
        if meta["model_config"] != self.model.config.to_dict():
            raise CheckpointError(f"--resume: the checkpoint's model config {meta['model_config']} differs "
                                  f"from the requested {self.model.config.to_dict()}")
        # everything but max_iters must match, or the resumed run is not the same run
        saved = {k: (tuple(v) if isinstance(v, list) else v) for k, v in meta["train_config"].items()}
        changed = [k for k, v in self.cfg.to_dict().items() if k != "max_iters" and saved.get(k) != v]
        if changed:
            raise CheckpointError("--resume: training settings differ from the checkpoint's: "
                                  + ", ".join(f"{k} {saved.get(k)} -> {getattr(self.cfg, k)}" for k in changed))
        self.model.load_state_dict(state)
        self.optimizer.load_state_dict(optim_state)
        self.rng.bit_generator.state = meta["batch_rng"]
        backend.set_rng_state(meta["engine_rng"])
        self.step, self.elapsed_before = meta["step"], meta["elapsed"]
        if self.metrics_path.exists():             # drop evals from the checkpoint's step on: run() redoes that one
            lines = [l for l in self.metrics_path.read_text().splitlines() if l and json.loads(l)["step"] < self.step]
            self.metrics_path.write_text("".join(l + "\n" for l in lines))

    def save(self, elapsed):
        meta = {"model_config": self.model.config.to_dict(), "train_config": self.cfg.to_dict(),
                "vocab": self.data.tokenizer.chars, "step": self.step, "elapsed": elapsed,
                "batch_rng": self.rng.bit_generator.state, "engine_rng": backend.get_rng_state()}
        save_checkpoint(self.out, self.model.state_dict(), meta, self.optimizer.state_dict())

    def evaluate(self, elapsed):
        row = {"step": self.step, "train_loss": estimate_loss(self.model, self.eval_batches["train"]),
               "val_loss": estimate_loss(self.model, self.eval_batches["val"]),
               "lr": lr_at(self.step, self.cfg), "elapsed": round(elapsed, 3)}
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        return row

    def train_step(self):
        x, y = self.data.get_batch("train", self.cfg.batch_size, self.model.config.block_size, self.rng)
        self.optimizer.lr = lr_at(self.step, self.cfg)
        _, loss = self.model(x, y)
        self.optimizer.zero_grad()
        loss.backward(leaves_only=True)          # only parameters need .grad here
        if self.cfg.grad_clip:
            optim.clip_grad_norm_(self.optimizer.params(), self.cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        return loss.item()

    def run(self):
        keep_freed_memory()
        with fused_ops():           # the training path: fused ops with hand-derived backward
            return self._run()

    def _run(self):
        start = time.perf_counter()
        elapsed = lambda: self.elapsed_before + time.perf_counter() - start   # noqa: E731
        bar = _progress(self.cfg.max_iters, self.step, self.progress)
        last = None
        while True:
            if self.step % self.cfg.eval_interval == 0 or self.step == self.cfg.max_iters:
                last = self.evaluate(elapsed())
                self.save(elapsed())
                bar.set_postfix(val_loss=f"{last['val_loss']:.4f}")
            if self.step >= self.cfg.max_iters:
                break
            loss = self.train_step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", val_loss=f"{last['val_loss']:.4f}", refresh=False)
            if self.callback:
                self.callback(self.step, loss)
        bar.close()
        return last


def _progress(total, initial, enabled):
    return tqdm(total=total, initial=initial, disable=not enabled, desc="train", unit="step", dynamic_ncols=True, mininterval=1.0)


def load_model(ckpt_dir, device=None):
    """A trained GPT and its tokenizer from a checkpoint folder (written on any device)."""
    state, meta, _ = load_checkpoint(ckpt_dir)
    model = GPT(GPTConfig(**meta["model_config"]))
    if device:
        model.to(device)
    model.load_state_dict(state)
    model.eval()
    return model, CharTokenizer(meta["vocab"])
