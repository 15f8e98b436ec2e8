"""The glibc heap setting the training loop uses (Trainer.run): a training step allocates and
frees the same large activations every step, so keeping freed memory in the heap saves page
faults (bench/RESULTS.md has the measured effect)."""
import ctypes
import ctypes.util


def keep_freed_memory():
    """Ask glibc to keep freed large blocks in the heap instead of returning them to the OS.

    By default glibc serves every allocation over M_MMAP_THRESHOLD (128 KiB, adapted upward
    at runtime) with fresh pages from mmap and unmaps them on free, so each large temporary
    of a training step pays page faults again. Raising the mmap and trim thresholds lets
    the step reuse the same memory. Called by the training loop (Trainer.run) and the benchmarks
    (never at import). Returns True where applied (Linux with glibc), False elsewhere."""
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
