"""Smoke test of bench/diagnostics_overhead.py: it runs end to end and prints one paired line per
round and the median per interval. Its numbers are measured there, never asserted here."""
import pathlib
import re
import subprocess
import sys

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench"


def test_diagnostics_overhead_prints_paired_rounds():
    out = subprocess.run([sys.executable, str(BENCH / "diagnostics_overhead.py"), "--intervals", "1", "2", "--rounds", "2",
                          "--blocks", "1", "--block", "2", "--warmup", "0"],
                         capture_output=True, text=True, timeout=300, cwd=BENCH.parent)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len([l for l in lines if l.startswith("round ")]) == 2
    for n in (1, 2):
        assert re.search(rf"diagnostics every {n} step\(s\): median overhead [+-]\d+\.\d%", out.stdout), out.stdout


def test_diagnostics_overhead_rejects_a_block_that_splits_an_interval():
    out = subprocess.run([sys.executable, str(BENCH / "diagnostics_overhead.py"), "--intervals", "3", "--block", "10"],
                         capture_output=True, text=True, timeout=60, cwd=BENCH.parent)
    assert out.returncode == 2 and "--block 10 must be a multiple of every interval; not of [3]" in out.stderr
