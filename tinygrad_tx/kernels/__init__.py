"""Compiled kernels: each fused op's inner loop, written once as a plain loop over rows in the
style of llm.c (the forward line restated in a comment, the terms of the derivative named) and
compiled by numba. Beside each kernel is its xp (numpy/CuPy) formulation: the reference the
kernel is tested against, what the GPU runs, and what the CPU runs when numba is missing.

A kernel never allocates: the fused op passes in every output array, so this package needs no
array library of its own (numpy stays in backend.py). Kernels take C-contiguous rows or any
strided view numba accepts. Their scalar arithmetic is float64 (Python float constants and
0.0 accumulators promote it) whatever the storage dtype, except where a loop adds straight into
an output array (layer norm's parameter gradients, the embedding gradient): that sums in the
array's dtype.

numba compiles on the first call for each dtype and caches the machine code on disk
(`cache=True`): next to this package when it is writable, else in NUMBA_CACHE_DIR or numba's
user-wide cache; where no cache can be written, kernels compile in every process instead.
TX_NO_NUMBA=1 (or numba not installed) selects the xp formulation, with one warning."""
import functools
import os
import warnings

from .. import threads      # sets the OpenMP wait policy before numba starts its threads

_why = ""                   # why numba is not used, for the warning
try:
    if os.environ.get("TX_NO_NUMBA", "") not in ("", "0"):
        raise ImportError("TX_NO_NUMBA is set")
    import numba
    prange = numba.prange
except ImportError as e:
    numba, prange, _why = None, range, str(e)

_kernel_threads = 1
_warned = False


PARALLEL_MIN_ELEMENTS = 1 << 18     # below this a kernel runs on one thread (see rows_kernel)


def rows_kernel(fn=None, *, reductions=False, parallel=True):
    """numba.njit(parallel=True, cache=True, fastmath=False): `prange` loops share their rows
    among numba's threads; error_model="numpy": x / 0 is inf or nan, as in numpy, not an
    exception. fastmath stays off, except that `reductions=True` (a kernel whose rows end in a
    sum or a max: layer norm, softmax, cross-entropy) lets LLVM reassociate (fastmath=
    {"reassoc"}), so a row sum runs as SIMD partial sums instead of a chain of dependent scalar
    adds, 3-4x faster (bench/RESULTS.md). Every row is still one thread's, so the thread count
    cannot change a result, and the float64 accumulators make the order of adds matter little.
    `parallel=False`: a plain loop, no prange (one whose every row adds into the same outputs).
    A call whose largest array has fewer than PARALLEL_MIN_ELEMENTS elements runs on one
    thread: starting and joining a parallel region costs more than a second core saves there
    (the baby GPT's step: 30.9 ms with one kernel thread, 32.2 ms with two; bench/RESULTS.md).
    Without numba the function stays plain Python (and is never called on arrays: the fused
    ops use the xp formulation then)."""
    if fn is None:                              # @rows_kernel(reductions=True)
        return functools.partial(rows_kernel, reductions=reductions, parallel=parallel)
    if numba is None:
        return fn
    options = dict(parallel=parallel, fastmath={"reassoc"} if reductions else False, error_model="numpy")
    try:
        kernel = numba.njit(cache=True, **options)(fn)
    except RuntimeError:                        # no writable cache location: compile per process
        kernel = numba.njit(cache=False, **options)(fn)

    @functools.wraps(fn)
    def run(*args):
        size = max((a.size for a in args if hasattr(a, "size") and hasattr(a, "shape")), default=0)
        numba.set_num_threads(_kernel_threads if size >= PARALLEL_MIN_ELEMENTS else 1)
        return kernel(*args)
    run.kernel = kernel                         # the numba dispatcher itself
    return run


def set_kernel_threads(n):
    """Threads for large kernels (threads.set_threads calls this)."""
    global _kernel_threads
    _kernel_threads = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)) if numba is not None else 1


def compiled(*arrays):
    """True when the compiled kernels should run on these arrays: numba is present and every
    array is a host (numpy) array, float ones float32 or float64. The GPU keeps the xp
    formulation. Warns once per process when numba is missing."""
    global _warned
    if not all(type(a).__module__ == "numpy" and (a.dtype.kind != "f" or a.dtype.itemsize in (4, 8))
               for a in arrays):
        return False
    if threads.num_threads() is None:           # first use: the default thread policy
        threads.set_threads()
    if numba is None:
        if not _warned:
            warnings.warn(f"tinygrad_tx: numba is not available ({_why}); the fused ops run their numpy "
                          f"formulation (slower). pip install numba", RuntimeWarning, stacklevel=3)
            _warned = True
        return False
    return True


def available():
    return numba is not None
