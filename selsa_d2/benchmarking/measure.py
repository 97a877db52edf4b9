"""Time and memory measurement: CUDA-synchronised stopwatches, peak memory above a level (CUDA
counters, or malloc's bytes in use sampled on the CPU), bytes held by tensors."""

import contextlib
import os
import threading
import time
from collections.abc import Sequence

import numpy as np
import torch

from .. import cpu_allocator
from ..modeling import ReferenceMemory


def synchronize(device: str):
    """Wait for CUDA's queued work (no-op on the CPU)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def autocast(device: str, enabled: bool):
    """AMP: float16 on CUDA, bfloat16 on the CPU; a no-op context when not enabled."""
    if not enabled:
        return contextlib.nullcontext()
    dev = "cuda" if device.startswith("cuda") else "cpu"
    return torch.autocast(dev, dtype=torch.float16 if dev == "cuda" else torch.bfloat16)


def _cpu_bytes_in_use() -> int:
    """Bytes malloc has handed out (glibc); the process RSS where that count is not available."""
    in_use = cpu_allocator.malloc_bytes_in_use()
    return _current_rss() if in_use is None else in_use


def _current_rss() -> int:
    """Resident set size of this process in bytes (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class PeakMemory:
    """Peak memory above the level at ``__enter__``, in bytes (``.delta``).

    CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (exact).
    CPU: the bytes glibc malloc has handed out (``mallinfo2``; the process RSS elsewhere),
    sampled by a background thread every ``interval`` seconds: a lower bound of the true peak,
    and unlike RSS independent of how much freed memory the allocator keeps (``--cpu-malloc``).
    """

    def __init__(self, device: str, interval: float = 0.005, enabled: bool = True):
        self.cuda = device.startswith("cuda")
        self.interval = interval
        self.enabled = enabled  # False: measures nothing (delta stays 0)
        self.delta = 0
        self._stop = threading.Event()

    def __enter__(self):
        if not self.enabled:
            return self
        if self.cuda:
            torch.cuda.synchronize()
            self._start = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        else:
            self._start = self._peak = _cpu_bytes_in_use()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, _cpu_bytes_in_use())

    def __exit__(self, *exc):
        if not self.enabled:
            return False
        if self.cuda:
            torch.cuda.synchronize()
            self.delta = torch.cuda.max_memory_allocated() - self._start
        else:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, _cpu_bytes_in_use())
            self.delta = self._peak - self._start
        return False


def memory_sampling_disturbs_timing(device: str) -> bool:
    """True on the CPU: :class:`PeakMemory` samples from a thread that takes a core from torch's
    threads (on 2 cores it added ~6 % to SELSA-cached's per-frame ratio at 600x1000), so the
    benchmarks measure CPU memory in separate, untimed calls. CUDA's counters cost nothing."""
    return not device.startswith("cuda")


def tensor_bytes(obj) -> int:
    """Bytes of the distinct tensor storages reachable from ``obj`` (tensors, Instances,
    dataclasses, lists/tuples/dicts)."""
    seen = set()
    total = 0
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, torch.Tensor):
            s = o.untyped_storage()
            if s.data_ptr() not in seen:
                seen.add(s.data_ptr())
                total += s.nbytes()
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
        elif hasattr(o, "get_fields"):  # Instances
            stack.extend(o.get_fields().values())
        elif hasattr(o, "tensor"):  # Boxes
            stack.append(o.tensor)
        elif hasattr(o, "__dataclass_fields__"):
            stack.extend(getattr(o, f) for f in o.__dataclass_fields__)
        elif isinstance(o, ReferenceMemory):
            stack.extend(o.layers)  # views: their whole storages are counted
    return total


def engine_cache_bytes(engine) -> int:
    """What an engine holds between frames (``engine.cached_state()``), in bytes."""
    return tensor_bytes(engine.cached_state())


def median(values: Sequence[float]) -> float:
    """The median, as a float."""
    return float(np.median(np.asarray(values, dtype=np.float64)))


def mb(num_bytes: float) -> float:
    """Bytes as MiB, one decimal."""
    return round(num_bytes / 2**20, 1)


class Stopwatch:
    """Wall-clock seconds of a block, synchronizing CUDA before and after."""

    def __init__(self, device: str):
        self.device = device
        self.seconds = 0.0

    def __enter__(self):
        synchronize(self.device)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        synchronize(self.device)
        self.seconds = time.perf_counter() - self._t0
        return False
