"""selsa_d2.cpu_allocator: glibc keeps freed large blocks for reuse; malloc's bytes-in-use count."""
import resource

import pytest
import torch

from selsa_d2 import cpu_allocator

pytestmark = pytest.mark.skipif(not cpu_allocator.is_glibc(), reason="glibc malloc only")

BLOCK = 64 * 2**20  # above glibc's largest mmap threshold (32 MiB): mmap'd by default


def _touch_block() -> torch.Tensor:
    t = torch.empty(BLOCK, dtype=torch.uint8)
    t.fill_(1)  # every page written: a fresh mapping faults each one in
    return t


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def test_bytes_in_use_follow_a_tensor():
    before = cpu_allocator.malloc_bytes_in_use()
    t = _touch_block()
    during = cpu_allocator.malloc_bytes_in_use()
    del t
    after = cpu_allocator.malloc_bytes_in_use()
    assert during - before >= BLOCK
    assert during - after >= BLOCK


def test_retained_memory_is_reused_without_page_faults():
    assert cpu_allocator.retain_freed_cpu_memory()  # affects the rest of this process: harmless
    _touch_block()  # freed at once; the first block after the setting comes from the heap, faulted in once
    start = _minor_faults()
    t = _touch_block()
    faults = _minor_faults() - start
    del t
    pages = BLOCK // resource.getpagesize()
    assert faults < pages // 10, f"{faults} page faults for a re-allocated block of {pages} pages"


def test_trim_threshold_range():
    with pytest.raises(ValueError, match="trim_threshold"):
        cpu_allocator.retain_freed_cpu_memory(trim_threshold=2**31)
