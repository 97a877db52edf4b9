"""glibc malloc settings for CPU training and inference, and its count of bytes in use.

PyTorch's CPU tensors come from ``posix_memalign``. glibc serves every block above its mmap
threshold (at most 32 MiB on 64-bit) with a fresh ``mmap`` and returns it with ``munmap`` on free,
so each large activation is page-faulted and zeroed by the kernel again at every allocation.
Detectron2's R-50-DC5 at 600x1000 has many such tensors, and SELSA's 3-image training batch has
three times as many and three times as large: measured on a 2-core AMD EPYC, a backbone
forward + backward at batch 3 took 1.65 M minor page faults and 8.3 s, 5.6 s with large blocks
kept in the heap (``benchmarks/README.md``, "Training"). :func:`retain_freed_cpu_memory` asks
glibc to do that (``mallopt``, the settings ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:
glibc.malloc.trim_threshold=...`` give at start-up). The price: the process keeps its peak heap
resident instead of giving memory back between iterations.

Nothing here runs on import; on a C library other than glibc every function is a no-op that
says so.
"""

import ctypes
import ctypes.util
import functools
import logging

__all__ = [
    "retain_freed_cpu_memory",
    "retain_freed_cpu_memory_from_config",
    "malloc_bytes_in_use",
    "is_glibc",
]

logger = logging.getLogger(__name__)

# <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# mallopt takes an int: the largest trim threshold it accepts (2 GiB - 1).
_MAX_TRIM_THRESHOLD = 2**31 - 1


class _Mallinfo2(ctypes.Structure):
    """``struct mallinfo2`` (glibc >= 2.33): every field is a ``size_t``."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """This process's glibc, or None (another C library, or none found)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
    except (OSError, AttributeError):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    if hasattr(libc, "mallinfo2"):
        libc.mallinfo2.restype = _Mallinfo2
    return libc


def is_glibc() -> bool:
    return _libc() is not None


def retain_freed_cpu_memory(trim_threshold: int = _MAX_TRIM_THRESHOLD) -> bool:
    """Make glibc serve large blocks from its heap and keep up to ``trim_threshold`` bytes of freed
    heap resident, so that tensors freed in one iteration are reused, not page-faulted again, in
    the next.

    Affects the whole process (all threads, all later allocations) and cannot be undone except
    by calling ``mallopt`` again. Returns True if glibc accepted both settings; False (and a
    warning) on another C library.
    """
    if not 0 <= trim_threshold <= _MAX_TRIM_THRESHOLD:
        raise ValueError(
            f"trim_threshold must be in [0, {_MAX_TRIM_THRESHOLD}], got {trim_threshold}"
        )
    libc = _libc()
    if libc is None:
        logger.warning("Not glibc: CPU malloc settings left as they are")
        return False
    ok = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )
    if not ok:
        logger.warning("glibc mallopt refused M_MMAP_MAX=0 / M_TRIM_THRESHOLD=%d", trim_threshold)
    return ok


def retain_freed_cpu_memory_from_config(cfg) -> bool:
    """What an entry point (train_net.py, demo/demo.py) does: :func:`retain_freed_cpu_memory`
    when ``cfg.MODEL.DEVICE`` is ``cpu`` and ``cfg.RETAIN_FREED_CPU_MEMORY`` is true (logged)."""
    if (
        cfg.MODEL.DEVICE != "cpu"
        or not cfg.RETAIN_FREED_CPU_MEMORY
        or not retain_freed_cpu_memory()
    ):
        return False
    logger.info(
        "RETAIN_FREED_CPU_MEMORY: glibc malloc keeps freed memory for reuse (selsa_d2.cpu_allocator)"
    )
    return True


def malloc_bytes_in_use() -> int | None:
    """Bytes glibc malloc has handed out and not yet got back (heap + mmap'd blocks, all arenas),
    whatever it keeps resident; None without glibc's ``mallinfo2``."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)
