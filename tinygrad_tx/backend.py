"""The array backend: the ONE place that knows which array library holds the data.

Every op gets its array functions from the module returned by `array_module(...)` (stored on
the op as `self.xp`), never by importing numpy itself. Today that is numpy; CuPy plugs in here.

Also here: the default float dtype (float32; float64 is kept when asked for), the random
generator used for initialisation and dropout, and `erf` (numpy has none).
"""
import math

import numpy

DEVICES = ("cpu",)
_default_dtype = numpy.dtype(numpy.float32)
_rng = numpy.random.default_rng(0)


def array_module(*arrays):
    """The array library (numpy-compatible module) that owns these arrays."""
    return numpy


def xp():
    """The array module of the default device, for building constants (masks, tables)."""
    return numpy


def asarray(data, dtype=None):
    """Any list, scalar or array -> a backend array. Floats default to the default dtype."""
    if dtype is not None:
        return numpy.asarray(data, dtype=numpy.dtype(dtype))
    arr = numpy.asarray(data)
    if arr.dtype.kind == "f" and not isinstance(data, (numpy.ndarray, numpy.generic)):
        arr = arr.astype(_default_dtype)      # Python floats/lists: float32 unless asked
    return arr


def is_array(x):
    return isinstance(x, numpy.ndarray)


def to_numpy(arr):
    """A host (numpy) copy of a backend array, for printing, saving and drawing."""
    return numpy.asarray(arr)


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


def rng_for_seed(seed):
    """A fresh generator, independent of the global one."""
    return numpy.random.default_rng(seed)


def is_float(arr):
    return arr.dtype.kind == "f"


def isfinite_all(arr):
    return bool(numpy.isfinite(arr).all())


_erf_scalar = numpy.frompyfunc(math.erf, 1, 1)


def erf(x):
    """Gauss error function, elementwise, in the dtype of x (exact to double precision)."""
    try:
        from scipy.special import erf as scipy_erf     # optional: fast vectorised erf
    except ImportError:                                # pragma: no cover - scipy is a dependency
        return _erf_scalar(x).astype(x.dtype)
    return scipy_erf(x).astype(x.dtype, copy=False)
