"""ImageNet VID detection metrics, in pure numpy.

Conventions
-----------
* Boxes are ``float`` arrays ``[N, 4]`` in absolute ``x1, y1, x2, y2``.
* ``box_convention`` says how a box's extent is measured:

  - ``"devkit"`` (default): pixel-inclusive, as the ILSVRC devkit and FGFA
    (``lib/dataset/imagenet_vid_eval.py`` and ``imagenet_vid_eval_motion.py`` of
    msracver/Flow-Guided-Feature-Aggregation): width ``x2 - x1 + 1``, height ``y2 - y1 + 1``, and
    so for areas, intersections (``min(x2) - max(x1) + 1``), IoU and the small-object threshold.
    This is the convention behind the VID mAP that FGFA, MEGA and the SELSA paper report.
  - ``"continuous"``: width ``x2 - x1`` (Detectron2 / pycocotools). Small boxes then typically
    have lower IoU and thresholds; e.g. gt ``[100, 100, 129, 129]`` and detection ``[96, 92, 137, 125]`` have IoU
    0.4935 here (no match) and 0.5039 under ``"devkit"`` (a match).
* A ground-truth frame (``GTFrame``) is a dict ``{"image_id": int, "video_id": int, "frame_id": int,
  "boxes": float[G, 4], "classes": int[G] (0-based contiguous), "instance_ids": int[G]}``
  (instance ids: track ids unique within a video; -1 = unknown).
* Detections are a dict ``image_id -> {"boxes": float[D, 4], "scores": float[D], "classes": int[D]}``;
  a frame missing from it has no detections.

Protocol (ImageNet VID, as in the ILSVRC devkit and FGFA's ``imagenet_vid_eval_motion.py``)
-------------------------------------------------------------------------------------------
* A detection matches a gt box of its class when they intersect and their IoU is at least
  ``min(0.5, w*h / ((w+10)*(h+10)))`` of the gt box (the small-object rule; ``w``, ``h`` measured
  in the box convention). Per frame, detections are matched greedily by descending score, each to
  the unmatched gt of its class with the highest IoU; each gt is matched at most once, so
  duplicates are false positives.
* AP is the all-point interpolated area under the precision/recall curve (VOC 2010+). mAP is the mean
  over classes with at least one (non-ignored) gt; classes without gt, and detections of them, are
  left out.
* Motion IoU (FGFA): a gt instance's motion IoU in frame t is the mean IoU (same box convention) of
  its box with the box of the same instance in frames t-R..t+R (R=10), t excluded, over the frames
  where it is annotated. An instance annotated in no other frame of the window has no motion IoU
  here (NaN). FGFA ships its motion IoUs precomputed (``imagenet_vid_groundtruth_motion_iou.mat``,
  generator not published); that file holds no NaN, so what FGFA did for such instances is unknown.
  We never ignore a NaN gt (FGFA's range test ``iou < lo or iou > hi`` is False for NaN), so it
  counts in *every* speed group.
* Speed groups use FGFA's closed ranges: slow [0.9, 1], medium [0.7, 0.9], fast [0, 0.7] (a value of
  exactly 0.7 or 0.9 belongs to both neighbours, as in FGFA). For a group, gts outside it are ignored:
  a detection matched to an ignored gt is neither TP nor FP, and the gt does not count in recall. An
  unmatched detection is a FP of weight 1 if its highest IoU (over gts of any class in its frame) is
  with a non-ignored gt, 0 if it is with an ignored gt, and on a tie (e.g. overlapping nothing) the
  fraction of the frame's gts that are ignored. In a frame without gts its weight is FGFA's
  ``empty_weight`` (:func:`empty_frame_fp_weight`): the fraction of motion IoUs inside the group,
  over every gt box *and one motion IoU of 0 per frame without gts*: FGFA's file has an empty cell
  for such a frame, which ``scipy.io.loadmat`` reads as a ``1 x 0`` array and FGFA's loader turns into
  a single 0 (4,046 of the 176,126 val frames). So these zeros count in every group's denominator
  and in "fast"'s numerator. NaN motion IoUs count in the denominator only, as FGFA's ``>=`` / ``<=``
  test would treat them. These fractional weights are FGFA's rule, kept so numbers compare.
"""

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "BOX_CONVENTIONS",
    "SPEED_GROUPS",
    "pixel_offset",
    "pairwise_iou",
    "vid_iou_thresholds",
    "average_precision",
    "match_frame",
    "accumulate_tp_fp",
    "per_class_ap",
    "vid_eval",
    "compute_motion_ious",
    "speed_group_ignore",
    "empty_frame_fp_weight",
    "vid_eval_by_speed",
    "select_frames",
]

# FGFA's motion ranges (closed intervals).
SPEED_GROUPS: dict[str, tuple[float, float]] = {
    "slow": (0.9, 1.0),
    "medium": (0.7, 0.9),
    "fast": (0.0, 0.7),
}

# Pixels added to a coordinate difference to get a box's extent (module docstring).
BOX_CONVENTIONS: dict[str, float] = {"devkit": 1.0, "continuous": 0.0}


def pixel_offset(box_convention: str) -> float:
    """``1.0`` for ``"devkit"`` (pixel-inclusive boxes), ``0.0`` for ``"continuous"``."""
    if box_convention not in BOX_CONVENTIONS:
        raise ValueError(
            f"Unknown box convention {box_convention!r}; expected one of {sorted(BOX_CONVENTIONS)}"
        )
    return BOX_CONVENTIONS[box_convention]


def pairwise_iou(
    boxes1: np.ndarray, boxes2: np.ndarray, box_convention: str = "devkit"
) -> np.ndarray:
    """IoU of every pair: ``boxes1`` [N, 4], ``boxes2`` [M, 4] (xyxy) -> [N, M] float64.

    Pairs that do not intersect (an intersection side <= 0 in the box convention) have IoU 0."""
    off = pixel_offset(box_convention)
    b1 = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    b2 = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    area1 = np.clip(b1[:, 2] - b1[:, 0] + off, 0, None) * np.clip(
        b1[:, 3] - b1[:, 1] + off, 0, None
    )
    area2 = np.clip(b2[:, 2] - b2[:, 0] + off, 0, None) * np.clip(
        b2[:, 3] - b2[:, 1] + off, 0, None
    )
    lt = np.maximum(b1[:, None, :2], b2[None, :, :2])
    rb = np.minimum(b1[:, None, 2:], b2[None, :, 2:])
    wh = np.clip(rb - lt + off, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


def vid_iou_thresholds(
    gt_boxes: np.ndarray,
    iou_threshold: float = 0.5,
    pixel_tolerance: float = 10.0,
    box_convention: str = "devkit",
):
    """Per-gt IoU threshold of the VID small-object rule: [G, 4] -> [G].

    ``min(iou_threshold, w*h / ((w+t)*(h+t)))`` with ``w``, ``h`` in the box convention (FGFA's
    ``parse_vid_rec``: ``gt_w = xmax - xmin + 1``)."""
    off = pixel_offset(box_convention)
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    w = gt[:, 2] - gt[:, 0] + off
    h = gt[:, 3] - gt[:, 1] + off
    thr = (w * h) / ((w + pixel_tolerance) * (h + pixel_tolerance))
    return np.minimum(thr, iou_threshold)


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP (VOC 2010+): area under the monotone precision envelope."""
    mrec = np.concatenate(([0.0], np.asarray(recall, dtype=np.float64), [1.0]))
    mpre = np.concatenate(([0.0], np.asarray(precision, dtype=np.float64), [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def match_frame(
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    det_classes: np.ndarray,
    iou_threshold: float = 0.5,
    box_convention: str = "devkit",
):
    """Greedy VID matching in one frame (a match needs a positive intersection, as FGFA's
    ``iw > 0 and ih > 0``, and IoU >= the gt's :func:`vid_iou_thresholds`).

    Returns:
        order: int[D], detection indices by descending score (stable).
        matched: int[D], for ``det[order[i]]`` the index of its gt, or -1.
        ious: float[D, G], IoU of ``det[order[i]]`` with every gt (any class).
    """
    det_scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-det_scores, kind="stable")
    det_boxes = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)[order]
    det_classes = np.asarray(det_classes).reshape(-1)[order]
    gt_classes = np.asarray(gt_classes).reshape(-1)
    ious = pairwise_iou(det_boxes, gt_boxes, box_convention)
    thr = vid_iou_thresholds(gt_boxes, iou_threshold, box_convention=box_convention)
    candidate = (ious > 0) & (ious >= thr[None, :]) & (det_classes[:, None] == gt_classes[None, :])
    matched = np.full(len(order), -1, dtype=np.int64)
    taken = np.zeros(len(gt_classes), dtype=bool)
    for i in np.nonzero(candidate.any(axis=1))[0]:
        ok = candidate[i] & ~taken
        if ok.any():
            k = int(np.argmax(np.where(ok, ious[i], -1.0)))
            matched[i] = k
            taken[k] = True
    return order, matched, ious


def accumulate_tp_fp(
    gt_frames: Sequence[Mapping],
    detections: Mapping[int, Mapping],
    num_classes: int,
    gt_ignore: Sequence[np.ndarray] | None = None,
    empty_frame_fp_weight: float = 1.0,
    iou_threshold: float = 0.5,
    box_convention: str = "devkit",
):
    """Match every frame; return per-detection TP / FP weights and per-class gt counts.

    Args:
        gt_ignore: optional list aligned with ``gt_frames`` of bool[G] (True = ignored gt, FGFA rule
            in the module docstring). None: nothing ignored.
        empty_frame_fp_weight: FP weight of an unmatched detection in a frame without gts.
        box_convention: ``"devkit"`` or ``"continuous"`` (module docstring).

    Returns:
        dict with ``scores`` [N], ``classes`` [N], ``tp`` [N], ``fp`` [N] (float) over all detections of
        the given frames, and ``npos`` int[num_classes] (non-ignored gts per class).
    """
    gt_ids = set()
    scores, classes, tps, fps = [], [], [], []
    npos = np.zeros(num_classes, dtype=np.int64)
    for f_idx, frame in enumerate(gt_frames):
        image_id = frame["image_id"]
        gt_ids.add(image_id)
        gt_boxes = np.asarray(frame["boxes"], dtype=np.float64).reshape(-1, 4)
        gt_classes = np.asarray(frame["classes"], dtype=np.int64).reshape(-1)
        if gt_classes.size and (gt_classes.min() < 0 or gt_classes.max() >= num_classes):
            raise ValueError(
                f"Image {image_id}: gt class ids {sorted(set(gt_classes.tolist()))} outside [0, {num_classes})"
            )
        ignore = (
            np.zeros(len(gt_classes), dtype=bool)
            if gt_ignore is None
            else np.asarray(gt_ignore[f_idx], dtype=bool).reshape(-1)
        )
        if len(ignore) != len(gt_classes):
            raise ValueError(
                f"Image {image_id}: gt_ignore has {len(ignore)} entries for {len(gt_classes)} gts"
            )
        np.add.at(npos, gt_classes[~ignore], 1)

        det = detections.get(image_id)
        if det is None or len(det["scores"]) == 0:
            continue
        d_classes = np.asarray(det["classes"], dtype=np.int64).reshape(-1)
        order, matched, ious = match_frame(
            gt_boxes,
            gt_classes,
            det["boxes"],
            det["scores"],
            d_classes,
            iou_threshold,
            box_convention,
        )
        d_scores = np.asarray(det["scores"], dtype=np.float64).reshape(-1)[order]
        d_classes = d_classes[order]
        tp = np.zeros(len(order))
        fp = np.zeros(len(order))
        is_matched = matched >= 0
        tp[is_matched] = ~ignore[matched[is_matched]]
        unmatched = ~is_matched
        if len(gt_classes) == 0:
            fp[unmatched] = empty_frame_fp_weight
        else:
            ov_ig = np.where(ignore[None, :], ious, -1.0).max(axis=1)
            ov_nig = np.where(~ignore[None, :], ious, -1.0).max(axis=1)
            tie_weight = ignore.mean()
            fp_unmatched = np.where(ov_nig > ov_ig, 1.0, np.where(ov_ig > ov_nig, 0.0, tie_weight))
            fp[unmatched] = fp_unmatched[unmatched]
        scores.append(d_scores)
        classes.append(d_classes)
        tps.append(tp)
        fps.append(fp)

    unknown = [k for k in detections if k not in gt_ids]
    if unknown:
        raise ValueError(
            f"Detections for {len(unknown)} image id(s) not in the ground truth, e.g. {sorted(unknown)[:5]}"
        )

    def _cat(xs, dtype):
        return np.concatenate(xs).astype(dtype) if xs else np.zeros(0, dtype=dtype)

    return {
        "scores": _cat(scores, np.float64),
        "classes": _cat(classes, np.int64),
        "tp": _cat(tps, np.float64),
        "fp": _cat(fps, np.float64),
        "npos": npos,
    }


def per_class_ap(acc: Mapping, num_classes: int) -> np.ndarray:
    """AP per class from :func:`accumulate_tp_fp`'s result: float[num_classes], NaN where npos == 0."""
    order = np.argsort(-acc["scores"], kind="stable")
    classes, tp_all, fp_all = acc["classes"][order], acc["tp"][order], acc["fp"][order]
    aps = np.full(num_classes, np.nan)
    for c in range(num_classes):
        npos = acc["npos"][c]
        if npos <= 0:
            continue
        sel = classes == c
        tp = np.cumsum(tp_all[sel])
        fp = np.cumsum(fp_all[sel])
        rec = tp / npos
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        aps[c] = average_precision(rec, prec)
    return aps


def _mean_ap(aps: np.ndarray) -> float:
    valid = aps[~np.isnan(aps)]
    return float(valid.mean()) if valid.size else float("nan")


def vid_eval(
    gt_frames: Sequence[Mapping],
    detections: Mapping[int, Mapping],
    num_classes: int,
    iou_threshold: float = 0.5,
    box_convention: str = "devkit",
) -> tuple[np.ndarray, float]:
    """ImageNet VID AP: returns (per-class AP float[num_classes] with NaN for absent classes, mAP)."""
    acc = accumulate_tp_fp(
        gt_frames,
        detections,
        num_classes,
        iou_threshold=iou_threshold,
        box_convention=box_convention,
    )
    aps = per_class_ap(acc, num_classes)
    return aps, _mean_ap(aps)


def compute_motion_ious(
    gt_frames: Sequence[Mapping], frame_range: int = 10, box_convention: str = "devkit"
) -> list[np.ndarray]:
    """FGFA motion IoU of every gt box: list aligned with ``gt_frames`` of float[G] (NaN: no neighbour).

    Instances are identified by ``(video_id, instance_id)``; gts with instance id < 0 get NaN. Only
    frames present in ``gt_frames`` are used (give every frame of the videos).
    """
    tracks: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
    out = []
    for f_idx, frame in enumerate(gt_frames):
        inst = np.asarray(frame.get("instance_ids", []), dtype=np.int64).reshape(-1)
        n = len(np.asarray(frame["classes"]).reshape(-1))
        if len(inst) != n:
            raise ValueError(
                f"Image {frame['image_id']}: {len(inst)} instance ids for {n} gt boxes"
            )
        out.append(np.full(n, np.nan))
        for g, iid in enumerate(inst):
            if iid >= 0:
                tracks.setdefault((frame["video_id"], int(iid)), []).append(
                    (int(frame["frame_id"]), f_idx, g)
                )

    for key, items in tracks.items():
        items.sort()
        fids = np.array([t[0] for t in items])
        if len(np.unique(fids)) != len(fids):
            raise ValueError(f"Video {key[0]}: instance {key[1]} appears twice in one frame")
        boxes = np.stack(
            [
                np.asarray(gt_frames[fi]["boxes"], dtype=np.float64).reshape(-1, 4)[g]
                for _, fi, g in items
            ]
        )
        ious = pairwise_iou(boxes, boxes, box_convention)
        near = (np.abs(fids[:, None] - fids[None, :]) <= frame_range) & ~np.eye(
            len(fids), dtype=bool
        )
        count = near.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, (ious * near).sum(axis=1) / np.maximum(count, 1), np.nan)
        for (_, fi, g), m in zip(items, mean):
            out[fi][g] = m
    return out


def speed_group_ignore(motion_ious: Sequence[np.ndarray], group: str) -> list[np.ndarray]:
    """Ignore masks for one speed group: True where a gt's motion IoU is outside the group's range."""
    lo, hi = SPEED_GROUPS[group]
    with np.errstate(invalid="ignore"):
        return [(m < lo) | (m > hi) for m in motion_ious]  # NaN -> False (never ignored), as FGFA


def empty_frame_fp_weight(motion_ious: Sequence[np.ndarray], group: str) -> float:
    """FGFA's ``empty_weight`` for one speed group: FP weight of an unmatched detection in a frame
    without gts.

    The fraction of motion IoUs in the group's closed range, over every gt box plus one motion IoU
    of 0 for each frame without gts (FGFA's loader turns that frame's empty cell into a 0). NaN
    counts in the denominator only. 1.0 when there are no frames at all.

    Args:
        motion_ious: list over all evaluated frames of float[G] (:func:`compute_motion_ious`).
    """
    lo, hi = SPEED_GROUPS[group]
    values = [np.asarray(m, dtype=np.float64).reshape(-1) for m in motion_ious]
    values = (
        np.concatenate([m if m.size else np.zeros(1) for m in values]) if values else np.zeros(0)
    )
    if values.size == 0:
        return 1.0
    with np.errstate(invalid="ignore"):
        return float(((values >= lo) & (values <= hi)).mean())  # NaN compares False


def vid_eval_by_speed(
    gt_frames: Sequence[Mapping],
    detections: Mapping[int, Mapping],
    num_classes: int,
    motion_ious: Sequence[np.ndarray] | None = None,
    frame_range: int = 10,
    iou_threshold: float = 0.5,
    box_convention: str = "devkit",
) -> dict[str, tuple[np.ndarray, float]]:
    """Per speed group ``{"slow"|"medium"|"fast": (per-class AP, mAP)}`` under FGFA's ignore rule.

    ``motion_ious``: as :func:`compute_motion_ious` returns (computed with ``frame_range`` and the
    box convention when None); aligned with ``gt_frames``, which should be every frame of the
    videos (frames without gts included: they enter :func:`empty_frame_fp_weight`)."""
    if motion_ious is None:
        motion_ious = compute_motion_ious(gt_frames, frame_range, box_convention)
    if len(motion_ious) != len(gt_frames):
        raise ValueError(f"{len(motion_ious)} motion IoU entries for {len(gt_frames)} frames")
    results = {}
    for group in SPEED_GROUPS:
        acc = accumulate_tp_fp(
            gt_frames,
            detections,
            num_classes,
            gt_ignore=speed_group_ignore(motion_ious, group),
            empty_frame_fp_weight=empty_frame_fp_weight(motion_ious, group),
            iou_threshold=iou_threshold,
            box_convention=box_convention,
        )
        aps = per_class_ap(acc, num_classes)
        results[group] = (aps, _mean_ap(aps))
    return results


def select_frames(gt_frames: Sequence[Mapping], detections: Mapping[int, Mapping], image_ids):
    """Restrict gts and detections to the frames whose image id is in ``image_ids``."""
    keep = set(image_ids)
    frames = [f for f in gt_frames if f["image_id"] in keep]
    dets = {k: v for k, v in detections.items() if k in keep}
    return frames, dets
