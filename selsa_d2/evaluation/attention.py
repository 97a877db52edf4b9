"""Where a SELSA model's first aggregator looks (``tools/analyze_attention.py``).

For every ground-truth object of a validation set (key proposals with IoU > 0.5 to it), the
attention weights of aggregator 0 (mean over heads, test-time references of the config) are
summed over four kinds of reference proposals (:data:`KINDS`), beside the share uniform attention
would give. Frames count as degraded when the dataset records ``degradations`` (the synthetic set).
"""

from collections import defaultdict

import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.structures import Boxes, pairwise_iou

from ..checkpoint.loading import load_inference_weights
from ..data import TestReferenceSampler, build_video_test_loader

__all__ = ["KINDS", "analyze_attention"]

KINDS = ("same class, clean frame", "same class, degraded frame", "other class", "background")


def _proposal_labels(frame_features, annotations) -> torch.Tensor:
    """Class of the gt each proposal overlaps with IoU > 0.5, or -1 (background). [P]"""
    proposals = frame_features.proposals.proposal_boxes
    if not annotations:
        return torch.full((len(proposals),), -1)
    gt = Boxes(torch.tensor([a["bbox"] for a in annotations], dtype=torch.float32))
    best, idx = pairwise_iou(proposals, gt).max(dim=1)
    classes = torch.tensor([a["category_id"] for a in annotations])[idx]
    return torch.where(best > 0.5, classes, torch.full_like(classes, -1))


def analyze_attention(cfg, dataset_name: str) -> dict[str, np.ndarray]:
    """Attention mass of aggregator 0 per kind of reference proposal (:data:`KINDS`), averaged over
    the key proposals on ground-truth objects of ``dataset_name``, split by whether the key frame
    is degraded: ``{"clean key frame" | "degraded key frame": [mass per kind..., uniform share
    per kind...]}`` (the model of ``cfg``, weights ``MODEL.WEIGHTS``, test-time references)."""
    model = build_model(cfg)
    load_inference_weights(
        model,
        cfg.MODEL.WEIGHTS,
        allow_missing=cfg.TEST.ALLOW_MISSING_WEIGHTS,
        allow_unused=cfg.TEST.ALLOW_UNUSED_WEIGHTS,
    )
    model.eval()
    aggregator = model.roi_heads.box_head.aggregators[0]
    sampler = TestReferenceSampler.from_config(cfg)
    frames = {(d["video_id"], d["frame_id"]): d for d in DatasetCatalog.get(dataset_name)}
    stats = defaultdict(
        list
    )  # key condition -> rows of [attention mass per kind, uniform share per kind]
    cache, labels = {}, {}
    with torch.no_grad():
        for (inp,) in build_video_test_loader(cfg, dataset_name):
            vid, fid, length = inp["video_id"], inp["frame_id"], inp["video_length"]
            if fid == 0:
                cache, labels = {}, {}
            for d in list(inp.get("ref_frames", [])) + [inp]:
                if d["frame_id"] not in cache:
                    cache[d["frame_id"]] = model.compute_frame_features(d)
                    labels[d["frame_id"]] = _proposal_labels(
                        cache[d["frame_id"]], frames[(vid, d["frame_id"])]["annotations"]
                    )
            refs = sampler.refs(fid, length) + [fid]
            ref_keys = torch.cat([cache[r].memory[0][0] for r in refs])  # [M, C]
            ref_labels = torch.cat([labels[r] for r in refs])
            ref_clean = torch.cat(
                [
                    torch.full_like(labels[r], int(not frames[(vid, r)]["degradations"]))
                    for r in refs
                ]
            )
            key_labels = labels[fid]
            on_object = key_labels >= 0
            if not on_object.any():
                continue
            # the key frame's box-head input (Temporal RoI Align: from its references' feature maps)
            key_input = model.key_frame_input(cache[fid], [cache[r] for r in refs])
            weights = aggregator.attention_weights(key_input[on_object], ref_keys).mean(
                dim=0
            )  # [N, M]
            same = (ref_labels[None, :] == key_labels[on_object, None]).float()
            obj = (ref_labels >= 0).float()[None, :].expand_as(same)
            kinds = [same * ref_clean, same * (1 - ref_clean), obj - same, 1 - obj]
            mass = [(weights * k).sum(dim=1).mean().item() for k in kinds]
            share = [k.mean(dim=1).mean().item() for k in kinds]
            stats[
                "degraded key frame" if frames[(vid, fid)]["degradations"] else "clean key frame"
            ].append(mass + share)
    return {cond: np.array(rows).mean(axis=0) for cond, rows in stats.items()}
