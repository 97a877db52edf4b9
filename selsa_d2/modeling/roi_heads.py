"""SELSA ROI heads: key proposals attend to reference proposals in the box head."""

from collections.abc import Sequence

import torch
from detectron2.config import configurable
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.structures import ImageList, Instances

from ..postprocessing.video import candidate_detections
from .box_head import ReferenceMemory, SelsaBoxHead
from .rpn import MaxIoUMatcher

__all__ = ["SelsaROIHeads", "MaxIoUAssignerROIHeads", "build_roi_proposal_matcher"]


def build_roi_proposal_matcher(cfg) -> Matcher:
    """The R-CNN's proposal matcher: Detectron2's (no low-quality matches), or, with
    ``MODEL.ROI_HEADS.LOW_QUALITY_MATCHES``, mmdet's ``MaxIoUAssigner`` with
    ``match_low_quality=True`` and ``min_pos_iou = MODEL.ROI_HEADS.LOW_QUALITY_MIN_IOU``.

    mmtracking's R-CNN assigner (``configs/_base_/models/faster_rcnn_r50_dc5.py``,
    ``train_cfg.rcnn.assigner``: 0.5 / 0.5, ``min_pos_iou=0.5``): with the floor at the positive
    threshold the low-quality step adds no positive, but it moves a proposal that is the best
    match of a gt (ties included, the last such gt winning) to that gt, even when the proposal
    overlaps another gt more. mmdet assigns before adding the gts as proposals, so with
    ``PROPOSAL_APPEND_GT`` the appended gts take no part in it (:class:`MaxIoUMatcher`'s
    ``gt_appended``).
    """
    heads = cfg.MODEL.ROI_HEADS
    if not heads.LOW_QUALITY_MATCHES:
        return Matcher(heads.IOU_THRESHOLDS, heads.IOU_LABELS, allow_low_quality_matches=False)
    return MaxIoUMatcher(
        heads.IOU_THRESHOLDS,
        heads.IOU_LABELS,
        low_quality_min_iou=heads.LOW_QUALITY_MIN_IOU,
        gt_appended=heads.PROPOSAL_APPEND_GT,
    )


@ROI_HEADS_REGISTRY.register()
class MaxIoUAssignerROIHeads(StandardROIHeads):
    """Detectron2's ``StandardROIHeads`` with :func:`build_roi_proposal_matcher` (for the
    single-frame baseline of the mmtracking recipe)."""

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["proposal_matcher"] = build_roi_proposal_matcher(cfg)
        return ret


@ROI_HEADS_REGISTRY.register()
class SelsaROIHeads(StandardROIHeads):
    """Detectron2's ``StandardROIHeads`` (box pooler, sampling, ``FastRCNNOutputLayers``) with a
    :class:`SelsaBoxHead` that also sees reference proposals, and the proposal matcher of
    :func:`build_roi_proposal_matcher`.

    ``features`` passed to :meth:`forward` cover the key images first and then every reference
    image (the order of ``ref_proposals``); key image ``i`` owns ``num_refs[i]`` consecutive
    reference images. All RoIs (key and reference) are pooled in one RoIAlign call.
    """

    # Whether a key frame's box-head input is computed from its references' feature maps
    # (Temporal RoI Align): then video inference keeps every cached frame's maps.
    reads_reference_maps: bool = False

    @configurable
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(self.box_head, SelsaBoxHead):
            raise ValueError(
                f"SelsaROIHeads needs MODEL.ROI_BOX_HEAD.NAME 'SelsaBoxHead', got {type(self.box_head).__name__}"
            )
        if self.mask_on or self.keypoint_on:
            raise ValueError(
                "SelsaROIHeads supports boxes only (MODEL.MASK_ON / KEYPOINT_ON must be False)"
            )

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["proposal_matcher"] = build_roi_proposal_matcher(cfg)
        return ret

    def forward(
        self,
        images: ImageList,
        features: dict[str, torch.Tensor],
        proposals: list[Instances],
        targets: list[Instances] | None = None,
        ref_proposals: list[Instances] | None = None,
        num_refs: Sequence[int] | None = None,
    ) -> tuple[list[Instances], dict[str, torch.Tensor]]:
        """
        Args:
            images: unused (Detectron2 interface).
            features: name -> [N_key + N_ref, C, H, W], key images then reference images.
            proposals: N_key Instances with ``proposal_boxes`` (training: also sampled here).
            targets: N_key gt Instances (training).
            ref_proposals: N_ref Instances with ``proposal_boxes`` (not sampled, not supervised);
                ``None``: no references.
            num_refs: reference images per key image (sums to N_ref); ``None`` with a single
                key image means all references are its own.
        Returns:
            training: (sampled proposals, losses); inference: (pred Instances per key image, {}).
        """
        del images
        ref_proposals = list(ref_proposals or [])
        if num_refs is None:
            if ref_proposals and len(proposals) != 1:
                raise ValueError(
                    "SelsaROIHeads: num_refs is required with several key images and references"
                )
            num_refs = (
                [len(ref_proposals)] * len(proposals) if ref_proposals else [0] * len(proposals)
            )
        if len(num_refs) != len(proposals) or sum(num_refs) != len(ref_proposals):
            raise ValueError(
                f"SelsaROIHeads: num_refs {list(num_refs)} does not match {len(proposals)} key images "
                f"and {len(ref_proposals)} reference images"
            )
        if self.training:
            assert targets, "'targets' argument is required during training"
            proposals = self.label_and_sample_proposals(proposals, targets)
        del targets

        predictions = self._box_predictions(features, proposals, ref_proposals, num_refs)
        if self.training:
            return proposals, self.box_predictor.losses(predictions, proposals)
        pred_instances, _ = self.box_predictor.inference(predictions, proposals)
        return pred_instances, {}

    def _box_predictions(self, features, proposals, ref_proposals, num_refs):
        feats = [features[f] for f in self.box_in_features]
        boxes = [p.proposal_boxes for p in proposals] + [p.proposal_boxes for p in ref_proposals]
        pooled = self.box_pooler(feats, boxes)
        num_key_rois = [len(p) for p in proposals]
        ref_rois_per_frame = [len(p) for p in ref_proposals]
        num_ref_rois, start = [], 0
        for n in num_refs:
            num_ref_rois.append(sum(ref_rois_per_frame[start : start + n]))
            start += n
        n_key = sum(num_key_rois)
        key_pooled = self.key_roi_features(
            pooled[:n_key], features, proposals, ref_proposals, num_refs
        )
        box_features = self.box_head(key_pooled, pooled[n_key:], num_key_rois, num_ref_rois)
        return self.box_predictor(box_features)

    def key_roi_features(
        self, key_pooled, features, proposals, ref_proposals, num_refs
    ) -> torch.Tensor:
        """Hook for subclasses (Temporal RoI Align): the key proposals' pooled features
        [N_key_rois, C, 7, 7] the box head sees. SELSA: unchanged."""
        return key_pooled

    # ------------------------------------------------------------------ per-frame video path
    def frame_features(
        self, features: dict[str, torch.Tensor], proposals: list[Instances]
    ) -> list[tuple[torch.Tensor, ReferenceMemory]]:
        """Per image of ``features``: (key input [P_i, FC_DIM], :class:`ReferenceMemory` of its
        P_i proposals), from one RoIAlign over all images. See :meth:`SelsaBoxHead.frame_features`."""
        feats = [features[f] for f in self.box_in_features]
        pooled = self.box_pooler(feats, [p.proposal_boxes for p in proposals])
        key_input, memory = self.box_head.frame_features(pooled)
        counts = [len(p) for p in proposals]
        return list(zip(key_input.split(counts), memory.split(counts)))

    def predict_with_memory(
        self,
        proposals: Instances,
        key_input: torch.Tensor,
        memory: ReferenceMemory,
        candidate_score_thresh: float | None = None,
    ) -> Instances | tuple[Instances, Instances]:
        """One key image: its proposals, key input [P, FC_DIM] and its references' memory ->
        detections at the network input size (Detectron2's ``FastRCNNOutputLayers.inference``).
        With ``candidate_score_thresh``: (detections, the per-class boxes with a score above it
        before per-frame NMS, for Seq-NMS; see :func:`selsa_d2.postprocessing.video.candidate_detections`)."""
        box_features = self.box_head.attend_references(key_input, memory)
        predictions = self.box_predictor(box_features)
        pred_instances, _ = self.box_predictor.inference(predictions, [proposals])
        if candidate_score_thresh is None:
            return pred_instances[0]
        candidates = candidate_detections(
            self.box_predictor, predictions, proposals, candidate_score_thresh
        )
        return pred_instances[0], candidates
