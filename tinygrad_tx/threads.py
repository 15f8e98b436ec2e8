"""Thread policy, in one place: how many threads BLAS (OpenBLAS/MKL, through threadpoolctl)
and the compiled kernels (numba) use.

Default: one thread per physical core (hyperthreads share a core's arithmetic units, so they
add little to dense loops), or TX_THREADS=N, or `tx train/sample/bench --threads N`
(`set_threads`). The first compiled kernel applies the default if nothing was set. Under load, threads that wait for each other lose: a parallel loop is as
slow as its slowest thread, and a thread whose core runs another process finishes last. So
the compiled kernels' OpenMP threads sleep when idle instead of spinning (OMP_WAIT_POLICY
passive), and `set_threads(None)` leaves out the cores that other processes keep busy (the
one-minute load average when it is called). bench/under_load.py measures the effect."""
import os
import time

# read by libgomp when numba starts its thread pool: set before that (the kernels import us)
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")

_threads = None


def physical_cores():
    """Cores this process may run on, counting hyperthread siblings once (Linux: from
    /sys topology; elsewhere os.cpu_count())."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        try:
            with open(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list") as f:
                cores.add(f.read().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def busy_fraction(window=0.1):
    """The share of all CPUs' time spent running something over the next `window` seconds
    (/proc/stat; the one-minute load average where there is none)."""
    def sample():
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
        return sum(ticks), ticks[3] + ticks[4]                     # all, idle + iowait
    try:
        total0, idle0 = sample()
        time.sleep(window)
        total1, idle1 = sample()
        return 1 - (idle1 - idle0) / max(1, total1 - total0)
    except (OSError, ValueError, IndexError):
        try:
            return min(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
        except (OSError, AttributeError):
            return 0.0


def idle_cores():
    """Physical cores that other processes are not keeping busy right now, at least 1."""
    return max(1, round(physical_cores() * (1 - busy_fraction())))


def default_threads():
    """TX_THREADS if set, else OPENBLAS_NUM_THREADS or OMP_NUM_THREADS if set (a choice already
    made for BLAS), else one per idle physical core."""
    for var in ("TX_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        env = os.environ.get(var, "").strip()
        if env:
            return _check(env, var)
    return idle_cores()


def _check(n, where):
    try:
        n = int(n)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: the thread count must be a positive integer, got {n!r}") from None
    if n < 1:
        raise ValueError(f"{where}: the thread count must be a positive integer, got {n}")
    return n


def set_threads(n=None):
    """Use n threads for BLAS and for the compiled kernels (None: default_threads()).
    Returns the number set. numba cannot go above the count it started with
    (NUMBA_NUM_THREADS, all cores by default); BLAS can. Small kernel calls run on one thread
    whatever n (kernels.PARALLEL_MIN_ELEMENTS)."""
    global _threads
    n = default_threads() if n is None else _check(n, "set_threads")
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=n, user_api="blas")
    except ImportError:                                 # pragma: no cover - a dependency
        pass
    from . import kernels
    kernels.set_kernel_threads(n)
    _threads = n
    return n


def num_threads():
    """The count last set by set_threads (None before any call: libraries' own defaults)."""
    return _threads
