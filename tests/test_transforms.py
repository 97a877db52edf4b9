"""mmcv-style resize: sizes as mmcv's imrescale, cv2 pixels, boxes scaled consistently."""

import cv2
import numpy as np
import pytest
from detectron2.config import get_cfg
from detectron2.data import transforms as T

from selsa_d2 import add_selsa_config
from selsa_d2.data.transforms import MMCVResizeShortestEdge, build_video_augmentation


def _mmcv_size(w, h, short=600, long=1000):
    # mmcv.imrescale: scale = min(long / max(h, w), short / min(h, w)); int(x * scale + 0.5)
    scale = min(long / max(h, w), short / min(h, w))
    return int(w * scale + 0.5), int(h * scale + 0.5)


@pytest.mark.parametrize("w,h", [(1280, 720), (500, 375), (1920, 1080), (480, 640), (352, 288)])
def test_mmcv_sizes(w, h):
    img = np.zeros((h, w, 3), np.uint8)
    tfm = MMCVResizeShortestEdge((600,), 1000, "choice").get_transform(img)
    assert (tfm.new_w, tfm.new_h) == _mmcv_size(w, h)


def test_1280x720_differs_from_detectron2_rounding():
    img = np.zeros((720, 1280, 3), np.uint8)
    ours = MMCVResizeShortestEdge((600,), 1000, "choice").get_transform(img)
    d2 = T.ResizeShortestEdge((600,), 1000, "choice").get_transform(img)
    assert (ours.new_h, ours.new_w) == (563, 1000)
    assert (d2.new_h, d2.new_w) == (562, 1000)


def test_pixels_are_cv2_bilinear_and_boxes_scale():
    rng = np.random.RandomState(0)
    img = rng.randint(0, 255, (90, 160, 3), dtype=np.uint8)
    tfm = MMCVResizeShortestEdge((60,), 1000, "choice").get_transform(img)
    np.testing.assert_array_equal(
        tfm.apply_image(img),
        cv2.resize(img, (tfm.new_w, tfm.new_h), interpolation=cv2.INTER_LINEAR),
    )
    box = np.array([[10.0, 20.0, 50.0, 80.0]])
    sx, sy = tfm.new_w / 160, tfm.new_h / 90
    np.testing.assert_allclose(
        tfm.apply_box(box), [[10 * sx, 20 * sy, 50 * sx, 80 * sy]], rtol=1e-6
    )


def test_build_video_augmentation_styles():
    cfg = get_cfg()
    add_selsa_config(cfg)
    augs = build_video_augmentation(cfg, is_train=True)
    assert type(augs[0]) is T.ResizeShortestEdge and isinstance(augs[1], T.RandomFlip)
    cfg.INPUT.RESIZE_STYLE = "mmcv"
    augs = build_video_augmentation(cfg, is_train=False)
    assert isinstance(augs[0], MMCVResizeShortestEdge) and len(augs) == 1
    assert augs[0].short_edge_length == (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST)
    cfg.INPUT.RESIZE_STYLE = "bicubic"
    with pytest.raises(ValueError, match="RESIZE_STYLE"):
        build_video_augmentation(cfg, is_train=False)


def test_video_predictor_uses_the_configured_resize(tmp_path):
    from tiny_model import tiny_selsa_cfg

    from selsa_d2.predictor import VideoPredictor

    cfg = tiny_selsa_cfg(
        INPUT__RESIZE_STYLE="mmcv",
        INPUT__MIN_SIZE_TEST=60,
        INPUT__MAX_SIZE_TEST=1000,
        TEST__ALLOW_MISSING_WEIGHTS=True,
    )  # only the resize is tested
    predictor = VideoPredictor(cfg)
    frame = np.random.RandomState(0).randint(0, 255, (90, 160, 3), dtype=np.uint8)
    inp = predictor.prepare(frame, video_id=0, frame_id=0, video_length=1)
    expected = cv2.resize(
        np.ascontiguousarray(frame[:, :, ::-1]), (107, 60), interpolation=cv2.INTER_LINEAR
    )
    np.testing.assert_array_equal(inp["image"].numpy().transpose(1, 2, 0), expected)
