"""SELSA video object detection demo on a user video or a folder of frames.

Follows Detectron2's ``demo/demo.py`` conventions::

    python demo/demo.py --config-file configs/selsa_R_50_DC5_7e_imagenetvid.yaml \
        --video-input clip.mp4 --output out/ --opts MODEL.WEIGHTS model_final.pth

Writes an annotated video (mp4, ``mp4v``) drawn with Detectron2's ``Visualizer`` and a JSON
list with one entry per frame (see ``demo/README.md``).

Modes (``--mode``, default ``INPUT.VIDEO.TEST_MODE``):

* ``offline``: references may come from the whole video. The video is counted once (a cheap
  ``grab()`` pass) and its frames are decoded lazily on demand: only the most recently used
  frames (``TestReferenceSampler.max_cached_frames() + 2``) are held in memory, frames are
  decoded forward from the current position and a backward jump re-opens the video and skips
  forward (exact, unlike ``CAP_PROP_POS_FRAMES`` seeking on some codecs).
* ``online``: causal; each frame is read, predicted, drawn and written before the next is read.

Frame size changes: every frame is resized to the first frame's size (logged once per new size),
because the model's reference frames and the output video need one size. The JSON still gives
boxes in the pixel coordinates of the frame as stored in the input, with its own ``height`` /
``width``, and marks such frames with ``"resized": true``.

Bad input (missing file, unreadable video or image, no frames, unusable ``MODEL.WEIGHTS``)
stops with a message naming the file and a non-zero exit status. Outputs are checked before
inference starts: never an input (or inside an input frames folder) or each other, a video
container the writer supports (``VIDEO_CONTAINERS``), writable. An output that was started is
always finalised, also on SIGINT and SIGTERM: the video writer is released and the JSON is
written for the frames done so far.
"""

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Sequence

import cv2
import numpy as np
import tqdm
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import setup_logger

from selsa_d2.checkpoint.loading import WeightsError
from selsa_d2.cpu_allocator import retain_freed_cpu_memory_from_config
from selsa_d2.data.sampling import TestReferenceSampler
from selsa_d2.engine import setup_selsa_cfg
from selsa_d2.file_io import (
    OutputError,
    atomic_open,
    check_not_an_input,
    config_input_files,
    same_path,
)
from selsa_d2.predictor import VideoPredictor
from selsa_d2.run_guard import RunError
from selsa_d2.video_io import FrameSource, FrameSourceError, ImageFrames, VideoFileFrames
from selsa_d2.visualization import build_metadata, draw, make_record

logger = logging.getLogger("selsa_d2.demo")

# Containers that OpenCV's FFmpeg writer fills with the "mp4v" codec as a readable video (an
# image name such as .png would give one undecodable image; .webm refuses the codec).
VIDEO_CONTAINERS = (".mp4", ".m4v", ".mov", ".avi", ".mkv")


class DemoInputError(Exception):
    """Bad user input; ``main`` turns it into ``SystemExit`` with the message."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (SIGINT): the outputs done so far are finalised."""


def probability(text: str) -> float:
    """argparse type: a number in [0, 1] (nan refused)."""
    value = float(text)
    if not 0.0 <= value <= 1.0:  # also false for nan
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text}")
    return value


# --------------------------------------------------------------------------- arguments / config


def get_parser() -> argparse.ArgumentParser:
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


# ------------------------------------------------------------- frame sources and outputs
# (the sources: selsa_d2.video_io; drawing and JSON records: selsa_d2.visualization)


def open_source(args, cache_size: int) -> FrameSource:
    if args.video_input:
        return VideoFileFrames(args.video_input, cache_size)
    return ImageFrames(args.input, cache_size)


def output_paths(args, stem: str) -> tuple[str, str]:
    out = args.output
    if os.path.isdir(out) or out.endswith(("/", os.sep)):
        video_path = os.path.join(out, stem + ".mp4")
    else:
        video_path = out
    if os.path.splitext(video_path)[1].lower() not in VIDEO_CONTAINERS:
        raise DemoInputError(
            f"--output {out}: give a video file name ending in {', '.join(VIDEO_CONTAINERS)} such as out.mp4, "
            "or a directory (existing or ending in '/')"
        )
    if args.json and not args.json.lower().endswith(".json"):
        raise DemoInputError(f"--json {args.json}: give a file name ending in .json")
    json_path = args.json or os.path.splitext(video_path)[0] + ".json"
    return video_path, json_path


def check_outputs(video_path: str, json_path: str, source: FrameSource, cfg=None, config_file=None):
    """Refuse outputs that would destroy input or each other, or cannot be written; before any
    inference, so that no work is lost. Inputs: the frames (their folder) and, with ``cfg``, every
    file the config reads (selsa_d2.file_io.config_input_files). Creates the output folders."""
    if same_path(video_path, json_path):
        raise DemoInputError(f"the output video and the JSON are the same file: {video_path}")
    inputs = source.files if isinstance(source, ImageFrames) else [source.path]
    inputs = [("an input file", inp) for inp in inputs]
    folder = getattr(source, "folder", None)
    if folder is not None:
        inputs.append(("the input frames folder", folder))
    if cfg is not None:
        inputs += config_input_files(cfg, config_file)
    for flag, path in (("--output", video_path), ("--json", json_path)):
        check_not_an_input(path, inputs, flag)
        if os.path.isdir(path):
            raise DemoInputError(f"{flag} {path} is a directory, not a file name")
        parent = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(parent, exist_ok=True)
            tempfile.TemporaryFile(
                dir=parent
            ).close()  # the real test (permissions, read-only or special fs)
        except OSError as e:
            raise DemoInputError(
                f"{flag} {path}: cannot write into {parent} ({e.strerror or e})"
            ) from None
        if os.path.exists(path) and not os.access(path, os.W_OK):
            raise DemoInputError(f"{flag} {path}: the existing file is not writable")


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Within this context SIGTERM raises :class:`Terminated` (a KeyboardInterrupt), so the
    ``finally`` blocks finalise the outputs as for Ctrl-C."""

    def on_sigterm(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------- main loop


class _Outputs:
    """Video writer (opened on the first frame) and per-frame records; ``close`` finalises both."""

    def __init__(self, video_path: str, json_path: str, fps: float, size: tuple[int, int]):
        self.video_path, self.json_path, self.fps, self.size = video_path, json_path, fps, size
        self.writer: cv2.VideoWriter | None = None
        self.records: list[dict] = []

    def add(self, image_bgr: np.ndarray, record: dict):
        if self.writer is None:
            h, w = self.size
            self.writer = cv2.VideoWriter(
                self.video_path, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h), True
            )
            if not self.writer.isOpened():
                self.writer = None
                raise DemoInputError(f"cannot open output video for writing: {self.video_path}")
        self.writer.write(image_bgr)
        self.records.append(record)

    def close(self):
        """Release the video and write the JSON of the frames done; nothing if no frame was done."""
        if self.writer is None:
            return
        self.writer.release()
        self.writer = None
        with atomic_open(self.json_path, "w") as f:
            json.dump(self.records, f)


def _online(predictor, source: FrameSource) -> Iterator[tuple[int, np.ndarray, object]]:
    """(index, frame, instances) one frame at a time; frames pulled by the predictor but not yet
    answered wait in a queue, so this holds whatever look-ahead the predictor uses."""
    pending: deque = deque()

    def frames():
        for frame in source:
            pending.append(frame)
            yield frame

    for index, instances in enumerate(predictor.stream(frames())):
        yield index, pending.popleft(), instances


def _predict_offline(predictor, source: FrameSource) -> list:
    """Detections of every frame, predicted over the whole video (references may lie anywhere)."""
    # predict_video returns only at the end; the model runs once per frame, so a forward hook
    # shows the inference progress.
    with tqdm.tqdm(
        total=len(source), unit="frame", desc="SELSA offline inference", dynamic_ncols=True
    ) as bar:

        def count_frame(module, inputs, outputs):
            bar.update(1)  # returns None: a forward hook's return value would replace the outputs

        hook = predictor.model.register_forward_hook(count_frame)
        try:
            results = predictor.predict_video(source, mode="offline")
        finally:
            hook.remove()
    if len(results) != len(source):
        raise RuntimeError(
            f"predictor returned {len(results)} results for {len(source)} frames of {source.path}"
        )
    return results


def run(args) -> tuple[str, str]:
    cfg = setup_cfg(args)
    retain_freed_cpu_memory_from_config(cfg)
    mode = cfg.INPUT.VIDEO.TEST_MODE
    sampler = TestReferenceSampler.from_config(cfg)
    source = open_source(args, cache_size=sampler.max_cached_frames() + 2)
    video_path, json_path = output_paths(args, source.stem)
    check_outputs(video_path, json_path, source, cfg, args.config_file)
    metadata = build_metadata(cfg)
    predictor = VideoPredictor(cfg, mode=mode)
    if mode == "offline":
        total, desc = len(source), "drawing"
    else:
        total = source.estimated_length() if isinstance(source, VideoFileFrames) else len(source)
        desc = "SELSA online"
    logger.info(
        f"{source.path}: {mode} mode, {total} frames of {source.size[1]}x{source.size[0]} at {source.fps:g} fps"
    )

    outputs = _Outputs(video_path, json_path, source.fps, source.size)
    start = time.perf_counter()
    with _sigterm_as_interrupt():
        try:
            if mode == "offline":
                results = _predict_offline(predictor, source)
                items = (
                    (index, source[index], instances) for index, instances in enumerate(results)
                )
            else:
                items = _online(predictor, source)
            with tqdm.tqdm(total=total, unit="frame", desc=desc, dynamic_ncols=True) as bar:
                for index, frame, instances in items:
                    instances = instances.to("cpu")
                    outputs.add(
                        draw(frame, instances, metadata),
                        make_record(index, instances, source, metadata),
                    )
                    bar.update(1)
        finally:
            outputs.close()
            source.close()
            if outputs.records:
                logger.info(
                    f"wrote {len(outputs.records)} frames to {video_path} and {json_path} "
                    f"in {time.perf_counter() - start:.1f}s"
                )
            else:
                logger.info(f"no frame done; wrote nothing to {video_path} or {json_path}")
    return video_path, json_path


def main(argv: Sequence[str] | None = None):
    args = get_parser().parse_args(argv)
    setup_logger(name="fvcore")
    setup_logger(name="selsa_d2")
    logger.info("Arguments: " + str(args))
    try:
        run(args)
    except (DemoInputError, FrameSourceError, WeightsError, OutputError, RunError) as e:
        raise SystemExit(f"demo.py: error: {e}") from e
    except Terminated:
        print(
            "demo.py: stopped by SIGTERM (the outputs of the frames done are finalised)",
            file=sys.stderr,
        )
        return 128 + signal.SIGTERM
    return 0


if __name__ == "__main__":
    sys.exit(main())
