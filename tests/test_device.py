"""The array backend seam and devices. CPU behaviour is tested everywhere; the GPU cases run
only where CuPy and a CUDA device exist (`make test-gpu`) and are skipped cleanly elsewhere."""
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import tinygrad_tx as tx
from tinygrad_tx import Tensor, backend, fused_ops
from tinygrad_tx.autograd import toposort
from tinygrad_tx.backend import DeviceError
from tinygrad_tx.selfcheck import CASES, make_inputs

from conftest import DEVICES, GPU

ENGINE = pathlib.Path(tx.__file__).parent


def test_only_the_backend_module_imports_numpy():
    offenders = []
    for path in ENGINE.rglob("*.py"):
        if path.name == "backend.py":
            continue
        for line in path.read_text().splitlines():
            if re.match(r"\s*(import numpy|from numpy\b)", line):
                offenders.append(f"{path.relative_to(ENGINE)}: {line.strip()}")
    assert not offenders, offenders


class RecordingModule:
    """numpy, seen through a proxy that counts which functions the ops ask the seam for."""

    def __init__(self):
        self.used = set()

    def __getattr__(self, name):
        self.used.add(name)
        return getattr(np, name)


@pytest.mark.parametrize("fused", [False, True], ids=["composed", "fused"])
def test_every_op_gets_its_array_module_from_the_seam(monkeypatch, fused):
    rec = RecordingModule()
    real = backend.array_module
    monkeypatch.setattr(backend, "array_module", lambda *arrays: rec if real(*arrays) is np else real(*arrays))
    for name, (_, fn, specs) in CASES.items():
        xs = make_inputs(specs)
        with fused_ops(fused):
            out = fn(*xs)
        (out * out).sum().backward()
        ops = [t.op for t in toposort(out) if t.op is not None]
        assert ops and all(op.xp is rec for op in ops), name
        expected_fn = CASES[name][1]
        ys = make_inputs(specs)
        monkeypatch.setattr(backend, "array_module", real)
        with fused_ops(fused):
            ref = expected_fn(*ys)
        monkeypatch.setattr(backend, "array_module", lambda *arrays: rec if real(*arrays) is np else real(*arrays))
        np.testing.assert_array_equal(out.numpy(), ref.numpy())
    assert rec.used, "no op asked the seam for an array function"


def test_cpu_device_api():
    t = Tensor([1.0, 2.0], requires_grad=True)
    assert t.device == "cpu" and t.to("cpu") is t and t.cpu() is t
    tx.set_default_device("cpu")
    assert backend.default_device() == "cpu"
    with pytest.raises(DeviceError, match="unknown device"):
        Tensor([1.0], device="tpu")
    with pytest.raises(DeviceError, match="unknown device"):
        tx.set_default_device("cuda")


def test_module_to_cpu_keeps_parameter_identity():
    lin = tx.nn.Linear(3, 2)
    w = lin.weight
    assert lin.to("cpu") is lin and lin.weight is w and w.device == "cpu"


@pytest.mark.skipif(GPU, reason="checks the error shown when CuPy or CUDA is missing")
def test_asking_for_the_gpu_without_cupy_gives_one_clear_error():
    with pytest.raises(DeviceError, match="CuPy|CUDA"):
        Tensor([1.0], device="gpu")
    with pytest.raises(DeviceError, match="CuPy|CUDA"):
        tx.set_default_device("gpu")
    r = CliRunner().invoke(__import__("cli").main, ["train", "--device", "gpu", "--max-iters", "1"])
    assert r.exit_code != 0 and ("CuPy" in r.output or "CUDA" in r.output) and "Traceback" not in r.output


def test_import_does_not_need_cupy_even_with_tx_device_gpu():
    code = "import sys, tinygrad_tx, transformer; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"TX_DEVICE": "gpu", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


class FakeGpuArray(np.ndarray):
    """A numpy array that the backend takes for a CuPy one (its class lives in a 'cupy' module)."""


FakeGpuArray.__module__ = "cupy._fake"


def test_mixing_devices_in_one_op_names_the_op_and_both_devices():
    a = Tensor(np.ones(3), name="a")
    b = Tensor(np.ones(3), name="b")
    b.data = np.ones(3).view(FakeGpuArray)
    assert b.device == "gpu"
    with pytest.raises(DeviceError, match=r"Add: inputs are on different devices: a\(3,\) on cpu, b\(3,\) on gpu"):
        a + b


def test_todevice_moves_gradient_back():
    x = Tensor(np.arange(3.0), requires_grad=True, dtype="float64")
    y = tx.ops.ToDevice.apply(x, device="cpu")
    (y * y).sum().backward()
    np.testing.assert_array_equal(x.grad, 2 * np.arange(3.0))


@pytest.mark.parametrize("device", DEVICES)
def test_gpt_step_matches_across_devices(device, tmp_path):
    """A GPT forward/backward/AdamW step on `device` equals the CPU one; a checkpoint written
    there loads on the CPU."""
    from transformer import GPT, GPTConfig, load_checkpoint, save_checkpoint
    tx.set_default_dtype("float64")
    results = []
    for dev in ("cpu", device):
        tx.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8)).to(dev)
        opt = tx.optim.AdamW(model.parameters(), lr=1e-2)
        idx = np.random.default_rng(0).integers(0, 11, (2, 8))
        with fused_ops():
            _, loss = model(idx, idx)
            loss.backward()
        opt.step()
        results.append((loss.item(), model.state_dict()))
    assert results[0][0] == pytest.approx(results[1][0], abs=1e-12)
    for k in results[0][1]:
        np.testing.assert_allclose(results[1][1][k], results[0][1][k], atol=1e-12)
    save_checkpoint(tmp_path, results[1][1], {"device": device})
    state, meta, _ = load_checkpoint(tmp_path)
    cpu_model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    cpu_model.load_state_dict(state)
    assert all(p.device == "cpu" for p in cpu_model.parameters())


@pytest.mark.parametrize("device", DEVICES)
def test_generation_on_device_matches_cpu(device):
    from transformer import GPT, GPTConfig, generate
    tx.set_default_dtype("float64")
    tx.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    prompt = np.array([[1, 2, 3]])
    expected = generate(model, prompt, 10, temperature=0)
    got = generate(model.to(device), prompt, 10, temperature=0)
    np.testing.assert_array_equal(got, expected)


def test_cli_device_options_exist():
    from cli import main
    for cmd in ("train", "sample", "bench"):
        r = CliRunner().invoke(main, [cmd, "--help"])
        assert "--device" in r.output, cmd
