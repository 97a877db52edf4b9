"""What a benchmark reports: the hardware, tables, the JSON result.

Every speed figure a benchmark prints is a ratio against a baseline measured in the same process
and the same run, next to the absolute times and the hardware (:func:`hardware_info`).
"""

import datetime
import json
import logging
import os
import platform
from collections.abc import Sequence

import torch
from detectron2.utils.file_io import PathManager

from ..file_io import atomic_write_text
from .run_setup import cpu_malloc_mode

logger = logging.getLogger(__name__)


def hardware_info(device: str) -> dict:
    """The machine a benchmark ran on (printed and written with every result)."""
    info = {
        "device": device,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_malloc": cpu_malloc_mode(),
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
    """Local time, ISO 8601 with the offset."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def hardware_line(hw: dict) -> str:
    """:func:`hardware_info` in one line."""
    where = hw.get("gpu") or f"{hw['cpu']} ({hw['cpu_count']} cores)"
    return (
        f"{where}; torch {hw['torch']}, {hw['torch_threads']} threads, device {hw['device']}, "
        f"CPU malloc {hw.get('cpu_malloc', 'default')}"
    )


def format_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A markdown table; floats with 3 significant digits, None as ``-``."""
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
    """Write a result to ``path`` (atomically; nothing when ``path`` is empty)."""
    if not path:
        return
    directory = os.path.dirname(path)
    if directory:
        PathManager.mkdirs(directory)
    atomic_write_text(path, json.dumps(payload, indent=2))
    logger.info("Wrote %s", path)
