"""Shared test fixtures.

torch is optional: files that compare with it start with `torch = pytest.importorskip("torch")`
so they skip cleanly where it is absent, and a single test can ask for the `torch` fixture
instead. Nothing here imports torch at module level.
"""
import numpy as np
import pytest

from tinygrad_tx import backend


@pytest.fixture
def torch():
    """The torch module, or skip the test when it is not installed."""
    return pytest.importorskip("torch")


@pytest.fixture
def rng():
    """A seeded numpy generator, fresh for each test."""
    return np.random.default_rng(0)


GPU = backend.gpu_available()
# every backend, for tests parametrised over devices: GPU cases show as skipped without CuPy/CUDA
DEVICES = ["cpu", pytest.param("gpu", marks=[pytest.mark.gpu,
                                             pytest.mark.skipif(not GPU, reason="needs CuPy and a CUDA device")])]


@pytest.fixture(autouse=True)
def _restore_engine_state():
    """Tests may change the default dtype, device or the global seed: put them back afterwards
    so no test depends on the order (or the xdist worker) it runs in."""
    dtype, device = backend.default_dtype(), backend._default_device
    yield
    backend.set_default_dtype(dtype)
    backend._default_device = device
    backend.manual_seed(0)
