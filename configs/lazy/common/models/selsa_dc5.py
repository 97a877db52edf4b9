"""SELSA R-50-DC5 (configs/Base-SELSA-DC5.yaml, mmtracking's selsa_faster_rcnn_r50_dc5_1x) as a
LazyConfig ``model``: the same @configurable classes with the arguments their ``from_config``
reads from the YAML (the comments there explain the values)."""

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.proposal_generator import StandardRPNHead
from detectron2.modeling.roi_heads import FastRCNNOutputLayers

from selsa_d2.data.sampling import TestReferenceSampler
from selsa_d2.modeling import (
    MaxIoUAssignerRPN,
    MaxIoUMatcher,
    SelsaBoxHead,
    SelsaDC5Backbone,
    SelsaRCNN,
    SelsaROIHeads,
)
from selsa_d2.modeling.backbone import build_resnet

model = L(SelsaRCNN)(
    backbone=L(SelsaDC5Backbone)(
        bottom_up=L(build_resnet)(
            depth=50,
            out_features=["res5"],
            norm="FrozenStatsBN",  # mmdet norm_eval=True, BN weight/bias trained
            stride_in_1x1=False,  # pytorch style
            res5_dilation=2,  # DC5: res5 at stride 16
            freeze_at=2,
        ),
        in_feature="res5",
        out_channels=512,
        out_feature="neck",
    ),
    proposal_generator=L(MaxIoUAssignerRPN)(
        in_features=["neck"],
        head=L(StandardRPNHead)(in_channels="${model.backbone.out_channels}", num_anchors=12),
        anchor_generator=L(DefaultAnchorGenerator)(
            sizes=[[64, 128, 256, 512]], aspect_ratios=[0.5, 1.0, 2.0], strides=[16], offset=0.0
        ),
        anchor_matcher=L(MaxIoUMatcher)(
            thresholds=[0.3, 0.7], labels=[0, -1, 1], low_quality_min_iou=0.3
        ),
        box2box_transform=L(Box2BoxTransform)(weights=(1.0, 1.0, 1.0, 1.0)),
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_topk=(6000, 6000),  # (train, test)
        post_nms_topk=(600, 300),
        nms_thresh=0.7,
        anchor_boundary_thresh=0,
        smooth_l1_beta=1.0 / 9,
        loss_normalizer="sampled_anchors",
    ),
    roi_heads=L(SelsaROIHeads)(
        num_classes=30,
        batch_size_per_image=256,
        positive_fraction=0.25,
        proposal_matcher=L(MaxIoUMatcher)(  # mmdet's low-quality matches, gts appended
            thresholds=[0.5], labels=[0, 1], low_quality_min_iou=0.5, gt_appended=True
        ),
        proposal_append_gt=True,
        box_in_features=["neck"],
        box_pooler=L(ROIPooler)(
            output_size=7, scales=(1.0 / 16,), sampling_ratio=2, pooler_type="ROIAlignV2"
        ),
        box_head=L(SelsaBoxHead)(
            input_shape=L(ShapeSpec)(channels="${model.backbone.out_channels}", height=7, width=7),
            fc_dims=[1024, 1024],
            num_attention_blocks=16,
            fc_init="xavier_uniform",
        ),
        box_predictor=L(FastRCNNOutputLayers)(
            input_shape=L(ShapeSpec)(channels=1024),
            box2box_transform=L(Box2BoxTransform)(weights=(5.0, 5.0, 5.0, 5.0)),
            num_classes="${..num_classes}",
            test_score_thresh=0.0001,
            test_nms_thresh=0.5,
            test_topk_per_image=100,
            loss_weight={"loss_box_reg": 1.0},
            smooth_l1_beta=1.0,
        ),
    ),
    test_ref_sampler=L(TestReferenceSampler)(
        mode="offline", method="adaptive_stride", num_refs=14, stride=1
    ),
    cache_features=True,
    key_frame_as_ref=True,
    # True: start as exactly the single-frame detector a checkpoint holds (MODEL.SELSA.ZERO_INIT_AGGREGATOR_OUTPUT)
    zero_init_aggregator_output=False,
    pixel_mean=[123.675, 116.28, 103.53],  # RGB, ImageNet mean/std (pytorch-style backbone)
    pixel_std=[58.395, 57.12, 57.375],
    input_format="RGB",
)
