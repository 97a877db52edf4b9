"""Reading a frame file as the 8-bit image the models take, whatever its bit depth.

Detectron2's :func:`~detectron2.data.detection_utils.read_image` converts a 16-bit greyscale PNG
(PIL mode ``I;16``) to RGB by clipping every value above 255: a real 16-bit frame becomes a white
image, and a model sees nothing in it, without any error. :func:`read_frame` scales such frames
to 8 bits (value / 257, the full 16-bit range onto 0..255) and otherwise is ``read_image``.
(16-bit colour PNGs are already reduced to 8 bits per channel by PIL.)
"""

import numpy as np
from detectron2.data.detection_utils import convert_PIL_to_numpy, read_image
from detectron2.utils.file_io import PathManager
from PIL import Image, ImageOps

__all__ = ["read_frame", "HIGH_BIT_DEPTH_MODES"]

# PIL modes of single-channel images with more than 8 bits per pixel
HIGH_BIT_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def read_frame(file_name: str, format: str | None = None) -> np.ndarray:
    """``read_image(file_name, format)``, with 16-bit (and 32-bit integer) greyscale images scaled
    to 8 bits instead of clipped. Returns ``[H, W, C]`` uint8 (``[H, W, 1]`` for format "L")."""
    with PathManager.open(file_name, "rb") as f:
        image = Image.open(f)
        if image.mode not in HIGH_BIT_DEPTH_MODES:
            image.close()
            return read_image(file_name, format=format)
        image = ImageOps.exif_transpose(image)
        values = np.asarray(image, dtype=np.float64)
    if image.mode == "I" and (values.min() < 0 or values.max() > 65535):
        raise ValueError(
            f"{file_name}: a 32-bit integer image with values outside 0..65535; "
            "convert it to 8 or 16 bits"
        )
    scaled = np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8)
    return convert_PIL_to_numpy(Image.fromarray(scaled), format)
