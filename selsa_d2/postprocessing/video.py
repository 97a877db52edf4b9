"""Seq-NMS over a whole video's detections: the model's pre-NMS candidates in, Detectron2-style
per-frame detections out (Seq-NMS, then per-frame NMS and the per-frame cap).

Where the candidates come from: with ``TEST.VID.SEQ_NMS.ENABLED`` a :class:`SelsaRCNN` returns,
beside each frame's ``"instances"``, its ``"candidates"``: every (box, class) with score >
``SCORE_THRESH``, before per-frame NMS and the cap (:func:`candidate_detections`, the first half
of Detectron2's ``fast_rcnn_inference_single_image``). Who applies Seq-NMS: the evaluator (per
video, ``--eval-only``), ``VideoPredictor.predict_video`` and ``demo/demo.py`` offline, and
``tools/rescore_detections.py`` on saved (already per-frame NMS-ed and capped) detections.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from detectron2.layers import batched_nms
from detectron2.structures import Boxes, Instances

from .seq_nms import SeqNMSParams, seq_nms_video

__all__ = [
    "SeqNMSSettings",
    "candidate_detections",
    "finish_frame",
    "seq_nms_frames",
    "seq_nms_instances",
    "check_seq_nms_mode",
]


class SeqNMSSettings:
    """Seq-NMS parameters plus what is applied after it, as without it: the model's score
    threshold (``MODEL.ROI_HEADS.SCORE_THRESH_TEST``, on the rescored scores), per-frame NMS
    (``NMS_THRESH_TEST``) and cap (``TEST.DETECTIONS_PER_IMAGE``)."""

    def __init__(
        self, params: SeqNMSParams, nms_thresh: float, max_per_frame: int, min_score: float = 0.0
    ):
        self.params = params
        self.nms_thresh = float(nms_thresh)
        self.max_per_frame = int(max_per_frame)
        self.min_score = float(min_score)

    @classmethod
    def from_config(cls, cfg) -> SeqNMSSettings | None:
        """None unless ``TEST.VID.SEQ_NMS.ENABLED``; the settings are checked here."""
        if not cfg.TEST.VID.SEQ_NMS.ENABLED:
            return None
        check_seq_nms_mode(cfg.INPUT.VIDEO.TEST_MODE)
        return cls(
            SeqNMSParams.from_config(cfg),
            cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
            cfg.TEST.DETECTIONS_PER_IMAGE,
            cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
        )

    def __repr__(self):
        return (
            f"SeqNMSSettings({self.params}, nms_thresh={self.nms_thresh}, "
            f"max_per_frame={self.max_per_frame}, min_score={self.min_score})"
        )


def check_seq_nms_mode(mode: str) -> None:
    """Seq-NMS needs the whole video: refuse online (causal) inference."""
    if mode != "offline":
        raise ValueError(
            f"TEST.VID.SEQ_NMS.ENABLED needs the whole video (offline inference), but the test "
            f"mode is {mode!r}: Seq-NMS links every frame to later ones, which online/streaming "
            "inference has not seen. Disable TEST.VID.SEQ_NMS or use INPUT.VIDEO.TEST_MODE offline."
        )


def candidate_detections(
    box_predictor, predictions, proposals: Instances, score_thresh: float
) -> Instances:
    """One image's per-class boxes with score > ``score_thresh``, before per-frame NMS: the
    filtering half of Detectron2's ``fast_rcnn_inference_single_image`` (same box clipping, same
    class-specific or class-agnostic boxes), through the predictor's public ``predict_boxes`` /
    ``predict_probs``. Returns ``Instances`` (``pred_boxes``, ``scores``, ``pred_classes``) at the
    network input size, ordered by proposal then class."""
    boxes = box_predictor.predict_boxes(predictions, [proposals])[0]
    scores = box_predictor.predict_probs(predictions, [proposals])[0]
    image_size = proposals.image_size
    valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores).all(dim=1)
    boxes, scores = boxes[valid], scores[valid][:, :-1]
    num_reg = boxes.shape[1] // 4
    clipped = Boxes(boxes.reshape(-1, 4))
    clipped.clip(image_size)
    boxes = clipped.tensor.view(-1, num_reg, 4)
    mask = scores > score_thresh
    inds = mask.nonzero()
    boxes = boxes[inds[:, 0], 0] if num_reg == 1 else boxes[mask]
    out = Instances(image_size)
    out.pred_boxes = Boxes(boxes)
    out.scores = scores[mask]
    out.pred_classes = inds[:, 1]
    return out


def finish_frame(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    classes: torch.Tensor,
    nms_thresh: float,
    max_per_frame: int,
) -> torch.Tensor:
    """Per-class NMS and the per-frame cap, as Detectron2's ``fast_rcnn_inference`` (its
    ``batched_nms`` and ``topk_per_image``): indices of the kept detections, best first."""
    keep = batched_nms(boxes.float(), scores.float(), classes, nms_thresh)
    return keep[:max_per_frame] if max_per_frame >= 0 else keep


def seq_nms_frames(
    boxes: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    classes: Sequence[np.ndarray],
    settings: SeqNMSSettings,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Seq-NMS over one video's frames (in order), then the score threshold, per-frame NMS and
    cap of ``settings``.

    Args:
        boxes, scores, classes: per frame [N_f, 4] xyxy, [N_f], [N_f] class indices.
    Returns:
        per frame (boxes [K_f, 4] float32, scores [K_f] float32, classes [K_f] int64), best first.
    """
    rescored = seq_nms_video(boxes, scores, classes, settings.params)
    out = []
    for b, c, (idx, new) in zip(boxes, classes, rescored):
        above = new > settings.min_score
        idx, new = idx[above], new[above]
        b = torch.as_tensor(np.asarray(b, dtype=np.float32).reshape(-1, 4)[idx])
        c = torch.as_tensor(np.asarray(c, dtype=np.int64).reshape(-1)[idx])
        s = torch.as_tensor(new)
        keep = finish_frame(b, s, c, settings.nms_thresh, settings.max_per_frame)
        out.append((b[keep].numpy(), s[keep].numpy(), c[keep].numpy()))
    return out


def seq_nms_instances(candidates: Sequence[Instances], settings: SeqNMSSettings) -> list[Instances]:
    """:func:`seq_nms_frames` on ``Instances`` (``pred_boxes``, ``scores``, ``pred_classes``; one
    per frame, in order, all at the same scale): per frame, the detections as ``Instances`` on
    the CPU."""
    cands = [c.to("cpu") for c in candidates]
    frames = seq_nms_frames(
        [c.pred_boxes.tensor.numpy() for c in cands],
        [c.scores.numpy() for c in cands],
        [c.pred_classes.numpy() for c in cands],
        settings,
    )
    out = []
    for c, (b, s, k) in zip(cands, frames):
        inst = Instances(c.image_size)
        inst.pred_boxes = Boxes(torch.as_tensor(b))
        inst.scores = torch.as_tensor(s)
        inst.pred_classes = torch.as_tensor(k)
        out.append(inst)
    return out
