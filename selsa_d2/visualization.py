"""Drawing detections on a frame and recording them as JSON (``demo/demo.py``'s outputs)."""

import logging

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import ColorMode, Visualizer

from .evaluation.vid_evaluator import coco_category_ids
from .video_io import FrameSource

__all__ = ["build_metadata", "draw", "make_record"]

logger = logging.getLogger(__name__)


def build_metadata(cfg) -> Metadata:
    """Class names from ``DATASETS.TEST[0]`` (class ids when unavailable) and one fixed colour per
    class, so a class keeps its colour over the whole video."""
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    names = None
    ids = list(range(num_classes))  # JSON category_id: the class index, or the dataset's own id
    dataset = cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else None
    if dataset is not None:
        try:
            names = MetadataCatalog.get(dataset).get("thing_classes", None)
            if names is not None and len(names) == num_classes:
                if MetadataCatalog.get(dataset).get("thing_dataset_id_to_contiguous_id", None):
                    ids = coco_category_ids(MetadataCatalog.get(dataset))  # e.g. a json's 3/7/11
        except Exception as e:  # e.g. the dataset's class file is not on this machine
            logger.warning(
                f"no class names from dataset {dataset!r} ({e}); labelling with class ids"
            )
    if names is not None and len(names) != num_classes:
        logger.warning(
            f"dataset {dataset!r} has {len(names)} classes but the model predicts {num_classes}; "
            "labelling with class ids"
        )
        names = None
    if names is None:
        names = [str(i) for i in range(num_classes)]
    palette = colormap(rgb=True, maximum=255)
    colors = [tuple(int(v) for v in palette[i % len(palette)]) for i in range(num_classes)]
    return Metadata(
        name="selsa_demo", thing_classes=list(names), thing_colors=colors, category_ids=ids
    )


def _category_ids(metadata: Metadata) -> list[int]:
    """The JSON ``category_id`` of each class index (see :func:`build_metadata`)."""
    return metadata.get("category_ids", None) or list(range(len(metadata.thing_classes)))


def draw(frame_bgr: np.ndarray, instances, metadata: Metadata) -> np.ndarray:
    vis = Visualizer(frame_bgr[:, :, ::-1], metadata, instance_mode=ColorMode.SEGMENTATION)
    out = vis.draw_instance_predictions(instances, jittering=False)
    return np.ascontiguousarray(out.get_image()[:, :, ::-1])


def make_record(index: int, instances, source: FrameSource, metadata: Metadata) -> dict:
    h, w = source.size
    oh, ow = source.original_sizes.get(index, (h, w))
    boxes = instances.pred_boxes.tensor.numpy().astype(np.float64)
    # Boxes in the pixel coordinates of the stored frame, even if it was resized for the model.
    boxes *= np.array([ow / w, oh / h, ow / w, oh / h])
    scores = instances.scores.tolist()
    classes = instances.pred_classes.tolist()
    record = {"frame": index}
    if source.file_name(index) is not None:
        record["file_name"] = source.file_name(index)
    record.update(height=oh, width=ow)
    if index in source.original_sizes:
        record["resized"] = True
    record["detections"] = [
        {
            "bbox": [round(float(v), 2) for v in box],
            "score": round(float(s), 5),
            "category_id": int(_category_ids(metadata)[int(c)]),
            "category": metadata.thing_classes[int(c)],
        }
        for box, s, c in zip(boxes, scores, classes)
    ]
    return record
