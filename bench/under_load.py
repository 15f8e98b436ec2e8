"""Training step time on a quiet machine and with one competing CPU-bound process, paired.

    python bench/under_load.py [--rounds 3] [--steps 20] [--threads N]

Each round runs the baby GPT's training step (bench/gpt_step.py's worker, its own process)
quiet, then again while another process spins on one core (`while True: pass`), then the
other way round in the next round (so slow spells of the VM fall on both alike). The ratio
loaded / quiet of each round is paired. Without --threads each worker takes the default
policy of tinygrad_tx/threads.py (which leaves out busy cores); --threads N fixes the count,
to show what a fixed count does under load."""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def worker(steps, threads):
    env = {k: v for k, v in os.environ.items() if k not in ("TX_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                              "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, os.path.join(ROOT, "bench", "gpt_step.py"), "--worker", "ours", "--config", "baby",
           "--steps", str(steps), "--warmup", "3"] + (["--threads", str(threads)] if threads else [])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        sys.exit(f"worker failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def loaded(steps, threads):
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        return worker(steps, threads)
    finally:
        spinner.kill()
        spinner.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="fixed thread count (default: the policy's)")
    a = ap.parse_args()
    quiet, busy = [], []
    for r in range(a.rounds):
        first, second = (worker, loaded) if r % 2 == 0 else (loaded, worker)
        x, y = first(a.steps, a.threads), second(a.steps, a.threads)
        q, b = (x, y) if first is worker else (y, x)
        quiet.append(q["ms"])
        busy.append(b["ms"])
        print(f"round {r + 1}: quiet {q['ms']:.1f} ms ({q.get('threads', '?')} threads), "
              f"one competing process {b['ms']:.1f} ms ({b.get('threads', '?')} threads), ratio {b['ms'] / q['ms']:.2f}",
              flush=True)
    ratios = [b / q for q, b in zip(quiet, busy)]
    print(f"threads {a.threads or 'default policy'}: quiet {statistics.median(quiet):.1f} ms/step, "
          f"loaded {statistics.median(busy):.1f} ms/step; paired ratios {[round(x, 2) for x in ratios]}, "
          f"median {statistics.median(ratios):.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
