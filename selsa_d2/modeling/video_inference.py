"""Stateful video inference for SELSA: every frame's features are computed once and cached.

Per frame the engine computes backbone -> RPN proposals (test settings) -> RoIAlign -> the
pre-ReLU output of each shared FC layer, and from those the aggregators' reference projections
(keys and values). A key frame then costs its own per-frame computation (shared with its role as
a reference) plus the attention over the concatenated projections of its references.

Which frames are references, which must be supplied ahead of time and which cached frames can be
dropped is decided by :class:`~selsa_d2.data.sampling.TestReferenceSampler`, so the cache never
holds more than ``sampler.max_cached_frames()`` frames, whatever the video length.
"""

import logging
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.structures import ImageList, Instances

from ..data.sampling import TestReferenceSampler
from .box_head import ReferenceMemory

__all__ = ["FrameFeatures", "VideoInferenceEngine"]

logger = logging.getLogger(__name__)

_NO_VIDEO = object()
_VIDEO_FIELDS = ("video_id", "frame_id", "video_length")


@dataclass
class FrameFeatures:
    """What a frame contributes as key and as reference.

    proposals: its RPN proposals (``proposal_boxes``, ``objectness_logits``, ``image_size``).
    key_input: [P, FC_DIM] first shared FC output (pre-ReLU) of its proposals.
    memory: per shared FC layer, the aggregator's (keys, values) [P, FC_DIM] of its proposals.
    """

    proposals: Instances
    key_input: torch.Tensor
    memory: ReferenceMemory


class VideoInferenceEngine:
    """Runs a :class:`~selsa_d2.modeling.SelsaRCNN` over videos, one frame per input dict.

    Inputs are the test mapper's dicts (``image``, ``height``, ``width``, ``video_id``,
    ``frame_id``, ``video_length``, ``ref_frames``), in frame order, one video after another.
    ``ref_frames`` carries the future references ``sampler.frames_to_supply`` names. The state
    resets when ``video_id`` changes or ``frame_id`` is 0; a dict without the video fields is a
    one-frame video of its own.

    Args:
        model: the SelsaRCNN (backbone, proposal_generator, roi_heads, preprocess_image).
        ref_sampler: test-time reference sampler; may be replaced between videos.
        cache_features: False = the uncached ("mmtracking") path: cache only preprocessed images
            and recompute every reference's features for every key frame. Same detections.
        key_frame_as_ref: append the key frame's own proposals to its references (last).
    """

    def __init__(
        self, model, ref_sampler: TestReferenceSampler, cache_features: bool = True, key_frame_as_ref: bool = True
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
        self._video_length: Optional[int] = None
        self._last_frame_id: Optional[int] = None
        # frame_id -> FrameFeatures (cached path) or (normalized image [3, H, W]) (uncached path)
        self._cache: Dict[int, object] = {}
        self._buffer_ids: Optional[Tuple[int, ...]] = None
        self._buffer: Optional[ReferenceMemory] = None
        self._buffer_len = 0
        self.last_reference_ids: List[int] = []

    def reset_stats(self):
        self.peak_cache_size = 0
        self.frames_computed = 0

    @property
    def cache_size(self) -> int:
        """Frames currently cached."""
        return len(self._cache)

    def cached_frame_ids(self) -> List[int]:
        return sorted(self._cache)

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
                raise ValueError(f"Reference frame_id {rid} outside video {inp.get('video_id')} of {length} frames")
            if rid not in self._cache and rid != frame_id:
                new[rid] = ref
        if frame_id not in self._cache:
            new[frame_id] = inp
        for fid, d in sorted(new.items()):
            self._cache[fid] = self._compute_frame(d) if self.cache_features else self._preprocess(d)

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

        key, memory = self._key_and_memory(frame_id, ref_ids)
        result = self.model.roi_heads.predict_with_memory(key.proposals, key.key_input, memory)

        self._evict(frame_id, length)
        self._last_frame_id = frame_id
        if standalone:
            self.reset()
        if not do_postprocess:
            return result
        return self.model._postprocess([result], [inp], [key.proposals.image_size])[0]

    def _start_frame(self, video_id, frame_id: int, length: int):
        if not 0 <= frame_id < length:
            raise ValueError(f"Video {video_id}: frame_id {frame_id} outside a video of {length} frames")
        if video_id != self._video_id or frame_id == 0:
            self.reset()
            self._video_id, self._video_length = video_id, length
        elif self._last_frame_id is not None and frame_id <= self._last_frame_id:
            raise ValueError(
                f"Video {video_id}: frame {frame_id} arrived after frame {self._last_frame_id}; "
                "video inference needs the frames of a video in increasing order"
            )
        elif length != self._video_length:
            raise ValueError(f"Video {video_id}: video_length changed from {self._video_length} to {length}")

    def _evict(self, frame_id: int, length: int):
        for fid in list(self._cache):
            if fid <= frame_id and not self.ref_sampler.needed_after(fid, frame_id, length):
                del self._cache[fid]

    # ------------------------------------------------------------------ per-frame computation
    def _preprocess(self, d: dict) -> torch.Tensor:
        """Normalized image [3, H, W] on the model's device (no padding)."""
        m = self.model
        return (m._move_to_current_device(d["image"]) - m.pixel_mean) / m.pixel_std

    def _compute_frame(self, d: dict) -> FrameFeatures:
        return self._features_from_image(self._preprocess(d))

    def _features_from_image(self, image: torch.Tensor) -> FrameFeatures:
        """One frame at a time, so that results never depend on what else is in the batch."""
        m = self.model
        images = ImageList.from_tensors(
            [image], m.backbone.size_divisibility, padding_constraints=m.backbone.padding_constraints
        )
        features = m.backbone(images.tensor)
        proposals, _ = m.proposal_generator(images, features, None)
        ((key_input, memory),) = m.roi_heads.frame_reference_features(features, proposals)
        self.frames_computed += 1
        return FrameFeatures(proposals[0], key_input, memory)

    # ------------------------------------------------------------------ references
    def _key_and_memory(self, frame_id: int, ref_ids: List[int]) -> Tuple[FrameFeatures, ReferenceMemory]:
        if self.cache_features:
            frames = self._cache
        else:  # recompute every distinct frame of this key frame's reference set
            frames = {fid: self._features_from_image(self._cache[fid]) for fid in dict.fromkeys(ref_ids + [frame_id])}
        key = frames[frame_id]
        tail = key if self.key_frame_as_ref else None
        ids = tuple(ref_ids)
        if (
            not self.cache_features
            or ids != self._buffer_ids
            or (tail is not None and self._buffer[0][0].shape[0] < self._buffer_len + len(tail.key_input))
        ):
            self._rebuild_buffer(ids, [frames[i] for i in ids], key, tail)
        n = self._buffer_len
        if tail is None:
            return key, [(k[:n], v[:n]) for k, v in self._buffer]
        p = len(tail.key_input)
        # the reference part is unchanged: only the key frame's rows are written
        for (bk, bv), (tk, tv) in zip(self._buffer, tail.memory):
            bk[n : n + p].copy_(tk)
            bv[n : n + p].copy_(tv)
        return key, [(k[: n + p], v[: n + p]) for k, v in self._buffer]

    def _rebuild_buffer(self, ids, parts: List[FrameFeatures], key: FrameFeatures, tail: Optional[FrameFeatures]):
        """Concatenate the references' (keys, values) once, leaving room for a key frame's rows."""
        spare = 0
        if tail is not None:
            topk = getattr(self.model.proposal_generator, "post_nms_topk", {}).get(False, 0)
            spare = max(len(tail.key_input), int(topk))
        buffer = []
        for layer in range(len(key.memory)):
            cols = []
            for j in (0, 1):
                ref = key.memory[layer][j]
                chunks = [f.memory[layer][j] for f in parts]
                rows = sum(c.shape[0] for c in chunks)
                out = ref.new_empty((rows + spare, ref.shape[1]))
                if chunks:
                    torch.cat(chunks, dim=0, out=out[:rows])
                cols.append(out)
            buffer.append(tuple(cols))
        self._buffer = buffer
        self._buffer_ids = ids
        self._buffer_len = sum(len(f.key_input) for f in parts)
