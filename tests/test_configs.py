"""The shipped ImageNet VID configs keep mmtracking's SELSA recipe: every row of the tables in
docs/matching_mmtracking.md (inference and training halves), for the three SELSA configs and
the single-frame baseline. A config change that breaks parity fails here."""

import math
import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import transforms as T
from detectron2.solver import build_lr_scheduler

from selsa_d2.config import add_selsa_config
from selsa_d2.data.sampling import sample_train_refs
from selsa_d2.data.transforms import MMCVResizeShortestEdge, build_video_augmentation
from selsa_d2.solver import build_selsa_optimizer

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SELSA_CONFIGS = {
    "selsa_R_50_DC5_7e_imagenetvid.yaml": dict(
        depth=50, groups=1, width=64, weights="detectron2://ImageNetPretrained/torchvision/R-50.pkl"
    ),
    "selsa_R_101_DC5_7e_imagenetvid.yaml": dict(
        depth=101, groups=1, width=64, weights="pretrained/R-101-torchvision.pkl"
    ),
    "selsa_X_101_DC5_7e_imagenetvid.yaml": dict(
        depth=101, groups=64, width=4, weights="pretrained/X-101-64x4d-torchvision.pkl"
    ),
}
BASELINE_CONFIG = "faster_rcnn_R_50_DC5_7e_imagenetvid.yaml"
ALL_CONFIGS = list(SELSA_CONFIGS) + [BASELINE_CONFIG]

# One epoch of mmtracking's training set on 8 GPUs x 1 key frame (see Base-SELSA-DC5.yaml):
# VID_train_15frames key frames + DET_train_30classes lines, repeats kept.
VID_KEY_FRAMES, DET_IMAGES, GPUS = 57_834, 53_639, 8
ITERS_PER_EPOCH = math.ceil((VID_KEY_FRAMES + DET_IMAGES) / GPUS)

# ---------------------------------------------------------------- inference half of the table
INFERENCE = {
    # anchors: mmdet scales 4, 8, 16, 32 x stride 16, ratios 0.5, 1, 2, centred at (16x, 16y)
    "MODEL.ANCHOR_GENERATOR.SIZES": [[64, 128, 256, 512]],
    "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": [[0.5, 1.0, 2.0]],
    "MODEL.ANCHOR_GENERATOR.OFFSET": 0.0,
    # box coder stds 1.0 (RPN) and 0.2 (R-CNN)
    "MODEL.RPN.BBOX_REG_WEIGHTS": (1.0, 1.0, 1.0, 1.0),
    "MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS": (5.0, 5.0, 5.0, 5.0),
    # RoIAlign(output_size=7, sampling_ratio=2, aligned=True)
    "MODEL.ROI_BOX_HEAD.POOLER_TYPE": "ROIAlignV2",
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": 7,
    "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO": 2,
    # imrescale to (1000, 600)
    "INPUT.RESIZE_STYLE": "mmcv",
    "INPUT.MIN_SIZE_TEST": 600,
    "INPUT.MAX_SIZE_TEST": 1000,
    # img_norm_cfg (RGB), pad to 16 (the backbone's size_divisibility, checked below)
    "INPUT.FORMAT": "RGB",
    "MODEL.PIXEL_MEAN": [123.675, 116.28, 103.53],
    "MODEL.PIXEL_STD": [58.395, 57.12, 57.375],
    # test_cfg.rpn: nms_pre 6000, nms 0.7, max_per_img 300
    "MODEL.RPN.PRE_NMS_TOPK_TEST": 6000,
    "MODEL.RPN.POST_NMS_TOPK_TEST": 300,
    "MODEL.RPN.NMS_THRESH": 0.7,
    # test_cfg.rcnn: score_thr 1e-4, nms 0.5, max_per_img 100
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.0001,
    "MODEL.ROI_HEADS.NMS_THRESH_TEST": 0.5,
    "TEST.DETECTIONS_PER_IMAGE": 100,
    # grad_clip=dict(max_norm=35, norm_type=2) over all parameters
    "SOLVER.CLIP_GRADIENTS.ENABLED": True,
    "SOLVER.CLIP_GRADIENTS.CLIP_TYPE": "full_model",
    "SOLVER.CLIP_GRADIENTS.CLIP_VALUE": 35.0,
    "SOLVER.CLIP_GRADIENTS.NORM_TYPE": 2.0,
}
SELSA_INFERENCE = {
    # test ref_img_sampler: 14 frames, test_with_adaptive_stride, + the key frame
    "INPUT.VIDEO.TEST_MODE": "offline",
    "INPUT.VIDEO.TEST_SAMPLER": "adaptive_stride",
    "INPUT.VIDEO.TEST_NUM_REFS": 14,
    "MODEL.SELSA.INFERENCE.KEY_FRAME_AS_REF": True,
}

# ---------------------------------------------------------------- training half of the table
TRAINING = {
    # backbone: ResNet DC5 (strides 1,2,2,1, dilations 1,1,1,2), pytorch style, frozen_stages=1,
    # norm_eval=True with BN requires_grad=True: running statistics, BN weight/bias trained
    "MODEL.RESNETS.RES5_DILATION": 2,
    "MODEL.RESNETS.STRIDE_IN_1X1": False,
    "MODEL.RESNETS.OUT_FEATURES": ["res5"],
    "MODEL.BACKBONE.FREEZE_AT": 2,
    "MODEL.RESNETS.NORM": "FrozenStatsBN",
    # ChannelMapper(2048 -> 512, 3x3)
    "MODEL.SELSA.NECK_CHANNELS": 512,
    # RPN loss: sigmoid CE, SmoothL1(beta=1/9), weights 1
    "MODEL.RPN.SMOOTH_L1_BETA": 1.0 / 9.0,
    "MODEL.RPN.BBOX_REG_LOSS_TYPE": "smooth_l1",
    "MODEL.RPN.LOSS_WEIGHT": 1.0,
    "MODEL.RPN.BBOX_REG_LOSS_WEIGHT": 1.0,
    # RPN assigner MaxIoUAssigner(pos 0.7, neg 0.3, min_pos_iou 0.3), allowed_border 0
    "MODEL.PROPOSAL_GENERATOR.NAME": "MaxIoUAssignerRPN",
    "MODEL.RPN.IOU_THRESHOLDS": [0.3, 0.7],
    "MODEL.RPN.IOU_LABELS": [0, -1, 1],
    "MODEL.RPN.LOW_QUALITY_MIN_IOU": 0.3,
    # AnchorHead.loss: avg_factor = sampled anchors (+ float32 eps)
    "MODEL.RPN.LOSS_NORMALIZER": "sampled_anchors",
    "MODEL.RPN.BOUNDARY_THRESH": 0,
    # RPN sampler RandomSampler(num=256, pos_fraction=0.5, add_gt_as_proposals=False)
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE": 256,
    "MODEL.RPN.POSITIVE_FRACTION": 0.5,
    # train_cfg.rpn_proposal: nms_pre 6000, max_per_img 600, nms 0.7, min_bbox_size 0
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN": 6000,
    "MODEL.RPN.POST_NMS_TOPK_TRAIN": 600,
    "MODEL.PROPOSAL_GENERATOR.MIN_SIZE": 0,
    # R-CNN assigner MaxIoUAssigner(pos 0.5, neg 0.5, min_pos_iou 0.5)
    "MODEL.ROI_HEADS.IOU_THRESHOLDS": [0.5],
    "MODEL.ROI_HEADS.IOU_LABELS": [0, 1],
    "MODEL.ROI_HEADS.LOW_QUALITY_MATCHES": True,
    "MODEL.ROI_HEADS.LOW_QUALITY_MIN_IOU": 0.5,
    # R-CNN sampler RandomSampler(num=256, pos_fraction=0.25, add_gt_as_proposals=True)
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": 256,
    "MODEL.ROI_HEADS.POSITIVE_FRACTION": 0.25,
    "MODEL.ROI_HEADS.PROPOSAL_APPEND_GT": True,
    # Shared2FCBBoxHead(1024), 30 classes, class-specific boxes, softmax CE + SmoothL1(beta=1.0)
    "MODEL.ROI_HEADS.NUM_CLASSES": 30,
    "MODEL.ROI_BOX_HEAD.NUM_FC": 2,
    "MODEL.ROI_BOX_HEAD.FC_DIM": 1024,
    "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG": False,
    "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE": "smooth_l1",
    "MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA": 1.0,
    "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT": 1.0,
    # SGD(lr=0.01, momentum=0.9, weight_decay=1e-4) on every parameter, 8 GPUs x 1 key frame
    "SOLVER.IMS_PER_BATCH": 8,
    "SOLVER.BASE_LR": 0.01,
    "SOLVER.MOMENTUM": 0.9,
    "SOLVER.NESTEROV": False,
    "SOLVER.WEIGHT_DECAY": 0.0001,
    "SOLVER.WEIGHT_DECAY_NORM": 0.0001,
    "SOLVER.WEIGHT_DECAY_BIAS": None,
    "SOLVER.BIAS_LR_FACTOR": 1.0,
    # lr_config: step [2, 5] epochs, 7 epochs, warmup linear 500 iterations, ratio 1/3
    "SOLVER.LR_SCHEDULER_NAME": "WarmupMultiStepLR",
    "SOLVER.STEPS": (2 * ITERS_PER_EPOCH, 5 * ITERS_PER_EPOCH),
    "SOLVER.MAX_ITER": 7 * ITERS_PER_EPOCH,
    "SOLVER.GAMMA": 0.1,
    "SOLVER.WARMUP_METHOD": "linear",
    "SOLVER.WARMUP_ITERS": 500,
    "SOLVER.WARMUP_FACTOR": 1.0 / 3.0,
    # SeqResize((1000, 600), keep_ratio), SeqRandomFlip(0.5, shared), no crop
    "INPUT.MIN_SIZE_TRAIN": (600,),
    "INPUT.MAX_SIZE_TRAIN": 1000,
    "INPUT.RANDOM_FLIP": "horizontal",
    "INPUT.CROP.ENABLED": False,
    # train = [VID, DET] concatenated and shuffled together; frames without gt filtered
    "DATASETS.TRAIN": ("imagenet_vid_train_15frames", "imagenet_det_train_30cls"),
    "DATASETS.TRAIN_SAMPLING_WEIGHTS": (),
    "DATALOADER.SAMPLER_TRAIN": "TrainingSampler",
    "DATALOADER.FILTER_EMPTY_ANNOTATIONS": True,
    "DATASETS.TEST": ("imagenet_vid_val",),
}
SELSA_TRAINING = {
    "MODEL.META_ARCHITECTURE": "SelsaRCNN",
    "MODEL.ROI_HEADS.NAME": "SelsaROIHeads",
    "MODEL.ROI_BOX_HEAD.NAME": "SelsaBoxHead",
    # ConvFCBBoxHead init_cfg: Xavier uniform on shared_fcs
    "MODEL.ROI_BOX_HEAD.FC_INIT": "xavier_uniform",
    "MODEL.SELSA.NUM_ATTENTION_BLOCKS": 16,
    # VID ref_img_sampler: num_ref_imgs 2, frame_range 9, filter_key_img, bilateral_uniform
    "INPUT.VIDEO.TRAIN_SAMPLER": "bilateral_uniform",
    "INPUT.VIDEO.TRAIN_NUM_REFS": 2,
    "INPUT.VIDEO.TRAIN_FRAME_RANGE": 9,
}
BASELINE = {
    "MODEL.META_ARCHITECTURE": "GeneralizedRCNN",
    "MODEL.ROI_HEADS.NAME": "MaxIoUAssignerROIHeads",
    "MODEL.ROI_BOX_HEAD.NAME": "FastRCNNConvFCHead",  # Detectron2's FC init (c2_xavier_fill)
    "MODEL.WEIGHTS": "detectron2://ImageNetPretrained/torchvision/R-50.pkl",
    "MODEL.RESNETS.DEPTH": 50,
    "INPUT.VIDEO.TRAIN_NUM_REFS": 0,
    "INPUT.VIDEO.TEST_NUM_REFS": 0,
}


def load(name):
    cfg = get_cfg()
    add_selsa_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, "configs", name))
    return cfg


def value(cfg, dotted):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def expected_values(name):
    out = dict(INFERENCE)
    out.update(TRAINING)
    if name == BASELINE_CONFIG:
        out.update(BASELINE)
    else:
        out.update(SELSA_INFERENCE)
        out.update(SELSA_TRAINING)
        arch = SELSA_CONFIGS[name]
        out.update(
            {
                "MODEL.RESNETS.DEPTH": arch["depth"],
                "MODEL.RESNETS.NUM_GROUPS": arch["groups"],
                "MODEL.RESNETS.WIDTH_PER_GROUP": arch["width"],
                "MODEL.WEIGHTS": arch["weights"],
            }
        )
    return out


def _same(actual, expected):
    if isinstance(expected, float):
        return actual == pytest.approx(expected, rel=1e-12, abs=1e-15)
    if isinstance(expected, (list, tuple)):
        return (
            isinstance(actual, (list, tuple))
            and len(actual) == len(expected)
            and all(_same(a, e) for a, e in zip(actual, expected))
        )
    return type(actual) is type(expected) and actual == expected


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_config_matches_mmtracking_table(name):
    cfg = load(name)
    wrong = {
        key: (value(cfg, key), expected)
        for key, expected in expected_values(name).items()
        if not _same(value(cfg, key), expected)
    }
    assert not wrong, f"{name}: (actual, mmtracking) differ for {wrong}"


def test_schedule_is_seven_epochs_with_steps_after_two_and_five():
    cfg = load("selsa_R_50_DC5_7e_imagenetvid.yaml")
    assert ITERS_PER_EPOCH == 13_935
    assert cfg.SOLVER.MAX_ITER == 97_545 and tuple(cfg.SOLVER.STEPS) == (27_870, 69_675)


def mmcv_step_warmup_lr(
    i, base_lr=0.01, warmup_iters=500, ratio=1.0 / 3, step_iters=(27_870, 69_675), gamma=0.1
):
    """mmcv 1.x StepLrUpdaterHook (epoch steps converted to iterations) with warmup='linear':
    k = (1 - i / warmup_iters) * (1 - ratio); lr = regular_lr * (1 - k) for i < warmup_iters."""
    regular = base_lr * gamma ** sum(i >= s for s in step_iters)
    if i < warmup_iters:
        return regular * (1 - (1 - i / warmup_iters) * (1 - ratio))
    return regular


@pytest.mark.filterwarnings(
    "ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`"
)
def test_lr_curve_equals_mmcv_warmup_and_steps():
    cfg = load("selsa_R_50_DC5_7e_imagenetvid.yaml")
    model = torch.nn.Linear(1, 1)
    optimizer = build_selsa_optimizer(cfg, model)
    scheduler = build_lr_scheduler(cfg, optimizer)
    steps = tuple(cfg.SOLVER.STEPS)
    checked = (
        list(range(0, 503)) + [s + d for s in steps for d in (-1, 0, 1)] + [cfg.SOLVER.MAX_ITER - 1]
    )
    for i in checked:
        # the lr Detectron2's LRScheduler hook sets for iteration i (it steps after each iteration)
        scheduler.last_epoch = i - 1
        scheduler.step()
        lr = optimizer.param_groups[0]["lr"]
        assert lr == pytest.approx(mmcv_step_warmup_lr(i, step_iters=steps), rel=1e-9), i
    assert mmcv_step_warmup_lr(0) == pytest.approx(0.01 / 3)


def test_weight_decay_reaches_norm_and_bias_parameters():
    cfg = load("selsa_R_50_DC5_7e_imagenetvid.yaml")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    optimizer = build_selsa_optimizer(cfg, model)
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert all(decay[id(p)] == 0.0001 for p in model.parameters())
    assert all(g["momentum"] == 0.9 and not g["nesterov"] for g in optimizer.param_groups)


def test_training_augmentation_is_seqresize_and_seqrandomflip():
    augs = build_video_augmentation(load("selsa_R_50_DC5_7e_imagenetvid.yaml"), is_train=True)
    assert [type(a) for a in augs] == [MMCVResizeShortestEdge, T.RandomFlip]
    resize, flip = augs
    assert tuple(resize.short_edge_length) == (600,) and resize.max_size == 1000
    assert flip.prob == 0.5 and flip.horizontal and not flip.vertical


def test_det_images_get_the_key_frame_as_both_references():
    # mmtracking's DET dataset (load_as_video=False): num_ref_imgs copies of the key image
    assert sample_train_refs(0, 1, num_refs=2, frame_range=9) == [0, 0]


def test_backbone_pads_to_16():
    from detectron2.modeling import build_backbone

    cfg = load("selsa_R_50_DC5_7e_imagenetvid.yaml")
    cfg.MODEL.DEVICE = "cpu"
    assert build_backbone(cfg).size_divisibility == 16


# ---------------------------------------------------------------- SELSA + Temporal RoI Align
# mmtracking's configs/vid/temporal_roi_align/selsa_troialign_faster_rcnn_{r50,r101,x101}_dc5_7e_imagenetvid.py:
# the SELSA config with a TemporalRoIAlign bbox_roi_extractor (num_most_similar_points 2,
# num_temporal_attention_blocks 4, same RoIAlign) and num_shared_fcs 3; nothing else differs.
TROI_CONFIGS = {
    "selsa_troialign_R_50_DC5_7e_imagenetvid.yaml": "selsa_R_50_DC5_7e_imagenetvid.yaml",
    "selsa_troialign_R_101_DC5_7e_imagenetvid.yaml": "selsa_R_101_DC5_7e_imagenetvid.yaml",
    "selsa_troialign_X_101_DC5_7e_imagenetvid.yaml": "selsa_X_101_DC5_7e_imagenetvid.yaml",
}
TROI = {
    "MODEL.ROI_HEADS.NAME": "SelsaTRoIROIHeads",
    "MODEL.ROI_BOX_HEAD.NUM_FC": 3,
    "MODEL.SELSA.TROI.NAME": "TemporalRoIAlign",
    "MODEL.SELSA.TROI.NUM_MOST_SIMILAR_POINTS": 2,
    "MODEL.SELSA.TROI.NUM_TEMPORAL_ATTENTION_BLOCKS": 4,
}


def _flat(cfg, prefix=""):
    out = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


@pytest.mark.parametrize("name,selsa", list(TROI_CONFIGS.items()))
def test_troi_config_is_its_selsa_config_plus_troi(name, selsa):
    cfg, base = load(name), load(selsa)
    expected = expected_values(selsa)
    expected.update(TROI)
    wrong = {k: (value(cfg, k), e) for k, e in expected.items() if not _same(value(cfg, k), e)}
    assert not wrong, f"{name}: (actual, mmtracking) differ for {wrong}"
    differ = {k for k, v in _flat(cfg).items() if _flat(base)[k] != v}
    assert differ == {"MODEL.ROI_HEADS.NAME", "MODEL.ROI_BOX_HEAD.NUM_FC", "OUTPUT_DIR"}, differ
