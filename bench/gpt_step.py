"""Time one GPT training step (forward, loss, backward, AdamW step): tinygrad_tx vs PyTorch eager.

Each side runs in its OWN process (inside one process OpenBLAS's and torch's thread pools
contend and torch's time roughly doubles), alternating ours, torch, ours, torch, ... for
--rounds rounds; each process reports the median of its timed steps after warm-up, and the
table shows the median over rounds.

    python bench/gpt_step.py                       # baby and large configs, 3 rounds
    python bench/gpt_step.py --config baby --rounds 5 --threads 2
    python bench/gpt_step.py --generate            # also 200-token generation, with/without KV cache
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = {
    # nanoGPT's CPU "baby GPT" (shakespeare_char with the CPU overrides)
    "baby": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, vocab_size=65),
    "large": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=16, vocab_size=65),
}


def step_flops(c):
    """Matmul FLOPs of one training step: 2*M*K*N per forward product, and backward does two
    products of the same size per forward one (dX and dW), so a step is 3x the forward."""
    BT, C, T, V = c["batch_size"] * c["block_size"], c["n_embd"], c["block_size"], c["vocab_size"]
    per_layer = (2 * BT * C * 3 * C            # c_attn (q|k|v)
                 + 2 * 2 * BT * T * C          # q @ k^T and weights @ v, all heads together
                 + 2 * BT * C * C              # c_proj
                 + 2 * 2 * BT * C * 4 * C)     # mlp c_fc and c_proj
    return 3 * (c["n_layer"] * per_layer + 2 * BT * C * V)


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------------- workers
def worker_ours(c, steps, warmup, gen, device="cpu", variant=(), threads=None):
    """variant: switches for ablations ("composed": no fused ops, "no-malloc": glibc defaults,
    "all-grads": keep every intermediate .grad, "no-numba": the fused ops' xp formulation
    instead of the compiled kernels). Written to also run against older commits of
    the engine (features it lacks are skipped), for before/after tables."""
    import contextlib
    import numpy as np
    import tinygrad_tx as tx
    from transformer import GPT, GPTConfig, TrainConfig, generate
    from transformer.train import make_optimizer
    if "no-malloc" not in variant:
        try:
            from transformer.memory import keep_freed_memory
        except ImportError:                                 # older commits: in the backend
            keep_freed_memory = getattr(tx.backend, "keep_freed_memory", lambda: None)
        keep_freed_memory()
    if hasattr(tx.backend, "set_default_device"):
        tx.backend.set_default_device(device)
    fused = getattr(tx, "fused_ops", None)
    def mode():
        return fused() if fused is not None and "composed" not in variant else contextlib.nullcontext()
    leaves_only = "all-grads" not in variant
    try:
        from tinygrad_tx import threads as tx_threads      # BLAS and numba threads (older commits: env only)
        threads = tx_threads.set_threads(threads)
    except ImportError:
        pass
    tx.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=c["vocab_size"], block_size=c["block_size"], n_layer=c["n_layer"],
                          n_head=c["n_head"], n_embd=c["n_embd"]))
    opt = make_optimizer(model, TrainConfig())
    rng = np.random.default_rng(0)
    x = rng.integers(0, c["vocab_size"], (c["batch_size"], c["block_size"]))
    y = rng.integers(0, c["vocab_size"], (c["batch_size"], c["block_size"]))
    with mode():                # load (or compile) the kernels first: their code is not step memory
        _, loss = model(x[:1], y[:1])
        loss.backward()
        opt.zero_grad()
        del loss
    base = rss_mb()
    times = []
    with mode():
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            _, loss = model(x, y)
            opt.zero_grad()
            loss.backward(leaves_only=leaves_only)
            opt.step()
            loss.item()
            del loss
            times.append(time.perf_counter() - t0)
    out = {"ms": 1e3 * statistics.median(times[warmup:]), "peak_rss_mb": peak_rss_mb(), "base_rss_mb": base,
           "first_step_s": times[0]}
    out["threads"] = threads
    out["compile_s"] = max(0.0, times[0] - statistics.median(times[warmup:]))   # AdamW's kernel's first use, first-touch memory
    if gen:
        prompt = x[:1, :1]
        for cache in (True, False):
            t0 = time.perf_counter()
            generate(model, prompt, 200, temperature=1.0, rng=np.random.default_rng(0), use_cache=cache)
            out[f"gen_{'cache' if cache else 'nocache'}_s"] = time.perf_counter() - t0
    return out


def worker_torch(c, steps, warmup, threads, device="cpu"):
    import torch
    import torch.nn as nn
    from torch.nn import functional as F
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    C, H = c["n_embd"], c["n_head"]

    class Block(nn.Module):        # nanoGPT's block: pre-norm, fused q|k|v, causal SDPA, GELU
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
            self.mlp = nn.Sequential(nn.Linear(C, 4 * C), nn.GELU(), nn.Linear(4 * C, C))

        def forward(self, x):
            B, T, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(c["vocab_size"], C), nn.Embedding(c["block_size"], C)
            self.h = nn.ModuleList(Block() for _ in range(c["n_layer"]))
            self.ln_f = nn.LayerNorm(C)

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
            for b in self.h:
                x = b(x)
            logits = self.ln_f(x) @ self.wte.weight.T            # tied lm_head
            return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    dev = "cuda" if device == "gpu" else "cpu"
    model = GPT().to(dev)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.99))
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, c["vocab_size"], (c["batch_size"], c["block_size"]), generator=g)
    y = torch.randint(0, c["vocab_size"], (c["batch_size"], c["block_size"]), generator=g)
    x, y = x.to(dev), y.to(dev)
    base = rss_mb()
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
        times.append(time.perf_counter() - t0)
    return {"ms": 1e3 * statistics.median(times[warmup:]), "peak_rss_mb": peak_rss_mb(), "base_rss_mb": base}


# ----------------------------------------------------------------------------- orchestration
def run_worker(side, config, steps, warmup, threads, gen=False, device="cpu", variant=()):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), TX_THREADS=str(threads))
    if "no-numba" in variant:
        env["TX_NO_NUMBA"] = "1"
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", side, "--config", config, "--steps", str(steps),
           "--warmup", str(warmup), "--threads", str(threads), "--device", device] + (["--generate"] if gen else []) + [f"--variant={v}" for v in variant]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if res.returncode != 0:
        return {"error": (res.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", choices=["baby", "large", "both"], default="both")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None, help="timed steps per process (default 20 baby, 5 large)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None,
                    help="each side's threads (default: $TX_THREADS, else one per idle physical core)")
    ap.add_argument("--generate", action="store_true", help="also time generating 200 tokens (ours)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="gpu: CuPy for ours, CUDA for torch")
    ap.add_argument("--variant", action="append", default=[], choices=["composed", "no-malloc", "all-grads", "no-numba"],
                    help="ablation of our side (repeatable): composed ops, default malloc, keep all grads, "
                         "numpy instead of the compiled kernels")
    ap.add_argument("--worker", choices=["ours", "torch"], help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.threads is None and a.worker != "ours":              # ours: the worker applies the policy itself
        from tinygrad_tx.threads import default_threads
        a.threads = default_threads()
    if a.worker:
        c = CONFIGS[a.config]
        res = (worker_ours(c, a.steps, a.warmup, a.generate, a.device, a.variant, a.threads) if a.worker == "ours"
               else worker_torch(c, a.steps, a.warmup, a.threads, a.device))
        print(json.dumps(res))
        return 0
    configs = ["baby", "large"] if a.config == "both" else [a.config]
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{a.threads} threads each side, device {a.device}, variant {a.variant or 'default'}, "
          f"{time.strftime('%Y-%m-%d')}, "
          f"python {platform.python_version()}")
    rows = []
    for name in configs:
        steps = a.steps or (20 if name == "baby" else 5)
        ours, theirs = [], []
        for r in range(a.rounds):
            ours.append(run_worker("ours", name, steps, a.warmup, a.threads, a.generate and r == 0, a.device,
                                   a.variant))
            if not a.no_torch:
                theirs.append(run_worker("torch", name, steps, a.warmup, a.threads, device=a.device))
        rows.append((name, ours, theirs))
    print_table(rows)
    return 0


def _med(results, key):
    vals = [r[key] for r in results if key in r]
    return statistics.median(vals) if vals else float("nan")


def print_table(rows):
    print(f"{'config':<6} {'ours ms':>8} {'torch ms':>8} {'ratio':>6} {'ours GF/s':>9} {'torch GF/s':>10} "
          f"{'ours RSS MB':>11} {'torch RSS MB':>12} {'step mem ours/torch':>20}")
    for name, ours, theirs in rows:
        for r in ours + theirs:
            if "error" in r:
                print(f"  {name}: a worker failed: {r['error']}")
        gf = step_flops(CONFIGS[name]) / 1e9
        o_ms, t_ms = _med(ours, "ms"), _med(theirs, "ms")
        o_rss, t_rss = _med(ours, "peak_rss_mb"), _med(theirs, "peak_rss_mb")
        o_step = o_rss - _med(ours, "base_rss_mb")
        t_step = t_rss - _med(theirs, "base_rss_mb")
        print(f"{name:<6} {o_ms:>8.1f} {t_ms:>8.1f} {o_ms / t_ms:>6.2f} {gf / o_ms * 1e3:>9.1f} {gf / t_ms * 1e3:>10.1f} "
              f"{o_rss:>11.0f} {t_rss:>12.0f} {o_step:>8.0f}/{t_step:<6.0f}={o_step / t_step:>4.2f}")
        compile_s = [round(r["compile_s"], 2) for r in ours if "compile_s" in r]
        if compile_s:
            print(f"       first step minus a timed one (first use of AdamW's kernel, first touch of memory), s: {compile_s}")
        gen = [r for r in ours if "gen_cache_s" in r]
        if gen:
            print(f"       generate 200 tokens: {gen[0]['gen_cache_s']:.2f} s with KV cache, "
                  f"{gen[0]['gen_nocache_s']:.2f} s without")
        print(f"       counted FLOPs per step {gf:.2f} GFLOP; per-round ms ours "
              f"{[round(r.get('ms', float('nan')), 1) for r in ours]} torch {[round(r.get('ms', float('nan')), 1) for r in theirs]}")
        pairs = [o["ms"] / t["ms"] for o, t in zip(ours, theirs) if "ms" in o and "ms" in t]
        if pairs:     # each round's two processes ran back to back: their ratio cancels the VM's drift
            print(f"       per-round ratios {[round(q, 2) for q in pairs]}, median {statistics.median(pairs):.2f}")


if __name__ == "__main__":
    sys.exit(main())
