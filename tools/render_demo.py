"""Renders for `make demo`: single-frame Faster R-CNN vs SELSA on a synthetic validation video.

Writes ``comparison.mp4`` (both models side by side on every frame of the validation video with
the most degraded frames) and ``degraded_frames.png`` (the same, on up to three of its degraded
frames: those where the two models' classes differ first, see :func:`pick_stills`).
Each row is captioned with the frame's degradations and its ground-truth classes.
"""

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.visualizer import Visualizer

from selsa_d2.engine import setup_selsa_cfg
from selsa_d2.predictor import VideoPredictor

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
    cv2.putText(
        out, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 2, cv2.LINE_AA
    )
    cv2.putText(out, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def _label_frame(panel: np.ndarray, frame: dict, class_names: Sequence[str]) -> np.ndarray:
    degradations = ",".join(frame.get("degradations") or []) or "clean"
    truth = ", ".join(class_names[a["category_id"]] for a in frame.get("annotations", [])) or "none"
    text = f"frame {frame['frame_id']}: {degradations} | ground truth: {truth}"
    cv2.putText(
        panel,
        text,
        (6, panel.shape[0] - 8),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.5,
        (255, 255, 255),
        2,
        cv2.LINE_AA,
    )
    cv2.putText(
        panel,
        text,
        (6, panel.shape[0] - 8),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.5,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    return panel


def _classes(instances) -> tuple[int, ...]:
    """Sorted classes detected with score >= SCORE_THRESHOLD (what the renders draw)."""
    return tuple(sorted(set(instances.pred_classes[instances.scores >= SCORE_THRESHOLD].tolist())))


def pick_stills(frames: Sequence[dict], left, right, num: int = 3) -> list[int]:
    """The still's rule: the degraded frames on which the two models' drawn classes differ, up to
    ``num`` spread evenly over the video; if fewer differ, the remaining places go to other
    degraded frames (evenly spread); with no degraded frame, any frames."""
    degraded = [i for i, f in enumerate(frames) if f.get("degradations")] or list(
        range(len(frames))
    )
    differ = [i for i in degraded if _classes(left[i]) != _classes(right[i])]

    def spread(ids: list[int], k: int) -> list[int]:
        if k <= 0 or not ids:
            return []
        return sorted({ids[int(round(j))] for j in np.linspace(0, len(ids) - 1, min(k, len(ids)))})

    picks = spread(differ, num)
    picks += spread([i for i in degraded if i not in picks], num - len(picks))
    return sorted(picks)


def render_comparison(
    models: dict[str, tuple[str, str, Path]],
    out_dir: Path,
    device: str = "cpu",
    opts: Sequence[str] = (),
    num_stills: int = 3,
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

    picks = pick_stills(frames, left, right, num_stills)
    degraded = [i for i, f in enumerate(frames) if f.get("degradations")]
    differ = [i for i in degraded if _classes(left[i]) != _classes(right[i])]
    print(
        f"stills: video {frames[0]['video_id']}, {len(degraded)} degraded frames, the models' classes differ on "
        f"{len(differ)} of them {differ}; showing frames {[frames[i]['frame_id'] for i in picks]}",
        flush=True,
    )
    still_path = out_dir / "degraded_frames.png"
    cv2.imwrite(str(still_path), np.vstack([panels[i] for i in picks]))
    return [video_path, still_path]
