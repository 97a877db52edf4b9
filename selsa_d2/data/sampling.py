"""Reference-frame sampling: which frames of a video accompany a key frame.

Training (:func:`sample_train_refs`) draws random references around the key frame.
Test (:class:`TestReferenceSampler`) is deterministic and also tells the video inference engine
which frames must be supplied ahead of time and, once per key frame, what to compute, which
frames are the references and which held frames to drop (:meth:`TestReferenceSampler.plan`), so
that every frame is computed once and the cache stays bounded by the number of references.

Frame ids are 0-based positions in the video; ``video_length`` is the number of frames.
"""

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

TRAIN_METHODS = ("bilateral_uniform", "uniform")
TEST_MODES = ("offline", "online")
OFFLINE_METHODS = ("adaptive_stride", "fixed_window")


def _draw(candidates: list[int], num: int, rng) -> list[int]:
    """``min(num, len(candidates))`` distinct ids from ``candidates`` (as ``random.sample``)."""
    num = min(num, len(candidates))
    if num <= 0:
        return []
    picked = rng.choice(len(candidates), size=num, replace=False)
    return sorted(candidates[int(i)] for i in np.atleast_1d(picked))


def sample_train_refs(
    frame_id: int,
    video_length: int,
    num_refs: int = 2,
    frame_range: int = 9,
    method: str = "bilateral_uniform",
    rng: np.random.RandomState | None = None,
) -> list[int]:
    """Reference frame ids for a training key frame, as mmtracking's ``ref_img_sampling``
    (``mmtrack/datasets/coco_video_dataset.py``).

    Args:
        frame_id: key frame position, ``0 <= frame_id < video_length``.
        video_length: frames in the video. A one-frame video (an ImageNet DET image) gets the
            key frame repeated ``num_refs`` times (mmtracking copies a DET image's own info).
        num_refs: references wanted.
        frame_range: references lie within ``[frame_id - frame_range, frame_id + frame_range]``.
        method: ``"bilateral_uniform"``: ``num_refs // 2`` distinct frames from the left side and
            ``num_refs - num_refs // 2`` from the right side, key frame excluded; a side with
            fewer frames gives what it has (so the first and last frames of a video get one
            reference out of 2, as in mmtracking). ``"uniform"``: ``num_refs`` distinct frames
            from the whole window, key frame excluded, or all of them if there are fewer.
        rng: a ``np.random.RandomState``/``Generator``; defaults to the global numpy RNG, which
            Detectron2 seeds per data-loader worker.

    Returns:
        Sorted, distinct frame ids, at most ``num_refs`` of them (fewer at the video's ends or
        in videos shorter than the window); the key frame repeated for one-frame videos.
    """
    if method not in TRAIN_METHODS:
        raise ValueError(
            f"Unknown training reference sampler {method!r}; expected one of {TRAIN_METHODS}"
        )
    if not 0 <= frame_id < video_length:
        raise ValueError(f"frame_id {frame_id} outside a video of {video_length} frames")
    rng = np.random if rng is None else rng
    if video_length == 1:
        return [frame_id] * num_refs
    lo, hi = max(0, frame_id - frame_range), min(video_length - 1, frame_id + frame_range)
    left = list(range(lo, frame_id))
    right = list(range(frame_id + 1, hi + 1))
    if method == "uniform":
        return _draw(left + right, num_refs, rng)
    num_left = num_refs // 2
    return sorted(_draw(left, num_left, rng) + _draw(right, num_refs - num_left, rng))


@dataclass(frozen=True)
class FramePlan:
    """What video inference does at one key frame (:meth:`TestReferenceSampler.plan`).

    Attributes:
        frame_id: the key frame.
        references: its reference frame ids, in order (may repeat ids or contain the key).
        compute: frames to compute now, ascending: the key frame and the frames supplied with it
            that are not held yet.
        missing: references that are neither held nor computed now (they were not supplied).
        drop: frames to drop once the key frame is detected, ascending: every held or computed
            frame up to the key frame that no later key frame of the video needs.
    """

    frame_id: int
    references: list[int]
    compute: list[int]
    missing: list[int]
    drop: list[int]


class TestReferenceSampler:
    """Deterministic test-time references.

    * offline ``adaptive_stride``: ``num_refs`` frames spread evenly over the whole video
      (``round(i * (L - 1) / (num_refs - 1))``), the same set for every key frame, as in
      mmtracking's ``test_with_adaptive_stride``.
    * offline ``fixed_window``: ``num_refs // 2`` frames before and the rest after the key frame,
      ``stride`` apart, clipped to the video.
    * online: the previous ``num_refs`` frames, ``stride`` apart (fewer at the video start).
    """

    __test__ = False  # not a pytest test class despite the name

    def __init__(
        self,
        mode: str = "offline",
        method: str = "adaptive_stride",
        num_refs: int = 14,
        stride: int = 1,
    ):
        if mode not in TEST_MODES:
            raise ValueError(f"Unknown test mode {mode!r}; expected one of {TEST_MODES}")
        if mode == "offline" and method not in OFFLINE_METHODS:
            raise ValueError(
                f"Unknown offline reference sampler {method!r}; expected one of {OFFLINE_METHODS}"
            )
        if num_refs < 0 or stride < 1:
            raise ValueError(f"Need num_refs >= 0 and stride >= 1, got {num_refs} and {stride}")
        self.mode, self.method, self.num_refs, self.stride = mode, method, num_refs, stride

    @classmethod
    def from_config(cls, cfg) -> "TestReferenceSampler":
        """From ``INPUT.VIDEO.TEST_*``; no references with ``MODEL.SELSA.INFERENCE.KEY_FRAME_ONLY``."""
        v = cfg.INPUT.VIDEO
        num_refs = 0 if cfg.MODEL.SELSA.INFERENCE.KEY_FRAME_ONLY else v.TEST_NUM_REFS
        return cls(v.TEST_MODE, v.TEST_SAMPLER, num_refs, v.TEST_FRAME_STRIDE)

    def __repr__(self):
        return f"TestReferenceSampler(mode={self.mode}, method={self.method}, num_refs={self.num_refs}, stride={self.stride})"

    def refs(self, frame_id: int, video_length: int) -> list[int]:
        """Reference frame ids of key frame ``frame_id`` (may repeat ids or contain the key)."""
        n, s, L = self.num_refs, self.stride, video_length
        if n == 0:
            return []
        if self.mode == "online":
            return [frame_id - s * k for k in range(n, 0, -1) if frame_id - s * k >= 0]
        if self.method == "adaptive_stride":
            if n == 1:
                return [0]
            step = (L - 1) / (n - 1)
            return [int(round(i * step)) for i in range(n)]
        half = n // 2
        offsets = list(range(-half, 0)) + list(range(1, n - half + 1))
        return [min(max(frame_id + s * k, 0), L - 1) for k in offsets]

    def frames_to_supply(self, frame_id: int, video_length: int) -> list[int]:
        """Future frames (``> frame_id``) whose inputs must come with key frame ``frame_id``:
        the references of this key frame that lie ahead and were not already references of the
        previous key frame (those were supplied earlier and are still cached)."""
        ahead = {r for r in self.refs(frame_id, video_length) if r > frame_id}
        # Any earlier key frame whose references reach past frame_id supplied them already.
        for earlier in range(max(0, frame_id - self._reach()), frame_id):
            ahead -= set(self.refs(earlier, video_length))
        return sorted(ahead)

    def _reach(self) -> int:
        """How many frames apart a key frame and its farthest reference can be (within a video)."""
        if self.mode == "offline" and self.method == "adaptive_stride":
            return 1  # the same references for every key frame
        return self.stride * self.num_refs

    def needed_after(self, ref_id: int, frame_id: int, video_length: int) -> bool:
        """Whether frame ``ref_id`` is a reference of any key frame after ``frame_id``."""
        if frame_id + 1 >= video_length or self.num_refs == 0:
            return False
        if self.mode == "offline" and self.method == "adaptive_stride":
            return ref_id in self.refs(frame_id, video_length)
        reach = self.stride * (self.num_refs if self.mode == "online" else self.num_refs // 2)
        return ref_id >= frame_id + 1 - reach

    def plan(
        self,
        frame_id: int,
        video_length: int,
        held: Iterable[int] = (),
        supplied: Iterable[int] = (),
    ) -> FramePlan:
        """What a video inference engine computes, keeps and drops at key frame ``frame_id``.

        Args:
            held: the frames the engine holds from earlier key frames of this video.
            supplied: the frames whose inputs came with this key frame
                (:meth:`frames_to_supply`, or more).
        """
        held = set(held)
        compute = sorted(({frame_id} | set(supplied)) - held)
        available = held.union(compute)
        references = self.refs(frame_id, video_length)
        return FramePlan(
            frame_id=frame_id,
            references=references,
            compute=compute,
            missing=sorted({r for r in references if r not in available}),
            drop=sorted(
                f
                for f in available
                if f <= frame_id and not self.needed_after(f, frame_id, video_length)
            ),
        )

    def max_cached_frames(self) -> int:
        """Upper bound on the frames an inference cache following this sampler holds at once."""
        if self.mode == "offline" and self.method == "adaptive_stride":
            return self.num_refs + 1
        return self.stride * self.num_refs + 2
