"""Optimizer with mmdet-style gradient clipping.

mmdet's ``grad_clip=dict(max_norm=35, norm_type=2)`` clips the L2 norm of *all* gradients
together. Detectron2's ``CLIP_TYPE: norm`` clips every parameter on its own, which is a different
(and much weaker) constraint, so SOLVER.CLIP_GRADIENTS.CLIP_TYPE accepts ``"full_model"`` here.
"""

import functools

import torch
from detectron2.solver import build_optimizer
from detectron2.solver.build import _generate_optimizer_class_with_gradient_clipping

FULL_MODEL = "full_model"


def build_selsa_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Detectron2's SGD; with ``CLIP_TYPE: full_model`` the global gradient norm is clipped."""
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if not (clip.ENABLED and clip.CLIP_TYPE == FULL_MODEL):
        return build_optimizer(cfg, model)
    cfg = cfg.clone()
    cfg.defrost()
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = False
    optimizer = build_optimizer(cfg, model)
    clipper = functools.partial(
        torch.nn.utils.clip_grad_norm_, max_norm=clip.CLIP_VALUE, norm_type=clip.NORM_TYPE
    )
    optimizer.__class__ = _generate_optimizer_class_with_gradient_clipping(
        type(optimizer), global_clipper=clipper
    )
    return optimizer


class FullModelClippedSGD(torch.optim.SGD):
    """``torch.optim.SGD`` whose ``step`` first clips the norm of all gradients together to
    ``max_norm`` (mmdet's ``grad_clip``; ``CLIP_TYPE: full_model``), as a class for LazyConfig
    files: ``L(FullModelClippedSGD)(params=L(get_default_optimizer_params)(...), lr=..., max_norm=35.0)``
    keeps Detectron2's ``optimizer.params.model`` convention. Same clipping as
    :func:`build_selsa_optimizer`'s."""

    def __init__(self, params, *, max_norm: float, norm_type: float = 2.0, **sgd_kwargs):
        super().__init__(params, **sgd_kwargs)
        self.max_norm, self.norm_type = float(max_norm), float(norm_type)

    def step(self, closure=None):
        all_params = [p for group in self.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(all_params, max_norm=self.max_norm, norm_type=self.norm_type)
        return super().step(closure)
