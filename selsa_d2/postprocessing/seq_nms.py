"""Seq-NMS (Han et al., 2016) as FGFA and the original SELSA code ship it, vectorised.

Reference: msracver/Flow-Guided-Feature-Aggregation, ``lib/nms/seq_nms.py`` (``createLinks``,
``maxPath``, ``findMaxPath``, ``rescore``, ``deleteLink``), called by
``lib/dataset/imagenet_vid.py`` (``write_vid_results_multiprocess``: per video, ``seq_nms`` on
every class's boxes, then per-frame NMS at 0.3) on what ``fgfa_rfcn/core/tester.py``
(``process_pred_result``) keeps with ``TEST.SEQ_NMS``: each class's boxes with score > 1e-3,
*before* per-frame NMS and without the per-frame cap. Per video and per class:

1. link boxes of consecutive frames whose IoU >= ``link_iou`` (0.5), with the ILSVRC devkit's
   pixel-inclusive boxes (width ``x2 - x1 + 1``, as FGFA);
2. dynamic programming over the frames: a box's value is its score, or its score plus the best
   value of a linked box in the previous frame when that is larger (ties: the lowest box index
   of the previous frame); the best sequence ends at the largest value (ties: the first frame,
   then the lowest box index, numpy's ``argmax``);
3. stop when no link is left or the best sequence's score sum is below ``min_sequence_score``
   (1e-2); else rescore the sequence's boxes with the mean of its scores (``"max"``: their
   maximum, the paper's other option; FGFA has the mean only);
4. in each frame of the sequence remove the boxes with IoU >= ``suppress_iou`` (0.3) to the
   sequence's box, and every link of those boxes and of the sequence's boxes; the sequence's
   boxes stay, with their new scores, and no longer start a sequence; go to 2.

Boxes never on a sequence keep their scores. FGFA then runs per-frame NMS (0.3) and writes every
remaining box (no per-frame cap); selsa-d2 applies the model's own per-frame NMS
(``MODEL.ROI_HEADS.NMS_THRESH_TEST``) and cap (``TEST.DETECTIONS_PER_IMAGE``) afterwards, as
without Seq-NMS (:func:`selsa_d2.postprocessing.video.finish_frame`).

The implementation computes each frame pair's IoU matrix at once and runs the dynamic program
with vectorised maxima over the links of a frame pair; after a sequence is removed only the
frames from its first frame on are recomputed, up to the first frame after its last whose values
did not change (later frames depend only on that frame). Memory: one class of one video (the link
matrices, [frames - 1, boxes, boxes] booleans, with boxes the most of one frame).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

__all__ = ["SeqNMSParams", "seq_nms_class", "seq_nms_video", "pairwise_iou_devkit"]

RESCORE_RULES = ("mean", "max")


@dataclasses.dataclass(frozen=True)
class SeqNMSParams:
    """Seq-NMS settings (``TEST.VID.SEQ_NMS`` in the config; defaults are FGFA's)."""

    link_iou: float = 0.5
    suppress_iou: float = 0.3
    score_thresh: float = 1e-3
    min_sequence_score: float = 1e-2
    rescore: str = "mean"

    def __post_init__(self):
        for name in ("link_iou", "suppress_iou"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"Seq-NMS: {name.upper()} must be in (0, 1], got {value}")
        if not 0.0 <= self.score_thresh < 1.0:
            raise ValueError(f"Seq-NMS: SCORE_THRESH must be in [0, 1), got {self.score_thresh}")
        if not self.min_sequence_score > 0.0:
            # 0 would let zero-score sequences run forever (FGFA's loop relies on a positive bound)
            raise ValueError(
                f"Seq-NMS: MIN_SEQUENCE_SCORE must be > 0, got {self.min_sequence_score}"
            )
        if self.rescore not in RESCORE_RULES:
            raise ValueError(
                f"Seq-NMS: RESCORE must be one of {RESCORE_RULES}, got {self.rescore!r}"
            )

    @classmethod
    def from_config(cls, cfg) -> SeqNMSParams:
        c = cfg.TEST.VID.SEQ_NMS
        return cls(
            link_iou=float(c.LINK_IOU),
            suppress_iou=float(c.SUPPRESS_IOU),
            score_thresh=float(c.SCORE_THRESH),
            min_sequence_score=float(c.MIN_SEQUENCE_SCORE),
            rescore=str(c.RESCORE),
        )


def pairwise_iou_devkit(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a`` [..., N, 4] and ``b`` [..., M, 4] (xyxy, pixel-inclusive ``+1`` extent, as
    FGFA's seq_nms) -> [..., N, M] float64."""
    a = a[..., :, None, :]
    b = b[..., None, :, :]
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    w = np.maximum(0.0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    h = np.maximum(0.0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = w * h
    return inter / (area_a + area_b - inter)


def _overlap_matrices(
    boxes: np.ndarray,
    valid: np.ndarray,
    link_iou: float,
    suppress_iou: float,
    max_elements: int = 1 << 20,
) -> tuple[np.ndarray, np.ndarray]:
    """Padded boxes [F, B, 4] (``valid`` [F, B]: not padding) -> (links [F - 1, B, B]: IoU >=
    ``link_iou`` between a box of frame f and one of frame f + 1; suppress [F, B, B]: IoU >=
    ``suppress_iou`` between two boxes of frame f), in chunks of frames so that no temporary
    exceeds ``max_elements`` values."""
    num_frames, num_boxes = boxes.shape[:2]
    links = np.zeros((max(num_frames - 1, 0), num_boxes, num_boxes), dtype=bool)
    suppress = np.zeros((num_frames, num_boxes, num_boxes), dtype=bool)
    step = max(1, max_elements // max(1, num_boxes * num_boxes))
    for lo in range(0, num_frames, step):
        hi = min(lo + step, num_frames)
        both = valid[lo:hi, :, None] & valid[lo:hi, None, :]
        suppress[lo:hi] = (pairwise_iou_devkit(boxes[lo:hi], boxes[lo:hi]) >= suppress_iou) & both
        hi = min(hi, num_frames - 1)
        if lo < hi:
            iou = pairwise_iou_devkit(boxes[lo:hi], boxes[lo + 1 : hi + 1])
            links[lo:hi] = (
                (iou >= link_iou) & valid[lo:hi, :, None] & valid[lo + 1 : hi + 1, None, :]
            )
    return links, suppress


def seq_nms_class(
    boxes: Sequence[np.ndarray], scores: Sequence[np.ndarray], params: SeqNMSParams
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Seq-NMS of one class over one video.

    Args:
        boxes: per frame, the class's boxes [N_f, 4] (xyxy, x2 >= x1, y2 >= y1).
        scores: per frame, their scores [N_f] (all > 0; the caller applies ``score_thresh``).
    Returns:
        (keep, new_scores): per frame, a bool mask [N_f] of the boxes that survive and the scores
        [N_f] (float64) after rescoring (meaningful where kept).
    """
    num_frames = len(boxes)
    counts = np.array([len(s) for s in scores], dtype=np.int64)
    if len(scores) != num_frames:
        raise ValueError(f"Seq-NMS: {num_frames} frames of boxes but {len(scores)} of scores")
    width = int(counts.max()) if num_frames else 0
    if width == 0:
        return [np.ones(0, dtype=bool) for _ in boxes], [np.zeros(0) for _ in boxes]

    valid = np.arange(width)[None, :] < counts[:, None]  # [F, B]
    box = np.zeros((num_frames, width, 4))
    score = np.zeros((num_frames, width))  # FGFA's dets[..., 4]: 0 once a box is removed
    for f in range(num_frames):
        box[f, : counts[f]] = np.asarray(boxes[f], dtype=np.float64).reshape(-1, 4)
        score[f, : counts[f]] = np.asarray(scores[f], dtype=np.float64).reshape(-1)
    links, suppress = _overlap_matrices(box, valid, params.link_iou, params.suppress_iou)
    num_links = int(links.sum())

    # FGFA's a[f, j] starts at the box's score, or 0 for the boxes of found sequences
    # (delete_single_box) and removed boxes (their dets zeroed)
    start = score.copy()
    removed = np.zeros((num_frames, width), dtype=bool)  # FGFA's delete_sets
    value = np.zeros((num_frames, width))  # FGFA's a: best sequence sum ending at each box
    back = np.full((num_frames, width), -1, dtype=np.int64)  # FGFA's b
    row_max = np.zeros(num_frames)  # value.max(axis=1), to find the best sequence's end fast
    columns = np.arange(width)
    neg_inf = -np.inf

    def forward(f: int) -> None:
        if f == 0 or not links[f - 1].any():
            value[f] = start[f]
            back[f] = -1
        else:
            cand = np.where(links[f - 1], value[f - 1][:, None] + score[f], neg_inf)
            best_prev = cand.argmax(axis=0)  # first maximum: FGFA's strict '>' in box order
            best = cand[best_prev, columns]
            np.maximum(best, start[f], out=value[f])
            back[f] = np.where(best > start[f], best_prev, -1)
        row_max[f] = value[f].max()

    for f in range(num_frames):
        forward(f)

    while num_links > 0:
        last = int(row_max.argmax())  # numpy's first maximum in row-major order, as FGFA
        j = int(value[last].argmax())
        total = float(value[last, j])
        if total < params.min_sequence_score:
            break
        path = [j]
        f = last
        while back[f, path[-1]] != -1:
            path.append(int(back[f, path[-1]]))
            f -= 1
        first = f
        path.reverse()
        span = slice(first, last + 1)
        rows = np.arange(len(path))
        idx = np.asarray(path)

        if params.rescore == "mean":
            new_score = total / len(path)
        else:
            new_score = float(score[span][rows, idx].max())

        # boxes of each sequence frame with IoU >= suppress_iou to the sequence's box (itself too)
        dels = suppress[span][rows, idx]  # [L, B]
        # outgoing links of the removed boxes (not from the video's last frame) ...
        n_out = min(last, num_frames - 2) - first + 1
        if n_out > 0:
            out_links = links[first : first + n_out]
            gone = out_links & dels[:n_out, :, None]
            num_links -= int(gone.sum())
            out_links ^= gone
        # ... then their incoming links (not into the video's first frame)
        lo = max(first, 1)
        if lo <= last:
            in_links = links[lo - 1 : last]
            gone = in_links & dels[lo - first :, None, :]
            num_links -= int(gone.sum())
            in_links ^= gone
        dels[rows, idx] = False
        removed[span] |= dels
        score[span][dels] = 0.0
        start[span][dels] = 0.0
        score[span][rows, idx] = new_score
        start[span][rows, idx] = 0.0

        # frames before `first` are unchanged; later ones change until one keeps its values
        for f in range(first, num_frames):
            if f > last:
                old = value[f].copy()
                forward(f)
                if np.array_equal(old, value[f]):
                    break
            else:
                forward(f)

    keep = [~removed[f, : counts[f]] for f in range(num_frames)]
    new_scores = [score[f, : counts[f]].copy() for f in range(num_frames)]
    return keep, new_scores


def seq_nms_video(
    boxes: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    classes: Sequence[np.ndarray],
    params: SeqNMSParams,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seq-NMS of every class over one video.

    Args:
        boxes, scores, classes: per frame, the candidate detections [N_f, 4] (xyxy), [N_f] and
            their class indices [N_f] (one row per box and class, before per-frame NMS).
    Returns:
        per frame, (indices [K_f] int64 into the frame's candidates of the boxes that survive,
        ascending; their new scores [K_f] float32). Boxes with score <= ``score_thresh`` are
        dropped first (FGFA keeps ``score > 1e-3``).
    """
    num_frames = len(boxes)
    if not len(scores) == len(classes) == num_frames:
        raise ValueError(
            f"Seq-NMS: {num_frames} frames of boxes, {len(scores)} of scores, "
            f"{len(classes)} of classes"
        )
    scores = [np.asarray(s, dtype=np.float64).reshape(-1) for s in scores]
    classes = [np.asarray(c, dtype=np.int64).reshape(-1) for c in classes]
    boxes = [np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in boxes]
    for f, (b, s, c) in enumerate(zip(boxes, scores, classes)):
        if not len(b) == len(s) == len(c):
            raise ValueError(
                f"Seq-NMS: frame {f} has {len(b)} boxes, {len(s)} scores, {len(c)} classes"
            )
    new_scores = [np.zeros(len(s)) for s in scores]
    keep = [np.zeros(len(s), dtype=bool) for s in scores]
    present = np.unique(np.concatenate(classes)) if num_frames else np.zeros(0, dtype=np.int64)
    for cls in present.tolist():
        rows = [
            np.flatnonzero((c == cls) & (s > params.score_thresh)) for c, s in zip(classes, scores)
        ]
        cls_keep, cls_scores = seq_nms_class(
            [b[r] for b, r in zip(boxes, rows)], [s[r] for s, r in zip(scores, rows)], params
        )
        for f, r in enumerate(rows):
            keep[f][r] = cls_keep[f]
            new_scores[f][r] = cls_scores[f]
    out = []
    for k, s in zip(keep, new_scores):
        idx = np.flatnonzero(k)
        out.append((idx, s[idx].astype(np.float32)))
    return out
