"""Stateful video inference for SELSA: every frame's features are computed once and cached.

The route of a frame is one way. For each input frame the engine asks the reference sampler once
what to do (:meth:`~selsa_d2.data.sampling.TestReferenceSampler.plan`: which frames to compute,
which are the key frame's references, which held frames to drop afterwards), then asks the model:
a frame's features (:meth:`SelsaRCNN.compute_frame_features`: backbone -> RPN proposals (test
settings) -> RoIAlign -> the shared FC layers -> the aggregators' reference projections), and the
key frame's detections from them and its references (:meth:`SelsaRCNN.detect_key_frame`). The
engine itself only holds what the plan keeps: a key frame costs its own per-frame computation
(shared with its role as a reference) plus the attention over its references' memory.

With Temporal RoI Align (``roi_heads.reads_reference_maps``) a frame's features also hold its
feature maps, and :meth:`SelsaRCNN.detect_key_frame` computes the key frame's box-head input from
its proposals and the maps of its reference frames, which the engine passes along.

The sampler bounds what is held: never more than ``sampler.max_cached_frames()`` frames, whatever
the video length.
"""

import logging
from collections.abc import Sequence

import torch

from ..data.sampling import TestReferenceSampler
from .box_head import ReferenceMemory
from .frame_features import FrameFeatures

__all__ = ["CACHE_POLICIES", "VideoInferenceEngine"]

logger = logging.getLogger(__name__)

_NO_VIDEO = object()
_VIDEO_FIELDS = ("video_id", "frame_id", "video_length")

# What the engine holds of a frame between key frames (``cache``):
# "features": its FrameFeatures, computed once (the default);
# "feature_maps": its backbone (+ neck) maps; the RPN, RoIAlign and FC layers run again on every
#     reference for every key frame, and the key frame's backbone always runs: mmtracking's SELSA
#     test (mmtrack/models/vid/selsa.py, extract_feats + simple_test), for benchmarks;
# "images": its normalized image; everything runs again for every key frame (full recompute).
CACHE_POLICIES = ("features", "feature_maps", "images")


class VideoInferenceEngine:
    """Runs a :class:`~selsa_d2.modeling.SelsaRCNN` over videos, one frame per input dict.

    Inputs are the test mapper's dicts (``image``, ``height``, ``width``, ``video_id``,
    ``frame_id``, ``video_length``, ``ref_frames``), in frame order, one video after another.
    ``ref_frames`` carries the future references ``sampler.frames_to_supply`` names. The state
    resets when ``video_id`` changes or ``frame_id`` is 0; a dict without the video fields is a
    one-frame video of its own.

    Args:
        model: the SelsaRCNN (its public per-frame methods: ``preprocess_frame``,
            ``compute_feature_maps``, ``frame_features_from_maps``, ``compute_frame_features``,
            ``reference_memory``, ``detect_key_frame``, ``postprocess_detections``).
        ref_sampler: test-time reference sampler; change it between videos with
            :meth:`configure`.
        cache_features: False = full recompute (``cache="images"``): every reference's features
            (backbone included) are computed again for every key frame. Same detections.
        key_frame_as_ref: append the key frame's own proposals to its references (last).
        cache: what is held of a frame between key frames, one of :data:`CACHE_POLICIES`
            (default: ``"features"``, or ``"images"`` without ``cache_features``).
    """

    def __init__(
        self,
        model,
        ref_sampler: TestReferenceSampler,
        cache_features: bool = True,
        key_frame_as_ref: bool = True,
        cache: str | None = None,
    ):
        self.model = model
        self.ref_sampler = ref_sampler
        self.cache = cache or ("features" if cache_features else "images")
        if self.cache not in CACHE_POLICIES:
            raise ValueError(f"Unknown cache {self.cache!r}; expected one of {CACHE_POLICIES}")
        self.key_frame_as_ref = key_frame_as_ref
        self.peak_cache_size = 0  # most frames held at once since construction / reset_stats()
        self.frames_computed = 0  # frames whose backbone ran (features: whole per-frame part)
        self.reset()

    @property
    def cache_features(self) -> bool:
        """Whether every frame's features are computed once and held (``cache == "features"``)."""
        return self.cache == "features"

    @cache_features.setter
    def cache_features(self, value: bool) -> None:
        self.cache = "features" if value else "images"

    def configure(
        self, *, ref_sampler: TestReferenceSampler | None = None, cache: str | None = None
    ) -> None:
        """Run with another reference sampler and/or cache policy from the next frame on; the
        current video is forgotten."""
        if cache is not None and cache not in CACHE_POLICIES:
            raise ValueError(f"Unknown cache {cache!r}; expected one of {CACHE_POLICIES}")
        self.ref_sampler = ref_sampler or self.ref_sampler
        self.cache = cache or self.cache
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self):
        """Forget the current video (cache, reference buffer, frame order)."""
        self._video_id = _NO_VIDEO
        self._video_length: int | None = None
        self._last_frame_id: int | None = None
        # frame_id -> what the cache policy holds: FrameFeatures, (ImageList, feature maps) or a
        # normalized image [3, H, W]
        self._cache: dict[int, object] = {}
        # the references' concatenated memory, kept while the reference set stays the same
        self._buffer_ids: tuple[int, ...] | None = None
        self._buffer: ReferenceMemory | None = None
        self.last_reference_ids: list[int] = []

    def reset_stats(self):
        self.peak_cache_size = 0
        self.frames_computed = 0

    @property
    def cache_size(self) -> int:
        """Frames currently cached."""
        return len(self._cache)

    def cached_frame_ids(self) -> list[int]:
        return sorted(self._cache)

    def cached_state(self) -> list[object]:
        """What the engine holds between frames (for memory accounting): the cached frames
        (see ``cache``) and the references' concatenated memory."""
        return [dict(self._cache), self._buffer]

    # ------------------------------------------------------------------ public entry
    def process(self, batched_inputs: Sequence[dict], do_postprocess: bool = True):
        """Detections of each input frame, in order.

        Returns ``[{"instances": Instances}]`` rescaled to each input's ``height``/``width``, or
        raw ``Instances`` at the network input size when not ``do_postprocess``.
        """
        with torch.no_grad():
            return [self._process_one(inp, do_postprocess) for inp in batched_inputs]

    def _process_one(self, inp: dict, do_postprocess: bool):
        standalone = not all(k in inp for k in _VIDEO_FIELDS)
        if standalone:
            self.reset()
            frame_id, length = 0, 1
        else:
            frame_id, length = int(inp["frame_id"]), int(inp["video_length"])
            self._start_frame(inp["video_id"], frame_id, length)
        supplied = self._supplied_frames(inp, frame_id, length, standalone)

        plan = self.ref_sampler.plan(frame_id, length, held=self._cache, supplied=supplied)
        if plan.missing:
            raise ValueError(
                f"Video {inp.get('video_id')}: key frame {frame_id} needs reference frames {plan.missing}, which were "
                f"neither supplied in 'ref_frames' nor cached ({self.ref_sampler}; supply "
                "TestReferenceSampler.frames_to_supply(frame_id, video_length) with each key frame, frames in order)"
            )
        for fid in plan.compute:
            self._cache[fid] = self._hold(supplied[fid])
        self.peak_cache_size = max(self.peak_cache_size, len(self._cache))
        self.last_reference_ids = list(plan.references)

        result = self._detect(
            inp, frame_id, plan.references, recompute_key=frame_id not in plan.compute
        )

        for fid in plan.drop:
            del self._cache[fid]
        self._last_frame_id = frame_id
        if standalone:
            self.reset()
        if not do_postprocess:
            return result
        return self.model.postprocess_detections(result, inp)

    def _start_frame(self, video_id, frame_id: int, length: int):
        if not 0 <= frame_id < length:
            raise ValueError(
                f"Video {video_id}: frame_id {frame_id} outside a video of {length} frames"
            )
        if video_id != self._video_id or frame_id == 0:
            self.reset()
            self._video_id, self._video_length = video_id, length
        elif self._last_frame_id is not None and frame_id <= self._last_frame_id:
            raise ValueError(
                f"Video {video_id}: frame {frame_id} arrived after frame {self._last_frame_id}; "
                "video inference needs the frames of a video in increasing order"
            )
        elif length != self._video_length:
            raise ValueError(
                f"Video {video_id}: video_length changed from {self._video_length} to {length}"
            )

    @staticmethod
    def _supplied_frames(
        inp: dict, frame_id: int, length: int, standalone: bool
    ) -> dict[int, dict]:
        """frame_id -> input dict of the key frame and of the frames supplied with it
        (``ref_frames``), checked to belong to its video."""
        supplied = {}
        for ref in inp.get("ref_frames", ()):
            if "frame_id" not in ref:
                raise ValueError(
                    f"A reference frame of frame {frame_id} of video {inp.get('video_id')} has no 'frame_id'"
                )
            rid = int(ref["frame_id"])
            if "video_id" in ref and not standalone and ref["video_id"] != inp["video_id"]:
                raise ValueError(
                    f"Reference frame {rid} of video {ref['video_id']} supplied with frame {frame_id} of video "
                    f"{inp['video_id']}"
                )
            if not 0 <= rid < length:
                raise ValueError(
                    f"Reference frame_id {rid} outside video {inp.get('video_id')} of {length} frames"
                )
            supplied[rid] = ref
        supplied[frame_id] = inp
        return supplied

    # ------------------------------------------------------------------ per-frame computation
    def _hold(self, frame: dict):
        """What the cache policy holds of a frame (see :data:`CACHE_POLICIES`)."""
        if self.cache == "images":
            return self.model.preprocess_frame(frame)
        self.frames_computed += 1
        if self.cache == "feature_maps":
            return self.model.compute_feature_maps(frame)
        return self.model.compute_frame_features(frame)

    def _features(self, held) -> FrameFeatures:
        """A held frame's features (computed again unless the policy holds them)."""
        if self.cache == "features":
            return held
        if self.cache == "feature_maps":
            return self.model.frame_features_from_maps(*held)
        self.frames_computed += 1
        return self.model.compute_frame_features(held)

    # ------------------------------------------------------------------ detection
    def _detect(self, inp: dict, frame_id: int, ref_ids: list[int], recompute_key: bool):
        """The key frame's detections (network input size) from its features and its references'
        (in order; the key frame is appended, last, by the model with ``key_frame_as_ref``)."""
        held = dict(self._cache)
        if recompute_key and self.cache == "feature_maps":  # mmtracking runs every key's backbone
            held[frame_id] = self._hold(inp)
        frames = {fid: self._features(held[fid]) for fid in dict.fromkeys(ref_ids + [frame_id])}
        key = frames[frame_id]
        reference_frames = [frames[i] for i in ref_ids]
        return self.model.detect_key_frame(
            key,
            self._reference_memory(tuple(ref_ids), reference_frames, len(key)),
            reference_frames=reference_frames,
            key_as_reference=self.key_frame_as_ref,
        )

    def _reference_memory(
        self, ids: tuple[int, ...], reference_frames: list[FrameFeatures], key_rows: int
    ) -> ReferenceMemory | list:
        """The references' concatenated memory, reused while the reference set stays the same
        (cached features), with room for the key frame's own rows; ``[]`` without references."""
        if not ids:
            return []
        spare = key_rows if self.key_frame_as_ref else 0
        if not self.cache_features or ids != self._buffer_ids or self._buffer.spare_rows < spare:
            self._buffer = self.model.reference_memory(reference_frames, spare_rows=spare)
            self._buffer_ids = ids
        return self._buffer
