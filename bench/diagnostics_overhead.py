"""What the Diagnostics recorder costs at the baby recipe (nanoGPT's CPU baby GPT: 4 layers,
4 heads, C = 128, T = 64, batch 12): ms per training step with diagnostics off and with
`diagnostics_interval` N, each variant in its own process, variants alternating round by
round, and the overhead reported as the median over rounds of the paired ratio
(variant / off - 1): on a shared machine only ratios taken side by side mean anything.
Within a process the steps are timed in blocks of --block consecutive steps (a multiple of
every interval, so each block holds its share of records) and the median block is taken, so
a burst of load from another process spoils one block, not the whole measurement. The clock
is the process's CPU time (time.process_time, with one BLAS thread): what the steps cost this
process, which other processes sharing the cores change far less than they change wall time.

    python bench/diagnostics_overhead.py                       # intervals 1 and 10, 5 rounds
    python bench/diagnostics_overhead.py --intervals 1 2 10 --rounds 7 --blocks 8
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def worker(interval, blocks, block, warmup):
    sys.path.insert(0, ROOT)
    from tinygrad_tx import fused_ops
    from transformer import GPTConfig, TextDataset, TrainConfig, Trainer
    from transformer.memory import keep_freed_memory
    data = TextDataset.from_file(None)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(GPTConfig(vocab_size=data.tokenizer.vocab_size, n_layer=4, n_head=4, n_embd=128, block_size=64),
                          TrainConfig(max_iters=10 ** 6, eval_iters=1, batch_size=12, diagnostics_interval=interval),
                          data, out, progress=False)
        keep_freed_memory()
        with fused_ops():
            for _ in range(warmup):
                trainer.train_step()
            times = []
            for _ in range(blocks):
                start = time.process_time()
                for _ in range(block):
                    trainer.train_step()
                times.append((time.process_time() - start) * 1000 / block)
    return {"interval": interval, "ms_per_step": statistics.median(times)}


def run_worker(interval, blocks, block, warmup, threads):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", str(interval), "--blocks", str(blocks), "--block", str(block),
                          "--warmup", str(warmup)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["ms_per_step"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--intervals", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--blocks", type=int, default=6, help="timed blocks per process")
    ap.add_argument("--block", type=int, default=10, help="steps per block (a multiple of every interval)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker is not None:
        print(json.dumps(worker(a.worker, a.blocks, a.block, a.warmup)))
        return
    bad = [n for n in a.intervals if n <= 0 or a.block % n]
    if bad:
        ap.error(f"--block {a.block} must be a multiple of every interval; not of {bad}")
    print(f"# baby recipe, CPU ms per step, {a.blocks} blocks of {a.block} timed steps per process, {a.threads} BLAS thread(s), {a.rounds} rounds, "
          f"{time.strftime('%Y-%m-%d')}")
    ratios = {n: [] for n in a.intervals}
    for r in range(a.rounds):
        order = [0] + a.intervals if r % 2 == 0 else a.intervals[::-1] + [0]      # alternate who goes first
        ms = {n: run_worker(n, a.blocks, a.block, a.warmup, a.threads) for n in order}
        for n in a.intervals:
            ratios[n].append(ms[n] / ms[0])
        print(f"round {r + 1}: off {ms[0]:.1f} ms/step; " + "; ".join(f"every {n}: {ms[n]:.1f} ms ({ms[n] / ms[0] - 1:+.1%})"
                                                               for n in a.intervals), flush=True)
    for n in a.intervals:
        print(f"diagnostics every {n} step(s): median overhead {statistics.median(ratios[n]) - 1:+.1%} "
              f"(rounds {', '.join(f'{x - 1:+.1%}' for x in ratios[n])})")


if __name__ == "__main__":
    main()
