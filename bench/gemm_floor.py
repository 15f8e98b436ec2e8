"""The matrix products of one baby-GPT training step, alone: what BLAS costs on this machine
before any other work, numpy (OpenBLAS) vs torch (MKL), each in its own process.

    python bench/gemm_floor.py [--threads 2] [--rounds 3]

Every product of the step's forward and backward with its real shapes (the Linear layers,
the per-head q k^T and W v, the tied lm_head), each on its own operands (about 40 MB in all),
so that, as in a real step, operands come from L3 or memory rather than a warm cache.
Prints the median ms per step's worth of products for each side; compare with gpt_step.py's
whole-step numbers."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

B, T, C, H, V, L = 12, 64, 128, 4, 65, 4
N, HS = B * T, C // H


def products():
    """(batch, M, K, N) of every matrix product in one step: forward, then backward's two per
    forward product (dX = dY W^T, dW = X^T dY; for attention dA and dB of A @ B)."""
    fwd = []
    for _ in range(L):
        fwd += [(1, N, C, 3 * C),           # c_attn
                (B * H, T, HS, T),          # q k^T
                (B * H, T, T, HS),          # W v
                (1, N, C, C),               # c_proj
                (1, N, C, 4 * C),           # mlp c_fc
                (1, N, 4 * C, C)]           # mlp c_proj
    fwd.append((1, N, C, V))                # lm_head (tied wte)
    bwd = []
    for b, m, k, n in fwd:
        bwd += [(b, m, n, k),               # dA = dY B^T: (m, n) @ (n, k)
                (b, k, m, n)]               # dB = A^T dY: (k, m) @ (m, n)
    return fwd + bwd


def flops():
    return sum(2 * b * m * k * n for b, m, k, n in products())


def worker(side, threads, steps):
    if side == "torch":
        import torch
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        ops = [(torch.randn(b, m, k), torch.randn(b, k, n)) for b, m, k, n in products()]
        mm = torch.matmul
    else:
        import numpy as np
        rng = np.random.default_rng(0)
        ops = [(rng.standard_normal((b, m, k), dtype=np.float32), rng.standard_normal((b, k, n), dtype=np.float32))
               for b, m, k, n in products()]
        mm = np.matmul
    ops = [(a[0], b_[0]) if a.shape[0] == 1 else (a, b_) for a, b_ in ops]   # plain 2-d where not batched
    times = []
    for i in range(steps + 2):
        t = time.perf_counter()
        for a, b_ in ops:
            mm(a, b_)
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times[2:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--worker", choices=["numpy", "torch"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.threads, a.steps)))
        return
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads),
               MKL_NUM_THREADS=str(a.threads))
    sides = ["numpy"] + ([] if a.no_torch else ["torch"])
    res = {s: [] for s in sides}
    for _ in range(a.rounds):
        for s in sides:
            out = subprocess.run([sys.executable, __file__, "--worker", s, "--threads", str(a.threads),
                                  "--steps", str(a.steps)], env=env, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{s} worker failed:\n{out.stderr}")
            res[s].append(json.loads(out.stdout.strip().splitlines()[-1]))
    gf = flops() / 1e9
    print(f"# the {len(products())} matrix products of one baby-GPT step ({gf:.2f} GFLOP), "
          f"{a.threads} thread(s), median of {a.rounds} rounds")
    for s in sides:
        ms = statistics.median(res[s])
        print(f"{s:<6} {ms:7.1f} ms  {gf / ms * 1e3:6.1f} GFLOP/s   rounds {[round(v, 1) for v in res[s]]}")


if __name__ == "__main__":
    main()
