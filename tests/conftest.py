"""Shared test fixtures.

torch is optional: files that compare with it start with `torch = pytest.importorskip("torch")`
so they skip cleanly where it is absent, and a single test can ask for the `torch` fixture
instead. Nothing here imports torch at module level.
"""
import numpy as np
import pytest

import cli
from tinygrad_tx import Tensor, backend, scope


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


def tiny_preset(seed=0, backward=True):
    """A preset in the shape of viz.examples.PRESETS: sum(tanh(x * w)) inside scope "layer"."""
    x = Tensor(np.arange(4.0).reshape(2, 2) + seed, requires_grad=True, name="x")
    w = Tensor([0.5, -1.0], requires_grad=True, name="w")
    with scope("layer"):
        loss = (x * w).tanh().sum()
    loss.name = "loss"
    if backward:
        loss.backward()
    return loss


@pytest.fixture
def presets(monkeypatch):
    """The CLI's preset table replaced by {"tiny": tiny_preset}, with no drawing defaults."""
    monkeypatch.setattr(cli.viz_examples, "PRESETS", {"tiny": tiny_preset}, raising=False)
    monkeypatch.setattr(cli.viz_examples, "DRAW_DEFAULTS", {})
