"""SELSA R-50-DC5 on ImageNet VID + DET, mmtracking's recipe: the LazyConfig twin of
configs/selsa_R_50_DC5_7e_imagenetvid.yaml (tests/test_lazyconfig.py checks they build the same
model and data). Train / evaluate with tools/lazyconfig_train_net.py."""

from .common.data.video import dataloader
from .common.models.selsa_dc5 import model
from .common.schedule_7e import lr_multiplier, optimizer, train

# torchvision's ImageNet ResNet-50, converted by Detectron2 (pytorch style, RGB)
train.init_checkpoint = "detectron2://ImageNetPretrained/torchvision/R-50.pkl"
train.output_dir = "output/lazy/selsa_R_50_DC5_7e_imagenetvid"

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
