"""Stateful video inference for SELSA: every frame's features are computed once and cached.

The model computes a frame's features (:meth:`SelsaRCNN.compute_frame_features`: backbone -> RPN
proposals (test settings) -> RoIAlign -> the shared FC layers -> the aggregators' reference
projections) and detects a key frame from them and its references' memory
(:meth:`SelsaRCNN.detect_key_frame`). The engine only keeps track of frame ids, the cache and
its eviction: a key frame costs its own per-frame computation (shared with its role as a
reference) plus the attention over its references' memory.

With Temporal RoI Align (``roi_heads.reads_reference_maps``) a frame's features also hold its
feature maps, and :meth:`SelsaRCNN.detect_key_frame` computes the key frame's box-head input from
its proposals and the maps of its reference frames (its own last, with ``key_frame_as_ref``),
which the engine passes along; the reference memory is unchanged.

Which frames are references, which must be supplied ahead of time and which cached frames can be
dropped is decided by :class:`~selsa_d2.data.sampling.TestReferenceSampler`, so the cache never
holds more than ``sampler.max_cached_frames()`` frames, whatever the video length.
"""

import logging
from collections.abc import Sequence

import torch

from ..data.sampling import TestReferenceSampler
from .box_head import ReferenceMemory
from .frame_features import FrameFeatures

__all__ = ["VideoInferenceEngine"]

logger = logging.getLogger(__name__)

_NO_VIDEO = object()
_VIDEO_FIELDS = ("video_id", "frame_id", "video_length")


class VideoInferenceEngine:
    """Runs a :class:`~selsa_d2.modeling.SelsaRCNN` over videos, one frame per input dict.

    Inputs are the test mapper's dicts (``image``, ``height``, ``width``, ``video_id``,
    ``frame_id``, ``video_length``, ``ref_frames``), in frame order, one video after another.
    ``ref_frames`` carries the future references ``sampler.frames_to_supply`` names. The state
    resets when ``video_id`` changes or ``frame_id`` is 0; a dict without the video fields is a
    one-frame video of its own.

    Args:
        model: the SelsaRCNN (its public per-frame methods: ``preprocess_frame``,
            ``compute_frame_features``, ``reference_memory``, ``detect_key_frame``,
            ``postprocess_detections``).
        ref_sampler: test-time reference sampler; may be replaced between videos.
        cache_features: False = full recompute: cache only preprocessed images and recompute
            every reference's features (backbone included) for every key frame. Same detections.
            (mmtracking caches the references' backbone features and recomputes the rest, see
            ``benchmarks/bench_inference.py``.)
        key_frame_as_ref: append the key frame's own proposals to its references (last).
    """

    def __init__(
        self,
        model,
        ref_sampler: TestReferenceSampler,
        cache_features: bool = True,
        key_frame_as_ref: bool = True,
    ):
        self.model = model
        self.ref_sampler = ref_sampler
        self.cache_features = cache_features
        self.key_frame_as_ref = key_frame_as_ref
        self.peak_cache_size = 0  # most frames held at once since construction / reset_stats()
        self.frames_computed = 0  # frames whose features were computed (backbone .. FC layers)
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self):
        """Forget the current video (cache, reference buffer, frame order)."""
        self._video_id = _NO_VIDEO
        self._video_length: int | None = None
        self._last_frame_id: int | None = None
        # frame_id -> FrameFeatures (cached path) or (normalized image [3, H, W]) (uncached path)
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
        (``FrameFeatures``, or normalized images without feature caching) and the references'
        concatenated memory."""
        return [dict(self._cache), self._buffer]

    # ------------------------------------------------------------------ public entry
    def process(self, batched_inputs: Sequence[dict], do_postprocess: bool = True):
        """Detections of each input frame, in order.

        Returns ``[{"instances": Instances}]`` rescaled to each input's ``height``/``width``, or
        raw ``Instances`` at the network input size when not ``do_postprocess``.
        """
        outputs = []
        with torch.no_grad():
            for inp in batched_inputs:
                outputs.append(self._process_one(inp, do_postprocess))
        return outputs

    def _process_one(self, inp: dict, do_postprocess: bool):
        standalone = not all(k in inp for k in _VIDEO_FIELDS)
        if standalone:
            self.reset()
            frame_id, length = 0, 1
        else:
            frame_id, length = int(inp["frame_id"]), int(inp["video_length"])
            self._start_frame(inp["video_id"], frame_id, length)

        new = {}
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
            if rid not in self._cache and rid != frame_id:
                new[rid] = ref
        if frame_id not in self._cache:
            new[frame_id] = inp
        for fid, d in sorted(new.items()):
            self._cache[fid] = self._cache_entry(d)

        ref_ids = self.ref_sampler.refs(frame_id, length)
        missing = sorted({r for r in ref_ids if r not in self._cache})
        if missing:
            raise ValueError(
                f"Video {inp.get('video_id')}: key frame {frame_id} needs reference frames {missing}, which were "
                f"neither supplied in 'ref_frames' nor cached ({self.ref_sampler}; supply "
                "TestReferenceSampler.frames_to_supply(frame_id, video_length) with each key frame, frames in order)"
            )
        self.peak_cache_size = max(self.peak_cache_size, len(self._cache))
        self.last_reference_ids = list(ref_ids)

        key, memory, reference_frames = self._key_and_memory(frame_id, ref_ids)
        result = self.model.detect_key_frame(key, memory, reference_frames=reference_frames)

        self._evict(frame_id, length)
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

    def _evict(self, frame_id: int, length: int):
        for fid in list(self._cache):
            if fid <= frame_id and not self.ref_sampler.needed_after(fid, frame_id, length):
                del self._cache[fid]

    # ------------------------------------------------------------------ per-frame computation
    def _compute(self, frame) -> FrameFeatures:
        self.frames_computed += 1
        return self.model.compute_frame_features(frame)

    def _cache_entry(self, d: dict):
        """Cached path: the frame's features; full recompute: its normalized image."""
        return self._compute(d) if self.cache_features else self.model.preprocess_frame(d)

    # ------------------------------------------------------------------ references
    def _key_and_memory(
        self, frame_id: int, ref_ids: list[int]
    ) -> tuple[FrameFeatures, ReferenceMemory, list[FrameFeatures]]:
        """The key frame's features, its references' memory and its reference frames in order
        (the key frame last with ``key_frame_as_ref``; Temporal RoI Align searches their maps)."""
        if self.cache_features:
            frames = self._cache
        else:  # recompute every distinct frame of this key frame's reference set
            frames = {
                fid: self._compute(self._cache[fid]) for fid in dict.fromkeys(ref_ids + [frame_id])
            }
        key = frames[frame_id]
        reference_frames = [frames[i] for i in ref_ids] + ([key] if self.key_frame_as_ref else [])
        ids = tuple(ref_ids)
        if not ids:
            memory = (
                key.memory
                if self.key_frame_as_ref
                else ReferenceMemory(key.memory.layers, num_rows=0)
            )
            return key, memory, reference_frames
        spare = len(key) if self.key_frame_as_ref else 0
        if not self.cache_features or ids != self._buffer_ids or self._buffer.spare_rows < spare:
            # concatenated once per reference set, with room for the key frame's own rows
            self._buffer = self.model.reference_memory([frames[i] for i in ids], spare_rows=spare)
            self._buffer_ids = ids
        if not self.key_frame_as_ref:
            return key, self._buffer, reference_frames
        return key, self._buffer.append(key.memory), reference_frames
