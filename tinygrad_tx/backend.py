"""The array backend: the ONE place that knows which array library holds the data.

Every op gets its array functions from the module returned by `array_module(...)` (stored on
the op as `self.xp`), never by importing numpy itself: numpy for "cpu" arrays, CuPy for "gpu"
arrays. CuPy is imported only when a GPU is asked for, so the engine imports fast without it.

Also here: the default float dtype (float32; float64 is kept when asked for), the random
generator used for initialisation and dropout, and `erf` (numpy has none).
"""
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import math
import os

import numpy

DEVICES = ("cpu", "gpu")
_default_dtype = numpy.dtype(numpy.float32)
_rng = numpy.random.default_rng(0)
_default_device = os.environ.get("TX_DEVICE", "cpu")    # checked on first use, not at import
_cupy = None


class DeviceError(RuntimeError):
    """A device that cannot be used, or tensors on different devices in one op."""


def _check_device(device):
    if device not in DEVICES:
        raise DeviceError(f"unknown device {device!r}; expected one of {DEVICES}")
    return device


def cupy_module():
    """CuPy, imported on first use so that importing the engine never needs it."""
    global _cupy
    if _cupy is None:
        try:
            import cupy
        except ImportError:
            raise DeviceError("device 'gpu' needs CuPy: pip install 'tinygrad_tx[gpu-cuda12]' "
                              "(or [gpu-cuda13] for CUDA 13)") from None
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as e:                     # CUDA driver missing or broken
            raise DeviceError(f"device 'gpu': CuPy is installed but CUDA is not usable ({e})") from None
        if count == 0:
            raise DeviceError("device 'gpu': CuPy is installed but no CUDA device is visible")
        _cupy = cupy
    return _cupy


def gpu_available():
    try:
        cupy_module()
        return True
    except DeviceError:
        return False


def module_for(device):
    """The array library of a device: numpy for "cpu", cupy for "gpu"."""
    return numpy if _check_device(device) == "cpu" else cupy_module()


def device_of(arr):
    return "cpu" if type(arr) is numpy.ndarray or not type(arr).__module__.startswith("cupy") else "gpu"


def array_module(*arrays):
    """The array library (numpy-compatible module) that owns these arrays. Raises DeviceError
    when they live on different devices."""
    if all(type(a) is numpy.ndarray for a in arrays):
        return numpy
    devices = {device_of(a) for a in arrays}
    if len(devices) > 1:
        raise DeviceError(f"arrays on different devices: {' and '.join(sorted(devices))}")
    return module_for(devices.pop())


def default_device():
    return _check_device(_default_device)


def set_default_device(device):
    """Device of new tensors and parameters: "cpu" or "gpu" (also the env var TX_DEVICE)."""
    global _default_device
    if _check_device(device) == "gpu":
        cupy_module()                     # fail now, with the reason, rather than at first use
    _default_device = device


def xp(device=None):
    """The array module of a device (default: the default device), for building constants."""
    return module_for(device or default_device())


def asarray(data, dtype=None, device=None):
    """Any list, scalar or array -> a backend array on `device` (default: the device the array
    is on; the default device for Python data). Python floats become the default dtype;
    numpy arrays keep theirs."""
    on_gpu = is_array(data) and device_of(data) == "gpu"
    if device is None:
        device = "gpu" if on_gpu else "cpu" if is_array(data) else default_device()
    if on_gpu:
        arr = data if dtype is None else data.astype(numpy.dtype(dtype), copy=False)
    elif dtype is not None:
        arr = numpy.asarray(data, dtype=numpy.dtype(dtype))
    else:
        arr = numpy.asarray(data)
        if arr.dtype.kind == "f" and not isinstance(data, (numpy.ndarray, numpy.generic)):
            arr = arr.astype(_default_dtype)      # Python floats/lists: float32 unless asked
    return to_device(arr, device)


def to_device(arr, device):
    """The same values on another device (a no-op when already there)."""
    if device_of(arr) == _check_device(device):
        return arr
    return to_numpy(arr) if device == "cpu" else cupy_module().asarray(arr)


def is_array(x):
    return isinstance(x, numpy.ndarray) or type(x).__module__.startswith("cupy")


def to_numpy(arr):
    """A host (numpy) copy of a backend array, for printing, saving and drawing."""
    return arr.get() if device_of(arr) == "gpu" else numpy.asarray(arr)


def default_dtype():
    return _default_dtype


def set_default_dtype(dtype):
    """Set the dtype of new float tensors and parameters ('float32' or 'float64')."""
    global _default_dtype
    dt = numpy.dtype(dtype)
    if dt.kind != "f":
        raise ValueError(f"set_default_dtype: expected a float dtype, got {dt}")
    _default_dtype = dt


def dtype(name):
    return numpy.dtype(name)


def manual_seed(seed):
    """Seed the generator used for parameter init and dropout masks."""
    global _rng
    _rng = numpy.random.default_rng(seed)


def rng():
    return _rng


def get_rng_state():
    """The global generator's state as a JSON-able dict (for checkpoints)."""
    return _rng.bit_generator.state


def set_rng_state(state):
    _rng.bit_generator.state = state


@contextlib.contextmanager
def fork_rng(seed):
    """Inside the block the global generator starts from `seed`; afterwards the caller's random
    stream continues as if the block had not run (as torch.random.fork_rng)."""
    state = get_rng_state()
    manual_seed(seed)
    try:
        yield
    finally:
        set_rng_state(state)


def rng_for_seed(seed):
    """A fresh generator, independent of the global one."""
    return numpy.random.default_rng(seed)


def is_float(arr):
    return arr.dtype.kind == "f"


# ----------------------------------------------------------------------------- dtype promotion
def _category(dt):
    """bool < integer < float: the order in which PyTorch's promotion compares kinds."""
    return {"b": 0, "i": 1, "u": 1, "f": 2}.get(dt.kind, 3)


def promote_types(a, b):
    """PyTorch's pairwise rule: a float beats any integer or bool (int64 with float32 is
    float32, where numpy says float64); within one kind the wider type wins."""
    a, b = numpy.dtype(a), numpy.dtype(b)
    if _category(a) != _category(b):
        return a if _category(a) > _category(b) else b
    return numpy.promote_types(a, b)


def result_type(*arrays):
    """The dtype of an elementwise op on these arrays, as torch.result_type: tensors with
    dimensions decide; 0-d tensors count only when they are of a higher kind (float32 (3,) with
    a float64 0-d tensor stays float32; int32 (3,) with it becomes float64)."""
    def fold(dts):
        out = None
        for dt in dts:
            out = dt if out is None else promote_types(out, dt)
        return out
    dims = fold(a.dtype for a in arrays if a.ndim)
    zero = fold(a.dtype for a in arrays if not a.ndim)
    if dims is None or zero is None:
        return dims if zero is None else zero
    return promote_types(dims, zero) if _category(zero) > _category(dims) else dims


def scalar_dtype(value, like):
    """The dtype a Python (or numpy) scalar takes beside a tensor of dtype `like`, as torch:
    the tensor's dtype, unless the scalar is of a higher kind: then the default float dtype
    for a float, int64 for an int. A bool stays bool (it never raises the result's kind, and
    Sub must see it to refuse it). None if `value` is not a scalar."""
    if isinstance(value, (bool, numpy.bool_)):
        return numpy.dtype(bool)
    if isinstance(value, (int, numpy.integer)):
        kind, dt = 1, numpy.dtype(numpy.int64)
    elif isinstance(value, (float, numpy.floating)):
        kind, dt = 2, _default_dtype
    else:
        return None
    return numpy.dtype(like) if kind <= _category(numpy.dtype(like)) else dt


def float_dtype(dt):
    """`dt` if it is a float dtype, else the default float dtype (what exp of an int gives)."""
    dt = numpy.dtype(dt)
    return dt if dt.kind == "f" else _default_dtype


def isfinite_all(arr):
    return bool(numpy.isfinite(arr).all())


_erf_scalar = numpy.frompyfunc(math.erf, 1, 1)


def erf(x, exp_neg_sq=None):
    """Gauss error function, elementwise, in the dtype of x. float64: scipy's (exact to double
    precision). float32: Abramowitz & Stegun 7.1.26 in float32 arithmetic, max abs error
    6e-7 (a few float32 ulps), about 3x faster than scipy's, which matters inside GELU.
    `exp_neg_sq`, if given, is exp(-x^2) already computed by the caller (GELU needs it too)."""
    if x.ndim == 0:                 # the float32 kernel writes with out=, which needs an array
        return erf(x.reshape(1), None if exp_neg_sq is None else exp_neg_sq.reshape(1)).reshape(())
    if device_of(x) == "gpu":
        from cupyx.scipy.special import erf as cupy_erf     # only reached with CuPy present
        return cupy_erf(x).astype(x.dtype, copy=False)
    if x.dtype == numpy.float32:
        return _erf_float32(x, exp_neg_sq)
    try:
        from scipy.special import erf as scipy_erf     # imported on first use: keeps import fast
    except ImportError:                                # pragma: no cover - scipy is a dependency
        return _erf_scalar(x).astype(x.dtype)
    return scipy_erf(x).astype(x.dtype, copy=False)


def normal_cdf(x, exp_half_sq, out=None):
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2, given exp(-x^2 / 2) (GELU computes it anyway).
    float32: A&S 7.1.26 written for Phi directly (fewer passes than going through erf, max abs
    error 3e-7); other dtypes and the GPU: through erf. `out`: where to write it."""
    if x.dtype != numpy.float32 or device_of(x) == "gpu":
        y = 0.5 * (1 + erf(x * (1 / math.sqrt(2)), exp_neg_sq=exp_half_sq))
        if out is None:
            return y
        out[...] = y
        return out
    f = numpy.float32
    # Phi(-|x|) = erfc(|x|/sqrt2) / 2 = (a1 t + ... + a5 t^5) exp(-x^2/2) / 2,  t = 1/(1 + p |x|/sqrt2)
    inv_p = f(math.sqrt(2) / 0.3275911)
    t = numpy.abs(x)
    t += inv_p
    numpy.divide(inv_p, t, out=t)                                          # t = 1/(1 + p|x|/sqrt2)
    h = numpy.multiply(t, f(0.5 * 1.061405429), out=out)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):     # Horner's rule
        h += f(0.5 * c)
        h *= t
    h *= exp_half_sq                                                       # Phi(-|x|)
    numpy.subtract(f(0.5), h, out=h)                                       # Phi(|x|) - 1/2 >= 0
    _copy_sign_float32(h, x, scratch=t)                                    # Phi(x) - 1/2 (odd)
    h += f(0.5)
    return h


_SIGN_BIT = numpy.int32(-2 ** 31)


def _copy_sign_float32(y, x, scratch):
    """y = copysign(y, x) in place, for float32 y >= 0: OR in the sign bit of x. Two integer
    passes (numpy.copysign on float32 is not vectorised here: 3x slower than both together)."""
    bits = scratch.view(numpy.int32)
    numpy.bitwise_and(x.view(numpy.int32), _SIGN_BIT, out=bits)
    numpy.bitwise_or(y.view(numpy.int32), bits, out=y.view(numpy.int32))


def _erf_float32(x, exp_neg_sq=None):
    # erf(|x|) = 1 - (a1 t + a2 t^2 + a3 t^3 + a4 t^4 + a5 t^5) exp(-x^2),  t = 1 / (1 + p |x|)
    f = numpy.float32
    a = numpy.abs(x)
    t = f(1) / (f(1) + f(0.3275911) * a)
    y = f(1.061405429) * t
    y += f(-1.453152027)
    for c in (1.421413741, -0.284496736, 0.254829592):      # Horner's rule
        y *= t
        y += f(c)
    y *= t
    if exp_neg_sq is None:
        numpy.multiply(a, a, out=a)
        numpy.negative(a, out=a)
        exp_neg_sq = numpy.exp(a, out=a)
    y *= exp_neg_sq
    numpy.subtract(f(1), y, out=y)
    _copy_sign_float32(y, x, scratch=a)                        # erf is odd
    return y


BLOCK_ELEMENTS = 65536          # 256 KiB of float32: a block and its temporaries stay in the L2 cache
                                # (measured best of 16K..128K for GELU, layer norm, attention: bench/fused_ops.py)
_threads = 1        # measured on this 2-vCPU machine: 2 threads made GELU 40% slower (see bench/RESULTS.md)
_pool = None


def set_num_threads(n):
    """Threads for the blocked fused kernels (map_blocks); numpy's own ufuncs are single
    threaded, BLAS has its own pool (OPENBLAS_NUM_THREADS). 1 (the default) = blocks in order."""
    global _threads, _pool
    n = max(1, int(n))
    if n != _threads and _pool is not None:
        _pool.shutdown()
        _pool = None
    _threads = n


def num_threads():
    return _threads


def map_blocks(kernel, *arrays):
    """Call kernel(*blocks) on successive blocks of rows (first-axis slices) of arrays with
    the same first dimension: inputs and preallocated outputs alike.

    A fused op is a dozen numpy passes; run over a whole (768, 512) activation, each pass
    streams it through main memory again. Run block by block, every pass after the first
    hits the cache: about 2.5x faster for GELU here. With set_num_threads(n > 1) the blocks
    are shared among n threads (numpy releases the GIL inside each pass). On the GPU the
    kernel runs once, on the whole arrays."""
    global _pool
    first = arrays[0]
    n = first.shape[0]
    row = first.size // max(n, 1)
    if device_of(first) == "gpu" or first.size <= BLOCK_ELEMENTS:
        kernel(*arrays)
        return
    step = max(1, BLOCK_ELEMENTS // max(row, 1))
    starts = range(0, n, step)
    if _threads == 1 or len(starts) < 2:
        for i in starts:
            kernel(*(a[i:i + step] for a in arrays))
        return
    if _pool is None:
        _pool = concurrent.futures.ThreadPoolExecutor(_threads - 1, thread_name_prefix="tx-blocks")
    # thread t takes every _threads-th block; the calling thread is one of them
    def work(t):
        for i in starts[t::_threads]:
            kernel(*(a[i:i + step] for a in arrays))
    futures = [_pool.submit(work, t) for t in range(1, _threads)]
    work(0)
    for f in futures:
        f.result()


def keep_freed_memory():
    """Ask glibc to keep freed large blocks in the heap instead of returning them to the OS.

    By default glibc serves every allocation over M_MMAP_THRESHOLD (128 KiB, adapted upward
    at runtime) with fresh pages from mmap and unmaps them on free, so each large temporary
    of a training step pays page faults again. Raising the mmap and trim thresholds lets
    the step reuse the same memory. Called by the training loop and the benchmark (never at
    import). Returns True where applied (Linux with glibc), False elsewhere."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    try:
        mallopt = ctypes.CDLL(libc_name).mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    ok = mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024)           # glibc's maximum on 64-bit
    ok &= mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024)        # keep up to 1 GiB of free heap
    return bool(ok)
