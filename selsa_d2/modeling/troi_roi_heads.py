"""SELSA ROI heads whose key-frame RoI features go through Temporal RoI Align first."""

from collections.abc import Sequence

import torch
from detectron2.config import configurable
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY
from detectron2.structures import Instances

from .roi_heads import SelsaROIHeads
from .temporal_roi_align import build_temporal_roi_align

__all__ = ["SelsaTRoIROIHeads"]


@ROI_HEADS_REGISTRY.register()
class SelsaTRoIROIHeads(SelsaROIHeads):
    """:class:`SelsaROIHeads` + Temporal RoI Align (mmtracking's ``SelsaRoIHead`` with a
    ``TemporalRoIAlign`` ``bbox_roi_extractor``, mmtrack/models/roi_heads/selsa_roi_head.py).

    Key proposals: RoIAlign on the key image, then :class:`TemporalRoIAlign` against the feature
    maps of the key image's references (training: its reference images; video inference: the
    references and, with ``KEY_FRAME_AS_REF``, the key frame itself, last). Reference proposals:
    plain RoIAlign, as in SELSA. The box head is SELSA's (mmtracking's TRoI models: 3 shared FCs).
    """

    @configurable
    def __init__(self, *, temporal_roi_align: torch.nn.Module, **kwargs):
        super().__init__(**kwargs)
        if len(self.box_in_features) != 1:
            raise ValueError(
                "SelsaTRoIROIHeads (Temporal RoI Align) searches one feature map per frame, got "
                f"MODEL.ROI_HEADS.IN_FEATURES {list(self.box_in_features)}: it does not support "
                "multi-level features (FPN); use a single-map backbone (DC5, Base-SELSA-DC5.yaml) "
                "or ROI_HEADS.NAME 'SelsaROIHeads' with FPN"
            )
        self.temporal_roi_align = temporal_roi_align

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        # built for the first map; __init__ rejects several (FPN) with a clear message
        ret["temporal_roi_align"] = build_temporal_roi_align(
            cfg, input_shape[cfg.MODEL.ROI_HEADS.IN_FEATURES[0]]
        )
        return ret

    # ------------------------------------------------------------------ training / generic path
    def key_roi_features(
        self,
        key_pooled: torch.Tensor,
        features: dict[str, torch.Tensor],
        proposals: list[Instances],
        ref_proposals: list[Instances],
        num_refs: Sequence[int],
    ) -> torch.Tensor:
        """Per key image, its pooled RoIs [n_i, C, 7, 7] through Temporal RoI Align against the
        maps of its own ``num_refs[i]`` reference images (cropped to each image's size)."""
        feature = features[self.box_in_features[0]]
        n_key = len(proposals)
        maps = [
            self.temporal_roi_align.reference_map(feature[n_key + j], p.image_size)
            for j, p in enumerate(ref_proposals)
        ]
        out, start = [], 0
        for x, n in zip(key_pooled.split([len(p) for p in proposals]), num_refs):
            out.append(self.temporal_roi_align(x, maps[start : start + n]))
            start += n
        return torch.cat(out) if out else key_pooled

    # ------------------------------------------------------------------ cached video path
    # The video engine keeps every cached frame's feature map (:meth:`frame_feature_map`).
    reads_reference_maps = True

    def frame_feature_map(
        self, features: dict[str, torch.Tensor], image_size: tuple[int, int]
    ) -> torch.Tensor:
        """A one-image batch's features -> its map [C, H, W] for the search."""
        return self.temporal_roi_align.reference_map(
            features[self.box_in_features[0]][0], image_size
        )

    def key_input_from_frames(self, key, reference_frames: Sequence) -> torch.Tensor:
        """:meth:`key_input_from_maps` for :class:`FrameFeatures` (``feature_maps`` kept)."""
        maps = []
        for f in [key] + list(reference_frames):
            if f.feature_maps is None:
                raise ValueError(
                    "SelsaTRoIROIHeads: a frame's features were computed without their feature maps "
                    "(compute_frame_features(..., keep_feature_maps=True))"
                )
            maps.append(self.frame_feature_map(f.feature_maps, f.image_size))
        return self.key_input_from_maps(key.proposals, maps[0], maps[1:])

    def key_input_from_maps(
        self, proposals: Instances, key_map: torch.Tensor, ref_maps: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """Key frame's proposals, its map [C, H, W] and its references' maps -> its layer-0 box
        head input [P, FC_DIM] (what :meth:`predict_with_memory` takes)."""
        pooled = self.box_pooler([key_map[None]], [proposals.proposal_boxes])
        # the box head's first shared FC on the flattened temporal RoI features (SelsaBoxHead's key input)
        return self.box_head.fcs[0](
            torch.flatten(self.temporal_roi_align(pooled, ref_maps), start_dim=1)
        )
