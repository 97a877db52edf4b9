"""What every entry point needs around Detectron2's engine: its config (:func:`setup_selsa_cfg`),
the CPU when CUDA is missing, and DDP on any device (:class:`AnyDeviceTrainer`)."""

import logging
import weakref
from collections.abc import Sequence

import detectron2.utils.comm as comm
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, get_cfg
from detectron2.engine import (
    AMPTrainer,
    DefaultTrainer,
    SimpleTrainer,
    TrainerBase,
    create_ddp_model,
)
from detectron2.utils.logger import setup_logger

from ..config import add_selsa_config
from ..data.datasets import register_datasets_from_config
from ..run_guard import ConfigError, merge_config, validate_config


def fall_back_to_cpu(cfg) -> None:
    """``MODEL.DEVICE cpu`` (with a warning) when the config asks for CUDA on a machine without it.

    The R-50/101 configs default to ``cuda``; without a GPU Detectron2 would fail deep inside
    ``build_model`` ("Found no NVIDIA driver"). ``cfg`` must not be frozen.
    """
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger(__name__).warning(
            f"MODEL.DEVICE is {cfg.MODEL.DEVICE} but CUDA is not available: running on the CPU (MODEL.DEVICE cpu)"
        )
        cfg.MODEL.DEVICE = "cpu"


def setup_selsa_cfg(config_file: str, opts: Sequence = (), *, freeze: bool = True) -> CfgNode:
    """The config an entry point runs with, set up in one place (``train_net.py``, the demo and
    the tools all use it).

    Detectron2's defaults with SELSA's keys (:func:`add_selsa_config`), then ``config_file``,
    then ``opts`` (``KEY VALUE ...``, as on a command line); ``MODEL.DEVICE`` falls back to the
    CPU where CUDA is missing (:func:`fall_back_to_cpu`); frozen unless ``freeze=False``; and the
    datasets the config declares itself (``DATASETS.COCO_VID``) registered, so that
    ``DATASETS.TRAIN`` / ``TEST`` may name them.

    A missing or unreadable config file, an unknown or mistyped key, or a SELSA key with a value
    of the wrong type or range (:func:`selsa_d2.run_guard.validate_config`) is a one-line
    :class:`~selsa_d2.run_guard.ConfigError` naming the key or file.
    """
    cfg = add_selsa_config(get_cfg())
    merge_config(cfg, config_file, list(opts))
    fall_back_to_cpu(cfg)
    validate_config(cfg, training=False)
    if freeze:
        cfg.freeze()
    try:
        register_datasets_from_config(cfg)
    except ValueError as e:  # a malformed DATASETS.COCO_VID entry, named
        raise ConfigError(str(e)) from None
    return cfg


def finish_distributed() -> None:
    """End of a successful multi-process run: wait for every process, then destroy the default
    process group. Detectron2's ``launch`` leaves it alive; with gloo its worker threads can then
    abort the interpreter's exit ("terminate called without an active exception", SIGABRT),
    which fails the whole run after its work is done (pytorch/pytorch#190489). No-op when not
    distributed."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    comm.synchronize()
    torch.distributed.destroy_process_group()


def create_ddp_model_any_device(model: torch.nn.Module, **kwargs):
    """Detectron2's ``create_ddp_model``, also for CPU models (multi-process CPU training over gloo).

    Detectron2 always passes ``device_ids=[local_rank]``, which DistributedDataParallel rejects
    for a module whose parameters live on the CPU.
    """
    if next(model.parameters()).device.type == "cpu":
        kwargs.setdefault("device_ids", None)
    return create_ddp_model(model, **kwargs)


class AnyDeviceTrainer(DefaultTrainer):
    """Detectron2's ``DefaultTrainer``, whose model is wrapped in DDP on any device (CPU too).

    ``DefaultTrainer.__init__`` wraps the model with ``create_ddp_model``, which DDP rejects for a
    CPU model in a multi-process run (see :func:`create_ddp_model_any_device`). This constructor
    is ``DefaultTrainer.__init__`` (detectron2 0.7) with :meth:`wrap_model` at that step; every
    ``build_*`` method and everything after construction is the parent's.
    """

    def __init__(self, cfg):
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()  # as DefaultTrainer: setup_logger is not called for detectron2
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        # Constructed in DefaultTrainer's order.
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = self.wrap_model(model)
        self._trainer = (AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer)(
            model, data_loader, optimizer
        )
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = DetectionCheckpointer(
            model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    @classmethod
    def wrap_model(cls, model: torch.nn.Module) -> torch.nn.Module:
        """The model the training loop runs: DDP when there are several processes."""
        return create_ddp_model_any_device(model, broadcast_buffers=False)
