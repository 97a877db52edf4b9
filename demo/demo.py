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
import glob
import json
import logging
import os
import re
import signal
import sys
import tempfile
import time
from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from collections.abc import Sequence as SequenceABC

import cv2
import numpy as np
import tqdm
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.utils.colormap import colormap
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import setup_logger
from detectron2.utils.visualizer import ColorMode, Visualizer

from selsa_d2 import add_selsa_config
from selsa_d2.checkpoint.loading import WeightsError
from selsa_d2.cpu_allocator import retain_freed_cpu_memory_from_config
from selsa_d2.data import register_datasets_from_config
from selsa_d2.data.image_io import read_frame
from selsa_d2.data.sampling import TestReferenceSampler
from selsa_d2.engine import fall_back_to_cpu
from selsa_d2.evaluation.vid_evaluator import coco_category_ids
from selsa_d2.file_io import (
    OutputError,
    atomic_open,
    check_not_an_input,
    config_input_files,
    same_path,
)
from selsa_d2.predictor import VideoPredictor

logger = logging.getLogger("selsa_d2.demo")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
FOLDER_FPS = 10.0
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
    cfg = get_cfg()
    add_selsa_config(cfg)
    if not PathManager.isfile(args.config_file):
        raise DemoInputError(f"config file not found: {args.config_file}")
    cfg.merge_from_file(args.config_file)
    opts = list(args.trailing_opts or []) + list(args.opts or [])
    if len(opts) % 2:
        raise DemoInputError(f"config options must be KEY VALUE pairs, got {opts}")
    cfg.merge_from_list(opts)
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = args.confidence_threshold
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = args.confidence_threshold
    if args.mode is not None:
        cfg.INPUT.VIDEO.TEST_MODE = args.mode
    fall_back_to_cpu(cfg)
    cfg.freeze()
    return cfg


# --------------------------------------------------------------------------- frame sources


class _FrameSource(SequenceABC):
    """Frames of one input, BGR uint8 ``[H, W, 3]``, all resized to the first frame's size.

    Random access (``source[i]``, for offline mode; a small LRU cache of decoded frames) and
    streaming (``iter(source)``, for online mode). ``original_sizes`` records ``(h, w)`` of frames
    that were resized.
    """

    path: str
    stem: str
    fps: float
    size: tuple[int, int]  # (height, width) of the first frame

    def __init__(self, cache_size: int):
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = max(1, cache_size)
        self.original_sizes: dict[int, tuple[int, int]] = {}
        self._warned_sizes = set()

    def file_name(self, index: int) -> str | None:
        return None

    def _normalise(self, index: int, frame: np.ndarray) -> np.ndarray:
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        h, w = frame.shape[:2]
        if (h, w) == self.size:
            return frame
        if (h, w) not in self._warned_sizes:
            self._warned_sizes.add((h, w))
            logger.warning(
                f"{self.file_name(index) or self.path}: frame {index} is {w}x{h}, unlike the first frame "
                f"({self.size[1]}x{self.size[0]}); resizing such frames to the first frame's size."
            )
        self.original_sizes[index] = (h, w)
        return cv2.resize(frame, (self.size[1], self.size[0]), interpolation=cv2.INTER_LINEAR)

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} out of range for {self.path} ({len(self)} frames)")
        frame = self._cache.get(index)
        if frame is None:
            frame = self._normalise(index, self._load(index))
            self._cache[index] = frame
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(index)
        return frame

    def close(self):
        self._cache.clear()


class VideoFileFrames(_FrameSource):
    """Frames of a video file, decoded lazily."""

    def __init__(self, path: str, cache_size: int = 16):
        super().__init__(cache_size)
        self.path = path
        self.stem = os.path.splitext(os.path.basename(path))[0]
        if not os.path.isfile(path):
            raise DemoInputError(f"video not found: {path}")
        cap = self._open()
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            raise DemoInputError(f"video has no readable frames: {path}")
        self.size = tuple(first.shape[:2])
        fps = cap.get(cv2.CAP_PROP_FPS)
        if not fps or not np.isfinite(fps) or fps <= 0 or fps > 1000:
            logger.warning(
                f"{path}: no valid frame rate in the file ({fps}); writing {FOLDER_FPS} fps"
            )
            fps = FOLDER_FPS
        self.fps = float(fps)
        self._estimated_length = max(1, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
        self._cap, self._next = cap, 1
        self._cache[0] = first
        self._length: int | None = None

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self.path)
        if not cap.isOpened():
            raise DemoInputError(f"cannot open video (not a video OpenCV can read?): {self.path}")
        return cap

    def estimated_length(self) -> int:
        """The container's frame count (may be approximate); for progress bars only."""
        return self._length if self._length is not None else self._estimated_length

    def __len__(self) -> int:
        # The container's count can be wrong, so offline mode counts the frames once.
        if self._length is None:
            cap, n = self._open(), 0
            try:
                while cap.grab():
                    n += 1
            finally:
                cap.release()
            if n == 0:
                raise DemoInputError(f"video has no readable frames: {self.path}")
            self._warn_if_short(n)
            self._length = n
        return self._length

    def _warn_if_short(self, decoded: int):
        """A truncated or damaged file: fewer frames decode than its container announces."""
        if decoded < self._estimated_length:
            logger.warning(
                f"{self.path}: decoding ended after {decoded} frames; the file says {self._estimated_length} "
                "(truncated or damaged?); processing the decodable frames"
            )

    def _load(self, index: int) -> np.ndarray:
        if index < self._next:  # backward jump: re-open and skip forward, exact on every codec
            self._cap.release()
            self._cap, self._next = self._open(), 0
        while self._next < index:
            if not self._cap.grab():
                raise DemoInputError(f"{self.path}: could not decode frame {self._next}")
            self._next += 1
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise DemoInputError(f"{self.path}: could not decode frame {index}")
        self._next += 1
        return frame

    def __iter__(self) -> Iterator[np.ndarray]:
        cap = self._open()
        try:
            index = 0
            while True:
                ok, frame = cap.read()
                if not ok or frame is None:
                    break
                yield self._normalise(index, frame)
                index += 1
            self._warn_if_short(index)
        finally:
            cap.release()

    def close(self):
        super().close()
        self._cap.release()


def _natural_key(path: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path)]


class ImageFrames(_FrameSource):
    """Frames stored as image files (a directory, a glob or a list of files)."""

    folder: str | None = None  # the directory given as input, if one was

    def __init__(self, inputs: Sequence[str], cache_size: int = 16):
        super().__init__(cache_size)
        if len(inputs) == 1 and os.path.isdir(inputs[0]):
            folder = inputs[0]
            files = [
                os.path.join(folder, f)
                for f in os.listdir(folder)
                if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, f))
            ]
            if not files:
                raise DemoInputError(
                    f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in directory: {folder}"
                )
            self.path, self.stem = folder, os.path.basename(os.path.normpath(folder))
            self.folder = folder
        elif len(inputs) == 1 and not os.path.isfile(inputs[0]):
            pattern = os.path.expanduser(inputs[0])
            files = [f for f in glob.glob(pattern) if os.path.isfile(f)]
            if not files:
                raise DemoInputError(
                    f"no frames found: {inputs[0]} is not a directory, a file or a matching glob"
                )
            self.path = inputs[0]
            self.stem = os.path.basename(os.path.dirname(os.path.abspath(sorted(files)[0])))
        else:
            missing = [f for f in inputs if not os.path.isfile(f)]
            if missing:
                raise DemoInputError(f"input image not found: {missing[0]}")
            files = list(inputs)
            self.path = os.path.dirname(os.path.abspath(files[0]))
            self.stem = os.path.basename(self.path)
        if len(inputs) == 1:
            files.sort(key=_natural_key)
        self.files = files
        self.fps = FOLDER_FPS
        self.size = tuple(self._load(0).shape[:2])

    def file_name(self, index: int) -> str | None:
        return self.files[index]

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, index: int) -> np.ndarray:
        path = self.files[index]
        try:
            # Detectron2's read_image (EXIF orientation, like its demo), 16-bit frames scaled
            return read_frame(path, format="BGR")
        except Exception as e:
            raise DemoInputError(f"cannot read image {path}: {e}") from e

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]


def open_source(args, cache_size: int) -> _FrameSource:
    if args.video_input:
        return VideoFileFrames(args.video_input, cache_size)
    return ImageFrames(args.input, cache_size)


# --------------------------------------------------------------------------- drawing / records


def build_metadata(cfg) -> Metadata:
    """Class names from ``DATASETS.TEST[0]`` (class ids when unavailable) and one fixed colour per
    class, so a class keeps its colour over the whole video."""
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    names = None
    ids = list(range(num_classes))  # JSON category_id: the class index, or the dataset's own id
    dataset = cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else None
    if dataset is not None:
        try:
            register_datasets_from_config(
                cfg
            )  # DATASETS.COCO_VID, if the config names its own json
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


def draw(frame_bgr: np.ndarray, instances, metadata: Metadata) -> np.ndarray:
    vis = Visualizer(frame_bgr[:, :, ::-1], metadata, instance_mode=ColorMode.SEGMENTATION)
    out = vis.draw_instance_predictions(instances, jittering=False)
    return np.ascontiguousarray(out.get_image()[:, :, ::-1])


def make_record(index: int, instances, source: _FrameSource, metadata: Metadata) -> dict:
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
            "category_id": int(metadata.get("category_ids", range(len(metadata.thing_classes)))[c]),
            "category": metadata.thing_classes[int(c)],
        }
        for box, s, c in zip(boxes, scores, classes)
    ]
    return record


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


def check_outputs(
    video_path: str, json_path: str, source: _FrameSource, cfg=None, config_file=None
):
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


def _online(predictor, source: _FrameSource) -> Iterator[tuple[int, np.ndarray, object]]:
    """(index, frame, instances) one frame at a time; frames pulled by the predictor but not yet
    answered wait in a queue, so this holds whatever look-ahead the predictor uses."""
    pending: deque = deque()

    def frames():
        for frame in source:
            pending.append(frame)
            yield frame

    for index, instances in enumerate(predictor.stream(frames())):
        yield index, pending.popleft(), instances


def _predict_offline(predictor, source: _FrameSource) -> list:
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
    except (DemoInputError, WeightsError, OutputError) as e:
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
