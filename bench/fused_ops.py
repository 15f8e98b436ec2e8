"""Forward + backward of each fused op at the baby GPT's sizes: tinygrad_tx vs PyTorch eager.

    OPENBLAS_NUM_THREADS=1 python bench/fused_ops.py [--reps 200] [--threads 1]

--threads N: BLAS, numba and torch threads. The last column is each case's first call in that
process (compiling or loading the numba kernels it uses). Each side runs in its own process (see gpt_step.py for why); each case is timed as the best
of 5 batches of --reps calls (best-of, not median: this measures the kernels, and the VM's
noise only ever adds time). Shapes: B=12, T=64, C=128, H=4, hs=32, MLP width 512, float32; the
upstream gradient is a fixed random array of the output's shape."""
import argparse
import json
import os
import subprocess
import sys
import time

B, T, C, H = 12, 64, 128, 4
HS = C // H


def best_of(fn, reps, batches=5):
    """(first call, best per-call time) in ms: the first call includes compiling (or loading
    from numba's cache) the kernels it uses."""
    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    for _ in range(2):
        fn()
    best = float("inf")
    for _ in range(batches):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t) / reps)
    return first * 1e3, best * 1e3


def cases_ours():
    import numpy as np
    import tinygrad_tx as tx
    import tinygrad_tx.functional as F
    from transformer.attention import scaled_dot_product_attention
    from transformer.masks import causal_mask
    try:
        from tinygrad_tx import threads
        from transformer.memory import keep_freed_memory
        threads.set_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    except ImportError:                          # an older commit: OPENBLAS_NUM_THREADS only
        keep_freed_memory = tx.backend.keep_freed_memory
    keep_freed_memory()
    rng = np.random.default_rng(0)

    def t(*shape):
        return tx.Tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)
    x4, x1 = t(B, T, 4 * C), t(B, T, C)
    w, b = t(C), t(C)
    W, Wb = t(C, 4 * C), t(4 * C)
    q, k, v = t(B, H, T, HS), t(B, H, T, HS), t(B, H, T, HS)
    logits, targets = t(B * T, 65), rng.integers(0, 65, B * T)
    mask = causal_mask(T)
    wte, ids = t(65, C), rng.integers(0, 65, (B, T))
    params = [t(C, 4 * C), t(4 * C, C), t(C, 3 * C), t(C, C)]          # one block's matrices
    for p in params:
        p.grad = rng.standard_normal(p.shape).astype(np.float32)
    opt = tx.optim.AdamW(params, lr=1e-3, weight_decay=0.1)

    grads = {}

    def fb(f):          # backward from a fixed random upstream gradient, as in training
        def run():
            y = f()
            if y.shape not in grads:
                grads[y.shape] = rng.standard_normal(y.shape).astype(np.float32)
            y.backward(grads[y.shape], leaves_only=True)
        return run

    def fused(cases):     # the training path: fused ops with hand-derived backward
        def wrap(fn):
            def run():
                with tx.fused_ops():
                    fn()
            return run
        return {name: wrap(fn) for name, fn in cases.items()}
    return fused({
            "gelu (exact)": fb(lambda: x4.gelu()),
            "gelu (tanh)": fb(lambda: x4.gelu("tanh")),
            "layer_norm": fb(lambda: F.layer_norm(x1, w, b)),
            "linear 128->512": fb(lambda: F.linear(x1, W, Wb)),
            "causal attention": fb(lambda: scaled_dot_product_attention(q, k, v, mask)[0]),
            "cross_entropy": lambda: F.cross_entropy(logits, targets).backward(),
            "embedding": fb(lambda: F.embedding(wte, ids)),
            "adamw (one block)": opt.step,
            "add (baseline)": fb(lambda: x1 + x1),
    })


def cases_torch():
    import torch
    import torch.nn.functional as F
    torch.manual_seed(0)

    def t(*shape):
        return torch.randn(*shape, requires_grad=True)
    x4, x1 = t(B, T, 4 * C), t(B, T, C)
    w, b = t(C), t(C)
    W, Wb = t(4 * C, C), t(4 * C)
    q, k, v = t(B, H, T, HS), t(B, H, T, HS), t(B, H, T, HS)
    logits, targets = t(B * T, 65), torch.randint(0, 65, (B * T,))
    blocked = torch.ones(T, T, dtype=torch.bool).triu(1)
    wte, ids = t(65, C), torch.randint(0, 65, (B, T))
    params = [t(C, 4 * C), t(4 * C, C), t(C, 3 * C), t(C, C)]
    for p in params:
        p.grad = torch.randn(p.shape)
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.1)

    def attention():       # the same math as ours, spelled out (not the fused sdpa kernel)
        s = (q @ k.transpose(-1, -2)) * HS ** -0.5
        return s.masked_fill(blocked, float("-inf")).softmax(-1) @ v

    grads = {}

    def fb(f):
        def run():
            y = f()
            if y.shape not in grads:
                grads[y.shape] = torch.randn(y.shape)
            y.backward(grads[y.shape])
        return run
    return {
        "gelu (exact)": fb(lambda: F.gelu(x4)),
        "gelu (tanh)": fb(lambda: F.gelu(x4, approximate="tanh")),
        "layer_norm": fb(lambda: F.layer_norm(x1, (C,), w, b)),
        "linear 128->512": fb(lambda: F.linear(x1, W, Wb)),
        "causal attention": fb(attention),
        "cross_entropy": lambda: F.cross_entropy(logits, targets).backward(),
        "embedding": fb(lambda: F.embedding(ids, wte)),
        "adamw (one block)": opt.step,
        "add (baseline)": fb(lambda: x1 + x1),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--side", choices=["ours", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--no-torch", action="store_true")
    a = ap.parse_args()
    if a.side:
        if a.side == "torch":
            import torch
            torch.set_num_threads(a.threads)
        cases = cases_ours() if a.side == "ours" else cases_torch()
        print(json.dumps({name: best_of(fn, a.reps) for name, fn in cases.items()}))
        return
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")

    def side(name):
        out = subprocess.run([sys.executable, __file__, "--side", name, "--reps", str(a.reps),
                              "--threads", str(a.threads)], env=env, capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"{name} side failed:\n{out.stderr}")
        return json.loads(out.stdout.strip().splitlines()[-1])
    ours = side("ours")
    theirs = {} if a.no_torch else side("torch")
    print(f"# forward + backward, baby GPT sizes, float32, {a.threads} thread(s), best of 5 x {a.reps}")
    print(f"{'op':<18} {'ours ms':>8} {'torch ms':>9} {'ratio':>6} {'ours first call ms':>19}")
    for name, (first, ms) in ours.items():
        tm = theirs.get(name, (None, None))[1]
        print(f"{name:<18} {ms:8.3f} " + (f"{tm:9.3f} {ms / tm:6.2f}" if tm else f"{'-':>9} {'-':>6}")
              + f" {first:19.1f}")


if __name__ == "__main__":
    main()
