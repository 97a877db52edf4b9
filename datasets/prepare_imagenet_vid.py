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
import sys

from selsa_d2.data.ilsvrc_conversion import OutputFolderError, convert_ilsvrc_to_coco_vid

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
    try:
        written = convert_ilsvrc_to_coco_vid(
            root,
            out,
            splits=args.splits,
            classes_file=args.classes,
            progress=not args.no_progress,
            list_frame_base=args.list_frame_base,
        )
    except OutputFolderError as e:
        logger.error("%s", e)
        return 2
    except (ValueError, OSError) as e:  # the readers' errors name the file
        logger.error("%s; nothing written to %s", " ".join(str(e).split()), out)
        return 2
    if not written:
        logger.error("No list file found under %s/Lists; nothing converted", root)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
