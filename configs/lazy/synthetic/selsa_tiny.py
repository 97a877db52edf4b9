"""The tiny synthetic SELSA model (configs/synthetic/selsa_tiny.yaml) as a LazyConfig: the DC5
recipe shrunk to a narrow ResNet-50 truncated at res4, trained from scratch on the synthetic
dataset (datasets/make_synthetic_vid.py) on the CPU."""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.modeling.matcher import Matcher

from ..common.data.video import dataloader
from ..common.models.selsa_dc5 import model
from ..common.schedule_7e import lr_multiplier, optimizer, train

# a narrow ResNet-50 truncated at res4 (stride 16), from scratch, every residual block starting
# as the identity
model.backbone.bottom_up.update(
    out_features=["res4"],
    norm="BN",
    res5_dilation=1,
    freeze_at=0,
    stem_out_channels=32,
    res2_out_channels=64,
    width_per_group=16,
    zero_init_residual=True,
)
model.backbone.in_feature = "res4"
model.backbone.out_channels = 64
model.proposal_generator.anchor_generator.sizes = [[16, 32, 64, 128]]
model.proposal_generator.update(
    pre_nms_topk=(1000, 1000),
    post_nms_topk=(100, 50),
    batch_size_per_image=128,
    loss_normalizer="batch_size",  # the demo's models: Detectron2's normaliser, matcher, FC init
)
model.roi_heads.update(num_classes=4, batch_size_per_image=64)
model.roi_heads.proposal_matcher = L(Matcher)(
    thresholds=[0.5], labels=[0, 1], allow_low_quality_matches=False
)
model.roi_heads.box_head.update(fc_dims=[128, 128], num_attention_blocks=8, fc_init="c2_xavier")
model.roi_heads.box_predictor.input_shape.channels = 128
# continued from a single-frame checkpoint, SELSA starts as exactly that detector
model.zero_init_aggregator_output = True

dataloader.train.dataset.names = ("synthetic_vid_train",)
dataloader.test.dataset_name = "synthetic_vid_val"
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(160,), max_size=256, sample_style="choice"),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=160, max_size=256, sample_style="choice")
]
dataloader.train.total_batch_size = 4
dataloader.train.num_workers = dataloader.test.num_workers = 1

optimizer.lr = 0.02
lr_multiplier.scheduler.milestones = [450, 550]
lr_multiplier.warmup_length = 50 / 600
train.update(
    max_iter=600,
    device="cpu",
    seed=0,
    checkpointer=dict(period=100, max_to_keep=100),
    output_dir="output/lazy/synthetic/selsa_tiny",
)

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
