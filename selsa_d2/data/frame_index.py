"""Per-dataset index of every frame of every video, so a mapper can fetch reference frames.

A registered video dataset lists its *key* frames in ``DatasetCatalog``; references may be any
frame of the same video (for ImageNet VID training, frames outside the 15 listed per video). The
index holds all of them, grouped by video and ordered by ``frame_id``. It is built lazily, once
per process, from a loader registered next to the dataset.
"""

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

_LOADERS: dict[str, Callable[[], list[dict]]] = {}
_INDEXES: dict[str, "VideoFrameIndex"] = {}


class VideoFrameIndex:
    """All frames of a dataset's videos: ``index.frame(video_id, frame_id) -> frame dict``."""

    def __init__(self, frames: list[dict], name: str = "<unnamed>"):
        self.name = name
        videos: dict[int, dict[int, dict]] = {}
        for f in frames:
            videos.setdefault(f["video_id"], {})[f["frame_id"]] = f
        self._videos: dict[int, list[dict]] = {}
        for vid, by_id in videos.items():
            ordered = [by_id[k] for k in sorted(by_id)]
            if [f["frame_id"] for f in ordered] != list(range(len(ordered))):
                raise ValueError(
                    f"Dataset {name!r}: video {vid} ({ordered[0].get('video_name', '?')}) has frame ids "
                    f"that are not 0..{len(ordered) - 1}; frames are missing from the annotations"
                )
            self._videos[vid] = ordered

    def __len__(self) -> int:
        return len(self._videos)

    def video_ids(self) -> list[int]:
        return list(self._videos)

    def video_length(self, video_id: int) -> int:
        return len(self._frames_of(video_id))

    def frames(self, video_id: int) -> list[dict]:
        """Every frame dict of the video, ordered by frame id."""
        return self._frames_of(video_id)

    def frame(self, video_id: int, frame_id: int) -> dict:
        frames = self._frames_of(video_id)
        if not 0 <= frame_id < len(frames):
            raise KeyError(
                f"Dataset {self.name!r}: video {video_id} has no frame {frame_id} (it has {len(frames)})"
            )
        return frames[frame_id]

    def _frames_of(self, video_id: int) -> list[dict]:
        try:
            return self._videos[video_id]
        except KeyError:
            raise KeyError(f"Dataset {self.name!r} has no video with id {video_id}") from None


def register_frame_index(name: str, loader: Callable[[], list[dict]]) -> None:
    """Register ``loader() -> list of all frame dicts`` as the frame index of dataset ``name``."""
    if name in _LOADERS:
        raise KeyError(f"A frame index for dataset {name!r} is already registered")
    _LOADERS[name] = loader


def unregister_frame_index(name: str) -> None:
    _LOADERS.pop(name, None)
    _INDEXES.pop(name, None)


def get_frame_index(name: str) -> VideoFrameIndex:
    """The frame index of dataset ``name``, built on first use and cached for the process."""
    if name not in _INDEXES:
        if name not in _LOADERS:
            raise KeyError(
                f"Dataset {name!r} has no frame index; register it with selsa_d2.data.register_vid_dataset "
                f"(registered: {sorted(_LOADERS)})"
            )
        frames = _LOADERS[name]()
        _INDEXES[name] = VideoFrameIndex(frames, name)
        logger.info(
            "Frame index of %s: %d videos, %d frames", name, len(_INDEXES[name]), len(frames)
        )
    return _INDEXES[name]
