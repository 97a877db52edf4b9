"""SELSA model parts; importing registers them with Detectron2's registries."""

from .aggregator import SelsaAggregator
from .backbone import (
    SelsaDC5Backbone,
    build_selsa_dc5_backbone,
    build_selsa_resnet_fpn_backbone,
)
from .box_head import ReferenceMemory, SelsaBoxHead
from .frame_features import FrameFeatures
from .meta_arch import SelsaRCNN, eval_mode
from .norm import FrozenStatsBatchNorm2d
from .roi_heads import MaxIoUAssignerROIHeads, SelsaROIHeads
from .rpn import MaxIoUAssignerRPN, MaxIoUMatcher
from .temporal_roi_align import (
    TEMPORAL_ROI_ALIGN_REGISTRY,
    TemporalRoIAlign,
    build_temporal_roi_align,
)
from .troi_roi_heads import SelsaTRoIROIHeads
from .video_inference import VideoInferenceEngine

__all__ = [
    "SelsaAggregator",
    "SelsaDC5Backbone",
    "build_selsa_dc5_backbone",
    "build_selsa_resnet_fpn_backbone",
    "SelsaBoxHead",
    "ReferenceMemory",
    "SelsaROIHeads",
    "MaxIoUAssignerROIHeads",
    "FrozenStatsBatchNorm2d",
    "MaxIoUAssignerRPN",
    "MaxIoUMatcher",
    "SelsaTRoIROIHeads",
    "TEMPORAL_ROI_ALIGN_REGISTRY",
    "TemporalRoIAlign",
    "build_temporal_roi_align",
    "SelsaRCNN",
    "eval_mode",
    "FrameFeatures",
    "VideoInferenceEngine",
]
