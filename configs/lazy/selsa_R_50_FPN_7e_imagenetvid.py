"""SELSA on Detectron2's Faster R-CNN R-50-FPN, ImageNet VID + DET, the DC5 recipe's data and
7-epoch schedule: the LazyConfig twin of configs/selsa_R_50_FPN_7e_imagenetvid.yaml.

Another backbone is one field (docs/fpn_and_lazyconfig.md), e.g. ViTDet's::

    model.backbone = L(SimpleFeaturePyramid)(net=L(ViT)(...), in_feature="last_feat",
                                             out_channels=256, scale_factors=(4.0, 2.0, 1.0, 0.5),
                                             top_block=L(LastLevelMaxPool)(), norm="LN")
"""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from .common.data.video import dataloader
from .common.models.selsa_fpn import model
from .common.schedule_7e import lr_multiplier, optimizer, train

# Detectron2's FPN detectors: BGR input, its MSRA ImageNet weights, its resize (Base-SELSA-FPN.yaml)
dataloader.train.mapper.augmentations[0] = L(T.ResizeShortestEdge)(
    short_edge_length=(600,), max_size=1000, sample_style="choice"
)
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=600, max_size=1000, sample_style="choice")
]
dataloader.train.mapper.image_format = "BGR"

train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
train.output_dir = "output/lazy/selsa_R_50_FPN_7e_imagenetvid"

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
