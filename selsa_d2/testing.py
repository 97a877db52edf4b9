"""Helpers shared by the tests, the benchmarks and the tools: random-weight models, synthetic
videos and their model inputs.

Nothing here is needed to train or run a model; it builds inputs and weights for checks that must
not download anything.
"""

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.layers import FrozenBatchNorm2d

from .modeling.norm import FrozenStatsBatchNorm2d

__all__ = [
    "randomize_frozen_bn",
    "share_weights",
    "SyntheticVideo",
    "synthetic_video",
    "frame_input",
    "with_references",
    "video_inputs",
    "random_video_detections",
]


# ---------------------------------------------------------------------- random weights
def randomize_frozen_bn(model: torch.nn.Module, seed: int = 0):
    """FrozenBN (and FrozenStatsBN) layers get a non-trivial scale and shift, so that random
    networks produce varied features and the RPN a full set of proposals."""
    g = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():
        if isinstance(m, (FrozenBatchNorm2d, FrozenStatsBatchNorm2d)):
            n = m.weight.numel()
            with torch.no_grad():
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))


def share_weights(src: torch.nn.Module, dst: torch.nn.Module) -> list[str]:
    """Copy every parameter/buffer of ``src`` that ``dst`` has with the same name and shape
    (e.g. a SELSA model's backbone, RPN, fc1/fc2 and predictor into a single-frame Faster R-CNN,
    so that both see identical proposals). Returns the names of ``dst`` that were not copied."""
    src_state = src.state_dict()
    dst_state = dst.state_dict()
    copied = {
        k: v for k, v in src_state.items() if k in dst_state and dst_state[k].shape == v.shape
    }
    dst.load_state_dict(copied, strict=False)
    return sorted(set(dst_state) - set(copied))


# ---------------------------------------------------------------------- synthetic frames
class SyntheticVideo:
    """Deterministic frames: a textured background (smooth, or per-pixel noise) with moving
    coloured rectangles and per-frame noise. Frames are generated on demand, so a long video
    costs no memory beyond the frames a caller holds on to.

    Args:
        height, width: frame size.
        seed: background and noise depend on it.
        smooth: bilinearly upsampled coarse noise as background, three rectangles, any frame on
            its own (the benchmarks' frames); False: per-pixel noise in 0..80, two rectangles,
            frames generated in order (the tests' frames, :func:`synthetic_video`).
    """

    def __init__(self, height: int, width: int, seed: int = 0, smooth: bool = True):
        self.height, self.width, self.seed, self.smooth = height, width, seed, smooth
        if smooth:
            rng = np.random.RandomState(seed)
            coarse = torch.from_numpy(
                rng.randint(0, 255, size=(1, 3, max(2, height // 16), max(2, width // 16)))
            )
            self._background = F.interpolate(coarse.float(), size=(height, width), mode="bilinear")[
                0
            ]

    def frame(self, t: int) -> torch.Tensor:
        """Frame ``t`` as an RGB uint8 tensor [3, H, W] (smooth videos)."""
        if not self.smooth:
            raise ValueError(
                "SyntheticVideo.frame: per-pixel-noise videos are generated in order, use bgr_frames"
            )
        h, w = self.height, self.width
        img = self._background.clone()
        g = torch.Generator().manual_seed(self.seed * 100003 + t)
        img += torch.randint(-12, 12, (3, h, w), generator=g).float()
        for k, (color, speed) in enumerate(
            (((40, 200, 90), 3), ((220, 60, 30), 2), ((90, 90, 230), 5))
        ):
            bh, bw = max(4, h // (4 + k)), max(4, w // (5 + k))
            y0 = (h // 8 + k * h // 4 + speed * t) % max(1, h - bh)
            x0 = (w // 10 + speed * 2 * t) % max(1, w - bw)
            img[:, y0 : y0 + bh, x0 : x0 + bw] = torch.tensor(color, dtype=torch.float32)[
                :, None, None
            ]
        return img.clamp_(0, 255).to(torch.uint8)

    def bgr_frames(self, num_frames: int) -> list[np.ndarray]:
        """The first ``num_frames`` frames as BGR uint8 arrays [H, W, 3] (as ``cv2.imread``)."""
        if self.smooth:
            return [
                np.ascontiguousarray(self.frame(t).permute(1, 2, 0).numpy()[:, :, ::-1])
                for t in range(num_frames)
            ]
        h, w = self.height, self.width
        rng = np.random.RandomState(self.seed)
        background = rng.randint(0, 80, size=(h, w, 3)).astype(np.uint8)
        frames = []
        for t in range(num_frames):
            img = background.copy()
            x0 = (5 + 3 * t) % (w - 30)
            img[20:50, x0 : x0 + 30] = (40, 200, 90)
            y0 = (10 + 2 * t) % (h - 24)
            img[y0 : y0 + 24, 60:90] = (220, 60, 30)
            img = np.clip(img.astype(int) + rng.randint(-10, 10, size=img.shape), 0, 255).astype(
                np.uint8
            )
            frames.append(img)
        return frames


def synthetic_video(
    num_frames: int = 10, height: int = 80, width: int = 112, seed: int = 0
) -> list[np.ndarray]:
    """The tests' small BGR frames [H, W, 3]: per-pixel noise with two moving rectangles."""
    return SyntheticVideo(height, width, seed, smooth=False).bgr_frames(num_frames)


# ---------------------------------------------------------------------- model inputs
def frame_input(
    image: np.ndarray | torch.Tensor,
    video_id,
    frame_id: int,
    video_length: int,
    fmt: str = "RGB",
    height: int | None = None,
    width: int | None = None,
) -> dict:
    """Test-mapper-format input of one frame, without ``ref_frames``, no resize.

    ``image``: a BGR array [H, W, 3] (converted to ``fmt``) or a tensor [3, H, W] already in the
    model's format. ``height``/``width``: the original size detections are rescaled to
    (default: the image's).
    """
    if isinstance(image, np.ndarray):
        img = image[:, :, ::-1] if fmt == "RGB" else image
        image = torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1)))
    return {
        "image": image,
        "height": image.shape[1] if height is None else height,
        "width": image.shape[2] if width is None else width,
        "video_id": video_id,
        "frame_id": frame_id,
        "video_length": video_length,
    }


def with_references(get_input: Callable[[int], dict], t: int, length: int, sampler) -> dict:
    """Key frame ``t``'s input (a copy of ``get_input(t)``) with the future references the
    sampler names (``sampler.frames_to_supply(t, length)``) as ``ref_frames``: what
    :class:`~selsa_d2.modeling.VideoInferenceEngine` expects with each key frame."""
    d = dict(get_input(t))
    d["ref_frames"] = [get_input(r) for r in sampler.frames_to_supply(t, length)]
    return d


def video_inputs(frames: Sequence[np.ndarray], sampler, video_id=0, fmt: str = "RGB") -> list[dict]:
    """Per key frame of BGR ``frames``, its input with its future references (see
    :func:`with_references`)."""
    n = len(frames)
    per_frame = [frame_input(f, video_id, i, n, fmt) for i, f in enumerate(frames)]
    return [with_references(per_frame.__getitem__, t, n, sampler) for t in range(n)]


# ---------------------------------------------------------------------- detections
def random_video_detections(
    rng: np.random.Generator,
    num_frames: int,
    boxes_per_frame: int,
    num_classes: int,
    num_objects: int = 4,
    clutter: float = 0.3,
    image_size: float = 600.0,
    quantize: float | None = None,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Detector-like candidates over a video (before per-frame NMS): ``num_objects`` boxes
    moving smoothly, each frame's boxes jittered copies of them (a fraction ``clutter`` at random
    places), classes mostly the object's own, scores in (0, 1].

    Returns per frame (boxes [N, 4] xyxy float32, scores [N] float32, classes [N] int64), N =
    ``boxes_per_frame``. ``quantize``: round boxes and scores to this step (ties in IoU and
    scores).
    """
    size = rng.uniform(0.1, 0.35, size=(num_objects, 2)) * image_size
    pos = rng.uniform(0, image_size, size=(num_objects, 2)) - size / 2
    vel = rng.normal(0, 0.01 * image_size, size=(num_objects, 2))
    obj_class = rng.integers(0, num_classes, size=num_objects)
    frames = []
    for _ in range(num_frames):
        pos = pos + vel
        which = rng.integers(0, num_objects, size=boxes_per_frame)
        centre = pos[which] + size[which] / 2
        wh = size[which] * rng.uniform(0.7, 1.3, size=(boxes_per_frame, 2))
        centre = centre + rng.normal(0, 0.1, size=(boxes_per_frame, 2)) * size[which]
        stray = rng.random(boxes_per_frame) < clutter
        centre[stray] = rng.uniform(0, image_size, size=(int(stray.sum()), 2))
        boxes = np.concatenate([centre - wh / 2, centre + wh / 2], axis=1)
        own = (rng.random(boxes_per_frame) < 0.5) & ~stray
        classes = np.where(own, obj_class[which], rng.integers(0, num_classes, boxes_per_frame))
        scores = np.where(own, rng.beta(4, 2, boxes_per_frame), rng.beta(1, 8, boxes_per_frame))
        scores = np.clip(scores, 2e-3, 1.0)
        if quantize:
            boxes = np.round(boxes / quantize) * quantize
            scores = np.maximum(np.round(scores / quantize) * quantize, quantize)
        frames.append(
            (boxes.astype(np.float32), scores.astype(np.float32), classes.astype(np.int64))
        )
    return frames
