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
    # The first blocks after the setting come from the heap and are faulted in once; where a
    # freed block does not fit the next request (alignment, a small block allocated after it) the
    # heap grows once more. After that, a freed block is reused: take the best of a few rounds.
    pages = BLOCK // resource.getpagesize()
    faults = []
    for _ in range(6):
        start = _minor_faults()
        _touch_block()  # freed at once
        faults.append(_minor_faults() - start)
    assert min(faults[2:]) < pages // 10, (
        f"page faults per re-allocated block of {pages} pages: {faults}"
    )


def test_trim_threshold_range():
    with pytest.raises(ValueError, match="trim_threshold"):
        cpu_allocator.retain_freed_cpu_memory(trim_threshold=2**31)


@pytest.mark.parametrize(
    "device, enabled, applied", [("cpu", True, True), ("cpu", False, False), ("cuda", True, False)]
)
def test_from_config_only_for_cpu_and_when_enabled(device, enabled, applied, monkeypatch):
    from detectron2.config import get_cfg

    from selsa_d2 import add_selsa_config

    cfg = add_selsa_config(get_cfg())
    assert cfg.RETAIN_FREED_CPU_MEMORY is True  # the default
    cfg.merge_from_list(["MODEL.DEVICE", device, "RETAIN_FREED_CPU_MEMORY", enabled])
    calls = []
    monkeypatch.setattr(cpu_allocator, "retain_freed_cpu_memory", lambda: calls.append(1) or True)
    assert cpu_allocator.retain_freed_cpu_memory_from_config(cfg) is applied
    assert len(calls) == int(applied)
