"""The demo's figure: per-frame outcomes of two detectors on every validation video, and stills
of frames where they differ (OpenCV drawing only).

Left: for each video, one timeline row per model, one cell per frame, coloured by the frame's
outcome (:mod:`selsa_d2.evaluation.frame_outcomes`: correct / wrong class / missed), degraded
frames shaded (grey band with a dark tick above); the counts of frames where the second model is
right and the first wrong, and the reverse, are written on top. Right: stills of such frames, both
ways (:func:`pick_stills`), the two models side by side with the ground-truth boxes (white) and the
detections with score >= the threshold, one colour per class in both panels.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .evaluation.frame_outcomes import (
    CORRECT,
    EMPTY,
    MISSED,
    WRONG_CLASS,
    differing_frames,
    frame_outcome,
)

__all__ = ["VideoFrame", "pick_stills", "draw_demo_figure", "OUTCOME_COLORS"]

OUTCOME_COLORS = {  # BGR
    CORRECT: (80, 175, 76),
    WRONG_CLASS: (60, 60, 220),
    MISSED: (0, 170, 255),
    EMPTY: (215, 215, 215),
}
CLASS_COLORS = [  # BGR, distinct hues
    (230, 160, 0),
    (0, 120, 255),
    (200, 0, 200),
    (0, 200, 200),
    (255, 80, 80),
    (0, 0, 180),
    (120, 200, 0),
    (160, 80, 0),
]
FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (150, 150, 150)


class VideoFrame:
    """One annotated frame and both models' detections (xyxy in the image's pixels)."""

    def __init__(self, record: dict, gt_boxes, gt_classes, detections: Sequence[tuple]):
        self.record = record  # the dataset dict: file_name, video_id, frame_id, degradations
        self.gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
        self.gt_classes = np.asarray(gt_classes, dtype=np.int64).reshape(-1)
        self.detections = list(detections)  # per model: (boxes [D, 4], scores [D], classes [D])
        self.outcomes: list[str] = []

    @property
    def degraded(self) -> bool:
        return bool(self.record.get("degradations"))

    def classify(self, score_thresh: float, iou_thresh: float) -> None:
        self.outcomes = [
            frame_outcome(self.gt_boxes, self.gt_classes, *d, score_thresh, iou_thresh)
            for d in self.detections
        ]


def _spread(items: list, k: int) -> list:
    if k <= 0 or not items:
        return []
    picks = np.linspace(0, len(items) - 1, min(k, len(items)))
    return [items[int(round(p))] for p in dict.fromkeys(picks.tolist())]


def pick_stills(frames: Sequence[VideoFrame], num_each: int = 2) -> list[tuple[int, str]]:
    """The stills' rule: for each direction (second model right and first wrong, then the
    reverse), up to ``num_each`` frames where it happens, taken evenly spread (first and last
    included) over the degraded such frames in (video, frame) order, then over the clean ones if
    too few are degraded. Returns (frame index, direction) pairs, direction ``"second"`` or
    ``"first"`` (the model that is right)."""
    keys = list(range(len(frames)))
    second_only, first_only = differing_frames(
        keys, [f.outcomes[0] for f in frames], [f.outcomes[1] for f in frames]
    )
    out = []
    for direction, ids in (("second", second_only), ("first", first_only)):
        degraded = [i for i in ids if frames[i].degraded]
        chosen = _spread(degraded, num_each)
        chosen += _spread([i for i in ids if not frames[i].degraded], num_each - len(chosen))
        out += [(i, direction) for i in chosen]
    return out


def _text(img, text, org, scale=0.45, color=BLACK, thickness=1):
    cv2.putText(img, text, org, FONT, scale, color, thickness, cv2.LINE_AA)


def _timelines(
    videos: list[list[VideoFrame]], labels: Sequence[str], counts: tuple[int, int], cell: int
) -> np.ndarray:
    label_w, row_h, gap = 150, 12, 8
    longest = max(len(v) for v in videos)
    width = max(label_w + longest * cell + 20, 470)  # the header lines need ~460 px
    header = 118
    block = 16 + 6 + 2 * row_h + 3 + gap
    img = np.full((header + block * len(videos) + 10, width, 3), 255, np.uint8)
    _text(img, "Per frame: top detection (score >= 0.5) at IoU >= 0.5", (8, 18), 0.5)
    _text(img, "with each ground-truth object, its class right?", (8, 36), 0.5)
    _text(img, f"{labels[1]} right, {labels[0]} wrong: {counts[0]} frames", (8, 60), 0.5)
    _text(img, f"{labels[0]} right, {labels[1]} wrong: {counts[1]} frames", (8, 80), 0.5)
    x = 8
    for name in (CORRECT, WRONG_CLASS, MISSED):
        cv2.rectangle(img, (x, 92), (x + 12, 104), OUTCOME_COLORS[name], -1)
        _text(img, name, (x + 16, 103), 0.42)
        x += 30 + 8 * len(name)
    cv2.rectangle(img, (x, 92), (x + 12, 104), GREY, -1)
    _text(img, "degraded frame", (x + 16, 103), 0.42)
    y = header
    for frames in videos:
        rec = frames[0].record
        n_deg = sum(f.degraded for f in frames)
        _text(
            img, f"video {rec.get('video_id')} ({n_deg}/{len(frames)} degraded)", (8, y + 11), 0.42
        )
        top = y + 16
        for t, f in enumerate(frames):
            x0 = label_w + t * cell
            if f.degraded:  # shaded band behind both rows, dark tick above
                cv2.rectangle(img, (x0, top), (x0 + cell - 1, top + 6 + 2 * row_h + 2), GREY, -1)
                cv2.rectangle(img, (x0, top), (x0 + cell - 1, top + 3), (60, 60, 60), -1)
            for m in range(2):
                ry = top + 6 + m * (row_h + 1)
                color = OUTCOME_COLORS[f.outcomes[m]]
                cv2.rectangle(img, (x0 + 1, ry), (x0 + cell - 2, ry + row_h - 2), color, -1)
        for m in range(2):
            _text(img, labels[m], (8, top + 6 + m * (row_h + 1) + row_h - 3), 0.38)
        y += block
    return img


def _panel(
    frame: VideoFrame,
    model: int,
    label: str,
    class_names: Sequence[str],
    score_thresh: float,
    scale: float,
) -> np.ndarray:
    image = cv2.imread(frame.record["file_name"])
    if image is None:
        raise FileNotFoundError(f"Cannot read {frame.record['file_name']}")
    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    for box in frame.gt_boxes:
        p = np.round(box * scale).astype(int)
        cv2.rectangle(image, (p[0], p[1]), (p[2], p[3]), WHITE, 3)
    boxes, scores, classes = frame.detections[model]
    for box, score, cls in zip(boxes, scores, classes):
        if score < score_thresh:
            continue
        color = CLASS_COLORS[int(cls) % len(CLASS_COLORS)]
        p = np.round(np.asarray(box) * scale).astype(int)
        cv2.rectangle(image, (p[0], p[1]), (p[2], p[3]), color, 2)
        tag = f"{class_names[int(cls)]} {score:.2f}"
        (tw, th), _ = cv2.getTextSize(tag, FONT, 0.4, 1)
        ty = max(p[1], th + 4)
        cv2.rectangle(image, (p[0], ty - th - 4), (p[0] + tw + 4, ty), color, -1)
        _text(image, tag, (p[0] + 2, ty - 3), 0.4, WHITE)
    bar = np.full((18, image.shape[1], 3), 255, np.uint8)
    outcome = frame.outcomes[model]
    _text(bar, f"{label}: {outcome}", (4, 13), 0.42, OUTCOME_COLORS[outcome])
    return np.vstack([bar, image])


def _stills(
    frames: Sequence[VideoFrame],
    picks: list[tuple[int, str]],
    labels: Sequence[str],
    class_names: Sequence[str],
    score_thresh: float,
    scale: float,
) -> np.ndarray:
    rows = []
    for i, direction in picks:
        f = frames[i]
        right = labels[1] if direction == "second" else labels[0]
        wrong = labels[0] if direction == "second" else labels[1]
        rec = f.record
        deg = ",".join(rec.get("degradations") or []) or "clean"
        left = _panel(f, 0, labels[0], class_names, score_thresh, scale)
        right_panel = _panel(f, 1, labels[1], class_names, score_thresh, scale)
        pair = np.hstack([left, np.full((left.shape[0], 6, 3), 255, np.uint8), right_panel])
        caption = np.full((38, pair.shape[1], 3), 255, np.uint8)
        where = f"video {rec.get('video_id')} frame {rec.get('frame_id')} ({deg})"
        _text(caption, where, (4, 15), 0.42)
        _text(caption, f"{right} right, {wrong} not", (4, 32), 0.42)
        rows += [caption, pair, np.full((8, pair.shape[1], 3), 255, np.uint8)]
    if not rows:
        img = np.full((40, 420, 3), 255, np.uint8)
        _text(img, "the two models agree on every frame", (6, 24), 0.5)
        return img
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.vstack(rows)


def _class_legend(class_names: Sequence[str], width: int) -> np.ndarray:
    img = np.full((22, width, 3), 255, np.uint8)
    x = 6
    _text(img, "classes:", (x, 15), 0.42)
    x += 62
    for c, name in enumerate(class_names):
        cv2.rectangle(img, (x, 5), (x + 12, 17), CLASS_COLORS[c % len(CLASS_COLORS)], -1)
        _text(img, name, (x + 16, 15), 0.42)
        x += 26 + 8 * len(name)
    _text(img, "white: ground truth", (x, 15), 0.42)
    return img


def draw_demo_figure(
    frames: Sequence[VideoFrame],
    labels: Sequence[str],
    class_names: Sequence[str],
    score_thresh: float = 0.5,
    iou_thresh: float = 0.5,
    num_stills_each: int = 2,
    cell: int = 6,
    still_scale: float = 1.0,
) -> tuple[np.ndarray, dict]:
    """The figure (BGR uint8) and what it shows: ``counts`` (second right / first wrong, and the
    reverse), ``stills`` [(video_id, frame_id, model that is right)], per-model outcome counts."""
    for f in frames:
        f.classify(score_thresh, iou_thresh)
    videos: dict = {}
    for f in frames:
        videos.setdefault(f.record.get("video_id"), []).append(f)
    ordered = [
        sorted(v, key=lambda f: f.record.get("frame_id", 0))
        for _, v in sorted(videos.items(), key=lambda kv: str(kv[0]))
    ]
    flat = [f for v in ordered for f in v]
    second_only, first_only = differing_frames(
        list(range(len(flat))), [f.outcomes[0] for f in flat], [f.outcomes[1] for f in flat]
    )
    counts = (len(second_only), len(first_only))
    picks = pick_stills(flat, num_stills_each)
    left = _timelines(ordered, labels, counts, cell)
    right = _stills(flat, picks, labels, class_names, score_thresh, still_scale)
    height = max(left.shape[0], right.shape[0])
    pad = lambda im: np.pad(im, ((0, height - im.shape[0]), (0, 0), (0, 0)), constant_values=255)  # noqa: E731
    body = np.hstack([pad(left), np.full((height, 12, 3), 255, np.uint8), pad(right)])
    figure = np.vstack([body, _class_legend(class_names, body.shape[1])])
    info = {
        "counts": {
            f"{labels[1]} right, {labels[0]} wrong": counts[0],
            f"{labels[0]} right, {labels[1]} wrong": counts[1],
        },
        "stills": [
            {
                "video_id": flat[i].record.get("video_id"),
                "frame_id": flat[i].record.get("frame_id"),
                "right": labels[1] if d == "second" else labels[0],
                "degraded": flat[i].degraded,
            }
            for i, d in picks
        ],
        "outcomes": {
            labels[m]: {
                o: sum(f.outcomes[m] == o for f in flat)
                for o in (CORRECT, WRONG_CLASS, MISSED, EMPTY)
            }
            for m in range(2)
        },
    }
    return figure, info
