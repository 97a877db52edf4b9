"""The demo's command line and config."""

import argparse

from detectron2.utils.file_io import PathManager

from ..engine import setup_selsa_cfg

# Containers that OpenCV's FFmpeg writer fills with the "mp4v" codec as a readable video (an
# image name such as .png would give one undecodable image; .webm refuses the codec).
VIDEO_CONTAINERS = (".mp4", ".m4v", ".mov", ".avi", ".mkv")


class DemoInputError(Exception):
    """Bad user input; ``main`` turns it into ``SystemExit`` with the message."""


def probability(text: str) -> float:
    """argparse type: a number in [0, 1] (nan refused)."""
    value = float(text)
    if not 0.0 <= value <= 1.0:  # also false for nan
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text}")
    return value


def get_parser() -> argparse.ArgumentParser:
    """``demo/demo.py``'s command line (Detectron2's demo's, for video)."""
    parser = argparse.ArgumentParser(description="SELSA video object detection demo")
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to config file")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--video-input", metavar="FILE", help="a video file OpenCV can read")
    src.add_argument(
        "--input",
        nargs="+",
        help="a directory of frames, a glob pattern such as 'frames/*.jpg' (quote it), "
        "or a list of image files; frames are taken in natural sort order",
    )
    parser.add_argument(
        "--output",
        required=True,
        help=f"output video file ({', '.join(VIDEO_CONTAINERS)}), or a directory (existing, or given with a "
        "trailing '/') to write <input stem>.mp4 and <input stem>.json into",
    )
    parser.add_argument(
        "--json",
        metavar="FILE",
        help="detections JSON, *.json (default: the output video with .json)",
    )
    parser.add_argument(
        "--confidence-threshold",
        type=probability,
        default=0.5,
        help="minimum score of the detections kept, in [0, 1]",
    )
    parser.add_argument(
        "--mode",
        choices=["offline", "online"],
        default=None,
        help="offline: references from the whole video; online: causal (default: INPUT.VIDEO.TEST_MODE)",
    )
    parser.add_argument(
        "--opts",
        default=[],
        nargs=argparse.REMAINDER,
        help="modify config options with 'KEY VALUE' pairs, e.g. --opts MODEL.WEIGHTS model.pth",
    )
    # Detectron2's tools also take the pairs without --opts, at the end of the command line.
    parser.add_argument(
        "trailing_opts", default=[], nargs=argparse.REMAINDER, help=argparse.SUPPRESS
    )
    return parser


def setup_cfg(args):
    """The demo's config: the file, the options, the score threshold and ``--mode``."""
    if not PathManager.isfile(args.config_file):
        raise DemoInputError(f"config file not found: {args.config_file}")
    opts = list(args.trailing_opts or []) + list(args.opts or [])
    if len(opts) % 2:
        raise DemoInputError(f"config options must be KEY VALUE pairs, got {opts}")
    threshold = args.confidence_threshold
    opts += ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", threshold]
    opts += ["MODEL.RETINANET.SCORE_THRESH_TEST", threshold]
    if args.mode is not None:
        opts += ["INPUT.VIDEO.TEST_MODE", args.mode]
    cfg = setup_selsa_cfg(args.config_file, opts)  # DATASETS.COCO_VID registered too
    if cfg.TEST.VID.SEQ_NMS.ENABLED and cfg.INPUT.VIDEO.TEST_MODE != "offline":
        raise DemoInputError(
            "TEST.VID.SEQ_NMS.ENABLED needs the whole video: use --mode offline (Seq-NMS links "
            "each frame to later ones, which online mode has not read yet)"
        )
    return cfg
