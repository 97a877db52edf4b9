"""The benchmarks' models and inputs: configs with random weights (nothing is downloaded) and
synthetic videos in the test mapper's format."""

import os
from collections.abc import Sequence

import torch
from detectron2.config import get_cfg
from detectron2.utils.file_io import PathManager

from .. import testing
from ..config import add_selsa_config

# The repository checkout this package is installed from (editable install): its configs/.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SELSA_CONFIG = os.path.join(REPO_ROOT, "configs", "selsa_R_50_DC5_7e_imagenetvid.yaml")
BASELINE_CONFIG = os.path.join(REPO_ROOT, "configs", "faster_rcnn_R_50_DC5_7e_imagenetvid.yaml")
# bench_inference.py --fpn: SELSA on Detectron2's FPN detector and that detector
SELSA_FPN_CONFIG = os.path.join(REPO_ROOT, "configs", "selsa_R_50_FPN_7e_imagenetvid.yaml")
BASELINE_FPN_CONFIG = os.path.join(REPO_ROOT, "configs", "faster_rcnn_R_50_FPN_7e_imagenetvid.yaml")

# The tests' tiny model: R-18 truncated at res4, 32-channel neck, 64-d FCs (merged after the config).
TINY_OVERRIDES = os.path.join(REPO_ROOT, "configs", "tiny", "tiny-overrides.yaml")


def build_cfg(
    config_file: str, device: str, depth: int = 50, tiny: bool = False, extra: Sequence = ()
):
    """A frozen config of ``config_file`` with random weights (``MODEL.WEIGHTS ""``: nothing is
    downloaded, and ``TEST.ALLOW_MISSING_WEIGHTS`` lets the predictors run them) on ``device``;
    ``tiny``: the tests' R-18/res4 model instead of ``depth``."""
    if not PathManager.exists(config_file):
        raise FileNotFoundError(f"Benchmark config {config_file} does not exist")
    cfg = get_cfg()
    add_selsa_config(cfg)
    cfg.merge_from_file(config_file)
    if tiny:
        cfg.merge_from_file(TINY_OVERRIDES)
    opts = [
        "MODEL.WEIGHTS",
        "",
        "TEST.ALLOW_MISSING_WEIGHTS",
        True,
        "MODEL.DEVICE",
        device,
        "DATALOADER.NUM_WORKERS",
        0,
    ]
    opts += [] if tiny else ["MODEL.RESNETS.DEPTH", depth]
    cfg.merge_from_list(opts + list(extra))
    cfg.freeze()
    return cfg


# random weights and synthetic frames are shared with the tests (selsa_d2.testing)
randomize_frozen_bn = testing.randomize_frozen_bn
share_weights = testing.share_weights
SyntheticVideo = testing.SyntheticVideo


def frame_dict(
    video: SyntheticVideo, t: int, length: int, video_id=0, image: torch.Tensor | None = None
) -> dict:
    """Frame ``t`` of a synthetic video in test-mapper format (already at the network input size)."""
    image = video.frame(t) if image is None else image
    return testing.frame_input(image, video_id, t, length, height=video.height, width=video.width)
