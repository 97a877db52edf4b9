"""Frame sources for video inference on a user's input: a video file decoded lazily, or a folder,
glob or list of image files; BGR uint8 frames ``[H, W, 3]`` of one size (``demo/demo.py`` reads
its inputs with them)."""

import glob
import logging
import os
import re
from collections import OrderedDict
from collections.abc import Iterator, Sequence

import cv2
import numpy as np

from .data.image_io import read_frame

__all__ = ["FrameSource", "FrameSourceError", "ImageFrames", "VideoFileFrames"]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
FOLDER_FPS = 10.0  # frame rate given to a folder of images


class FrameSourceError(Exception):
    """An input that cannot be read (missing, not a video, no frames, undecodable); the message
    names the file."""


class FrameSource(Sequence):
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


class VideoFileFrames(FrameSource):
    """Frames of a video file, decoded lazily."""

    def __init__(self, path: str, cache_size: int = 16):
        super().__init__(cache_size)
        self.path = path
        self.stem = os.path.splitext(os.path.basename(path))[0]
        if not os.path.isfile(path):
            raise FrameSourceError(f"video not found: {path}")
        cap = self._open()
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            raise FrameSourceError(f"video has no readable frames: {path}")
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
            raise FrameSourceError(f"cannot open video (not a video OpenCV can read?): {self.path}")
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
                raise FrameSourceError(f"video has no readable frames: {self.path}")
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
                raise FrameSourceError(f"{self.path}: could not decode frame {self._next}")
            self._next += 1
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise FrameSourceError(f"{self.path}: could not decode frame {index}")
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


class ImageFrames(FrameSource):
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
                raise FrameSourceError(
                    f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in directory: {folder}"
                )
            self.path, self.stem = folder, os.path.basename(os.path.normpath(folder))
            self.folder = folder
        elif len(inputs) == 1 and not os.path.isfile(inputs[0]):
            pattern = os.path.expanduser(inputs[0])
            files = [f for f in glob.glob(pattern) if os.path.isfile(f)]
            if not files:
                raise FrameSourceError(
                    f"no frames found: {inputs[0]} is not a directory, a file or a matching glob"
                )
            self.path = inputs[0]
            self.stem = os.path.basename(os.path.dirname(os.path.abspath(sorted(files)[0])))
        else:
            missing = [f for f in inputs if not os.path.isfile(f)]
            if missing:
                raise FrameSourceError(f"input image not found: {missing[0]}")
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
            raise FrameSourceError(f"cannot read image {path}: {e}") from e

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]
