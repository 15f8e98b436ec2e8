"""Smoke test of bench/gpt2_small.py on its tiny config: both sides load the same folder, run,
and agree on the loss (the numbers themselves are measured there, never asserted here)."""
import pathlib
import re
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench"


def test_gpt2_bench_prints_a_paired_table():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    out = subprocess.run([sys.executable, str(BENCH / "gpt2_small.py"), "--config", "tiny", "--rounds", "1",
                          "--steps", "1", "--warmup", "0", "--tokens", "16", "--threads", "1"],
                         capture_output=True, text=True, timeout=300, cwd=BENCH.parent)
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines() if line.split()[:1] in (["ours"], ["torch"]) and len(line.split()) == 6}
    assert set(rows) == {"ours", "torch"}
    assert all(float(v) > 0 for r in rows.values() for v in r[1:4])          # ms, RSS, peak
    assert abs(float(rows["ours"][-1]) - float(rows["torch"][-1])) < 1e-3    # the same model, the same loss
    assert re.search(r"ours / torch: time [\d.]+ .* peak memory [\d.]+", out.stdout)
