"""Video train/test loaders, dataset sampling weights and the whole-video inference sampler."""

import itertools
import os
import random
import uuid

import cv2
import numpy as np
import pytest
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from selsa_d2.config import add_selsa_config
from selsa_d2.data.build import (
    VideoInferenceSampler,
    build_video_test_loader,
    build_video_train_loader,
    dataset_repeat_factors,
    get_video_train_dataset_and_sampler,
)
from selsa_d2.data.frame_index import register_frame_index, unregister_frame_index


def _frames(root, name, video_id, n, w=40, h=32):
    out = []
    for f in range(n):
        path = os.path.join(root, f"{name}_{video_id}_{f}.jpg")
        img = np.full((h, w, 3), 20 * f + 10 * video_id, np.uint8)
        img[4:20, 2 + 2 * f : 18 + 2 * f] = 255
        cv2.imwrite(path, img)
        out.append(
            {
                "file_name": path,
                "height": h,
                "width": w,
                "image_id": video_id * 100 + f,
                "video_id": video_id,
                "frame_id": f,
                "video_length": n,
                "video_name": f"{name}/{video_id}",
                "dataset_name": name,
                "annotations": [
                    {
                        "bbox": [2.0 + 2 * f, 4.0, 18.0 + 2 * f, 20.0],
                        "bbox_mode": BoxMode.XYXY_ABS,
                        "category_id": video_id % 2,
                        "instance_id": 0,
                        "occluded": False,
                        "generated": False,
                        "iscrowd": 0,
                    }
                ],
            }
        )
    return out


@pytest.fixture
def register(tmp_path):
    """register(video_lengths, shuffle=False) -> dataset name; key frames = every frame."""
    names = []

    def _register(lengths, shuffle=False):
        name = f"selsa_test_loaders_{uuid.uuid4().hex[:8]}"
        frames = [
            fr for vid, n in enumerate(lengths) for fr in _frames(str(tmp_path), name, vid, n)
        ]
        keys = list(frames)
        if shuffle:
            random.Random(0).shuffle(keys)
        DatasetCatalog.register(name, lambda: [dict(k) for k in keys])
        MetadataCatalog.get(name).set(thing_classes=["a", "b"])
        register_frame_index(name, lambda: frames)
        names.append(name)
        return name

    yield _register
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
        unregister_frame_index(name)


def _cfg(train=(), **video):
    cfg = add_selsa_config(get_cfg())
    cfg.DATASETS.TRAIN = tuple(train)
    cfg.INPUT.MIN_SIZE_TRAIN = (24,)
    cfg.INPUT.MIN_SIZE_TEST = 24
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SEED = 0
    for k, v in video.items():
        cfg.INPUT.VIDEO[k] = v
    return cfg


# ---------------------------------------------------------------- training
def test_train_loader_yields_batches_with_refs(register):
    vid, det = register([4, 5]), register([1, 1, 1])
    cfg = _cfg([vid, det])
    loader = build_video_train_loader(cfg)
    for batch in itertools.islice(iter(loader), 4):
        assert len(batch) == 2
        for d in batch:
            assert d["image"].shape == (3, 24, 30) and len(d["instances"]) == 1
            # 2 references; 1 for the first and last frame of a video (mmtracking's bilateral sampling)
            at_end = d["video_length"] > 1 and d["frame_id"] in (0, d["video_length"] - 1)
            assert len(d["ref_frames"]) == (1 if at_end else 2)
            for r in d["ref_frames"]:
                assert r["image"].shape == d["image"].shape and r["video_id"] == d["video_id"]
                if d["video_length"] > 1:
                    assert r["frame_id"] != d["frame_id"]
                else:
                    assert r["file_name"] == d["file_name"]
    dataset, sampler = get_video_train_dataset_and_sampler(cfg)
    assert sampler is None and len(dataset) == 12  # plain concatenation


def test_sampling_weights_proportions(register):
    vid, det = register([4, 4]), register([1, 1])  # 8 VID key frames, 2 DET images
    cfg = _cfg([vid, det])
    cfg.DATASETS.TRAIN_SAMPLING_WEIGHTS = (1.0, 3.0)
    dataset, sampler = get_video_train_dataset_and_sampler(cfg)
    assert [d["dataset_name"] for d in dataset] == [vid] * 8 + [det] * 2
    idx = list(itertools.islice(iter(sampler), 4000))
    det_share = np.mean([dataset[i]["dataset_name"] == det for i in idx])
    assert abs(det_share - 0.75) < 0.03, det_share  # plain concatenation would give 0.2
    counts = np.bincount(idx, minlength=10)
    assert counts[:8].min() > 0 and abs(counts[8] - counts[9]) < 0.15 * counts[8:].sum()


def test_zero_weight_dataset_never_drawn(register):
    vid, det = register([4]), register([1, 1])
    cfg = _cfg([vid, det])
    cfg.DATASETS.TRAIN_SAMPLING_WEIGHTS = (0.0, 1.0)
    for batch in itertools.islice(iter(build_video_train_loader(cfg)), 3):
        assert all(d["dataset_name"] == det and d["video_length"] == 1 for d in batch)


def test_repeat_factors_and_bad_weights(register):
    f = dataset_repeat_factors([8, 2], [1, 3])
    # a VID key frame: 1/4 of 10 draws over 8 frames; a DET image: 3/4 of 10 over 2
    np.testing.assert_allclose(f.numpy(), [0.3125] * 8 + [3.75] * 2, rtol=1e-6)
    with pytest.raises(ValueError):
        dataset_repeat_factors([8, 2], [-1, 3])
    vid, det = register([3]), register([1])
    cfg = _cfg([vid, det])
    cfg.DATASETS.TRAIN_SAMPLING_WEIGHTS = (1.0,)
    with pytest.raises(ValueError, match="TRAIN_SAMPLING_WEIGHTS has 1 entries"):
        get_video_train_dataset_and_sampler(cfg)
    cfg.DATASETS.TRAIN_SAMPLING_WEIGHTS = (1.0, 1.0)
    cfg.DATALOADER.SAMPLER_TRAIN = "RepeatFactorTrainingSampler"
    with pytest.raises(ValueError, match="SAMPLER_TRAIN"):
        get_video_train_dataset_and_sampler(cfg)


# ---------------------------------------------------------------- test
@pytest.mark.parametrize("num_workers", [0, 2])
def test_test_loader_frames_in_order_with_supplied_refs(register, num_workers):
    name = register([3, 1, 4], shuffle=True)
    cfg = _cfg(TEST_NUM_REFS=2)  # adaptive stride with 2 refs: first and last frame
    cfg.DATALOADER.NUM_WORKERS = num_workers
    loader = build_video_test_loader(cfg, name)
    items = list(loader)
    assert all(len(batch) == 1 for batch in items)
    outs = [b[0] for b in items]
    assert [(d["video_id"], d["frame_id"]) for d in outs] == [(0, 0), (0, 1), (0, 2), (1, 0)] + [
        (2, f) for f in range(4)
    ]
    supplied = [[r["frame_id"] for r in d["ref_frames"]] for d in outs]
    assert supplied == [[2], [], [], [], [3], [], [], []]
    assert all("instances" not in d and d["image"].shape == (3, 24, 30) for d in outs)


def _split(video_lengths, world_size):
    ids = [v for v, n in enumerate(video_lengths) for _ in range(n)]
    return ids, [
        VideoInferenceSampler._get_local_indices(ids, world_size, r) for r in range(world_size)
    ]


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_inference_sampler_splits_whole_videos(world_size):
    lengths = [5, 1, 7, 3, 2, 4, 6]
    ids, shards = _split(lengths, world_size)
    assert sorted(i for s in shards for i in s) == list(range(len(ids)))  # each item exactly once
    owners = {}
    for rank, shard in enumerate(shards):
        assert shard == sorted(shard) and shard  # frames in order, nobody idle
        for v in {ids[i] for i in shard}:
            assert v not in owners  # a video never spans two ranks
            owners[v] = rank
            assert [i for i in shard if ids[i] == v] == [i for i, x in enumerate(ids) if x == v]
    loads = [len(s) for s in shards]
    assert max(loads) - min(loads) <= max(lengths)
    if world_size == 3:
        assert loads == [10, 9, 9]
    sampler = VideoInferenceSampler(ids, rank=world_size - 1, world_size=world_size)
    assert list(sampler) == shards[-1] and len(sampler) == len(shards[-1])


def test_inference_sampler_more_ranks_than_videos_and_bad_order():
    ids, shards = _split([2, 3], 4)
    assert shards == [[2, 3, 4], [0, 1], [], []]
    assert list(VideoInferenceSampler(ids)) == list(range(5))  # single process: everything
    with pytest.raises(ValueError, match="video 0"):
        VideoInferenceSampler._get_local_indices([0, 0, 1, 0], 2, 0)
