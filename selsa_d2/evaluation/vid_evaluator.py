"""Detectron2 evaluator for video object detection on ImageNet-VID-style datasets."""

import contextlib
import copy
import io
import itertools
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Sequence

import detectron2.utils.comm as comm
import numpy as np
from detectron2.config import configurable
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.coco import convert_to_coco_dict
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import BoxMode, Instances
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import create_small_table
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tabulate import tabulate

from ..file_io import atomic_open
from ..postprocessing.video import SeqNMSSettings, seq_nms_instances
from . import vid_metrics

__all__ = ["VIDEvaluator", "merge_predictions", "gt_frames_from_dicts", "coco_category_ids"]

logger = logging.getLogger(__name__)

COCO_METRICS = ["AP", "AP50", "AP75", "APs", "APm", "APl"]


def merge_predictions(shards: Sequence[list[dict]]) -> list[dict]:
    """Merge the per-process prediction lists of :meth:`VIDEvaluator.process` into one, ordered by
    image id. The same image predicted twice (by two processes, or without ``reset()``) is an error."""
    merged = {}
    for pred in itertools.chain(*shards):
        image_id = pred["image_id"]
        if image_id in merged:
            raise ValueError(f"VIDEvaluator: image id {image_id} was predicted more than once")
        merged[image_id] = pred
    return [merged[k] for k in sorted(merged)]


def gt_frames_from_dicts(
    dataset_dicts: Sequence[dict], dataset_name: str = "<unnamed>"
) -> list[dict]:
    """Dataset dicts (one per frame) -> :mod:`vid_metrics` gt frames (xyxy boxes, contiguous classes)."""
    frames, seen = [], set()
    for d in dataset_dicts:
        image_id = d["image_id"]
        if image_id in seen:
            raise ValueError(f"Dataset {dataset_name!r}: image id {image_id} appears twice")
        seen.add(image_id)
        anns = d.get("annotations", [])
        boxes = [BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns]
        frames.append(
            {
                "image_id": image_id,
                "video_id": d.get("video_id", -1),
                "frame_id": d.get("frame_id", 0),
                "boxes": np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
                "classes": np.asarray([a["category_id"] for a in anns], dtype=np.int64),
                # -1: no track id -> no motion IoU (counted in every speed group, see vid_metrics)
                "instance_ids": np.asarray(
                    [a.get("instance_id", -1) for a in anns], dtype=np.int64
                ),
            }
        )
    return frames


def coco_category_ids(metadata) -> list[int]:
    """COCO category id of each contiguous class: the dataset's own id where the metadata has
    ``thing_dataset_id_to_contiguous_id`` (COCO-style json datasets), else ``contiguous + 1``
    (COCO ids start at 1; for the 30 ImageNet VID classes in their usual order this equals the ids of
    the common COCO-format VID jsons)."""
    num_classes = len(metadata.thing_classes)
    mapping = metadata.get("thing_dataset_id_to_contiguous_id", None)
    if mapping:
        reverse = {v: k for k, v in mapping.items()}
        if sorted(reverse) != list(range(num_classes)):
            raise ValueError(
                f"Dataset {metadata.name!r}: thing_dataset_id_to_contiguous_id does not cover classes "
                f"0..{num_classes - 1}"
            )
        return [int(reverse[c]) for c in range(num_classes)]
    return list(range(1, num_classes + 1))


def _prediction(inp: dict, instances: Instances) -> dict:
    """One frame's detections as the evaluator keeps them (numpy, CPU)."""
    inst = instances.to("cpu")
    return {
        "image_id": inp["image_id"],
        "video_id": inp.get("video_id", -1),
        "frame_id": inp.get("frame_id", -1),
        "boxes": inst.pred_boxes.tensor.numpy().astype(np.float32).reshape(-1, 4),
        "scores": inst.scores.numpy().astype(np.float32).reshape(-1),
        "classes": inst.pred_classes.numpy().astype(np.int64).reshape(-1),
    }


def _nan_to_none(obj):
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


class VIDEvaluator(DatasetEvaluator):
    """ImageNet VID metrics (overall, per class, per motion speed, degraded/clean frames) plus COCO box
    AP through pycocotools.

    Results (percent), as Detectron2 nested dicts:

    * ``"vid"``: ``mAP``, ``AP-<class>`` (NaN for classes with no gt), ``mAP_slow``, ``mAP_medium``,
      ``mAP_fast``, and when any frame has a ``"degradations"`` field: ``mAP_degraded`` (frames with a
      non-empty list), ``mAP_clean`` (the others). Computed as the ILSVRC devkit / FGFA do
      (:mod:`.vid_metrics`); with the default ``box_convention="devkit"`` these are the numbers
      FGFA, MEGA and the SELSA paper report.
    * ``"bbox"``: ``AP``, ``AP50``, ``AP75``, ``APs``, ``APm``, ``APl`` from pycocotools' ``COCOeval``
      (continuous boxes, no ``+1``): what mmtracking reports as ``bbox_mAP`` / ``bbox_mAP_50``. NaN
      without detections.

    Every frame in ``DatasetCatalog.get(dataset_name)`` is evaluated; a frame without a prediction has
    no detections. With ``output_dir``: writes ``vid_metrics.json`` (the results, the category ids
    used and the VID box convention) and ``vid_detections.json`` (COCO results format; ids:
    :func:`coco_category_ids`).
    """

    @configurable
    def __init__(
        self,
        dataset_name: str,
        output_dir=None,
        distributed: bool = True,
        motion_iou_range: int = 10,
        box_convention: str = "devkit",
        seq_nms: SeqNMSSettings | None = None,
    ):
        """
        Args:
            dataset_name: a registered dataset with ``thing_classes`` metadata.
            output_dir: where the metrics and detections are written (None: nowhere).
            distributed: gather the predictions of all processes before evaluating.
            motion_iou_range: frames on each side for the motion IoU of the speed groups.
            box_convention: ``"devkit"`` (pixel-inclusive, ``+1``) or ``"continuous"`` boxes for the
                ``"vid"`` metrics; see :mod:`.vid_metrics`.
            seq_nms: apply Seq-NMS per video (``TEST.VID.SEQ_NMS``): the model's outputs must
                carry ``"candidates"`` (pre-NMS boxes, :class:`SelsaRCNN` with Seq-NMS enabled);
                each video's frames must arrive together and in order, as the video test loader
                gives them. None: evaluate ``"instances"`` as they are.
        """
        vid_metrics.pixel_offset(box_convention)  # unknown names fail here, before inference
        if isinstance(motion_iou_range, bool) or not isinstance(motion_iou_range, int):
            raise ValueError(f"motion_iou_range must be an integer, got {motion_iou_range!r}")
        if motion_iou_range < 0:  # a negative range would make every speed group the same
            raise ValueError(
                f"motion_iou_range (TEST.VID.MOTION_IOU_RANGE) must be >= 0, got {motion_iou_range}"
            )
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        self._motion_iou_range = motion_iou_range
        self._box_convention = box_convention
        self._metadata = MetadataCatalog.get(dataset_name)
        if not self._metadata.get("thing_classes", None):
            raise ValueError(
                f"VIDEvaluator: dataset {dataset_name!r} has no thing_classes in its metadata"
            )
        self._class_names = list(self._metadata.thing_classes)
        self._seq_nms = seq_nms
        self._predictions: list[dict] = []
        self._video: list[tuple[dict, Instances]] = []  # Seq-NMS: the current video's candidates

    @classmethod
    def from_config(cls, cfg, dataset_name: str, output_dir=None, distributed: bool = True):
        return {
            "dataset_name": dataset_name,
            "output_dir": output_dir,
            "distributed": distributed,
            "motion_iou_range": cfg.TEST.VID.MOTION_IOU_RANGE,
            "box_convention": cfg.TEST.VID.BOX_CONVENTION,
            "seq_nms": SeqNMSSettings.from_config(cfg),
        }

    @property
    def output_dir(self) -> str | None:
        """Folder the metrics and detections are written to (None: nothing is written)."""
        return self._output_dir

    def reset(self):
        self._predictions = []
        self._video = []

    def process(self, inputs, outputs):
        """
        Args:
            inputs: list of per-frame dicts with "image_id" (and "video_id", "frame_id").
            outputs: list of dicts with "instances" (Instances: pred_boxes [D,4] xyxy in the input's
                original size, scores [D], pred_classes [D]); with Seq-NMS also "candidates"
                (the same fields, before per-frame NMS).
        """
        for inp, out in zip(inputs, outputs):
            if self._seq_nms is None:
                self._predictions.append(_prediction(inp, out["instances"]))
                continue
            if "candidates" not in out:
                raise ValueError(
                    "VIDEvaluator: TEST.VID.SEQ_NMS.ENABLED but the model's output has no "
                    "'candidates' (pre-NMS boxes); Seq-NMS needs a SelsaRCNN model built with it "
                    f"enabled (got the keys {sorted(out)})"
                )
            if self._video and self._video[-1][0]["video_id"] != inp.get("video_id"):
                self._finish_video()
            meta = {k: inp.get(k, -1) for k in ("image_id", "video_id", "frame_id")}
            self._video.append((meta, out["candidates"].to("cpu")))
            if "video_id" not in inp:  # a frame without a video is a one-frame video
                self._finish_video()

    def _finish_video(self):
        """Seq-NMS over the buffered video, then per-frame NMS and cap."""
        metas = [m for m, _ in self._video]
        frame_ids = [m["frame_id"] for m in metas]
        if frame_ids != sorted(frame_ids) or len(set(frame_ids)) != len(frame_ids):
            raise ValueError(
                f"VIDEvaluator: Seq-NMS needs the frames of video {metas[0]['video_id']} in "
                f"increasing order, got frame ids {frame_ids[:10]}..."
            )
        detections = seq_nms_instances([c for _, c in self._video], self._seq_nms)
        self._predictions.extend(_prediction(m, d) for m, d in zip(metas, detections))
        self._video = []

    def evaluate(self):
        if self._video:
            self._finish_video()
        if self._distributed:
            comm.synchronize()
            shards = comm.gather(self._predictions, dst=0)
            if not comm.is_main_process():
                return {}
        else:
            shards = [self._predictions]
        predictions = merge_predictions(shards)
        return self.evaluate_predictions(predictions)

    def evaluate_predictions(self, predictions: list[dict]) -> dict[str, dict[str, float]]:
        """Metrics of already-merged predictions (single process)."""
        dataset_dicts = DatasetCatalog.get(self._dataset_name)
        gt_frames = gt_frames_from_dicts(dataset_dicts, self._dataset_name)
        gt_ids = {f["image_id"] for f in gt_frames}
        unknown = [p["image_id"] for p in predictions if p["image_id"] not in gt_ids]
        if unknown:
            raise ValueError(
                f"VIDEvaluator: {len(unknown)} prediction(s) for image ids not in dataset "
                f"{self._dataset_name!r}, e.g. {unknown[:5]}"
            )
        if len(predictions) < len(gt_frames):
            logger.warning(
                f"VIDEvaluator: {len(gt_frames) - len(predictions)} of {len(gt_frames)} frames of "
                f"{self._dataset_name!r} have no prediction; they are evaluated as having no detections."
            )
        num_classes = len(self._class_names)
        for p in predictions:
            if p["classes"].size and (p["classes"].min() < 0 or p["classes"].max() >= num_classes):
                raise ValueError(
                    f"VIDEvaluator: image {p['image_id']} has predicted classes outside [0, {num_classes})"
                )
        dets = {p["image_id"]: p for p in predictions}
        cat_ids = coco_category_ids(self._metadata)
        coco_results = self._coco_results(predictions, cat_ids)

        if not any(len(f["boxes"]) for f in gt_frames):
            # an unlabelled split (e.g. a test set): the detections are the result
            where = (
                f"; wrote the detections to {os.path.join(self._output_dir, 'vid_detections.json')}"
                if self._output_dir
                else ""
            )
            logger.warning(
                f"VIDEvaluator: dataset {self._dataset_name!r} has no annotated objects, so no "
                f"metrics can be computed{where}"
            )
            self._write(coco_results, {"note": "no annotated objects: no metrics"}, cat_ids)
            return OrderedDict()

        vid = self._vid_metrics(gt_frames, dets, dataset_dicts)
        bbox = self._coco_metrics(coco_results, cat_ids)
        results = OrderedDict([("vid", vid), ("bbox", bbox)])
        self._write(coco_results, _nan_to_none(copy.deepcopy(dict(results))), cat_ids)
        return copy.deepcopy(results)

    def _write(self, coco_results: list[dict], payload: dict, cat_ids: list[int]) -> None:
        """``vid_detections.json`` and ``vid_metrics.json`` (atomically) into ``output_dir``."""
        if not self._output_dir:
            return
        out_dir = self._output_dir
        PathManager.mkdirs(out_dir)
        path = os.path.join(out_dir, "vid_detections.json")
        logger.info(f"Saving detections to {path}")
        with atomic_open(path, "w") as f:
            json.dump(coco_results, f)
        path = os.path.join(out_dir, "vid_metrics.json")
        payload["categories"] = [{"id": i, "name": n} for i, n in zip(cat_ids, self._class_names)]
        payload["vid_box_convention"] = self._box_convention
        with atomic_open(path, "w") as f:
            json.dump(payload, f, indent=2)
        logger.info(f"Saved metrics to {path}")

    def _vid_metrics(self, gt_frames, dets, dataset_dicts) -> dict[str, float]:
        num_classes = len(self._class_names)
        conv = self._box_convention
        aps, mean_ap = vid_metrics.vid_eval(gt_frames, dets, num_classes, box_convention=conv)
        summary = OrderedDict(mAP=mean_ap * 100)
        speed = vid_metrics.vid_eval_by_speed(
            gt_frames, dets, num_classes, frame_range=self._motion_iou_range, box_convention=conv
        )
        for group, (_, group_map) in speed.items():
            summary[f"mAP_{group}"] = group_map * 100
        if any("degradations" in d for d in dataset_dicts):
            degraded = [d["image_id"] for d in dataset_dicts if d.get("degradations")]
            clean = [d["image_id"] for d in dataset_dicts if not d.get("degradations")]
            for name, ids in (("degraded", degraded), ("clean", clean)):
                sub_frames, sub_dets = vid_metrics.select_frames(gt_frames, dets, ids)
                summary[f"mAP_{name}"] = (
                    vid_metrics.vid_eval(sub_frames, sub_dets, num_classes, box_convention=conv)[1]
                    * 100
                )
        logger.info(
            f"ImageNet VID metrics on {self._dataset_name} ({conv} boxes):\n"
            + create_small_table(summary)
        )

        per_class = [(name, ap * 100) for name, ap in zip(self._class_names, aps)]
        n_cols = min(6, len(per_class) * 2)
        flat = list(itertools.chain(*per_class))
        table = tabulate(
            itertools.zip_longest(*[flat[i::n_cols] for i in range(n_cols)]),
            tablefmt="pipe",
            floatfmt=".3f",
            headers=["category", "AP"] * (n_cols // 2),
            numalign="left",
        )
        logger.info("Per-category VID AP (nan: no gt):\n" + table)
        results = OrderedDict(summary)
        results.update((f"AP-{name}", float(ap)) for name, ap in per_class)
        return results

    def _coco_results(self, predictions, cat_ids) -> list[dict]:
        out = []
        for p in predictions:
            xywh = BoxMode.convert(
                p["boxes"].astype(np.float64), BoxMode.XYXY_ABS, BoxMode.XYWH_ABS
            )
            for box, score, cls in zip(xywh.tolist(), p["scores"].tolist(), p["classes"].tolist()):
                out.append(
                    {
                        "image_id": p["image_id"],
                        "category_id": cat_ids[cls],
                        "bbox": box,
                        "score": score,
                    }
                )
        return out

    def _coco_metrics(self, coco_results, cat_ids) -> dict[str, float]:
        coco_gt = self._coco_gt(cat_ids)
        if not coco_results:
            logger.warning("VIDEvaluator: no detections; COCO box metrics are NaN.")
            return OrderedDict((m, float("nan")) for m in COCO_METRICS)
        with contextlib.redirect_stdout(io.StringIO()):
            # pycocotools' COCOeval with its defaults (maxDets 1/10/100). mmdet's CocoDataset.evaluate,
            # behind mmtracking's bbox_mAP, sets maxDets (100, 300, 1000): the same numbers while a frame
            # has at most 100 detections (TEST.DETECTIONS_PER_IMAGE, mmtracking's max_per_img 100).
            # loadRes adds fields to the results it is given, hence the copy.
            coco_eval = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(coco_results)), "bbox")
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        results = OrderedDict(
            (m, float(coco_eval.stats[i] * 100) if coco_eval.stats[i] >= 0 else float("nan"))
            for i, m in enumerate(COCO_METRICS)
        )
        logger.info("COCO box metrics (pycocotools):\n" + create_small_table(results))
        return results

    def _coco_gt(self, cat_ids) -> COCO:
        """COCO api over every frame, through Detectron2's converter; categories re-keyed to ``cat_ids``
        (the converter keeps contiguous ids when the metadata has no dataset id mapping)."""
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dict = convert_to_coco_dict(self._dataset_name)
        if not self._metadata.get("thing_dataset_id_to_contiguous_id", None):
            for c in coco_dict["categories"]:
                c["id"] = cat_ids[c["id"]]
            for a in coco_dict["annotations"]:
                a["category_id"] = cat_ids[a["category_id"]]
        coco = COCO()
        coco.dataset = coco_dict
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco
