"""SELSA meta architecture: GeneralizedRCNN whose ROI heads also see reference frames."""

import contextlib
import logging
from collections.abc import Sequence

import torch
from detectron2.config import configurable
from detectron2.layers import move_device_like
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN, detector_postprocess
from detectron2.structures import ImageList, Instances
from detectron2.utils.events import get_event_storage

from ..data.sampling import TestReferenceSampler
from ..postprocessing.video import SeqNMSSettings
from .box_head import ReferenceMemory
from .frame_features import FrameFeatures
from .init import zero_init_aggregator_outputs
from .video_inference import VideoInferenceEngine

__all__ = ["SelsaRCNN", "eval_mode"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module):
    """Temporarily put ``module`` in eval mode (e.g. the RPN, for test-time top-k proposals)."""
    was_training = module.training
    module.train(False)
    try:
        yield module
    finally:
        module.train(was_training)


def _slice_images(images: ImageList, start: int, end: int) -> ImageList:
    return ImageList(images.tensor[start:end], images.image_sizes[start:end])


@META_ARCH_REGISTRY.register()
class SelsaRCNN(GeneralizedRCNN):
    """Faster R-CNN with SELSA aggregation.

    Training input: key-frame dicts (Detectron2 format) each with ``"ref_frames"`` (a list of
    image dicts of the same form; may differ in number per key). The backbone runs once over keys
    and references together; the RPN is trained on the keys and run with its test settings
    (no grad) on the references, whose proposals the ROI heads attend to.

    Eval: :meth:`forward` / :meth:`inference` hand the frames to :attr:`video_engine`
    (:class:`VideoInferenceEngine`), which is stateful: frames must arrive in order, one video
    after another (it resets when ``video_id`` changes or ``frame_id`` is 0). Inputs without
    video fields are treated as one-frame videos.

    The per-frame computation is the model's, in public steps the engine (and benchmarks, tools)
    call; a frame is a test-mapper dict (``image`` [3, H, W] at the network input size, optional
    ``height``/``width``) or an already normalized image [3, H, W]::

        frame = model.compute_frame_features(frame_dict)     # FrameFeatures, once per frame
        memory = model.reference_memory([ref1, ref2, frame])  # its references (+ itself)
        raw = model.detect_key_frame(frame, memory)           # Instances, network input size
        out = model.postprocess_detections(raw, frame_dict)   # {"instances": original size}

    :meth:`compute_frame_features` is :meth:`compute_feature_maps` (backbone + neck) followed by
    :meth:`frame_features_from_maps` (RPN, RoIAlign, the shared FC layers and the aggregators'
    reference projections).
    """

    @configurable
    def __init__(
        self,
        *,
        test_ref_sampler: TestReferenceSampler,
        cache_features: bool = True,
        key_frame_as_ref: bool = True,
        zero_init_aggregator_output: bool = False,
        candidate_score_thresh: float | None = None,
        **kwargs,
    ):
        """
        Args:
            test_ref_sampler: test-time references (see :class:`VideoInferenceEngine`).
            cache_features: compute every frame's features once (False: recompute, same result).
            key_frame_as_ref: the key frame's own proposals are its last reference.
            zero_init_aggregator_output: zero the aggregators' output fc, so that the model
                starts as the single-frame detector its other weights come from
                (:func:`zero_init_aggregator_outputs`).
            candidate_score_thresh: also return each frame's pre-NMS candidates with a score
                above it (``"candidates"``, for Seq-NMS; ``TEST.VID.SEQ_NMS``); None: don't.
            kwargs: :class:`GeneralizedRCNN`'s arguments.
        """
        super().__init__(**kwargs)
        self.candidate_score_thresh = candidate_score_thresh
        if self.proposal_generator is None:
            raise ValueError("SelsaRCNN needs a proposal generator (MODEL.PROPOSAL_GENERATOR.NAME)")
        if zero_init_aggregator_output:
            zero_init_aggregator_outputs(self.roi_heads.box_head)
        # A plain attribute, not a submodule: it holds per-video state, no parameters.
        self.video_engine = VideoInferenceEngine(
            self, test_ref_sampler, cache_features=cache_features, key_frame_as_ref=key_frame_as_ref
        )

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["test_ref_sampler"] = TestReferenceSampler.from_config(cfg)
        ret["cache_features"] = cfg.MODEL.SELSA.INFERENCE.CACHE_FEATURES
        # Key frame only: the key frame's own proposals are its only references (see config.py).
        inference = cfg.MODEL.SELSA.INFERENCE
        ret["key_frame_as_ref"] = inference.KEY_FRAME_AS_REF or inference.KEY_FRAME_ONLY
        ret["zero_init_aggregator_output"] = cfg.MODEL.SELSA.ZERO_INIT_AGGREGATOR_OUTPUT
        seq_nms = SeqNMSSettings.from_config(cfg)  # checks the settings and the test mode
        ret["candidate_score_thresh"] = seq_nms.params.score_thresh if seq_nms else None
        return ret

    def forward(self, batched_inputs: list[dict]):
        """Training: dict of losses. Eval: same as :meth:`inference`."""
        if not self.training:
            return self.inference(batched_inputs)

        refs = [r for x in batched_inputs for r in x.get("ref_frames", ())]
        num_refs = [len(x.get("ref_frames", ())) for x in batched_inputs]
        n_key = len(batched_inputs)
        images = self.preprocess_image(list(batched_inputs) + refs)
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        features = self.backbone(images.tensor)

        key_images = _slice_images(images, 0, n_key)
        key_features = {k: v[:n_key] for k, v in features.items()}
        proposals, proposal_losses = self.proposal_generator(key_images, key_features, gt_instances)
        ref_proposals = self._reference_proposals(images, features, n_key)

        _, detector_losses = self.roi_heads(
            images,
            features,
            proposals,
            gt_instances,
            ref_proposals=ref_proposals,
            num_refs=num_refs,
        )
        if self.vis_period > 0:
            storage = get_event_storage()
            if storage.iter % self.vis_period == 0:
                self.visualize_training(batched_inputs, proposals)
        losses = dict(detector_losses)
        losses.update(proposal_losses)
        return losses

    def _reference_proposals(
        self, images: ImageList, features: dict[str, torch.Tensor], start: int
    ) -> list[Instances]:
        """RPN test-time proposals (pre/post-NMS top-k of TEST) of images ``start:``; no grad."""
        if start >= len(images):
            return []
        ref_images = _slice_images(images, start, len(images))
        ref_features = {k: v[start:] for k, v in features.items()}
        with torch.no_grad(), eval_mode(self.proposal_generator):
            proposals, _ = self.proposal_generator(ref_images, ref_features, None)
        return proposals

    # ------------------------------------------------------------------ per-frame inference API
    def preprocess_frame(self, frame: dict) -> torch.Tensor:
        """A test-mapper dict's ``image`` [3, H, W] -> normalized image [3, H, W] on the model's
        device (no padding)."""
        return (
            move_device_like(frame["image"], self.pixel_mean) - self.pixel_mean
        ) / self.pixel_std

    def compute_feature_maps(
        self, frame: dict | torch.Tensor
    ) -> tuple[ImageList, dict[str, torch.Tensor]]:
        """Backbone (+ neck) of one frame (a test-mapper dict or a normalized image [3, H, W]) ->
        (its padded one-image ``ImageList``, feature maps name -> [1, C, H', W'])."""
        image = self.preprocess_frame(frame) if isinstance(frame, dict) else frame
        images = ImageList.from_tensors(
            [image],
            self.backbone.size_divisibility,
            padding_constraints=self.backbone.padding_constraints,
        )
        return images, self.backbone(images.tensor)

    def frame_features_from_maps(
        self,
        images: ImageList,
        feature_maps: dict[str, torch.Tensor],
        keep_feature_maps: bool = False,
    ) -> FrameFeatures:
        """One frame's RPN proposals (test settings), RoIAlign, shared FC layers and reference
        projections, from :meth:`compute_feature_maps`'s output."""
        if len(images) != 1:
            raise ValueError(
                f"frame_features_from_maps takes one frame at a time, got {len(images)} images"
            )
        with eval_mode(self.proposal_generator):
            proposals, _ = self.proposal_generator(images, feature_maps, None)
        ((key_input, memory),) = self.roi_heads.frame_features(feature_maps, proposals)
        # ROI heads that search reference frames' maps (Temporal RoI Align) need every frame's maps
        keep_feature_maps = keep_feature_maps or self.roi_heads.reads_reference_maps
        return FrameFeatures(
            image_size=tuple(images.image_sizes[0]),
            proposals=proposals[0],
            key_input=key_input,
            memory=memory,
            feature_maps=feature_maps if keep_feature_maps else None,
        )

    def compute_frame_features(
        self, frame: dict | torch.Tensor, keep_feature_maps: bool = False
    ) -> FrameFeatures:
        """Everything a frame contributes as key frame and as reference, computed once (one
        frame at a time, so that results never depend on what else is in a batch).

        Args:
            frame: a test-mapper dict (``image`` uint8/float [3, H, W] at the network input
                size) or an image already normalized by :meth:`preprocess_frame`.
            keep_feature_maps: also keep the backbone (+ neck) maps in the result.
        """
        return self.frame_features_from_maps(
            *self.compute_feature_maps(frame), keep_feature_maps=keep_feature_maps
        )

    @staticmethod
    def reference_memory(frames: Sequence[FrameFeatures], spare_rows: int = 0) -> ReferenceMemory:
        """The frames' memories concatenated in order (``spare_rows``: room for a later
        :meth:`ReferenceMemory.append`, e.g. of a key frame's own proposals)."""
        if not frames:
            raise ValueError("reference_memory needs at least one frame")
        return ReferenceMemory.cat([f.memory for f in frames], spare_rows=spare_rows)

    def key_frame_input(
        self, key: FrameFeatures, reference_frames: Sequence[FrameFeatures]
    ) -> torch.Tensor:
        """The key frame's box-head input [P, FC_DIM]: ``key.key_input``, or, for ROI heads that
        search reference maps (Temporal RoI Align), computed from its proposals and the feature
        maps of ``reference_frames`` (include ``key`` itself, last, as mmtracking at test time)."""
        if not self.roi_heads.reads_reference_maps:
            return key.key_input
        return self.roi_heads.key_input_from_frames(key, reference_frames)

    def detect_key_frame(
        self,
        key: FrameFeatures,
        references: ReferenceMemory | Sequence[FrameFeatures],
        reference_frames: Sequence[FrameFeatures] | None = None,
        key_as_reference: bool = False,
    ) -> Instances:
        """Detections of a key frame, its proposals attending to ``references`` (a
        :class:`ReferenceMemory`, or frames to concatenate, possibly none). Returns ``Instances``
        at the network input size (``pred_boxes``, ``scores``, ``pred_classes``); see
        :meth:`postprocess_detections`. With :attr:`candidate_score_thresh` set
        (``TEST.VID.SEQ_NMS.ENABLED``): a dict ``{"instances": those, "candidates": the per-class
        boxes before per-frame NMS}``.

        ``key_as_reference``: the key frame's own proposals are its last reference, as mmtracking
        (the same as passing ``key`` last among the frames; into a ``ReferenceMemory`` with spare
        rows they are written in place, see :meth:`ReferenceMemory.append`).
        """
        if isinstance(references, ReferenceMemory):
            memory = references
        else:
            references = list(references)
            memory = self.reference_memory(references) if references else None
            reference_frames = references if reference_frames is None else reference_frames
        if reference_frames is None:
            if self.roi_heads.reads_reference_maps:
                raise ValueError(
                    f"{type(self.roi_heads).__name__} searches the reference frames' feature maps: pass "
                    "detect_key_frame(..., reference_frames=[...]) with a ReferenceMemory"
                )
            reference_frames = []
        if key_as_reference:
            memory = key.memory if memory is None else memory.append(key.memory)
            reference_frames = [*reference_frames, key]
        elif memory is None:
            memory = ReferenceMemory(key.memory.layers, num_rows=0)
        key_input = self.key_frame_input(key, reference_frames)
        if self.candidate_score_thresh is None:
            return self.roi_heads.predict_with_memory(key.proposals, key_input, memory)
        instances, candidates = self.roi_heads.predict_with_memory(
            key.proposals, key_input, memory, candidate_score_thresh=self.candidate_score_thresh
        )
        return {"instances": instances, "candidates": candidates}

    @staticmethod
    def postprocess_detections(
        instances: Instances | dict[str, Instances], frame: dict
    ) -> dict[str, Instances]:
        """Detections at the network input size -> ``{"instances": ...}`` rescaled to the
        frame's ``height``/``width`` (default: no rescale), as Detectron2's models return; a dict
        of :meth:`detect_key_frame` (with ``"candidates"``) has each entry rescaled."""
        if isinstance(instances, dict):
            return {k: SelsaRCNN._rescale(v, frame) for k, v in instances.items()}
        return {"instances": SelsaRCNN._rescale(instances, frame)}

    @staticmethod
    def _rescale(instances: Instances, frame: dict) -> Instances:
        height = frame.get("height", instances.image_size[0])
        width = frame.get("width", instances.image_size[1])
        return detector_postprocess(instances, height, width)

    def inference(
        self,
        batched_inputs: list[dict],
        detected_instances: list[Instances] | None = None,
        do_postprocess: bool = True,
    ):
        """Video inference of the frames in ``batched_inputs`` (in order), see
        :class:`VideoInferenceEngine`. Returns ``[{"instances": Instances}]`` at the original
        resolution, or raw ``Instances`` at the network input size if not ``do_postprocess``."""
        assert not self.training
        if detected_instances is not None:
            raise NotImplementedError("SelsaRCNN.inference does not support detected_instances")
        return self.video_engine.process(batched_inputs, do_postprocess=do_postprocess)
