"""What numba's compiling costs: a fresh process with an empty kernel cache, then a second
process with that cache filled (numba's cache=True), then the demo's `tx train` both ways.

    python bench/compile_time.py

Each measurement is its own process with NUMBA_CACHE_DIR pointing at a new temporary folder
(so the in-tree __pycache__ of tinygrad_tx/kernels is not used). "first step" is the baby GPT's
first fused training step (forward, backward, AdamW), which compiles or loads every kernel the
step uses; "later step" is the median of the next five."""
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = r"""
import json, statistics, sys, time
t0 = time.perf_counter()
import numpy as np
import tinygrad_tx as tx
from transformer import GPT, GPTConfig, TrainConfig
from transformer.train import make_optimizer
t_import = time.perf_counter() - t0
tx.manual_seed(0)
model = GPT(GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128))
opt = make_optimizer(model, TrainConfig())
x = np.random.default_rng(0).integers(0, 65, (12, 64))
times = []
for _ in range(6):
    t = time.perf_counter()
    with tx.fused_ops():
        _, loss = model(x, x)
        opt.zero_grad()
        loss.backward(leaves_only=True)
    opt.step()
    times.append(time.perf_counter() - t)
print(json.dumps({"import_s": t_import, "first_step_s": times[0], "later_step_s": statistics.median(times[1:]),
                  "start_to_first_step_s": time.perf_counter() - t0 - sum(times[1:])}))
"""

DEMO = ["--n-layer", "2", "--n-head", "4", "--n-embd", "64", "--block-size", "64", "--batch-size", "16",
        "--lr", "2e-3", "--max-iters", "20", "--eval-interval", "20", "--eval-iters", "2", "--no-progress"]


def run(cmd, cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    if out.returncode:
        sys.exit(f"{cmd[:3]} failed:\n{out.stderr}")
    return wall, out.stdout


def main():
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as cache:
        for label in ("empty cache", "cache filled"):
            wall, out = run([sys.executable, "-c", PROBE], cache)
            r = json.loads(out.strip().splitlines()[-1])
            print(f"baby GPT step, {label:<12}: import {r['import_s']:.2f} s, first step {r['first_step_s']:.2f} s, "
                  f"later step {1e3 * r['later_step_s']:.0f} ms; process start to first step done "
                  f"{r['start_to_first_step_s']:.2f} s (wall {wall:.2f} s)")
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out_dir:
        for label in ("empty cache", "cache filled"):
            wall, _ = run([sys.executable, os.path.join(ROOT, "cli.py"), "train", "--out", os.path.join(out_dir, label[:5])] + DEMO
, cache)
            print(f"tx train --max-iters 20 (make demo's model), {label:<12}: {wall:.1f} s wall")


if __name__ == "__main__":
    main()
