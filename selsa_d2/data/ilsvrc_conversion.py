"""The raw ILSVRC2015 VID/DET layout converted to mmtracking's COCO-VID json files
(``datasets/prepare_imagenet_vid.py``; the readers are :mod:`.ilsvrc`, the writer :mod:`.coco_vid`)."""

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence

from .classes import IMAGENET_VID_CLASSES, IMAGENET_VID_WNIDS, read_classes_file
from .coco_vid import write_coco_vid_json
from .ilsvrc import (
    DET_TRAIN_LIST,
    VID_TRAIN_LIST,
    VID_VAL_LIST,
    load_ilsvrc_det,
    load_ilsvrc_vid_frames,
)

logger = logging.getLogger(__name__)

# split -> (list file under the root, json written)
SPLIT_FILES = {
    "train": (VID_TRAIN_LIST, "imagenet_vid_train.json"),
    "val": (VID_VAL_LIST, "imagenet_vid_val.json"),
    "det": (DET_TRAIN_LIST, "imagenet_det_30plus1cls.json"),
}


class OutputFolderError(OSError):
    """``out`` is a file or cannot be created; nothing was converted."""


def convert_ilsvrc_to_coco_vid(
    root: str,
    out: str,
    splits: Sequence[str] = ("train", "val", "det"),
    classes_file: str | None = None,
    progress: bool = True,
    list_frame_base: int = 0,
) -> list[str]:
    """Write into ``out`` the json of every split of ``splits`` whose list file exists under
    ``<root>/Lists``; returns their file names (empty: no list file found).

    Classes: ``classes_file`` (``"<id> <name>"`` lines), else ``<root>/classes.txt`` if present,
    else the 30 ImageNet VID classes. ``out`` is checked before the (long) conversion
    (:class:`OutputFolderError`); every json is written into a staging folder inside ``out`` and
    moved into place only when all are done, so an error (a bad annotation, named, as
    ``ValueError`` / ``OSError``; a full disk) leaves no half-written output.
    """
    problem = "is a file, not a directory" if os.path.isfile(out) else None
    created = not os.path.isdir(out)
    if problem is None:
        try:
            os.makedirs(out, exist_ok=True)
        except OSError as e:
            problem = f"cannot be created ({e.strerror or e})"
    if problem:
        raise OutputFolderError(f"--out {out} {problem}; nothing converted")
    staging = tempfile.mkdtemp(prefix=".partial-", dir=out)
    try:
        written = _convert_splits(root, staging, splits, classes_file, progress, list_frame_base)
        for name in written:
            os.replace(os.path.join(staging, name), os.path.join(out, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not os.listdir(out):
            os.rmdir(out)
    return written


def _convert_splits(
    root: str,
    out: str,
    splits: Sequence[str],
    classes_file: str | None,
    progress: bool,
    list_frame_base: int,
) -> list[str]:
    """Write the json of every split whose list file exists into ``out``; their names."""
    if classes_file:
        names, wnids = read_classes_file(classes_file)
    elif os.path.isfile(os.path.join(root, "classes.txt")):
        names, wnids = read_classes_file(os.path.join(root, "classes.txt"))
    else:
        names, wnids = IMAGENET_VID_CLASSES, IMAGENET_VID_WNIDS
    logger.info("%d classes: %s", len(names), names)
    written = []
    for split in splits:
        list_rel, out_name = SPLIT_FILES[split]
        if not os.path.isfile(os.path.join(root, list_rel)):
            logger.warning("%s: no %s; skipping", split, os.path.join(root, list_rel))
            continue
        if split == "det":  # one image per list line, each its own one-frame "video"
            frames = load_ilsvrc_det(root, names, wnids, dataset_name=split, progress=progress)
            keys, data_dir, as_video = [(f["video_id"], 0) for f in frames], "DET", False
        else:
            frames, keys = load_ilsvrc_vid_frames(
                root,
                split,
                names,
                wnids,
                dataset_name=split,
                progress=progress,
                list_frame_base=list_frame_base,
            )
            keys, data_dir, as_video = (keys if split == "train" else None), "VID", True
        write_coco_vid_json(
            frames,
            os.path.join(out, out_name),
            class_names=names,
            wnids=wnids,
            image_root=os.path.join(root, "Data", data_dir),
            key_frames=keys,
            as_video=as_video,
        )
        written.append(out_name)
    return written
