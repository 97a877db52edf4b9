"""The inference benchmark's models (random weights, shared between SELSA and the baseline) and
inputs."""

import os

import torch
from detectron2.modeling import build_model
from detectron2.modeling.backbone import FPN

from ..testing import with_references
from . import configs

TROI_CONFIG = os.path.join(
    configs.REPO_ROOT, "configs", "selsa_troialign_R_50_DC5_7e_imagenetvid.yaml"
)


def video_input(video: configs.SyntheticVideo, images, t: int, length: int, sampler=None) -> dict:
    def get(i):
        return configs.frame_dict(video, i, length, image=images[i] if images is not None else None)

    return with_references(get, t, length, sampler) if sampler is not None else get(t)


def model_cfgs(args, extra_opts=()):
    # A random RPN's proposals overlap so much that NMS leaves few of them; a trained detector
    # keeps POST_NMS_TOPK_TEST (300) per frame. --full-proposals (default) disables the RPN's NMS
    # so that every variant works on a full set, as it would with real weights.
    extra = (["MODEL.RPN.NMS_THRESH", 1.0] if args.full_proposals else []) + list(extra_opts)
    selsa_file, base_file = config_files(args)
    selsa_cfg = configs.build_cfg(selsa_file, args.device, args.depth, args.tiny, extra)
    base_cfg = configs.build_cfg(base_file, args.device, args.depth, args.tiny, extra)
    return selsa_cfg, base_cfg


def config_files(args) -> tuple[str, str]:
    """(SELSA config, single-frame baseline config): DC5, or with --fpn Detectron2's FPN detector."""
    if getattr(args, "fpn", False):
        return configs.SELSA_FPN_CONFIG, configs.BASELINE_FPN_CONFIG
    return configs.SELSA_CONFIG, configs.BASELINE_CONFIG


def randomize_and_share(selsa, baseline, seed: int):
    configs.randomize_frozen_bn(selsa, seed)
    if isinstance(selsa.backbone, FPN):
        # A random FPN's maps reach ~5e3, so random box deltas are huge and most proposals
        # degenerate (~30 of 300 survive at 320x544). Zero deltas: the proposals are the top
        # anchors by (random) objectness, a full set of 300 per frame as with trained weights.
        torch.nn.init.zeros_(selsa.proposal_generator.rpn_head.anchor_deltas.weight)
    not_copied = configs.share_weights(selsa, baseline)
    if not_copied:
        raise RuntimeError(f"Baseline parameters without a SELSA counterpart: {not_copied}")


def build_models(args):
    selsa_cfg, base_cfg = model_cfgs(args)
    torch.manual_seed(args.seed)
    selsa = build_model(selsa_cfg).eval()
    baseline = build_model(base_cfg).eval()
    randomize_and_share(selsa, baseline, args.seed)
    return selsa, baseline
