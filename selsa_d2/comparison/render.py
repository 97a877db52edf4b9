"""Renders of the comparison (`make demo`): single-frame Faster R-CNN vs SELSA on the synthetic validation set.

* ``comparison.mp4``: both models side by side on every frame of the validation video with the
  most degraded frames, each row captioned with the frame's degradations and ground-truth classes
  (:func:`render_comparison`, runs the models);
* ``demo_figure.png``: per validation video one timeline row per model, each frame marked correct /
  wrong class / missed, degraded frames shaded, the counts of frames where one model is right and
  the other wrong, and stills of such frames both ways (:func:`render_outcome_figure`, from the
  saved ``vid_detections.json`` of each model's evaluation: no inference; the rule is in
  ``selsa_d2/outcome_figure.py`` and docs/demo.md).
"""

import json
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.visualizer import Visualizer

from ..engine import setup_selsa_cfg
from ..evaluation.saved_detections import load_saved_detections
from ..evaluation.vid_evaluator import gt_frames_from_dicts
from ..file_io import atomic_write_text
from ..outcome_figure import VideoFrame, draw_demo_figure
from ..predictor import VideoPredictor

SCORE_THRESHOLD = 0.5
UPSCALE = 2  # the synthetic frames are small; draw on an enlarged copy so labels stay legible


def _load_cfg(config: str, weights: Path, device: str, opts: Sequence[str]):
    return setup_selsa_cfg(
        config, list(opts) + ["MODEL.WEIGHTS", str(weights), "MODEL.DEVICE", device]
    )


def _most_degraded_video(dataset_name: str) -> list[dict]:
    """Frame dicts (in order) of the video with the most degraded frames."""
    videos: dict[int, list[dict]] = {}
    for d in DatasetCatalog.get(dataset_name):
        videos.setdefault(d["video_id"], []).append(d)
    frames = max(
        videos.values(),
        key=lambda fs: (sum(bool(f.get("degradations")) for f in fs), -fs[0]["video_id"]),
    )
    return sorted(frames, key=lambda d: d["frame_id"])


def _draw(image_bgr: np.ndarray, instances, metadata, title: str) -> np.ndarray:
    big = cv2.resize(image_bgr, None, fx=UPSCALE, fy=UPSCALE, interpolation=cv2.INTER_NEAREST)
    instances = instances[instances.scores >= SCORE_THRESHOLD].to("cpu")
    instances.pred_boxes.scale(UPSCALE, UPSCALE)
    vis = Visualizer(big[:, :, ::-1], metadata, scale=1.0)
    out = vis.draw_instance_predictions(instances).get_image()[:, :, ::-1].copy()
    _outlined_text(out, title, (6, 18), 0.55)
    return out


def _outlined_text(img: np.ndarray, text: str, org: tuple[int, int], scale: float) -> None:
    """Black text on a white outline, readable on any frame (drawn in place)."""
    for color, thickness in (((255, 255, 255), 2), ((0, 0, 0), 1)):
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness, cv2.LINE_AA)


def _label_frame(panel: np.ndarray, frame: dict, class_names: Sequence[str]) -> np.ndarray:
    degradations = ",".join(frame.get("degradations") or []) or "clean"
    truth = ", ".join(class_names[a["category_id"]] for a in frame.get("annotations", [])) or "none"
    text = f"frame {frame['frame_id']}: {degradations} | ground truth: {truth}"
    _outlined_text(panel, text, (6, panel.shape[0] - 8), 0.5)
    return panel


def render_comparison(
    models: dict[str, tuple[str, str, Path]],
    out_dir: Path,
    device: str = "cpu",
    opts: Sequence[str] = (),
) -> list[Path]:
    """``models``: key -> (label, config file, weights); the first is drawn left, the second right."""
    (left_label, left_cfg, left_w), (right_label, right_cfg, right_w) = list(models.values())[:2]
    cfg_left = _load_cfg(left_cfg, left_w, device, opts)
    cfg_right = _load_cfg(right_cfg, right_w, device, opts)
    dataset = cfg_right.DATASETS.TEST[0]
    metadata = MetadataCatalog.get(dataset)
    frames = _most_degraded_video(dataset)
    images = [cv2.imread(f["file_name"]) for f in frames]

    left = VideoPredictor(cfg_left).predict_video(images)
    right = VideoPredictor(cfg_right).predict_video(images)

    panels = []
    for frame, image, a, b in zip(frames, images, left, right):
        row = np.hstack(
            [_draw(image, a, metadata, left_label), _draw(image, b, metadata, right_label)]
        )
        panels.append(_label_frame(row, frame, metadata.thing_classes))

    out_dir.mkdir(parents=True, exist_ok=True)
    video_path = out_dir / "comparison.mp4"
    h, w = panels[0].shape[:2]
    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), 6, (w, h))
    try:
        for panel in panels:
            writer.write(panel)
    finally:
        writer.release()

    return [video_path]


def render_outcome_figure(
    dataset_name: str,
    detections: Sequence[tuple[str, Path]],
    out_path: Path,
    num_stills_each: int = 2,
) -> tuple[Path, dict]:
    """The outcome figure of two models (``detections``: (label, saved vid_detections.json)
    each, the single-frame model first) on every frame of ``dataset_name`` (registered); writes
    ``out_path`` (PNG) and ``<out_path stem>.json`` (counts and stills). No inference."""
    records = sorted(
        DatasetCatalog.get(dataset_name), key=lambda d: (str(d["video_id"]), d["frame_id"])
    )
    gt = {g["image_id"]: g for g in gt_frames_from_dicts(records, dataset_name)}
    preds = []
    for _, path in detections:
        preds.append({p["image_id"]: p for p in load_saved_detections(str(path), dataset_name)})
    frames = [
        VideoFrame(
            d,
            gt[d["image_id"]]["boxes"],
            gt[d["image_id"]]["classes"],
            [
                (p[d["image_id"]]["boxes"], p[d["image_id"]]["scores"], p[d["image_id"]]["classes"])
                for p in preds
            ],
        )
        for d in records
    ]
    labels = [label for label, _ in detections]
    class_names = MetadataCatalog.get(dataset_name).thing_classes
    figure, info = draw_demo_figure(
        frames, labels, class_names, score_thresh=SCORE_THRESHOLD, num_stills_each=num_stills_each
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.stem + ".tmp" + out_path.suffix)
    if not cv2.imwrite(str(tmp), figure):
        raise OSError(f"could not write {tmp}")
    os.replace(tmp, out_path)
    atomic_write_text(str(out_path.with_suffix(".json")), json.dumps(info, indent=2))
    print(f"figure: {json.dumps(info['counts'])}; stills {info['stills']}", flush=True)
    return out_path, info
