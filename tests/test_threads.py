"""The thread policy (tinygrad_tx/threads.py): one call sets BLAS's and numba's thread counts;
TX_THREADS and --threads choose it; bad values are refused with the name of where they came from."""
import pytest
from click.testing import CliRunner

from tinygrad_tx import kernels, threads


@pytest.fixture(autouse=True)
def one_thread_after():
    yield
    threads.set_threads(1)


def blas_threads():
    from threadpoolctl import threadpool_info
    return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


@pytest.mark.parametrize("n", [1, 2])
def test_set_threads_sets_blas_and_numba(n):
    assert threads.set_threads(n) == n and threads.num_threads() == n
    assert blas_threads() == {n}
    if kernels.available():
        assert kernels._kernel_threads == min(n, kernels.numba.config.NUMBA_NUM_THREADS)


def test_default_is_tx_threads_then_blas_env_then_idle_cores(monkeypatch):
    for var in ("TX_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    assert 0 <= threads.busy_fraction() <= 1
    monkeypatch.setattr(threads, "busy_fraction", lambda: 0.0)          # a quiet machine: every core
    assert threads.default_threads() == threads.physical_cores() >= 1
    monkeypatch.setattr(threads, "busy_fraction", lambda: 1.0)          # every core busy: still one
    assert threads.default_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.default_threads() == 3
    monkeypatch.setenv("TX_THREADS", "2")
    assert threads.default_threads() == 2
    assert threads.set_threads() == 2


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_bad_tx_threads_is_refused_by_name(monkeypatch, value):
    monkeypatch.setenv("TX_THREADS", value)
    with pytest.raises(ValueError, match="TX_THREADS: the thread count must be a positive integer"):
        threads.default_threads()


def test_set_threads_refuses_zero():
    with pytest.raises(ValueError, match="set_threads"):
        threads.set_threads(0)


@pytest.mark.parametrize("command", ["train", "sample", "bench"])
def test_cli_commands_take_threads(command):
    import cli
    runner = CliRunner()
    assert "--threads" in runner.invoke(cli.main, [command, "--help"]).output
    bad = runner.invoke(cli.main, [command, "--threads", "0"])
    assert bad.exit_code == 2 and "--threads" in bad.output


def test_cli_reports_a_bad_tx_threads(monkeypatch, tmp_path):
    import cli
    monkeypatch.setenv("TX_THREADS", "many")
    out = CliRunner().invoke(cli.main, ["sample", "--ckpt", str(tmp_path)])
    assert out.exit_code != 0 and "TX_THREADS" in out.output
