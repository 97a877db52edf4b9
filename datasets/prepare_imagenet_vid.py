#!/usr/bin/env python
"""Convert the raw ILSVRC2015 VID/DET layout to mmtracking's COCO-VID json.

    python datasets/prepare_imagenet_vid.py --root datasets/ILSVRC2015 \
        --out datasets/ILSVRC2015/annotations

writes (each one whose list file exists under ``<root>/Lists``):

- ``imagenet_vid_train.json`` from ``VID_train_15frames.txt`` (all frames of the listed videos;
  the listed frames flagged ``is_vid_train_frame``),
- ``imagenet_vid_val.json`` from ``VID_val_videos.txt`` (all frames, none flagged, as mmtracking),
- ``imagenet_det_30plus1cls.json`` from ``DET_train_30classes.txt`` (one image per list line,
  objects of the dataset's classes only; an image listed twice is written twice, with its own ids,
  as mmtracking's ``imagenet2coco_det.py`` does, so it is sampled more often in training).

``--list-frame-base 1`` reads the frame numbers of ``VID_train_15frames.txt`` as mmtracking's
``imagenet2coco_vid.py`` does (number - 1): lines naming frame 0 are skipped and counted (a warning),
as that converter's frame -1 flags no image; on the official list the result flags the same
57,690 key frames as mmtracking's json.

The files are interchangeable with the ones mmtracking's converters write. ``--classes`` takes a
``"<id> <name>"`` class file for custom data in the same layout (e.g. the synthetic dataset);
default: ``<root>/classes.txt`` if present, else the 30 ImageNet VID classes.
"""

import argparse
import logging
import os
import shutil
import sys
import tempfile

from selsa_d2.data.classes import IMAGENET_VID_CLASSES, IMAGENET_VID_WNIDS, read_classes_file
from selsa_d2.data.coco_vid import write_coco_vid_json
from selsa_d2.data.ilsvrc import (
    DET_TRAIN_LIST,
    VID_TRAIN_LIST,
    VID_VAL_LIST,
    load_ilsvrc_det,
    load_ilsvrc_vid_frames,
)

logger = logging.getLogger("prepare_imagenet_vid")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="ILSVRC root holding Data/, Annotations/, Lists/")
    p.add_argument("--out", default=None, help="output directory (default: <root>/annotations)")
    p.add_argument("--classes", default=None, help="class file, one '<id> <name>' per line")
    p.add_argument(
        "--splits", nargs="+", default=["train", "val", "det"], choices=["train", "val", "det"]
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--list-frame-base",
        type=int,
        choices=(0, 1),
        default=0,
        help="number of a video's first frame in VID_train_15frames.txt: 0 as FGFA (the list's "
        "authors) read it, 1 to mark the same key frames as mmtracking's converter (lines naming "
        "frame 0 are then skipped and counted)",
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    root = os.path.abspath(args.root)
    out = args.out or os.path.join(root, "annotations")
    # before the (long) conversion: --out must be a directory, existing or creatable
    problem = "is a file, not a directory" if os.path.isfile(out) else None
    created = not os.path.isdir(out)
    if problem is None:
        try:
            os.makedirs(out, exist_ok=True)
        except OSError as e:
            problem = f"cannot be created ({e.strerror or e})"
    if problem:
        logger.error("--out %s %s; nothing converted", out, problem)
        return 2
    # every json is written into a staging folder inside --out and moved into place only when
    # all are done: an error (a bad annotation, a full disk) leaves no half-written output
    staging = tempfile.mkdtemp(prefix=".partial-", dir=out)
    try:
        written = _convert(args, root, staging)
        for name in written:
            os.replace(os.path.join(staging, name), os.path.join(out, name))
    except (ValueError, OSError) as e:  # the readers' errors name the file
        logger.error("%s; nothing written to %s", " ".join(str(e).split()), out)
        written = None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not os.listdir(out):
            os.rmdir(out)
    if written is None:
        return 2
    if not written:
        logger.error("No list file found under %s/Lists; nothing converted", root)
        return 1
    return 0


def _convert(args, root: str, out: str) -> list[str]:
    """Write the json of every split whose list file exists into ``out``; their names."""
    if args.classes:
        names, wnids = read_classes_file(args.classes)
    elif os.path.isfile(os.path.join(root, "classes.txt")):
        names, wnids = read_classes_file(os.path.join(root, "classes.txt"))
    else:
        names, wnids = IMAGENET_VID_CLASSES, IMAGENET_VID_WNIDS
    logger.info("%d classes: %s", len(names), names)
    progress = not args.no_progress
    jobs = {
        "train": (VID_TRAIN_LIST, "imagenet_vid_train.json"),
        "val": (VID_VAL_LIST, "imagenet_vid_val.json"),
        "det": (DET_TRAIN_LIST, "imagenet_det_30plus1cls.json"),
    }
    written = []
    for split in args.splits:
        list_rel, out_name = jobs[split]
        if not os.path.isfile(os.path.join(root, list_rel)):
            logger.warning("%s: no %s; skipping", split, os.path.join(root, list_rel))
            continue
        out_file = os.path.join(out, out_name)
        if split == "det":
            frames = load_ilsvrc_det(root, names, wnids, dataset_name=split, progress=progress)
            write_coco_vid_json(
                frames,
                out_file,
                class_names=names,
                wnids=wnids,
                image_root=os.path.join(root, "Data", "DET"),
                key_frames=[(f["video_id"], 0) for f in frames],
                as_video=False,
            )
        else:
            frames, keys = load_ilsvrc_vid_frames(
                root,
                split,
                names,
                wnids,
                dataset_name=split,
                progress=progress,
                list_frame_base=args.list_frame_base,
            )
            write_coco_vid_json(
                frames,
                out_file,
                class_names=names,
                wnids=wnids,
                image_root=os.path.join(root, "Data", "VID"),
                key_frames=keys if split == "train" else None,
            )
        written.append(out_name)
    return written


if __name__ == "__main__":
    sys.exit(main())
