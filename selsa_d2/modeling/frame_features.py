"""``FrameFeatures``: what one video frame contributes to SELSA inference, as key and as reference."""

from dataclasses import dataclass

import torch
from detectron2.structures import Instances

from .box_head import ReferenceMemory

__all__ = ["FrameFeatures"]


@dataclass
class FrameFeatures:
    """One frame's per-frame computation (:meth:`SelsaRCNN.compute_frame_features`).

    image_size: (height, width) of the frame at the network input size.
    proposals: its RPN proposals (``proposal_boxes``, ``objectness_logits``), test settings.
    key_input: [P, FC_DIM] first shared FC layer's pre-ReLU output of its proposals: the frame
        as a key frame (:meth:`SelsaRCNN.detect_key_frame`).
    memory: its proposals' :class:`ReferenceMemory`: the frame as a reference.
    feature_maps: its backbone (+ neck) feature maps, name -> [1, C, H', W'], kept only when
        asked for (``keep_feature_maps=True``), e.g. for aggregation that pools a key frame's
        proposals from its references' maps; ``None`` otherwise.

    Size: ``(1 + 2 * NUM_FC) * P * FC_DIM`` floats plus ``P`` boxes, whatever the backbone: the
    R-50 DC5 and FPN configs (P = 300 proposals, 2 FC layers of 1024) cache 6.1 MB per frame in
    float32. ``SelsaROIHeads`` keeps no feature maps (FPN's p2-p6 would be ~51 MB per frame at
    600x1000); Temporal RoI Align keeps its one map.
    """

    image_size: tuple[int, int]
    proposals: Instances
    key_input: torch.Tensor
    memory: ReferenceMemory
    feature_maps: dict[str, torch.Tensor] | None = None

    def __len__(self) -> int:
        """Number of proposals."""
        return len(self.proposals)
