"""Training-loop hooks SELSA's trainer registers on Detectron2's loop."""

from detectron2.engine import AMPTrainer, HookBase


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
