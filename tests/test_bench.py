"""Smoke tests of the benchmark scripts (bench/): they run end to end and print their tables.
Their numbers are measured there, never asserted here (no timed tests)."""
import pathlib
import re
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench"


def run(script, *args):
    out = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                         timeout=300, cwd=BENCH.parent)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_gpt_step_prints_paired_table():
    pytest.importorskip("torch")
    text = run("gpt_step.py", "--config", "baby", "--rounds", "2", "--steps", "1", "--warmup", "0", "--threads", "1")
    row = next(line for line in text.splitlines() if line.startswith("baby"))
    ours, theirs, ratio = (float(v) for v in row.split()[1:4])
    assert ours > 0 and theirs > 0 and ratio == pytest.approx(ours / theirs, abs=0.01)
    ratios = re.search(r"per-round ratios \[([^\]]+)\], median ([\d.]+)", text)
    assert ratios and len(ratios.group(1).split(",")) == 2


CASES = ["gelu (exact)", "gelu (tanh)", "layer_norm", "linear 128->512", "causal attention", "cross_entropy",
         "embedding", "adamw (one block)", "add (baseline)"]


def test_fused_ops_bench_covers_every_case():
    text = run("fused_ops.py", "--reps", "1", "--no-torch")
    lines = text.splitlines()[2:]
    assert [line[:18].strip() for line in lines] == CASES
    cols = [line[18:].split() for line in lines]                  # ours ms, -, -, first call ms
    assert all(float(c[0]) > 0 and c[1:3] == ["-", "-"] and float(c[3]) >= float(c[0]) * 0.5 for c in cols)


def test_fused_ops_bench_against_torch():
    pytest.importorskip("torch")
    text = run("fused_ops.py", "--reps", "1")
    rows = [line[18:].split() for line in text.splitlines()[2:]]
    assert len(rows) == len(CASES)
    assert all(float(r[1]) > 0 and float(r[2]) == pytest.approx(float(r[0]) / float(r[1]), rel=0.05, abs=0.02)
               for r in rows), rows


def test_gemm_floor_counts_the_steps_flops():
    import importlib.util
    spec = importlib.util.spec_from_file_location("gemm_floor", BENCH / "gemm_floor.py")
    floor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(floor)
    gpt_step = importlib.util.spec_from_file_location("gpt_step", BENCH / "gpt_step.py")
    step = importlib.util.module_from_spec(gpt_step)
    gpt_step.loader.exec_module(step)
    assert floor.flops() == step.step_flops(step.CONFIGS["baby"])       # the same 3.96 GFLOP
    text = run("gemm_floor.py", "--rounds", "1", "--steps", "1", "--threads", "1", "--no-torch")
    assert "75 matrix products" in text and float(text.splitlines()[1].split()[1]) > 0
