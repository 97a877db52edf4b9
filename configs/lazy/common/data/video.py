"""Video data as a LazyConfig ``dataloader`` (train / test / evaluator), the DC5 recipe's ImageNet
VID + DET (configs/Base-SELSA-DC5.yaml): Detectron2's loaders with selsa_d2's
``VideoDatasetMapper`` (key frame + references), the whole-video test loader and the VID
evaluator. The datasets are those ``import selsa_d2`` registers (README, datasets/README.md)."""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import build_detection_train_loader, get_detection_dataset_dicts
from omegaconf import OmegaConf

from selsa_d2.data import VideoDatasetMapper, build_video_test_loader
from selsa_d2.data.transforms import MMCVResizeShortestEdge
from selsa_d2.evaluation import VIDEvaluator

dataloader = OmegaConf.create()

dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detection_dataset_dicts)(
        names=("imagenet_vid_train_15frames", "imagenet_det_train_30cls"), filter_empty=True
    ),
    mapper=L(VideoDatasetMapper)(
        is_train=True,
        augmentations=[
            # mmcv's size rounding and cv2 resampling (INPUT.RESIZE_STYLE "mmcv")
            L(MMCVResizeShortestEdge)(
                short_edge_length=(600,), max_size=1000, sample_style="choice"
            ),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="RGB",
        train_num_refs=2,
        train_frame_range=9,
        train_sampler="bilateral_uniform",
    ),
    total_batch_size=8,
    num_workers=4,
)

dataloader.test = L(build_video_test_loader)(
    dataset_name="imagenet_vid_val",
    mapper=L(VideoDatasetMapper)(
        is_train=False,
        augmentations=[
            L(MMCVResizeShortestEdge)(short_edge_length=600, max_size=1000, sample_style="choice")
        ],
        image_format="${...train.mapper.image_format}",
        # the loader supplies the references the model's sampler names
        test_ref_sampler="${model.test_ref_sampler}",
    ),
    num_workers=4,
)

dataloader.evaluator = L(VIDEvaluator)(
    dataset_name="${..test.dataset_name}",
    output_dir="${train.output_dir}/inference",
    motion_iou_range=10,
    box_convention="devkit",
)
