"""Shared pieces of the benchmark scripts: configs, synthetic inputs, timing, memory, reporting.

Every speed figure a benchmark prints is a ratio against a baseline measured in the same process
and the same run, next to the absolute times and the hardware (:func:`hardware_info`).
"""

import contextlib
import datetime
import json
import logging
import os
import platform
import threading
import time
from collections.abc import Sequence

import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.utils.file_io import PathManager

from selsa_d2 import cpu_allocator, testing
from selsa_d2.config import add_selsa_config
from selsa_d2.modeling import ReferenceMemory

logger = logging.getLogger(__name__)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SELSA_CONFIG = os.path.join(REPO_ROOT, "configs", "selsa_R_50_DC5_7e_imagenetvid.yaml")
BASELINE_CONFIG = os.path.join(REPO_ROOT, "configs", "faster_rcnn_R_50_DC5_7e_imagenetvid.yaml")
# bench_inference.py --fpn: SELSA on Detectron2's FPN detector and that detector
SELSA_FPN_CONFIG = os.path.join(REPO_ROOT, "configs", "selsa_R_50_FPN_7e_imagenetvid.yaml")
BASELINE_FPN_CONFIG = os.path.join(REPO_ROOT, "configs", "faster_rcnn_R_50_FPN_7e_imagenetvid.yaml")

# The tests' tiny model: R-18 truncated at res4, 32-channel neck, 64-d FCs (merged after the config).
TINY_OVERRIDES = os.path.join(REPO_ROOT, "configs", "tiny", "tiny-overrides.yaml")


def build_cfg(
    config_file: str, device: str, depth: int = 50, tiny: bool = False, extra: Sequence = ()
):
    """A frozen config of ``config_file`` with random weights (``MODEL.WEIGHTS ""``: nothing is
    downloaded, and ``TEST.ALLOW_MISSING_WEIGHTS`` lets the predictors run them) on ``device``;
    ``tiny``: the tests' R-18/res4 model instead of ``depth``."""
    if not PathManager.exists(config_file):
        raise FileNotFoundError(f"Benchmark config {config_file} does not exist")
    cfg = get_cfg()
    add_selsa_config(cfg)
    cfg.merge_from_file(config_file)
    if tiny:
        cfg.merge_from_file(TINY_OVERRIDES)
    opts = [
        "MODEL.WEIGHTS",
        "",
        "TEST.ALLOW_MISSING_WEIGHTS",
        True,
        "MODEL.DEVICE",
        device,
        "DATALOADER.NUM_WORKERS",
        0,
    ]
    opts += [] if tiny else ["MODEL.RESNETS.DEPTH", depth]
    cfg.merge_from_list(opts + list(extra))
    cfg.freeze()
    return cfg


def finish_args(parser, args, presets: dict[str, dict]):
    """Fill the options left at None from the chosen preset (--tiny, --quick or the full run) and
    refuse --device cuda without CUDA."""
    for k, v in presets["tiny" if args.tiny else "quick" if args.quick else "full"].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")
    return args


def add_cpu_malloc_arg(parser):
    parser.add_argument(
        "--cpu-malloc",
        choices=("retain", "default"),
        default="retain",
        help="retain: glibc keeps freed memory for reuse, as train_net.py does on the CPU "
        "(RETAIN_FREED_CPU_MEMORY, selsa_d2.cpu_allocator); default: glibc's own settings",
    )


# What start_run set for glibc malloc; reported with the hardware.
_cpu_malloc = "default"


def start_run(args):
    """Logging, torch threads and (``--cpu-malloc retain`` on the CPU) malloc for a benchmark run."""
    global _cpu_malloc
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cpu_malloc == "retain" and not args.device.startswith("cuda"):
        if cpu_allocator.retain_freed_cpu_memory():
            _cpu_malloc = "retain"


# random weights and synthetic frames are shared with the tests (selsa_d2.testing)
randomize_frozen_bn = testing.randomize_frozen_bn
share_weights = testing.share_weights
SyntheticVideo = testing.SyntheticVideo


def frame_dict(
    video: SyntheticVideo, t: int, length: int, video_id=0, image: torch.Tensor | None = None
) -> dict:
    """Frame ``t`` of a synthetic video in test-mapper format (already at the network input size)."""
    image = video.frame(t) if image is None else image
    return testing.frame_input(image, video_id, t, length, height=video.height, width=video.width)


# ---------------------------------------------------------------------- timing / memory
def synchronize(device: str):
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


# ---------------------------------------------------------------------- reporting
def hardware_info(device: str) -> dict:
    info = {
        "device": device,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_malloc": _cpu_malloc,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def now_iso() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def hardware_line(hw: dict) -> str:
    where = hw.get("gpu") or f"{hw['cpu']} ({hw['cpu_count']} cores)"
    return (
        f"{where}; torch {hw['torch']}, {hw['torch_threads']} threads, device {hw['device']}, "
        f"CPU malloc {hw.get('cpu_malloc', 'default')}"
    )


def format_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells[1:]]
    return "\n".join(lines)


def _fmt(c) -> str:
    if c is None:
        return "-"
    if isinstance(c, float):
        return f"{c:.3g}" if abs(c) < 100 else f"{c:.0f}"
    return str(c)


def write_json(path: str | None, payload: dict):
    if not path:
        return
    directory = os.path.dirname(path)
    if directory:
        PathManager.mkdirs(directory)
    with PathManager.open(path, "w") as f:
        json.dump(payload, f, indent=2)
    logger.info("Wrote %s", path)


def median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64)))


def mb(num_bytes: float) -> float:
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
