"""Training-loop pieces Detectron2's DefaultTrainer needs for SELSA on any device."""

import contextlib
import logging
import time
from unittest import mock

import detectron2.utils.comm as comm
import torch
from detectron2.engine import AMPTrainer, HookBase
from detectron2.engine import defaults as d2_defaults
from detectron2.engine.defaults import create_ddp_model


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


@contextlib.contextmanager
def ddp_on_any_device():
    """Within this context DefaultTrainer's constructor wraps CPU models in DDP correctly."""
    with mock.patch.object(d2_defaults, "create_ddp_model", create_ddp_model_any_device):
        yield


class UnscaleGradientsForClipping(HookBase):
    """With AMP, unscale gradients before the optimizer clips them.

    Detectron2's AMPTrainer calls ``grad_scaler.step`` on *scaled* gradients, so a clipping
    optimizer would compare the loss-scaled norm (x65536) against CLIP_VALUE. Unscaling in
    ``after_backward`` makes the clip act on true gradients; GradScaler.step then skips its own
    unscale. Register it on the inner loop (``DefaultTrainer._trainer``), which is the one that
    calls ``after_backward``.
    """

    def after_backward(self):
        if isinstance(self.trainer, AMPTrainer):
            self.trainer.grad_scaler.unscale_(self.trainer.optimizer)


class FrameTimer(torch.nn.Module):
    """Wraps a model for ``inference_on_dataset`` and measures the model's time per frame.

    It is an ``nn.Module`` so that Detectron2's ``inference_context`` puts the wrapped model in
    eval mode. Like Detectron2's own timing, the first ``warmup`` frames are not counted.
    """

    def __init__(self, model: torch.nn.Module, warmup: int = 5):
        super().__init__()
        self.model = model
        self.warmup = warmup
        self.frames = 0
        self._timed_frames = 0
        self._seconds = 0.0

    def forward(self, inputs):
        sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
        sync()
        start = time.perf_counter()
        outputs = self.model(inputs)
        sync()
        if self.frames >= self.warmup:
            self._seconds += time.perf_counter() - start
            self._timed_frames += len(inputs)
        self.frames += len(inputs)
        return outputs

    def ms_per_frame(self) -> float:
        return 1000.0 * self._seconds / max(self._timed_frames, 1)
