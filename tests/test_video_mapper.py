"""VideoDatasetMapper: reference frames, shared augmentation, DET images, bad input."""

import os
import uuid

import cv2
import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import transforms as T
from detectron2.structures import BoxMode

from selsa_d2.config import add_selsa_config
from selsa_d2.data.frame_index import register_frame_index, unregister_frame_index
from selsa_d2.data.sampling import (
    TestReferenceSampler as RefSampler,
)  # alias: pytest would collect "Test*"
from selsa_d2.data.video_mapper import VideoDatasetMapper

W, H = 64, 48


def write_frame(path, box, size=(W, H)):
    """A black frame with a white rectangle exactly covering ``box`` (x1, y1, x2, y2 ints)."""
    img = np.zeros((size[1], size[0], 3), np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = 255
    cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 100])


def make_video(
    root, dataset_name, video_id, n_frames, start=(4, 10), box_wh=(14, 18), dx=3, size=(W, H)
):
    """Frame dicts of a video whose object moves right by ``dx`` pixels per frame."""
    vdir = os.path.join(root, f"v{video_id}")
    os.makedirs(vdir, exist_ok=True)
    frames = []
    for f in range(n_frames):
        x1, y1 = start[0] + dx * f, start[1]
        box = [x1, y1, x1 + box_wh[0], y1 + box_wh[1]]
        path = os.path.join(vdir, f"{f:06d}.JPEG")
        write_frame(path, box, size)
        frames.append(
            {
                "file_name": path,
                "height": size[1],
                "width": size[0],
                "image_id": video_id * 1000 + f,
                "video_id": video_id,
                "frame_id": f,
                "video_length": n_frames,
                "video_name": f"v{video_id}",
                "dataset_name": dataset_name,
                "degradations": ["blur"] if f == 1 else [],
                "annotations": [
                    {
                        "bbox": [float(v) for v in box],
                        "bbox_mode": BoxMode.XYXY_ABS,
                        "category_id": 1,
                        "instance_id": 0,
                        "occluded": False,
                        "generated": False,
                        "iscrowd": 0,
                    }
                ],
            }
        )
    return frames


@pytest.fixture
def video_dataset(tmp_path):
    """A registered frame index with video 0 (6 frames) and a DET-style one-frame video 1."""
    name = f"selsa_test_mapper_{uuid.uuid4().hex[:8]}"
    frames = make_video(str(tmp_path), name, 0, 6) + make_video(
        str(tmp_path), name, 1, 1, start=(30, 5)
    )
    register_frame_index(name, lambda: frames)
    yield name, frames
    unregister_frame_index(name)


def pixel_box(image):
    """[x1, y1, x2, y2] of the bright pixels of a CHW uint8 tensor."""
    mask = image.numpy().max(axis=0) > 127
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def gt_box(frame_out):
    boxes = frame_out["instances"].gt_boxes.tensor
    assert boxes.shape == (1, 4)
    return boxes[0].numpy()


def all_frames(out):
    return [out] + out["ref_frames"]


def train_mapper(augs, num_refs=2, frame_range=9):
    return VideoDatasetMapper(
        True,
        augmentations=augs,
        image_format="BGR",
        train_num_refs=num_refs,
        train_frame_range=frame_range,
    )


def test_from_config_train(video_dataset):
    _, frames = video_dataset
    cfg = add_selsa_config(get_cfg())
    cfg.INPUT.MIN_SIZE_TRAIN = (24,)
    cfg.INPUT.VIDEO.TRAIN_NUM_REFS = 3
    cfg.INPUT.VIDEO.TRAIN_FRAME_RANGE = 2
    mapper = VideoDatasetMapper(cfg, is_train=True)
    np.random.seed(0)
    out = mapper(frames[2])
    assert out["image"].dtype == torch.uint8 and out["image"].shape == (3, 24, 32)
    assert (out["height"], out["width"], out["frame_id"], out["video_id"]) == (H, W, 2, 0)
    assert "annotations" not in out and out["instances"].gt_classes.tolist() == [1]
    refs = out["ref_frames"]
    assert len(refs) == 3
    ids = [r["frame_id"] for r in refs]
    assert sum(i < 2 for i in ids) == 1 and all(i != 2 and 0 <= i <= 4 for i in ids)
    for r in refs:
        assert (
            r["image"].shape == (3, 24, 32) and r["file_name"] == frames[r["frame_id"]]["file_name"]
        )
        assert r["video_id"] == 0 and "ref_frames" not in r and len(r["instances"]) == 1
        assert r["degradations"] == (["blur"] if r["frame_id"] == 1 else [])
    assert "ref_frames" not in frames[2] and "annotations" in frames[2]  # input left untouched


def test_shared_random_resize(video_dataset):
    _, frames = video_dataset
    mapper = train_mapper(
        [T.ResizeShortestEdge((24, 36, 48, 72), 1000, "choice")], num_refs=3, frame_range=3
    )
    np.random.seed(1)
    shapes = set()
    for i in range(16):
        out = mapper(frames[i % 6])
        shape = out["image"].shape
        shapes.add(tuple(shape))
        scale = shape[1] / H
        for fr in all_frames(out):
            assert fr["image"].shape == shape  # same size chosen for every frame of the sample
            orig = np.array(frames[fr["frame_id"]]["annotations"][0]["bbox"], np.float32)
            np.testing.assert_allclose(gt_box(fr), orig * scale, atol=1e-4)
            np.testing.assert_allclose(pixel_box(fr["image"]), gt_box(fr), atol=1.5)
    assert len(shapes) >= 3  # the size really is random, yet shared


def test_forced_flip_moves_ref_boxes_with_pixels(video_dataset):
    _, frames = video_dataset
    mapper = train_mapper([T.ResizeShortestEdge(36, 1000), T.RandomFlip(prob=1.0)])
    np.random.seed(0)
    out = mapper(frames[3])
    scale, new_w = 36 / H, out["image"].shape[2]
    assert new_w == 48
    for fr in all_frames(out):
        x1, y1, x2, y2 = np.array(frames[fr["frame_id"]]["annotations"][0]["bbox"]) * scale
        expected = np.array([new_w - x2, y1, new_w - x1, y2], np.float32)
        np.testing.assert_allclose(gt_box(fr), expected, atol=1e-4)
        np.testing.assert_allclose(pixel_box(fr["image"]), expected, atol=1.5)
    # the objects were left of centre; flipped they are right of centre
    assert all(gt_box(fr)[0] > new_w / 2 - 7 for fr in all_frames(out))


def test_random_flip_decided_once_per_sample(video_dataset):
    _, frames = video_dataset
    mapper = train_mapper([T.ResizeShortestEdge(48, 1000), T.RandomFlip(prob=0.5)], num_refs=4)
    np.random.seed(3)
    decisions = []
    for i in range(24):
        out = mapper(frames[i % 6])
        flipped = []
        for fr in all_frames(out):
            orig = np.array(frames[fr["frame_id"]]["annotations"][0]["bbox"], np.float32)
            mirrored = np.array([W - orig[2], orig[1], W - orig[0], orig[3]], np.float32)
            is_flipped = np.allclose(gt_box(fr), mirrored, atol=1e-4)
            assert is_flipped or np.allclose(gt_box(fr), orig, atol=1e-4)
            np.testing.assert_allclose(pixel_box(fr["image"]), gt_box(fr), atol=1.5)
            flipped.append(is_flipped)
        assert len(set(flipped)) == 1  # key and all refs: same decision
        decisions.append(flipped[0])
    assert 0 < sum(decisions) < len(decisions)


def test_det_one_frame_video_repeats_key(video_dataset):
    _, frames = video_dataset
    det = dict(frames[6])
    det["dataset_name"] = "not_registered_anywhere"  # the key itself needs no frame index
    mapper = train_mapper([T.ResizeShortestEdge(24, 1000), T.RandomFlip(prob=1.0)], num_refs=2)
    out = mapper(det)
    assert [r["frame_id"] for r in out["ref_frames"]] == [0, 0]
    for r in out["ref_frames"]:
        assert torch.equal(r["image"], out["image"]) and r["file_name"] == det["file_name"]
        np.testing.assert_allclose(gt_box(r), gt_box(out))
    np.testing.assert_allclose(pixel_box(out["image"]), gt_box(out), atol=1.5)


def test_test_mode_supplies_future_refs(video_dataset):
    _, frames = video_dataset
    cfg = add_selsa_config(get_cfg())
    cfg.INPUT.MIN_SIZE_TEST = 24
    cfg.INPUT.VIDEO.TEST_NUM_REFS = 3
    mapper = VideoDatasetMapper(cfg, is_train=False)
    # 6 frames, 3 refs, adaptive stride: refs [0, 2, 5] for every key (round(2.5) == 2)
    supplied = []
    for f in range(6):
        out = mapper(frames[f])
        assert out["frame_id"] == f and out["image"].shape == (3, 24, 32)
        assert "instances" not in out and "annotations" not in out
        for r in out["ref_frames"]:
            assert (
                r["image"].shape == (3, 24, 32) and "instances" not in r and "annotations" not in r
            )
        supplied.append([r["frame_id"] for r in out["ref_frames"]])
    assert supplied == [[2, 5], [], [], [], [], []]

    window = VideoDatasetMapper(
        False,
        augmentations=[T.ResizeShortestEdge(24, 1000)],
        image_format="RGB",
        test_ref_sampler=RefSampler("offline", "fixed_window", num_refs=2),
        keep_test_annotations=True,
    )
    outs = [window(frames[f]) for f in range(6)]
    assert [[r["frame_id"] for r in o["ref_frames"]] for o in outs] == [[1], [2], [3], [4], [5], []]
    assert all(len(o["instances"]) == 1 and "instances" not in o["ref_frames"][0] for o in outs[:5])


def test_missing_ref_frame_names_file(video_dataset):
    _, frames = video_dataset
    missing = frames[1]["file_name"]
    os.remove(missing)
    mapper = train_mapper([T.ResizeShortestEdge(24, 1000)], num_refs=2, frame_range=1)
    with pytest.raises(FileNotFoundError, match=missing):
        mapper(frames[0])  # its only neighbour is frame 1
    with pytest.raises(FileNotFoundError, match=missing):
        mapper(frames[1])  # missing key frame


def test_unreadable_frame_names_file(video_dataset):
    _, frames = video_dataset
    bad = frames[1]["file_name"]
    with open(bad, "wb") as f:
        f.write(b"this is not a jpeg")
    mapper = train_mapper([T.ResizeShortestEdge(24, 1000)], num_refs=2, frame_range=1)
    with pytest.raises(ValueError, match=f"Cannot read frame file {bad}") as e:
        mapper(frames[0])
    assert e.value.__cause__ is not None


def test_ref_size_mismatch_names_both_files(video_dataset):
    _, frames = video_dataset
    odd = frames[1]
    write_frame(odd["file_name"], [0, 0, 5, 5], size=(40, 30))
    odd["width"], odd["height"] = 40, 30  # the annotation agrees with its file, not with the video
    mapper = train_mapper([T.ResizeShortestEdge(24, 1000)], num_refs=2, frame_range=1)
    with pytest.raises(ValueError) as e:
        mapper(frames[0])
    msg = str(e.value)
    assert odd["file_name"] in msg and frames[0]["file_name"] in msg and "40x30" in msg


def test_annotation_size_mismatch_names_file(video_dataset):
    _, frames = video_dataset
    frames[1]["width"] = 100
    mapper = train_mapper([T.ResizeShortestEdge(24, 1000)], num_refs=2, frame_range=1)
    with pytest.raises(ValueError, match=frames[1]["file_name"]):
        mapper(frames[0])


def test_refs_need_dataset_name(video_dataset):
    _, frames = video_dataset
    key = {k: v for k, v in frames[2].items() if k != "dataset_name"}
    mapper = train_mapper([T.ResizeShortestEdge(24, 1000)])
    with pytest.raises(ValueError, match="dataset_name"):
        mapper(key)
