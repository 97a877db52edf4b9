"""ResNet (DC5 or truncated at res4) + 3x3 conv/ReLU neck: one stride-16 feature map."""

import logging

import torch
import torch.nn.functional as F
from detectron2.config import get_cfg
from detectron2.layers import Conv2d, FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling.backbone import (
    BACKBONE_REGISTRY,
    FPN,
    Backbone,
    ResNet,
)
from detectron2.modeling.backbone.fpn import build_resnet_fpn_backbone
from fvcore.nn import weight_init
from torch import nn

from .norm import build_resnet_with_norm

__all__ = [
    "SelsaDC5Backbone",
    "build_selsa_dc5_backbone",
    "build_selsa_resnet_fpn_backbone",
    "build_resnet",
    "zero_init_residual_branches",
]

logger = logging.getLogger(__name__)


class SelsaDC5Backbone(Backbone):
    """``bottom_up`` (a Detectron2 ResNet) -> one feature -> ``neck`` (3x3 conv + bias + ReLU).

    Output: ``{out_feature: Tensor[N, out_channels, H/16, W/16]}``.
    """

    def __init__(
        self, bottom_up: Backbone, in_feature: str, out_channels: int, out_feature: str = "neck"
    ):
        super().__init__()
        shapes = bottom_up.output_shape()
        if in_feature not in shapes:
            raise ValueError(
                f"SelsaDC5Backbone: bottom-up network has no output {in_feature!r} (has {list(shapes)})"
            )
        self.bottom_up = bottom_up
        self.in_feature = in_feature
        self.out_feature = out_feature
        in_shape = shapes[in_feature]
        self.neck = Conv2d(
            in_shape.channels, out_channels, 3, padding=1, bias=True, activation=F.relu
        )
        weight_init.c2_msra_fill(
            self.neck
        )  # mmcv ConvModule's kaiming init (fan_out, relu), bias 0
        self._out_shape = ShapeSpec(channels=out_channels, stride=in_shape.stride)
        self._out_features = [out_feature]
        self._out_feature_channels = {out_feature: out_channels}
        self._out_feature_strides = {out_feature: in_shape.stride}

    @property
    def size_divisibility(self) -> int:
        return self._out_shape.stride

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x [N, 3, H, W] (H, W multiples of 16) -> {out_feature: [N, C, H/16, W/16]}."""
        return {self.out_feature: self.neck(self.bottom_up(x)[self.in_feature])}

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {self.out_feature: self._out_shape}


def zero_init_residual_branches(resnet: ResNet) -> int:
    """Zero the weight of the last norm of every residual branch; return how many were zeroed.

    mmdet's ``ResNet(zero_init_residual=True)`` (its default; mmdet/models/backbones/resnet.py,
    ``init_weights``) does this, so that every block starts as the identity and a from-scratch
    network trains like a shallow one at first. Detectron2 leaves these weights at 1 (see the
    comment in its ``BottleneckBlock.__init__``). The last norm is ``conv3.norm`` of a bottleneck
    block and ``conv2.norm`` of a basic block. Loading pretrained weights afterwards overwrites
    them, so the option only matters for training from scratch. A frozen norm would stay zero
    forever and cut the branch off, hence the error.
    """
    count = 0
    for stage in resnet.stages:
        for block in stage.children():
            last_conv = getattr(block, "conv3", None) or getattr(block, "conv2", None)
            norm = getattr(last_conv, "norm", None)
            if norm is None:
                raise ValueError(
                    f"zero_init_residual: block {type(block).__name__} has no normalised last conv"
                )
            if isinstance(norm, FrozenBatchNorm2d) or not isinstance(
                getattr(norm, "weight", None), nn.Parameter
            ):
                raise ValueError(
                    "MODEL.SELSA.ZERO_INIT_RESIDUAL needs trainable norms in the residual branches "
                    f"(MODEL.RESNETS.NORM 'BN', 'SyncBN', 'GN' or 'FrozenStatsBN'; got {type(norm).__name__}): a frozen zero "
                    "weight would switch the branch off for good"
                )
            nn.init.zeros_(norm.weight)
            count += 1
    return count


@BACKBONE_REGISTRY.register()
def build_selsa_dc5_backbone(cfg, input_shape: ShapeSpec) -> SelsaDC5Backbone:
    """Detectron2 ResNet truncated at ``MODEL.SELSA.BACKBONE_OUT_FEATURE`` + the SELSA neck.

    DC5 models (R-50/101/X-101, feature "res5") need ``MODEL.RESNETS.RES5_DILATION 2`` (res5 at
    stride 16, dilation 2 in every block) and, to match mmtracking, ``STRIDE_IN_1X1 False``.
    Tiny models use R-18 truncated at "res4" (already stride 16).
    ``MODEL.RESNETS.NORM`` also accepts the names of :data:`selsa_d2.modeling.norm.RESNET_NORMS`
    (``FrozenStatsBN``: mmdet's ``norm_eval=True`` with trained BN weight and bias).
    ``MODEL.SELSA.ZERO_INIT_RESIDUAL``: see :func:`zero_init_residual_branches`.
    """
    in_feature = cfg.MODEL.SELSA.BACKBONE_OUT_FEATURE
    resnet_cfg = cfg.clone()
    resnet_cfg.defrost()
    resnet_cfg.MODEL.RESNETS.OUT_FEATURES = [in_feature]
    bottom_up = build_resnet_with_norm(resnet_cfg, input_shape)
    if cfg.MODEL.SELSA.ZERO_INIT_RESIDUAL:
        n = zero_init_residual_branches(bottom_up)
        logger.info(
            "Zero-initialised the last norm of %d residual branches (MODEL.SELSA.ZERO_INIT_RESIDUAL)",
            n,
        )
    stride = bottom_up.output_shape()[in_feature].stride
    if stride != 16:
        raise ValueError(
            f"SELSA needs a stride-16 backbone feature; {in_feature!r} of this ResNet has stride {stride} "
            "(for 'res5' set MODEL.RESNETS.RES5_DILATION 2; R-18/34 cannot dilate: use 'res4')"
        )
    return SelsaDC5Backbone(
        bottom_up, in_feature, cfg.MODEL.SELSA.NECK_CHANNELS, cfg.MODEL.SELSA.NECK_OUT_FEATURE
    )


@BACKBONE_REGISTRY.register()
def build_selsa_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """Detectron2's ``build_resnet_fpn_backbone`` (same modules and parameter names, so its
    checkpoints load unchanged) that also honours ``MODEL.SELSA.ZERO_INIT_RESIDUAL`` (see
    :func:`zero_init_residual_branches`), which Detectron2's builder knows nothing of."""
    fpn = build_resnet_fpn_backbone(cfg, input_shape)
    if cfg.MODEL.SELSA.ZERO_INIT_RESIDUAL:
        n = zero_init_residual_branches(fpn.bottom_up)
        logger.info(
            "Zero-initialised the last norm of %d residual branches (MODEL.SELSA.ZERO_INIT_RESIDUAL)",
            n,
        )
    return fpn


def build_resnet(
    depth: int,
    out_features: list[str],
    *,
    norm: str = "FrozenBN",
    stride_in_1x1: bool = True,
    res5_dilation: int = 1,
    freeze_at: int = 2,
    stem_out_channels: int = 64,
    res2_out_channels: int = 256,
    width_per_group: int = 64,
    num_groups: int = 1,
    zero_init_residual: bool = False,
    in_channels: int = 3,
) -> ResNet:
    """Detectron2's ``build_resnet_backbone`` from explicit arguments (the ``MODEL.RESNETS.*``
    keys of the same names, ``MODEL.BACKBONE.FREEZE_AT``, ``MODEL.SELSA.ZERO_INIT_RESIDUAL``), for
    LazyConfig files: ``ResNet.make_default_stages`` knows no res5 dilation (DC5) or narrow
    widths, and this builds exactly the network a YAML config with these values builds."""
    cfg = get_cfg()
    r = cfg.MODEL.RESNETS
    r.DEPTH, r.OUT_FEATURES, r.NORM = depth, list(out_features), norm
    r.STRIDE_IN_1X1, r.RES5_DILATION = stride_in_1x1, res5_dilation
    r.STEM_OUT_CHANNELS, r.RES2_OUT_CHANNELS = stem_out_channels, res2_out_channels
    r.WIDTH_PER_GROUP, r.NUM_GROUPS = width_per_group, num_groups
    cfg.MODEL.BACKBONE.FREEZE_AT = freeze_at
    resnet = build_resnet_with_norm(cfg, ShapeSpec(channels=in_channels))
    if zero_init_residual:
        zero_init_residual_branches(resnet)
    return resnet
