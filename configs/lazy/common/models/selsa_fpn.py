"""SELSA on Detectron2's Faster R-CNN R-50-FPN (configs/Base-SELSA-FPN.yaml) as a LazyConfig
``model``: Detectron2's FPN detector (as its common/models/mask_rcnn_fpn.py, boxes only) with
the SELSA ROI heads, box head and test-time references of the DC5 recipe.

The RPN head and the box head read the backbone's ``out_channels``, so another backbone with
p2-p6 outputs (e.g. ViTDet's ``SimpleFeaturePyramid``) is one field: ``model.backbone = ...``
(docs/fpn_and_lazyconfig.md)."""

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.backbone import FPN
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.proposal_generator import RPN, StandardRPNHead
from detectron2.modeling.roi_heads import FastRCNNOutputLayers

from selsa_d2.data.sampling import TestReferenceSampler
from selsa_d2.modeling import SelsaBoxHead, SelsaRCNN, SelsaROIHeads
from selsa_d2.modeling.backbone import build_resnet

model = L(SelsaRCNN)(
    backbone=L(FPN)(
        bottom_up=L(build_resnet)(
            depth=50,
            out_features=["res2", "res3", "res4", "res5"],
            norm="FrozenBN",
            stride_in_1x1=True,  # Detectron2's MSRA (caffe-style) ImageNet weights
            freeze_at=2,
        ),
        in_features="${.bottom_up.out_features}",
        out_channels=256,
        top_block=L(LastLevelMaxPool)(),
    ),
    proposal_generator=L(RPN)(
        in_features=["p2", "p3", "p4", "p5", "p6"],
        head=L(StandardRPNHead)(in_channels="${model.backbone.out_channels}", num_anchors=3),
        anchor_generator=L(DefaultAnchorGenerator)(
            sizes=[[32], [64], [128], [256], [512]],
            aspect_ratios=[0.5, 1.0, 2.0],
            strides=[4, 8, 16, 32, 64],
            offset=0.0,
        ),
        anchor_matcher=L(Matcher)(
            thresholds=[0.3, 0.7], labels=[0, -1, 1], allow_low_quality_matches=True
        ),
        box2box_transform=L(Box2BoxTransform)(weights=(1.0, 1.0, 1.0, 1.0)),
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_topk=(2000, 1000),  # (train, test), per level
        post_nms_topk=(1000, 300),  # per image; 300: each frame's proposals at test time
        nms_thresh=0.7,
    ),
    roi_heads=L(SelsaROIHeads)(
        num_classes=30,
        batch_size_per_image=256,
        positive_fraction=0.25,
        proposal_matcher=L(Matcher)(
            thresholds=[0.5], labels=[0, 1], allow_low_quality_matches=False
        ),
        proposal_append_gt=True,
        box_in_features=["p2", "p3", "p4", "p5"],
        box_pooler=L(ROIPooler)(
            output_size=7,
            scales=(1.0 / 4, 1.0 / 8, 1.0 / 16, 1.0 / 32),
            sampling_ratio=0,
            pooler_type="ROIAlignV2",
        ),
        box_head=L(SelsaBoxHead)(
            input_shape=L(ShapeSpec)(channels="${model.backbone.out_channels}", height=7, width=7),
            fc_dims=[1024, 1024],
            num_attention_blocks=16,
        ),
        box_predictor=L(FastRCNNOutputLayers)(
            input_shape=L(ShapeSpec)(channels=1024),
            box2box_transform=L(Box2BoxTransform)(weights=(10.0, 10.0, 5.0, 5.0)),
            num_classes="${..num_classes}",
            test_score_thresh=0.0001,
            test_nms_thresh=0.5,
            test_topk_per_image=100,
            loss_weight={"loss_box_reg": 1.0},
        ),
    ),
    test_ref_sampler=L(TestReferenceSampler)(
        mode="offline", method="adaptive_stride", num_refs=14, stride=1
    ),
    cache_features=True,
    key_frame_as_ref=True,
    # True: start as exactly the single-frame detector a checkpoint holds (MODEL.SELSA.ZERO_INIT_AGGREGATOR_OUTPUT)
    zero_init_aggregator_output=False,
    pixel_mean=[103.530, 116.280, 123.675],  # BGR, Detectron2's MSRA weights
    pixel_std=[1.0, 1.0, 1.0],
    input_format="BGR",
)
