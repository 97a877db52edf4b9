"""Score a saved ``vid_detections.json`` (what ``--eval-only`` writes) against a registered
dataset, optionally after Seq-NMS: no model, no inference.

The file is a COCO results list (``image_id``, ``category_id``, ``bbox`` [x, y, w, h] in the
original image, ``score``); category ids are those of :func:`coco_category_ids` for the dataset.
Seq-NMS here works on what was saved: detections already through per-frame NMS and the per-frame
cap, not the model's pre-NMS candidates that ``--eval-only`` with ``TEST.VID.SEQ_NMS.ENABLED``
uses, so its result can differ from (and is usually a little below) the in-model one.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import defaultdict

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.file_io import PathManager

from ..postprocessing.video import SeqNMSSettings, seq_nms_frames
from .vid_evaluator import VIDEvaluator, coco_category_ids

__all__ = [
    "DetectionsFileError",
    "load_saved_detections",
    "seq_nms_on_predictions",
    "rescore_saved_detections",
]

logger = logging.getLogger(__name__)


class DetectionsFileError(ValueError):
    """A saved detections file that does not fit the dataset (or is not a results list)."""


def _entry_error(path: str, index: int, entry, problem: str) -> DetectionsFileError:
    return DetectionsFileError(f"{path}: entry {index} ({str(entry)[:120]}): {problem}")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def load_saved_detections(path: str, dataset_name: str) -> list[dict]:
    """Read ``path`` and check it against ``dataset_name``; returns the evaluator's prediction
    dicts (one per frame of the dataset, frames without detections included: ``image_id``,
    ``video_id``, ``frame_id``, ``boxes`` [D, 4] xyxy float32, ``scores`` [D] float32,
    ``classes`` [D] contiguous int64).

    Raises :class:`DetectionsFileError` naming the file and the first bad entry: not a JSON list,
    an entry without ``image_id`` / ``category_id`` / ``bbox`` / ``score``, a bbox that is not 4
    finite numbers with width and height >= 0, a score that is not a finite number, an image id
    not in the dataset, a category id not among the dataset's.
    """
    try:
        with PathManager.open(path, "r") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DetectionsFileError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, list):
        raise DetectionsFileError(
            f"{path}: expected a JSON list of COCO results (as --eval-only writes to "
            f"vid_detections.json), got {type(data).__name__}"
        )
    dataset_dicts = DatasetCatalog.get(dataset_name)
    metadata = MetadataCatalog.get(dataset_name)
    cat_to_class = {cid: c for c, cid in enumerate(coco_category_ids(metadata))}
    frames = {d["image_id"]: d for d in dataset_dicts}
    per_image = defaultdict(list)
    for i, e in enumerate(data):
        if not isinstance(e, dict):
            raise _entry_error(path, i, e, "not a JSON object")
        missing = [k for k in ("image_id", "category_id", "bbox", "score") if k not in e]
        if missing:
            raise _entry_error(path, i, e, f"missing {missing}")
        bbox = e["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)):
            raise _entry_error(path, i, e, "bbox must be 4 finite numbers [x, y, w, h]")
        if bbox[2] < 0 or bbox[3] < 0:
            raise _entry_error(path, i, e, "bbox width and height must be >= 0")
        if not _number(e["score"]):
            raise _entry_error(path, i, e, "score must be a finite number")
        if e["image_id"] not in frames:
            raise _entry_error(path, i, e, f"image id not in dataset {dataset_name!r}")
        if e["category_id"] not in cat_to_class:
            raise _entry_error(
                path,
                i,
                e,
                f"category id not among dataset {dataset_name!r}'s {sorted(cat_to_class)}",
            )
        x, y, w, h = bbox
        per_image[e["image_id"]].append(
            (x, y, x + w, y + h, float(e["score"]), cat_to_class[e["category_id"]])
        )
    predictions = []
    for image_id, d in frames.items():
        rows = np.asarray(per_image.get(image_id, []), dtype=np.float64).reshape(-1, 6)
        predictions.append(
            {
                "image_id": image_id,
                "video_id": d.get("video_id", -1),
                "frame_id": d.get("frame_id", 0),
                "boxes": rows[:, :4].astype(np.float32),
                "scores": rows[:, 4].astype(np.float32),
                "classes": rows[:, 5].astype(np.int64),
            }
        )
    logger.info(
        f"Read {len(data)} detections of {len(per_image)} of the {len(frames)} frames of "
        f"{dataset_name!r} from {path}"
    )
    return predictions


def seq_nms_on_predictions(predictions: list[dict], settings: SeqNMSSettings) -> list[dict]:
    """Seq-NMS per video (``video_id``, frames ordered by ``frame_id``), then per-frame NMS and
    cap, on prediction dicts as :func:`load_saved_detections` returns them (new dicts)."""
    videos = defaultdict(list)
    for p in predictions:
        # a frame without a video is a one-frame video of its own
        key = p["video_id"] if p["video_id"] != -1 else ("image", p["image_id"])
        videos[key].append(p)
    out = []
    for frames in videos.values():
        frames = sorted(frames, key=lambda p: p["frame_id"])
        done = seq_nms_frames(
            [p["boxes"] for p in frames],
            [p["scores"] for p in frames],
            [p["classes"] for p in frames],
            settings,
        )
        for p, (b, s, c) in zip(frames, done):
            out.append({**p, "boxes": b, "scores": s, "classes": c})
    return out


def rescore_saved_detections(
    cfg, dataset_name: str, detections_path: str, output_dir: str | None = None
) -> dict:
    """Metrics of the detections saved in ``detections_path`` on ``dataset_name`` (the tables
    ``--eval-only`` logs, through :class:`VIDEvaluator`), after Seq-NMS when
    ``cfg.TEST.VID.SEQ_NMS.ENABLED`` (on the saved, post-NMS detections; see the module doc).

    ``output_dir``: where to write the evaluator's ``vid_metrics.json`` and (re-scored)
    ``vid_detections.json``; refused when that would overwrite ``detections_path``.
    """
    if output_dir is not None:
        target = PathManager.get_local_path(f"{output_dir}/vid_detections.json")
        source = PathManager.get_local_path(detections_path)
        if _same_file(target, source):
            raise ValueError(
                f"--output-dir {output_dir} would overwrite the input {detections_path}; "
                "choose another folder"
            )
    settings = SeqNMSSettings.from_config(cfg)
    predictions = load_saved_detections(detections_path, dataset_name)
    if settings is not None:
        logger.info(f"Seq-NMS on the saved (post-NMS, capped) detections: {settings}")
        predictions = seq_nms_on_predictions(predictions, settings)
    evaluator = VIDEvaluator(cfg, dataset_name, output_dir, distributed=False)
    return evaluator.evaluate_predictions(predictions)


def _same_file(a: str, b: str) -> bool:
    if not os.path.exists(a) or not os.path.exists(b):
        return os.path.abspath(a) == os.path.abspath(b)
    return os.path.samefile(a, b)
