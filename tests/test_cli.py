"""The `tx` command line: version, the gradcheck table and summary, filtering, bad input."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
import tinygrad_tx
from tinygrad_tx import selfcheck

SUMMARY = re.compile(r"^(\d+)/(\d+) cases passed, (\d+) distinct ops, largest error \S+$", re.M)


def invoke(*args):
    return CliRunner().invoke(cli.main, list(args))


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"tx, version {tinygrad_tx.__version__}"


def test_gradcheck_all_cases_pass_and_are_listed():
    result = invoke("gradcheck")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name in selfcheck.CASES:
        assert any(line.split()[:1] == [name] and line.rstrip().endswith("PASS") for line in lines), name
    n = len(selfcheck.CASES)
    n_ops = len({op for op, _, _ in selfcheck.CASES.values()})
    m = SUMMARY.search(result.output)
    assert m, result.output
    assert m.groups()[:3] == (str(n), str(n), str(n_ops))


def test_gradcheck_op_filter():
    result = invoke("gradcheck", "--op", "add", "--op", "softmax")
    assert result.exit_code == 0, result.output
    rows = [line.split()[0] for line in result.output.splitlines()[1:-1]]
    assert rows == ["add", "softmax"]
    assert "2/2 cases passed, 2 distinct ops" in result.output


@pytest.mark.parametrize("bad", ["no_such_op", "ad"])
def test_gradcheck_unknown_op_is_one_line_error(bad):
    result = invoke("gradcheck", "--op", bad)
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit)          # a clean exit, not a crash
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and bad in lines[0], result.output
    assert "Traceback" not in result.output


def test_gradcheck_failure_exits_1(monkeypatch):
    fake = [{"name": "add", "op": "Add", "max_abs_err": 1e-12, "seconds": 0.001, "ok": True},
            {"name": "exp", "op": "Exp", "max_abs_err": 0.25, "seconds": 0.001, "ok": False}]
    monkeypatch.setattr(selfcheck, "run_gradchecks", lambda names=None: fake)
    result = invoke("gradcheck")
    assert result.exit_code == 1
    assert "FAIL" in result.output
    assert "1/2 cases passed, 2 distinct ops, largest error 2.5e-01" in result.output


def test_help_has_examples():
    for args in (["--help"], ["gradcheck", "--help"]):
        result = invoke(*args)
        assert result.exit_code == 0
        assert "Example" in result.output and "tx gradcheck" in result.output


TX = Path(sys.executable).parent / "tx"


@pytest.mark.skipif(not TX.exists(), reason="the `tx` console script is not installed next to this Python")
def test_installed_console_script():
    version = subprocess.run([str(TX), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.strip() == f"tx, version {tinygrad_tx.__version__}"
    check = subprocess.run([str(TX), "gradcheck", "--op", "matmul_2d"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    assert "1/1 cases passed" in check.stdout
    bad = subprocess.run([str(TX), "gradcheck", "--op", "no_such_op"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().startswith("Error:") and len(bad.stderr.strip().splitlines()) == 1
