"""Norm layers Detectron2's ``get_norm`` does not know, and the names that select them.

``FrozenStatsBN`` is mmdet's ``norm_cfg=dict(type='BN', requires_grad=True), norm_eval=True``
(mmtracking's SELSA ResNets): every BatchNorm normalises with its running statistics, in training
too, and never updates them, while its weight and bias are trained wherever the stage is
trainable. Detectron2's ``FrozenBN`` freezes both.

Detectron2's ``get_norm`` maps a fixed set of names, and a config value cannot hold a callable,
so the names here are resolved by the backbone builder (:func:`build_resnet_with_norm`): it builds
Detectron2's ResNet with the norm's *base* name (``BN``), so that ``FREEZE_AT`` turns the frozen
stages into ``FrozenBatchNorm2d`` as usual (``CNNBlockBase.freeze``), and then converts the
norms of the trainable stages.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling.backbone import build_resnet_backbone
from torch import nn

__all__ = [
    "FrozenStatsBatchNorm2d",
    "RESNET_NORMS",
    "register_resnet_norm",
    "convert_to_frozen_stats",
    "build_resnet_with_norm",
]


class FrozenStatsBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that always normalises with its running statistics and never updates them;
    ``weight`` and ``bias`` are ordinary parameters (trained unless ``requires_grad`` is off).

    As ``nn.BatchNorm2d`` in eval mode whatever ``self.training`` says, i.e. what mmdet's ResNet
    does with ``norm_eval=True`` (``ResNet.train`` puts every ``_BatchNorm`` in eval mode). A
    subclass of ``nn.BatchNorm2d``, so that Detectron2's ``FrozenBatchNorm2d.convert_frozen_batchnorm``
    (used by ``FREEZE_AT``) freezes it and ``SOLVER.WEIGHT_DECAY_NORM`` applies to it. Its state
    dict has FrozenBN's keys (no ``num_batches_tracked``: the statistics are never tracked), so
    checkpoints move freely between the two.

    Input / output: [N, C, H, W].
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__(num_features, eps=eps)
        self.register_buffer("num_batches_tracked", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A BatchNorm checkpoint (mmdet, torchvision) may carry the counter: not ours to load.
        state_dict.pop(prefix + "num_batches_tracked", None)
        # nn.Module's loader, not _NormBase's (which would add the counter back for old versions)
        nn.Module._load_from_state_dict(self, state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"

    @classmethod
    def convert_batchnorm(cls, module: nn.Module) -> nn.Module:
        """Replace every ``nn.BatchNorm2d`` (not SyncBatchNorm, not already frozen) in ``module``
        by this class, keeping its parameters (and their ``requires_grad``) and statistics.
        Returns the new module if ``module`` itself is one, else ``module`` converted in place."""
        if type(module) is nn.BatchNorm2d:
            new = cls(module.num_features, eps=module.eps)
            with torch.no_grad():
                new.weight.copy_(module.weight)
                new.bias.copy_(module.bias)
                new.running_mean.copy_(module.running_mean)
                new.running_var.copy_(module.running_var)
            new.weight.requires_grad_(module.weight.requires_grad)
            new.bias.requires_grad_(module.bias.requires_grad)
            return new.to(module.weight.device)
        for name, child in module.named_children():
            new_child = cls.convert_batchnorm(child)
            if new_child is not child:
                module.add_module(name, new_child)
        return module


# name -> (Detectron2 norm name the ResNet is built with, conversion applied afterwards)
RESNET_NORMS: dict[str, tuple[str, Callable[[nn.Module], nn.Module]]] = {}


def register_resnet_norm(
    name: str, base_norm: str, convert: Callable[[nn.Module], nn.Module]
) -> None:
    """Make ``MODEL.RESNETS.NORM: <name>`` build the ResNet with Detectron2's ``base_norm`` and
    then apply ``convert`` to it (after ``FREEZE_AT`` has frozen its stages)."""
    if name in RESNET_NORMS:
        raise KeyError(f"ResNet norm {name!r} is already registered")
    RESNET_NORMS[name] = (base_norm, convert)


def convert_to_frozen_stats(module: nn.Module) -> nn.Module:
    """A ResNet built with ``BN`` -> ``FrozenStatsBN``: every ``nn.BatchNorm2d`` becomes a
    :class:`FrozenStatsBatchNorm2d`; the ``FrozenBatchNorm2d`` that ``FREEZE_AT`` made from them
    lose the ``num_batches_tracked`` counter they inherited (a FrozenBN built as such has none),
    so that the state dict has exactly the keys of the same model built with ``FrozenBN``."""
    for m in module.modules():
        if isinstance(m, FrozenBatchNorm2d) and m.num_batches_tracked is not None:
            m.register_buffer("num_batches_tracked", None)
    return FrozenStatsBatchNorm2d.convert_batchnorm(module)


register_resnet_norm("FrozenStatsBN", "BN", convert_to_frozen_stats)


def build_resnet_with_norm(cfg, input_shape):
    """Detectron2's ``build_resnet_backbone``, also for the norm names of :data:`RESNET_NORMS`."""
    norm = cfg.MODEL.RESNETS.NORM
    if not isinstance(norm, str) or norm not in RESNET_NORMS:
        return build_resnet_backbone(cfg, input_shape)
    base_norm, convert = RESNET_NORMS[norm]
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.RESNETS.NORM = base_norm
    return convert(build_resnet_backbone(cfg, input_shape))
