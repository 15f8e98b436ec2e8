"""Each compiled kernel (tinygrad_tx/kernels/) against the xp formulation written beside it,
in float32 and float64, on ordinary, ragged and size-0 rows; and the path without numba (one
warning, the same numbers). The fused ops that call the kernels are tested against the composed
ops, gradcheck and torch in test_fused.py, test_self_attention_fused.py and test_gpt_torch.py."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import tinygrad_tx as tx
from tinygrad_tx import Tensor, fused_ops, kernels
from tinygrad_tx import functional as F
from tinygrad_tx.kernels import adamw, cross_entropy, embedding, gelu, layernorm, softmax

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba is not installed")

DTYPES = [(np.float32, 1e-5), (np.float64, 1e-13)]      # the xp reference rounds each pass to float32
ROWS = [(37, 19), (1, 1), (0, 5), (4, 0)]          # ragged, one element, no rows, empty rows


def rand(shape, dtype, seed=0, scale=2.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def close(a, b, tol):
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("n", [1001, 1, 0])
def test_gelu_kernels_equal_xp(dtype, tol, n):
    x, g = rand(n, dtype), rand(n, dtype, 1)
    y, cdf, pdf = (np.empty_like(x) for _ in range(3))
    gelu.gelu_forward(x, gelu.gauss_xp(np, x), y, cdf, pdf, False)
    ry, rcdf, rpdf = gelu.gelu_forward_xp(np, tx.backend.erf, x)
    for a, b in ((y, ry), (cdf, rcdf), (pdf, rpdf)):
        close(a, b, tol)
    dx = np.empty_like(x)
    gelu.gelu_backward(x, cdf, pdf, g, dx)
    close(dx, gelu.gelu_backward_xp(np, x, rcdf, rpdf, g), tol)
    if dtype == np.float32:                         # the polynomial Phi: within float32's resolution
        gelu.gelu_forward(x, gelu.gauss_xp(np, x), y, cdf, pdf, True)
        close(cdf, rcdf, 3e-7)
    y, t = np.empty_like(x), gelu.tanh_u_xp(np, x)
    gelu.gelu_tanh_forward(x, t, y)
    ry, rt = gelu.gelu_tanh_forward_xp(np, x)
    close(y, ry, tol)
    close(t, rt, tol)
    gelu.gelu_tanh_backward(x, t, g, dx)
    close(dx, gelu.gelu_tanh_backward_xp(np, x, t, g), tol)


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.filterwarnings("ignore:Mean of empty slice")
@pytest.mark.parametrize("N,C", ROWS)
def test_layernorm_kernels_equal_xp(dtype, tol, N, C):
    x, g = rand((N, C), dtype) + 3, rand((N, C), dtype, 1)
    w, b = rand(C, dtype, 2), rand(C, dtype, 3)
    y, mean, rstd = np.empty_like(x), np.empty(N, dtype), np.empty(N, dtype)
    with np.errstate(all="ignore"):                 # C = 0: the mean of nothing is nan, as numpy's
        layernorm.layernorm_forward(x, w, b, 1e-5, y, mean, rstd)
        ry, rmean, rrstd = layernorm.layernorm_forward_xp(np, x, w, b, 1e-5)
        for a, r in ((y, ry), (mean, rmean), (rstd, rrstd)):
            close(a, r, tol)
        dx, dw, db = np.empty_like(x), np.zeros_like(w), np.zeros_like(b)
        layernorm.layernorm_backward(x, w, mean, rstd, g, dx)
        layernorm.layernorm_param_grads(x, mean, rstd, g, dw, db)
        rdx, rdw, rdb = layernorm.layernorm_backward_xp(np, x, w, rmean, rrstd, g)
    for a, r in ((dx, rdx), (dw, rdw), (db, rdb)):
        close(a, r, tol * 10)


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("mask", ["none", "causal", "per-row", "dead-rows"])
def test_masked_softmax_kernels_equal_xp(dtype, tol, mask):
    N, T = 6, 9
    x, g = rand((N, T, T), dtype), rand((N, T, T), dtype, 1)
    blocked = {"none": np.zeros((1, T, T), bool),
               "causal": np.triu(np.ones((T, T), bool), 1)[None],
               "per-row": np.random.default_rng(4).random((N, T, T)) < 0.4,
               "dead-rows": np.broadcast_to(np.arange(T) >= 0, (N, T, T)) & (np.arange(T)[:, None] < 3)}[mask]
    y = np.empty_like(x)
    softmax.masked_softmax_forward(np, x, blocked, 0.7, y)
    ry = softmax.masked_softmax_forward_xp(np, x, blocked, 0.7)
    close(y, ry, tol)
    inplace = x.copy()
    softmax.masked_softmax_forward(np, inplace, blocked, 0.7, inplace)   # y written over the scores
    close(inplace, ry, tol)
    rows_y, rows_g = y.reshape(-1, T), g.reshape(-1, T)
    dx = np.empty_like(rows_g)
    softmax.softmax_backward(rows_y, rows_g, 0.7, dx)
    close(dx, softmax.softmax_backward_xp(np, rows_y, rows_g, 0.7), tol)
    if mask == "dead-rows":
        assert (y[:, :3] == 0).all() and (dx.reshape(N, T, T)[:, :3] == 0).all()


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("N,V", [(37, 11), (1, 1), (0, 4)])
def test_cross_entropy_kernels_equal_xp(dtype, tol, N, V):
    z = rand((N, V), dtype)
    targets = np.random.default_rng(1).integers(0, V, N)
    valid = np.arange(N) % 5 != 2
    probs, losses = np.empty_like(z), np.empty(N, dtype)
    cross_entropy.cross_entropy_forward(np, z, targets, valid, probs, losses)
    rp, rl = cross_entropy.cross_entropy_forward_xp(np, z, targets, valid)
    close(probs, rp, tol)
    close(losses, rl, tol)
    dz = np.empty_like(z)
    cross_entropy.cross_entropy_backward(probs, targets, valid, 0.3, dz)
    close(dz, cross_entropy.cross_entropy_backward_xp(np, rp, targets, valid, 0.3), tol)


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("n", [1001, 0])
def test_adamw_kernel_equals_xp(dtype, tol, n):
    p, g = rand(n, dtype), rand(n, dtype, 1)
    m, v = rand(n, dtype, 2), np.abs(rand(n, dtype, 3))
    hyper = (0.9, 0.95, 1e-8, 1 - 1e-3 * 0.1, 1e-3 / (1 - 0.9 ** 3), 1 / np.sqrt(1 - 0.95 ** 3))
    rp, rm, rv = p.copy(), m.copy(), v.copy()
    adamw.adamw_update(p, g, m, v, *hyper)
    adamw.adamw_update_xp(np, rp, g, rm, rv, *hyper)
    for a, r in ((p, rp), (m, rm), (v, rv)):
        close(a, r, tol)


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("V,N,C", [(13, 50, 37), (3, 0, 4), (5, 7, 0)])
def test_embedding_kernel_equals_xp(dtype, tol, V, N, C):
    ids = np.random.default_rng(0).integers(0, V, N)               # repeats: their rows add up
    g = rand((N, C), dtype)
    dw, rdw = np.zeros((V, C), dtype), np.zeros((V, C), dtype)
    embedding.embedding_backward(ids, g, dw)
    embedding.embedding_backward_xp(np, ids, g, rdw)
    close(dw, rdw, tol)


def _fused_results():
    """Every fused op that runs a kernel, forward and backward, float32."""
    rng = np.random.default_rng(0)
    out = []
    with fused_ops():
        x = Tensor(rng.standard_normal((4, 6, 8)).astype(np.float32), requires_grad=True)
        w = Tensor(np.ones(8, np.float32), requires_grad=True)
        b = Tensor(np.zeros(8, np.float32), requires_grad=True)
        emb = Tensor(rng.standard_normal((10, 8)).astype(np.float32), requires_grad=True)
        h = F.layer_norm(x + F.embedding(emb, rng.integers(0, 10, (4, 6))), w, b).gelu()
        h = h + x.gelu("tanh")
        from transformer import scaled_dot_product_attention
        h, _ = scaled_dot_product_attention(h, h, h, np.triu(np.ones((6, 6), bool), 1))
        loss = F.cross_entropy(h, rng.integers(0, 8, (4, 6)))
        loss.backward()
        opt = tx.optim.AdamW([x, w, b, emb], lr=1e-2)
        opt.step()
        out = [loss.numpy()] + [t.numpy() for t in (x, w, b, emb)]
    return out


def test_without_numba_the_xp_path_gives_the_same_numbers_with_one_warning(monkeypatch):
    compiled = _fused_results()
    monkeypatch.setattr(kernels, "numba", None)
    monkeypatch.setattr(kernels, "_why", "disabled by the test")
    monkeypatch.setattr(kernels, "_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fallback = _fused_results()
        _fused_results()                             # a second step: still one warning in all
    ours = [w for w in caught if "numba is not available" in str(w.message)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    for a, b in zip(compiled, fallback):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_tx_no_numba_env_selects_the_xp_path_in_a_fresh_process():
    code = ("import warnings, numpy as np, tinygrad_tx as tx\n"
            "from tinygrad_tx import kernels\n"
            "assert kernels.numba is None and not kernels.available()\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    with tx.fused_ops():\n"
            "        for _ in range(3): tx.Tensor(np.ones(4, np.float32)).gelu()\n"
            "print(sum('numba is not available (TX_NO_NUMBA is set)' in str(x.message) for x in w))\n")
    env = {**os.environ, "TX_NO_NUMBA": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


def test_no_writable_cache_compiles_without_caching(monkeypatch):
    """numba raises at decoration when no cache location can be written: compile per process."""
    calls = []

    class FakeNumba:
        @staticmethod
        def njit(**options):
            calls.append(options["cache"])
            if options["cache"]:
                raise RuntimeError("cannot cache function 'f': no locator available for file 'f.py'")
            return lambda fn: fn

        @staticmethod
        def set_num_threads(n):
            calls.append(("threads", n))
    monkeypatch.setattr(kernels, "numba", FakeNumba)
    f = kernels.rows_kernel(lambda v: v + 1)
    assert f(1) == 2 and calls == [True, False, ("threads", 1)]


def test_small_calls_run_on_one_thread_large_ones_on_all(monkeypatch):
    from tinygrad_tx import threads
    seen = []
    monkeypatch.setattr(kernels.numba, "set_num_threads", seen.append)
    threads.set_threads(2)
    try:
        for n in (kernels.PARALLEL_MIN_ELEMENTS - 1, kernels.PARALLEL_MIN_ELEMENTS):
            x = np.zeros(n, np.float32)
            gelu.gelu_backward(x, x, x, x, np.empty_like(x))
    finally:
        threads.set_threads(1)
    assert seen == [1, min(2, kernels.numba.config.NUMBA_NUM_THREADS)]


def test_kernels_run_when_numba_cache_dir_cannot_be_created(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code = ("import numpy as np, tinygrad_tx as tx\n"
            "with tx.fused_ops():\n"
            "    t = tx.Tensor(np.linspace(-3, 3, 7), requires_grad=True)\n"
            "    t.gelu().sum().backward()\n"
            "print(float(t.grad.sum()))\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(blocker / "cache")}      # a folder inside a file
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    with fused_ops(False):
        t = Tensor(np.linspace(-3, 3, 7), requires_grad=True)
        t.gelu().sum().backward()
    assert float(out.stdout) == pytest.approx(float(t.grad.sum()), abs=1e-12)
