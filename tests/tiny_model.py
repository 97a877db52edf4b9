"""Tiny SELSA configs, models and synthetic videos for fast CPU tests (shared by test files).

R-18 truncated at res4 (stride 16), a 32-channel neck, 64-d FC layers with 4 attention heads,
few proposals and ~64-128 px images: a forward pass takes milliseconds on a CPU.
"""

import contextlib
import os

import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

from selsa_d2.config import add_selsa_config

# shared with the benchmarks: random FrozenBN statistics, synthetic frames, model inputs
from selsa_d2.testing import frame_input, randomize_frozen_bn, synthetic_video, video_inputs  # noqa: F401

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_CONFIG = os.path.join(REPO_ROOT, "configs", "Base-SELSA-DC5.yaml")
TINY_OVERRIDES = os.path.join(REPO_ROOT, "configs", "tiny", "tiny-overrides.yaml")
SELSA_FPN_TINY = os.path.join(REPO_ROOT, "configs", "synthetic", "selsa_fpn_tiny.yaml")
FASTER_RCNN_FPN_TINY = os.path.join(REPO_ROOT, "configs", "synthetic", "faster_rcnn_fpn_tiny.yaml")
# configs/synthetic/*fpn_tiny.yaml shrunk further for the tests: 32-channel FPN, 64-d FC layers,
# few proposals, FrozenBN (random statistics, see randomize_frozen_bn), ~100-160 px images.
TINY_FPN_OPTS = {
    "MODEL.FPN.OUT_CHANNELS": 32,
    "MODEL.RESNETS.NORM": "FrozenBN",
    "MODEL.SELSA.ZERO_INIT_RESIDUAL": False,
    "MODEL.SELSA.NUM_ATTENTION_BLOCKS": 4,
    "MODEL.ROI_BOX_HEAD.FC_DIM": 64,
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN": 200,
    "MODEL.RPN.POST_NMS_TOPK_TRAIN": 40,
    "MODEL.RPN.PRE_NMS_TOPK_TEST": 200,
    "MODEL.RPN.POST_NMS_TOPK_TEST": 20,
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE": 64,
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": 32,
    "INPUT.MIN_SIZE_TEST": 96,
    "INPUT.MAX_SIZE_TEST": 160,
    "INPUT.VIDEO.TEST_NUM_REFS": 4,
}


def tiny_selsa_cfg(num_classes: int = 3, **overrides):
    """A Base-SELSA-DC5 config shrunk to a tiny R-18/res4 SELSA model on the CPU.

    ``overrides``: flat ``"MODEL.X.Y": value`` pairs (dots written as ``__``), e.g.
    ``tiny_selsa_cfg(MODEL__SELSA__INFERENCE__CACHE_FEATURES=False)``.
    """
    cfg = get_cfg()
    add_selsa_config(cfg)
    cfg.merge_from_file(BASE_CONFIG)
    cfg.merge_from_file(TINY_OVERRIDES)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    for key, value in overrides.items():
        cfg.merge_from_list([key.replace("__", "."), value])
    return cfg


def tiny_fpn_cfg(num_classes: int = 3, single_frame: bool = False, **overrides):
    """The tiny synthetic SELSA-FPN config (or its single-frame Faster R-CNN-FPN) shrunk for the
    tests (:data:`TINY_FPN_OPTS`); aggregators randomly initialised unless overridden.
    ``overrides`` as :func:`tiny_selsa_cfg`."""
    cfg = get_cfg()
    add_selsa_config(cfg)
    cfg.merge_from_file(FASTER_RCNN_FPN_TINY if single_frame else SELSA_FPN_TINY)
    opts = dict(TINY_FPN_OPTS, **{"MODEL.ROI_HEADS.NUM_CLASSES": num_classes})
    opts["MODEL.SELSA.ZERO_INIT_AGGREGATOR_OUTPUT"] = False
    opts.update({k.replace("__", "."): v for k, v in overrides.items()})
    cfg.merge_from_list([x for kv in opts.items() for x in kv])
    return cfg


def build_tiny_model(cfg=None, seed: int = 0, eval_mode: bool = True, **overrides):
    """A randomly initialised (seeded) tiny model."""
    cfg = cfg if cfg is not None else tiny_selsa_cfg(**overrides)
    torch.manual_seed(seed)
    model = build_model(cfg)
    randomize_frozen_bn(model, seed)
    return model.eval() if eval_mode else model.train()


def training_inputs(
    num_keys: int = 2,
    num_refs: int = 2,
    height: int = 80,
    width: int = 112,
    seed: int = 0,
    num_classes: int = 3,
) -> list[dict]:
    """Training batch: key dicts with gt ``instances`` and ``ref_frames`` (other frames)."""
    frames = synthetic_video(num_keys * (num_refs + 1), height, width, seed)
    rng = np.random.RandomState(seed)
    batch = []
    for k in range(num_keys):
        group = frames[k * (num_refs + 1) : (k + 1) * (num_refs + 1)]
        key = frame_input(group[0], k, 0, num_refs + 1)
        inst = Instances((height, width))
        boxes = []
        for _ in range(2):
            x1, y1 = rng.randint(0, width // 2), rng.randint(0, height // 2)
            boxes.append(
                [x1, y1, x1 + rng.randint(16, width // 2), y1 + rng.randint(16, height // 2)]
            )
        inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        inst.gt_classes = torch.tensor(rng.randint(0, num_classes, size=2), dtype=torch.int64)
        key["instances"] = inst
        key["ref_frames"] = [
            frame_input(f, k, i + 1, num_refs + 1) for i, f in enumerate(group[1:])
        ]
        batch.append(key)
    return batch


def results_close(a: Instances, b: Instances, atol: float = 1e-4) -> str | None:
    """None if two detection results match (same count, boxes/scores/classes within atol)."""
    if len(a) != len(b):
        return f"{len(a)} vs {len(b)} detections"
    if len(a) == 0:
        return None
    if not torch.equal(a.pred_classes, b.pred_classes):
        return "classes differ"
    if not torch.allclose(a.scores, b.scores, atol=atol, rtol=0):
        return f"scores differ by {(a.scores - b.scores).abs().max():.3g}"
    if not torch.allclose(a.pred_boxes.tensor, b.pred_boxes.tensor, atol=atol, rtol=0):
        return f"boxes differ by {(a.pred_boxes.tensor - b.pred_boxes.tensor).abs().max():.3g}"
    return None


@contextlib.contextmanager
def torch_threads(num: int = 1):
    """Run tiny models single-threaded: on a small, busy CPU the thread pool's overhead dominates
    (measured 12x slower with 2 threads than with 1 on the 2-core dev machine under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(num)
    try:
        yield
    finally:
        torch.set_num_threads(before)
