"""RPN anchor labelling as mmdet's ``MaxIoUAssigner`` does it (mmtracking's SELSA recipe).

mmtracking's ``configs/_base_/models/faster_rcnn_r50_dc5.py`` trains the RPN with
``MaxIoUAssigner(pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3)`` and ``allowed_border=0``
(mmdet 2.x ``mmdet/core/bbox/assigners/max_iou_assigner.py``, ``assign_wrt_overlaps``, and
``mmdet/models/dense_heads/anchor_head.py``, ``_get_targets_single``). Detectron2's ``RPN``
differs in three ways, which :class:`MaxIoUAssignerRPN` removes:

1. Low-quality matches (every gt's best anchors, ties included, become positive) have no IoU
   floor in Detectron2; mmdet only makes them for a gt whose best IoU is >= ``min_pos_iou``.
2. A low-quality match assigns the anchor to *that* gt in mmdet (later gts win ties between gts);
   Detectron2 keeps the anchor's highest-IoU gt as its regression target.
3. With ``allowed_border >= 0`` mmdet labels only the anchors inside the image, so a gt's "best
   anchor" is its best *inside* anchor; Detectron2 matches all anchors and then ignores the
   outside ones, so a gt whose best anchor crosses the border loses its low-quality match.
"""

from collections.abc import Sequence

import torch
from detectron2.config import configurable
from detectron2.modeling import PROPOSAL_GENERATOR_REGISTRY
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.proposal_generator import RPN
from detectron2.modeling.sampling import subsample_labels
from detectron2.structures import Boxes, Instances, pairwise_iou
from detectron2.utils.memory import retry_if_cuda_oom

__all__ = ["MaxIoUMatcher", "MaxIoUAssignerRPN"]

# mmdet's weight_reduce_loss adds torch.finfo(torch.float32).eps to avg_factor (any dtype)
_FLOAT32_EPS = float(torch.finfo(torch.float32).eps)


class MaxIoUMatcher(Matcher):
    """Detectron2's :class:`Matcher` with mmdet ``MaxIoUAssigner``'s low-quality matches.

    Thresholds and labels work as in :class:`Matcher` (for the RPN: IoU < 0.3 negative,
    [0.3, 0.7) ignored, >= 0.7 positive, each anchor matched to its highest-IoU gt). Then, for
    every gt ``g`` whose highest IoU over all predictions is ``>= low_quality_min_iou``, every
    prediction with exactly that IoU to ``g`` becomes positive and is matched to ``g``; gts are
    visited in index order, so a prediction that is the best of several gts ends up with the
    last of them (mmdet's ``gt_max_assign_all=True`` loop).
    """

    def __init__(
        self,
        thresholds: list[float],
        labels: list[int],
        low_quality_min_iou: float = 0.0,
        gt_appended: bool = False,
    ):
        """
        Args:
            thresholds, labels: see :class:`Matcher`.
            low_quality_min_iou: mmdet's ``min_pos_iou``. 0 makes a low-quality match for every
                gt, as Detectron2's ``allow_low_quality_matches``.
            gt_appended: the last M of the N predictions are the M gt boxes themselves, in gt
                order (Detectron2's ``add_ground_truth_to_proposals``, ``PROPOSAL_APPEND_GT``).
                As mmdet's sampler (``add_gt_as_proposals``: the assigner runs on the proposals,
                then ``AssignResult.add_gt_``), they are left out of the thresholds and of each
                gt's best match, and each is a positive matched to its own gt.
        """
        super().__init__(thresholds, labels, allow_low_quality_matches=False)
        if not 0.0 <= low_quality_min_iou <= 1.0:
            raise ValueError(f"low_quality_min_iou must lie in [0, 1], got {low_quality_min_iou}")
        self.low_quality_min_iou = low_quality_min_iou
        self.gt_appended = gt_appended

    def __call__(self, match_quality_matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            match_quality_matrix: [M gts, N predictions] IoU, all >= 0.

        Returns:
            matches: int64 [N], the matched gt index of each prediction.
            match_labels: int8 [N], -1 ignore / 0 negative / 1 positive.
        """
        num_gt, n = match_quality_matrix.shape
        if self.gt_appended and num_gt:
            if n < num_gt:
                raise ValueError(
                    f"MaxIoUMatcher(gt_appended=True): {n} predictions cannot end with {num_gt} gts"
                )
            matches, match_labels = self._match(match_quality_matrix[:, : n - num_gt])
            own = torch.arange(num_gt, device=matches.device)
            return (
                torch.cat([matches, own]),
                torch.cat([match_labels, torch.ones_like(own, dtype=match_labels.dtype)]),
            )
        return self._match(match_quality_matrix)

    def _match(self, match_quality_matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:class:`Matcher`'s thresholds, then mmdet's low-quality matches."""
        matches, match_labels = super().__call__(match_quality_matrix)
        if match_quality_matrix.numel() == 0:
            return matches, match_labels
        num_gt = match_quality_matrix.shape[0]
        best_per_gt = match_quality_matrix.max(dim=1).values  # [M]
        eligible = best_per_gt >= self.low_quality_min_iou
        is_best = (match_quality_matrix == best_per_gt[:, None]) & eligible[:, None]  # [M, N]
        has_low_quality_match = is_best.any(dim=0)
        # The last gt for which the prediction is a best match (argmax returns the first maximum).
        last_gt = num_gt - 1 - is_best.flip(0).to(torch.uint8).argmax(dim=0)
        matches[has_low_quality_match] = last_gt[has_low_quality_match]
        match_labels[has_low_quality_match] = 1
        return matches, match_labels

    def __repr__(self):
        return (
            f"MaxIoUMatcher(thresholds={self.thresholds[1:-1]}, labels={self.labels}, "
            f"low_quality_min_iou={self.low_quality_min_iou}, gt_appended={self.gt_appended})"
        )


@PROPOSAL_GENERATOR_REGISTRY.register()
class MaxIoUAssignerRPN(RPN):
    """Detectron2's ``RPN`` whose training anchors are labelled as mmdet's RPN labels them.

    Select it with ``MODEL.PROPOSAL_GENERATOR.NAME: "MaxIoUAssignerRPN"``. Everything else
    (head, proposals, sampling, losses, inference) is Detectron2's ``RPN``. Labelling:

    * the anchor matcher is :class:`MaxIoUMatcher` with
      ``low_quality_min_iou = MODEL.RPN.LOW_QUALITY_MIN_IOU`` (mmtracking: 0.3);
    * with ``MODEL.RPN.BOUNDARY_THRESH >= 0`` only the anchors inside the image (within that
      many pixels) are matched; the others are ignored (label -1), as mmdet's
      ``allowed_border``.

    ``MODEL.RPN.LOSS_NORMALIZER: "sampled_anchors"`` divides both losses by the number of sampled
    anchors as mmdet's ``AnchorHead.loss`` (``avg_factor = num_total_pos + num_total_neg``, each
    per-image count at least 1, and ``loss.sum() / (avg_factor + float32 eps)``,
    ``mmdet/models/losses/utils.py``) instead of Detectron2's
    ``BATCH_SIZE_PER_IMAGE x images``; they agree when every image fills its batch.
    """

    @configurable
    def __init__(self, *, loss_normalizer: str = "batch_size", **kwargs):
        """
        Args:
            loss_normalizer: "batch_size" (Detectron2) or "sampled_anchors" (mmdet).
            kwargs: Detectron2's ``RPN`` arguments.
        """
        super().__init__(**kwargs)
        if loss_normalizer not in ("batch_size", "sampled_anchors"):
            raise ValueError(
                "MODEL.RPN.LOSS_NORMALIZER must be 'batch_size' or 'sampled_anchors', "
                f"got {loss_normalizer!r}"
            )
        self.loss_normalizer = loss_normalizer

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["loss_normalizer"] = cfg.MODEL.RPN.LOSS_NORMALIZER
        ret["anchor_matcher"] = MaxIoUMatcher(
            cfg.MODEL.RPN.IOU_THRESHOLDS,
            cfg.MODEL.RPN.IOU_LABELS,
            low_quality_min_iou=cfg.MODEL.RPN.LOW_QUALITY_MIN_IOU,
        )
        return ret

    @torch.jit.unused
    @torch.no_grad()
    def label_and_sample_anchors(
        self, anchors: list[Boxes], gt_instances: list[Instances]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Same contract as ``RPN.label_and_sample_anchors``: per image, labels int8 [R] in
        {-1, 0, 1} after sampling and the matched gt boxes [R, 4] (R anchors of all levels)."""
        anchors = Boxes.cat(anchors)
        gt_labels, matched_gt_boxes = [], []
        for gt in gt_instances:
            inside = self._anchors_to_label(anchors, gt.image_size)
            labels_i = torch.full((len(anchors),), -1, dtype=torch.int8, device=anchors.device)
            matched_idxs = torch.zeros(len(anchors), dtype=torch.int64, device=anchors.device)
            iou = retry_if_cuda_oom(pairwise_iou)(gt.gt_boxes, anchors[inside])
            idxs_inside, labels_inside = retry_if_cuda_oom(self.anchor_matcher)(iou)
            labels_i[inside] = labels_inside.to(labels_i.device)
            matched_idxs[inside] = idxs_inside.to(matched_idxs.device)
            labels_i = self._sample(labels_i)
            if len(gt.gt_boxes) == 0:
                matched_gt_boxes.append(torch.zeros_like(anchors.tensor))
            else:
                matched_gt_boxes.append(gt.gt_boxes.tensor[matched_idxs])
            gt_labels.append(labels_i)
        return gt_labels, matched_gt_boxes

    @torch.jit.unused
    def losses(
        self,
        anchors: list[Boxes],
        pred_objectness_logits: list[torch.Tensor],
        gt_labels: list[torch.Tensor],
        pred_anchor_deltas: list[torch.Tensor],
        gt_boxes: list[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """Detectron2's ``RPN.losses``; with ``loss_normalizer == "sampled_anchors"`` rescaled
        from its normaliser (``batch_size_per_image`` x images) to mmdet's. ``gt_labels``: per
        image int8 [R] after sampling (1 positive, 0 negative, -1 not sampled)."""
        losses = super().losses(
            anchors, pred_objectness_logits, gt_labels, pred_anchor_deltas, gt_boxes
        )
        if self.loss_normalizer == "batch_size":
            return losses
        num_sampled = sum(
            max(int((labels == 1).sum()), 1) + max(int((labels == 0).sum()), 1)
            for labels in gt_labels
        )
        scale = self.batch_size_per_image * len(gt_labels) / (num_sampled + _FLOAT32_EPS)
        return {k: v * scale for k, v in losses.items()}

    def _anchors_to_label(self, anchors: Boxes, image_size: Sequence[int]) -> torch.Tensor:
        """bool [R]: anchors that take part in matching (all, or those inside the image)."""
        if self.anchor_boundary_thresh < 0:
            return torch.ones(len(anchors), dtype=torch.bool, device=anchors.device)
        return anchors.inside_box(image_size, self.anchor_boundary_thresh)

    def _sample(self, labels: torch.Tensor) -> torch.Tensor:
        """Keep ``batch_size_per_image`` random anchors (at most ``positive_fraction`` positive);
        all others become -1."""
        pos_idx, neg_idx = subsample_labels(
            labels, self.batch_size_per_image, self.positive_fraction, 0
        )
        sampled = torch.full_like(labels, -1)
        sampled[pos_idx] = 1
        sampled[neg_idx] = 0
        return sampled
