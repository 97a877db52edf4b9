"""A benchmark run's set-up: the presets of its arguments, logging, threads, malloc."""

import argparse
import logging

import torch

from .. import cpu_allocator


def finish_args(parser, args, presets: dict[str, dict]):
    """Fill the options left at None from the chosen preset (--tiny, --quick or the full run) and
    refuse --device cuda without CUDA."""
    for k, v in presets["tiny" if args.tiny else "quick" if args.quick else "full"].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")
    return args


def model_benchmark_parser(
    description: str, quick_help: str, tiny_help: str, amp_help: str
) -> argparse.ArgumentParser:
    """A model benchmark's parser with the options every one takes: the preset (``--quick`` /
    ``--tiny``, filled in by :func:`finish_args`), the network input size, the device, AMP and the
    ResNet depth."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true", help=quick_help)
    preset.add_argument("--tiny", action="store_true", help=tiny_help)
    parser.add_argument("--height", type=int, help="network input height (default 600)")
    parser.add_argument("--width", type=int, help="network input width (default 1000)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--amp", action="store_true", help=amp_help)
    parser.add_argument(
        "--depth", type=int, default=50, help="ResNet depth of the DC5 backbone (50 or 101)"
    )
    return parser


def add_cpu_malloc_arg(parser):
    """``--cpu-malloc retain|default``."""
    parser.add_argument(
        "--cpu-malloc",
        choices=("retain", "default"),
        default="retain",
        help="retain: glibc keeps freed memory for reuse, as train_net.py does on the CPU "
        "(RETAIN_FREED_CPU_MEMORY, selsa_d2.cpu_allocator); default: glibc's own settings",
    )


# What start_run set for glibc malloc; reported with the hardware (:func:`cpu_malloc_mode`).
_cpu_malloc = "default"


def cpu_malloc_mode() -> str:
    """``retain`` when :func:`start_run` made glibc keep freed memory, else ``default``."""
    return _cpu_malloc


def start_run(args):
    """Logging, torch threads and (``--cpu-malloc retain`` on the CPU) malloc for a benchmark run."""
    global _cpu_malloc
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cpu_malloc == "retain" and not args.device.startswith("cuda"):
        if cpu_allocator.retain_freed_cpu_memory():
            _cpu_malloc = "retain"
