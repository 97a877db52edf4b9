"""SELSA model parts; importing registers them with Detectron2's registries."""

from .aggregator import SelsaAggregator
from .backbone import SelsaDC5Backbone, build_selsa_dc5_backbone
from .box_head import SelsaBoxHead
from .meta_arch import SelsaRCNN, eval_mode
from .roi_heads import SelsaROIHeads
from .rpn import MaxIoUAssignerRPN, MaxIoUMatcher
from .video_inference import FrameFeatures, VideoInferenceEngine

__all__ = [
    "SelsaAggregator",
    "SelsaDC5Backbone",
    "build_selsa_dc5_backbone",
    "SelsaBoxHead",
    "SelsaROIHeads",
    "MaxIoUAssignerRPN",
    "MaxIoUMatcher",
    "SelsaRCNN",
    "eval_mode",
    "FrameFeatures",
    "VideoInferenceEngine",
]
