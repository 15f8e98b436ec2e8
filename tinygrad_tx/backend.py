"""The array backend: the ONE place that knows which array library holds the data.

Every op gets its array functions from the module returned by `array_module(...)` (stored on
the op as `self.xp`), never by importing numpy itself: numpy for "cpu" arrays, CuPy for "gpu"
arrays. CuPy is imported only when a GPU is asked for, so the engine imports fast without it.

Also here: the default float dtype (float32; float64 is kept when asked for), PyTorch's dtype
promotion, the random generator used for initialisation and dropout, and `erf` (numpy has
none; scipy's or CuPy's). The fused ops' compiled loops are in kernels/, thread policy in
threads.py, the glibc heap setting beside the training loop (transformer/memory.py).
"""
import contextlib
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


def erf(x):
    """Gauss error function, elementwise, in the dtype of x: scipy's (CuPy's on the GPU).
    The fused GELU has its own loop (kernels/gelu.py); this serves the Erf op and the xp GELU."""
    if device_of(x) == "gpu":
        from cupyx.scipy.special import erf as cupy_erf     # only reached with CuPy present
        return cupy_erf(x).astype(x.dtype, copy=False)
    try:
        from scipy.special import erf as scipy_erf     # imported on first use: keeps import fast
    except ImportError:                                # pragma: no cover - scipy is a dependency
        return numpy.asarray(_erf_scalar(x), dtype=x.dtype)
    return numpy.asarray(scipy_erf(x)).astype(x.dtype, copy=False)
