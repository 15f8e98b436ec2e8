"""GPT-2 small (124M parameters) in tinygrad_tx vs PyTorch/transformers: forward + backward of the
next-token loss on one prompt of --tokens tokens (default 64), time and peak memory.

A randomly initialised GPT2LMHeadModel with GPT-2 small's config (12 layers, 12 heads, C = 768,
V = 50257, 1024 positions, gelu_new, tied head; dropout off) is written once with save_pretrained;
then each side loads that folder in its OWN process (ours with transformer.hf.load_gpt2, torch
with from_pretrained), alternating ours, torch, ours, torch, ... for --rounds rounds. Each process
reports the load time, the median of its timed forward+backward passes after warm-up, and memory:
RSS after loading and the process's peak RSS (everything: interpreter, libraries, weights, grads).

    python bench/gpt2_small.py                         # 2 rounds, 3 timed passes each
    python bench/gpt2_small.py --rounds 3 --threads 1 --tokens 128
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

CONFIGS = {
    "gpt2-small": dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12),
    "tiny": dict(vocab_size=500, n_positions=128, n_embd=32, n_layer=2, n_head=2),   # the smoke test's
}


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def batch(tokens, vocab_size):
    import numpy as np
    ids = np.random.default_rng(0).integers(0, vocab_size, (1, tokens + 1))
    return ids[:, :-1], ids[:, 1:]                                    # (1, T) inputs, next-token targets


# ----------------------------------------------------------------------------- workers
def worker_setup(folder, config):
    """Write the random GPT-2 folder (transformers' init: N(0, 0.02), LayerNorms 1 and 0)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    cfg = GPT2Config(**CONFIGS[config], resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    GPT2LMHeadModel(cfg).save_pretrained(folder)
    return {}


def worker_ours(folder, tokens, steps, warmup):
    import tinygrad_tx as tx
    from transformer.hf import load_gpt2
    from transformer.memory import keep_freed_memory
    keep_freed_memory()
    t0 = time.perf_counter()
    model, _ = load_gpt2(folder)
    load_s = time.perf_counter() - t0
    model.train()                                          # dropout is 0: the same numbers as eval
    x, y = batch(tokens, model.config.vocab_size)
    after_load = rss_mb()
    times, loss = [], None
    with tx.fused_ops():                                   # the training path
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            model.zero_grad()
            _, loss = model(x, y)
            loss.backward(leaves_only=True)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return {"load_s": load_s, "ms": 1e3 * statistics.median(times), "loss": loss.item(),
            "params": model.num_parameters(), "rss_after_load": after_load, "peak": peak_rss_mb()}


def worker_torch(folder, tokens, steps, warmup):
    import torch
    import torch.nn.functional as F
    from transformers import GPT2LMHeadModel
    t0 = time.perf_counter()
    model = GPT2LMHeadModel.from_pretrained(folder, dtype=torch.float32).train()
    load_s = time.perf_counter() - t0
    x, y = (torch.from_numpy(a) for a in batch(tokens, model.config.vocab_size))
    after_load = rss_mb()
    times, loss = [], None
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        logits = model(input_ids=x).logits                              # (1, T, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return {"load_s": load_s, "ms": 1e3 * statistics.median(times), "loss": loss.item(),
            "params": sum(p.numel() for p in model.parameters()), "rss_after_load": after_load, "peak": peak_rss_mb()}


# ----------------------------------------------------------------------------- driver
def run_worker(side, args, folder):
    env = dict(os.environ)
    if args.threads:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(args.threads)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", side, "--folder", folder, "--config", args.config,
           "--tokens", str(args.tokens), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{side} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=sorted(CONFIGS), default="gpt2-small")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3, help="timed forward+backward passes per process")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None, help="BLAS/torch threads (default: all cores)")
    ap.add_argument("--worker", choices=["setup", "ours", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        fn = {"setup": lambda: worker_setup(args.folder, args.config),
              "ours": lambda: worker_ours(args.folder, args.tokens, args.steps, args.warmup),
              "torch": lambda: worker_torch(args.folder, args.tokens, args.steps, args.warmup)}[args.worker]
        print(json.dumps(fn()))
        return
    with tempfile.TemporaryDirectory(prefix="gpt2-small-") as folder:
        run_worker("setup", args, folder)
        rows = {"ours": [], "torch": []}
        for _ in range(args.rounds):
            for side in ("ours", "torch"):
                rows[side].append(run_worker(side, args, folder))
    med = {s: {k: statistics.median(r[k] for r in rs) for k in ("load_s", "ms", "rss_after_load", "peak")}
           for s, rs in rows.items()}
    print(f"{args.config} ({rows['ours'][0]['params']:,} parameters), forward + backward on {args.tokens} tokens, "
          f"{args.rounds} rounds x {args.steps} passes, threads {args.threads or 'all'}")
    print(f"{'side':<6} {'load s':>7} {'fwd+bwd ms':>11} {'RSS after load MB':>18} {'peak RSS MB':>12} {'loss':>8}")
    for s in ("ours", "torch"):
        m = med[s]
        print(f"{s:<6} {m['load_s']:>7.2f} {m['ms']:>11.1f} {m['rss_after_load']:>18.0f} {m['peak']:>12.0f} "
              f"{rows[s][-1]['loss']:>8.4f}")
    ratios = [o["ms"] / t["ms"] for o, t in zip(rows["ours"], rows["torch"])]
    print(f"ours / torch: time {med['ours']['ms'] / med['torch']['ms']:.2f} (per-round ratios "
          f"[{', '.join(f'{r:.2f}' for r in ratios)}], median {statistics.median(ratios):.2f}), "
          f"peak memory {med['ours']['peak'] / med['torch']['peak']:.2f}")


if __name__ == "__main__":
    main()
