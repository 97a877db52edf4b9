"""The demo's input frames and outputs: where they go, the checks before any inference (never an
input, writable), and the writer that is always finalised."""

import json
import os
import tempfile

import cv2
import numpy as np

from ..file_io import atomic_open, check_not_an_input, config_input_files, same_path
from ..video_io import FrameSource, ImageFrames, VideoFileFrames
from .arguments import VIDEO_CONTAINERS, DemoInputError


def open_source(args, cache_size: int) -> FrameSource:
    """The frames of ``--video-input`` or ``--input``, decoded lazily (``cache_size`` held)."""
    if args.video_input:
        return VideoFileFrames(args.video_input, cache_size)
    return ImageFrames(args.input, cache_size)


def output_paths(args, stem: str) -> tuple[str, str]:
    """(video, JSON) paths from ``--output`` / ``--json``; ``stem`` names them in a folder."""
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


class VideoOutputs:
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
