"""mmcv-compatible resizing, so converted mmtracking models see the pixels they were trained on.

Detectron2's ``ResizeShortestEdge`` differs from mmcv's ``imrescale`` in two ways that change
outputs: it rounds the target size differently (1280x720 -> 1000x562 instead of mmcv's 1000x563)
and it resizes uint8 images with PIL, whose bilinear filter antialiases when downscaling, where
mmcv uses cv2's ``INTER_LINEAR``. ``INPUT.RESIZE_STYLE: "mmcv"`` selects the variant below.
"""

import cv2
import numpy as np
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

RESIZE_STYLES = ("detectron2", "mmcv")


class CV2ResizeTransform(T.ResizeTransform):
    """``ResizeTransform`` whose image resampling is cv2 bilinear (mmcv's ``imresize``)."""

    def apply_image(self, img: np.ndarray, interp=None) -> np.ndarray:
        assert img.shape[:2] == (self.h, self.w), (
            f"expected an image of {(self.h, self.w)}, got {img.shape[:2]}"
        )
        out = cv2.resize(img, (self.new_w, self.new_h), interpolation=cv2.INTER_LINEAR)
        return out[..., None] if img.ndim == 3 and out.ndim == 2 else out


class MMCVResizeShortestEdge(T.ResizeShortestEdge):
    """Resize keeping the aspect ratio as mmcv's ``imrescale``: scale = min(S / short, max / long),
    new side = int(side * scale + 0.5), cv2 bilinear."""

    def get_transform(self, image):
        h, w = image.shape[:2]
        if self.is_range:
            size = np.random.randint(self.short_edge_length[0], self.short_edge_length[1] + 1)
        else:
            size = np.random.choice(self.short_edge_length)
        if size == 0:
            return T.NoOpTransform()
        scale = min(size / min(h, w), self.max_size / max(h, w))
        return CV2ResizeTransform(h, w, int(h * scale + 0.5), int(w * scale + 0.5))


def build_video_augmentation(cfg, is_train: bool) -> list[T.Augmentation]:
    """Detectron2's resize + flip augmentation, with the resize following INPUT.RESIZE_STYLE."""
    style = cfg.INPUT.RESIZE_STYLE
    if style not in RESIZE_STYLES:
        raise ValueError(f"INPUT.RESIZE_STYLE must be one of {RESIZE_STYLES}, got {style!r}")
    augs = utils.build_augmentation(cfg, is_train)
    if style == "mmcv":
        resize = augs[0]
        augs[0] = MMCVResizeShortestEdge(
            resize.short_edge_length, resize.max_size, resize.sample_style
        )
    return augs
