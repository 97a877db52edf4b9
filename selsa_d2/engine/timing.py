"""The model's time per frame during ``inference_on_dataset``."""

import time

import torch


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
