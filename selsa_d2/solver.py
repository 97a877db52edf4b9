"""Optimizer with mmdet-style gradient clipping.

mmdet's ``optimizer_config=dict(grad_clip=dict(max_norm=35, norm_type=2))`` (mmcv
``OptimizerHook``: ``clip_grad_norm_`` over every parameter that requires and has a gradient,
then ``optimizer.step()``) clips the L2 norm of *all* gradients together. Detectron2's
``CLIP_TYPE: norm`` clips every parameter on its own, which is a different (and much weaker)
constraint, so SOLVER.CLIP_GRADIENTS.CLIP_TYPE accepts ``"full_model"`` here.

The optimizer is Detectron2's SGD (``build_optimizer``: parameter groups of
``get_default_optimizer_params``, ``foreach``), with the global clip in its ``step``. The
learning rate schedule is Detectron2's (``build_lr_scheduler``): its ``linear`` warm-up gives
mmcv's ``warmup='linear'`` learning rate at every iteration (see ``tests/test_configs.py``).
"""

import torch
from detectron2.solver import build_optimizer, get_default_optimizer_params

__all__ = ["FULL_MODEL", "GlobalNormClippedSGD", "FullModelClippedSGD", "build_selsa_optimizer"]

FULL_MODEL = "full_model"


class GlobalNormClippedSGD(torch.optim.SGD):
    """``torch.optim.SGD`` whose ``step`` first scales all gradients together so that their
    global ``norm_type`` norm is at most ``max_norm`` (``torch.nn.utils.clip_grad_norm_`` over
    every parameter of the optimizer that has a gradient), as mmcv's ``OptimizerHook``."""

    def __init__(self, params, *, max_norm: float, norm_type: float = 2.0, **sgd_kwargs):
        if not max_norm > 0:
            raise ValueError(f"SOLVER.CLIP_GRADIENTS.CLIP_VALUE must be > 0, got {max_norm}")
        super().__init__(params, **sgd_kwargs)
        self.max_norm = float(max_norm)
        self.norm_type = float(norm_type)

    def clip_gradients(self) -> torch.Tensor | None:
        """Clip in place; returns the global norm before clipping (None: no gradients)."""
        grads = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return None
        return torch.nn.utils.clip_grad_norm_(grads, self.max_norm, self.norm_type)

    @torch.no_grad()
    def step(self, closure=None):
        self.clip_gradients()
        return super().step(closure)


def build_selsa_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Detectron2's SGD; with ``CLIP_TYPE: full_model`` a :class:`GlobalNormClippedSGD` with
    the same parameter groups and hyper-parameters."""
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if not (clip.ENABLED and clip.CLIP_TYPE == FULL_MODEL):
        return build_optimizer(cfg, model)
    params = get_default_optimizer_params(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
        weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
    )
    return GlobalNormClippedSGD(
        params,
        max_norm=clip.CLIP_VALUE,
        norm_type=clip.NORM_TYPE,
        lr=cfg.SOLVER.BASE_LR,
        momentum=cfg.SOLVER.MOMENTUM,
        nesterov=cfg.SOLVER.NESTEROV,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        foreach=True,
    )


# The LazyConfig name (configs/lazy/common/schedule_7e.py): the same optimizer.
FullModelClippedSGD = GlobalNormClippedSGD
