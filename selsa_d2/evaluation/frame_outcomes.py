"""Per-frame outcome of a detector on annotated frames: correct / wrong class / missed.

For each ground-truth object, its *top detection* is the highest-scoring detection (any class,
score >= ``score_thresh``) whose box has IoU >= ``iou_thresh`` with the object's box. The object
is *correct* when that detection has the object's class, *wrong class* when it has another,
*missed* when there is none. A frame is *correct* when all its objects are, *wrong class* when
any object is, else *missed*; a frame without objects is *empty*.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["CORRECT", "WRONG_CLASS", "MISSED", "EMPTY", "frame_outcome", "differing_frames"]

CORRECT, WRONG_CLASS, MISSED, EMPTY = "correct", "wrong class", "missed", "empty"


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Continuous IoU of boxes a [N, 4] and b [M, 4] (xyxy) -> [N, M]."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def object_matches(
    gt_boxes: np.ndarray,
    pred_boxes: np.ndarray,
    pred_scores: np.ndarray,
    score_thresh: float = 0.5,
    iou_thresh: float = 0.5,
) -> np.ndarray:
    """Index of each gt object's top detection ([G] int64, -1: none)."""
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    pred_boxes = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)
    pred_scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    if not len(gt_boxes) or not len(pred_boxes):
        return np.full(len(gt_boxes), -1, dtype=np.int64)
    ok = (_iou(gt_boxes, pred_boxes) >= iou_thresh) & (pred_scores >= score_thresh)[None, :]
    ranked = np.where(ok, pred_scores[None, :], -np.inf)
    best = ranked.argmax(axis=1)
    return np.where(ok.any(axis=1), best, -1)


def frame_outcome(
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    pred_boxes: np.ndarray,
    pred_scores: np.ndarray,
    pred_classes: np.ndarray,
    score_thresh: float = 0.5,
    iou_thresh: float = 0.5,
) -> str:
    """One of :data:`CORRECT`, :data:`WRONG_CLASS`, :data:`MISSED`, :data:`EMPTY` (see the
    module doc)."""
    gt_classes = np.asarray(gt_classes).reshape(-1)
    if not len(gt_classes):
        return EMPTY
    match = object_matches(gt_boxes, pred_boxes, pred_scores, score_thresh, iou_thresh)
    pred_classes = np.asarray(pred_classes).reshape(-1)
    found = match >= 0
    if not found.any():
        return MISSED
    if (pred_classes[match[found]] != gt_classes[found]).any():
        return WRONG_CLASS
    return CORRECT if found.all() else MISSED


def differing_frames(
    keys: Sequence, first: Sequence[str], second: Sequence[str]
) -> tuple[list, list]:
    """(keys where ``second`` is correct and ``first`` is not, keys where ``first`` is correct
    and ``second`` is not), in the order of ``keys``."""
    second_only = [k for k, a, b in zip(keys, first, second) if b == CORRECT and a != CORRECT]
    first_only = [k for k, a, b in zip(keys, first, second) if a == CORRECT and b != CORRECT]
    return second_only, first_only
