"""SELSA meta architecture: GeneralizedRCNN whose ROI heads also see reference frames."""

import contextlib
import logging
from typing import Dict, List, Optional

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import ImageList, Instances
from detectron2.utils.events import get_event_storage

from ..data.sampling import TestReferenceSampler
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
    """

    @configurable
    def __init__(
        self,
        *,
        test_ref_sampler: TestReferenceSampler,
        cache_features: bool = True,
        key_frame_as_ref: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if self.proposal_generator is None:
            raise ValueError("SelsaRCNN needs a proposal generator (MODEL.PROPOSAL_GENERATOR.NAME)")
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
        if cfg.MODEL.SELSA.ZERO_INIT_AGGREGATOR_OUTPUT:
            zero_init_aggregator_outputs(ret["roi_heads"].box_head)
        return ret

    def forward(self, batched_inputs: List[Dict]):
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
            images, features, proposals, gt_instances, ref_proposals=ref_proposals, num_refs=num_refs
        )
        if self.vis_period > 0:
            storage = get_event_storage()
            if storage.iter % self.vis_period == 0:
                self.visualize_training(batched_inputs, proposals)
        losses = dict(detector_losses)
        losses.update(proposal_losses)
        return losses

    def _reference_proposals(self, images: ImageList, features: Dict[str, torch.Tensor], start: int) -> List[Instances]:
        """RPN test-time proposals (pre/post-NMS top-k of TEST) of images ``start:``; no grad."""
        if start >= len(images):
            return []
        ref_images = _slice_images(images, start, len(images))
        ref_features = {k: v[start:] for k, v in features.items()}
        with torch.no_grad(), eval_mode(self.proposal_generator):
            proposals, _ = self.proposal_generator(ref_images, ref_features, None)
        return proposals

    def inference(
        self,
        batched_inputs: List[Dict],
        detected_instances: Optional[List[Instances]] = None,
        do_postprocess: bool = True,
    ):
        """Video inference of the frames in ``batched_inputs`` (in order), see
        :class:`VideoInferenceEngine`. Returns ``[{"instances": Instances}]`` at the original
        resolution, or raw ``Instances`` at the network input size if not ``do_postprocess``."""
        assert not self.training
        if detected_instances is not None:
            raise NotImplementedError("SelsaRCNN.inference does not support detected_instances")
        return self.video_engine.process(batched_inputs, do_postprocess=do_postprocess)
