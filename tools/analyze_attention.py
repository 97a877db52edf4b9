#!/usr/bin/env python
"""Where does a trained SELSA model's first aggregator look?

For every ground-truth object of a validation set (key proposals with IoU > 0.5 to it), the
attention weights of aggregator 0 (mean over heads, test-time references of the config) are
summed over four kinds of reference proposals: same-class objects in clean frames, same-class
objects in degraded frames, objects of other classes, and background. Printed beside each is the
share uniform attention would give, split by whether the key frame is degraded. Frames count as
degraded when the dataset records ``degradations`` (the synthetic set).

    python tools/analyze_attention.py --config-file configs/synthetic/selsa_tiny.yaml \
        --weights output/demo/selsa/model_final.pth
"""

import argparse
from collections import defaultdict

import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.structures import Boxes, pairwise_iou

from selsa_d2 import add_selsa_config
from selsa_d2.checkpoint.loading import WeightsError, load_inference_weights
from selsa_d2.data import TestReferenceSampler, build_video_test_loader
from selsa_d2.run_guard import RunError, merge_config, validate_config

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


def analyze(cfg, dataset_name: str):
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


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--dataset", help="default: DATASETS.TEST[0]")
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cfg = get_cfg()
    add_selsa_config(cfg)
    try:  # user errors (config, weights, dataset files) end in one line
        opts = args.opts + ["MODEL.WEIGHTS", args.weights, "DATALOADER.NUM_WORKERS", 0]
        merge_config(cfg, args.config_file, opts)
        validate_config(cfg, training=False)
        result = analyze(cfg, args.dataset or cfg.DATASETS.TEST[0])
    except (WeightsError, RunError, FileNotFoundError) as e:
        raise SystemExit(f"analyze_attention.py: error: {e}") from None
    print("attention mass of aggregator 0 (uniform attention in brackets)")
    print("| key frame | " + " | ".join(KINDS) + " |")
    print("|---" * (len(KINDS) + 1) + "|")
    for cond, v in result.items():
        cells = [f"{v[i]:.3f} ({v[i + len(KINDS)]:.3f})" for i in range(len(KINDS))]
        print(f"| {cond} | " + " | ".join(cells) + " |")
    return result


if __name__ == "__main__":
    main()
