"""Where the time of one baby-GPT training step goes, per op class, forward and backward.

    OPENBLAS_NUM_THREADS=1 python bench/profile_step.py [--steps 10] [--composed] [--config large]

Wraps every op's forward/backward with a timer (a few microseconds of overhead per call),
runs warm-up steps, then prints ms/step per (op, direction), the forward/backward/AdamW split,
and what is left for Python (module calls, graph bookkeeping, the backward driver)."""
import argparse
import collections
import contextlib
import time

import numpy as np

import tinygrad_tx as tx
from tinygrad_tx.ops import ALL_OPS, fused
from transformer import GPT, GPTConfig, TrainConfig
from transformer.train import make_optimizer

from gpt_step import CONFIGS

FUSED = (fused.Linear, fused.Softmax, fused.LogSoftmax, fused.AttentionWeights, fused.SelfAttention, fused.CrossEntropy,
         fused.LayerNorm, fused.Gelu, fused.Embedding)


def instrument(classes, stats):
    for cls in classes:
        fwd, bwd = cls.forward, cls.backward

        def timed_fwd(self, *a, _f=fwd, _c=cls, **k):
            t = time.perf_counter()
            out = _f(self, *a, **k)
            stats[(_c.__name__, "fwd")] += time.perf_counter() - t
            return out

        def timed_bwd(self, g, _f=bwd, _c=cls):
            t = time.perf_counter()
            out = _f(self, g)
            stats[(_c.__name__, "bwd")] += time.perf_counter() - t
            return out
        cls.forward, cls.backward = timed_fwd, timed_bwd


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--composed", action="store_true", help="profile the composed (unfused) path")
    ap.add_argument("--config", choices=sorted(CONFIGS), default="baby", help="model sizes (as gpt_step.py)")
    a = ap.parse_args()
    stats, parts = collections.defaultdict(float), collections.defaultdict(float)
    instrument(list(ALL_OPS) + list(FUSED), stats)
    from transformer.memory import keep_freed_memory
    keep_freed_memory()
    tx.manual_seed(0)
    c = CONFIGS[a.config]
    model = GPT(GPTConfig(vocab_size=c["vocab_size"], block_size=c["block_size"], n_layer=c["n_layer"],
                          n_head=c["n_head"], n_embd=c["n_embd"]))
    opt = make_optimizer(model, TrainConfig())
    rng = np.random.default_rng(0)
    shape = (c["batch_size"], c["block_size"])
    x, y = rng.integers(0, c["vocab_size"], shape), rng.integers(0, c["vocab_size"], shape)

    def step():
        t0 = time.perf_counter()
        _, loss = model(x, y)
        t1 = time.perf_counter()
        opt.zero_grad()
        loss.backward(leaves_only=True)
        t2 = time.perf_counter()
        opt.step()
        loss.item()
        parts["forward"] += t1 - t0
        parts["backward"] += t2 - t1
        parts["adamw"] += time.perf_counter() - t2

    with (contextlib.nullcontext() if a.composed else tx.fused_ops()):
        for _ in range(3):
            step()
        stats.clear()
        parts.clear()
        start = time.perf_counter()
        for _ in range(a.steps):
            step()
        total = (time.perf_counter() - start) / a.steps * 1e3
    ops = sum(stats.values()) / a.steps * 1e3
    print(f"{total:.1f} ms/step: " + ", ".join(f"{k} {v / a.steps * 1e3:.1f}" for k, v in parts.items()))
    print(f"{'op':<17}{'dir':<5}{'ms/step':>8}")
    for (name, d), v in sorted(stats.items(), key=lambda kv: -kv[1]):
        if v / a.steps * 1e3 >= 0.05:
            print(f"{name:<17}{d:<5}{v / a.steps * 1e3:>8.2f}")
    print(f"all ops {ops:.1f} ms; the rest (Python: modules, graph bookkeeping, AdamW loop) "
          f"{total - ops:.1f} ms")


if __name__ == "__main__":
    main()
