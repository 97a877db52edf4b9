"""COCO-VID json reader/writer, the converter round trip, and dataset registration."""

import json
import logging
import os

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from fixtures_ilsvrc import DET_1, TRAIN_A, VAL_A, make_ilsvrc_fixture, write_text
from repo_scripts import run_script

from selsa_d2.data import (
    get_frame_index,
    load_coco_vid_frames,
    load_coco_vid_json,
    register_vid_dataset,
    unregister_vid_dataset,
)
from selsa_d2.data.classes import IMAGENET_VID_CLASSES, IMAGENET_VID_WNIDS, read_classes_file
from selsa_d2.data.ilsvrc import load_ilsvrc_det, load_ilsvrc_vid_frames
from selsa_d2.synthetic import generate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V = (IMAGENET_VID_CLASSES, IMAGENET_VID_WNIDS)


@pytest.fixture
def root(tmp_path):
    return make_ilsvrc_fixture(str(tmp_path / "ILSVRC"))


@pytest.fixture
def converted(root, tmp_path):
    out = str(tmp_path / "ann")
    assert (
        run_script(
            "datasets/prepare_imagenet_vid.py", "--root", root, "--out", out, "--no-progress"
        ).returncode
        == 0
    )
    return out


def test_converter_writes_mmtracking_fields(root, converted):
    with open(os.path.join(converted, "imagenet_vid_train.json")) as f:
        d = json.load(f)
    assert d["categories"][0] == {"id": 1, "name": "airplane", "encode_name": "n02691156"}
    assert len(d["categories"]) == 30 and d["categories"][-1]["id"] == 30
    assert d["videos"][0] == {"id": 1, "name": TRAIN_A, "vid_train_frames": [1, 3]}
    assert d["images"][0] == {
        "file_name": TRAIN_A + "/000000.JPEG",
        "height": 48,
        "width": 64,
        "id": 1,
        "frame_id": 0,
        "video_id": 1,
        "is_vid_train_frame": False,
    }
    assert [im["is_vid_train_frame"] for im in d["images"]] == [
        False,
        True,
        False,
        True,
        True,
        False,
    ]
    assert d["images"][3]["degradations"] == ["blur", "noise"]
    assert d["annotations"][1] == {
        "id": 2,
        "video_id": 1,
        "image_id": 1,
        "category_id": 30,
        "instance_id": 5,
        "bbox": [30, 10, 30, 30],
        "area": 900,
        "iscrowd": 0,
        "occluded": True,
        "generated": False,
    }
    with open(os.path.join(converted, "imagenet_vid_val.json")) as f:
        val = json.load(f)
    assert not any(
        im["is_vid_train_frame"] for im in val["images"]
    )  # as mmtracking: val flags none
    with open(os.path.join(converted, "imagenet_det_30plus1cls.json")) as f:
        det = json.load(f)
    assert "videos" not in det and "video_id" not in det["images"][0]
    assert det["images"][0] == {
        "file_name": DET_1 + ".JPEG",
        "height": 48,
        "width": 64,
        "id": 1,
        "is_vid_train_frame": True,
    }
    assert det["annotations"][1] == {
        "id": 2,
        "image_id": 1,
        "category_id": 7,
        "bbox": [30, 8, 30, 32],
        "area": 960,
        "iscrowd": 0,
    }


def test_round_trip_equals_raw(root, converted):
    vid_root, det_root = os.path.join(root, "Data", "VID"), os.path.join(root, "Data", "DET")
    for split in ("train", "val"):
        raw, raw_keys = load_ilsvrc_vid_frames(root, split, *V, dataset_name="x")
        js, flagged = load_coco_vid_frames(
            os.path.join(converted, f"imagenet_vid_{split}.json"),
            vid_root,
            class_names=V[0],
            wnids=V[1],
            dataset_name="x",
        )
        assert js == raw
        assert flagged == (raw_keys if split == "train" else [])
    raw_det = load_ilsvrc_det(root, *V, dataset_name="x")
    js_det, flagged = load_coco_vid_frames(
        os.path.join(converted, "imagenet_det_30plus1cls.json"),
        det_root,
        class_names=V[0],
        wnids=V[1],
        dataset_name="x",
    )
    assert js_det == raw_det and flagged == [(1, 0), (2, 0)]
    # key frames: train = flagged frames; val (none flagged) = every frame
    keys = load_coco_vid_json(os.path.join(converted, "imagenet_vid_train.json"), vid_root)
    assert [(f["video_id"], f["frame_id"]) for f in keys] == [(1, 1), (1, 3), (2, 0)]
    assert len(load_coco_vid_json(os.path.join(converted, "imagenet_vid_val.json"), vid_root)) == 3


def test_reads_mmtracking_written_json(tmp_path, caplog):
    """Global 1-based instance ids, a DET file with 'other_categeries' and no video fields."""
    vid = {
        "categories": [
            {"id": i + 1, "name": n, "encode_name": w} for i, (n, w) in enumerate(zip(*V))
        ],
        "videos": [{"id": 1, "name": "val/v0"}, {"id": 2, "name": "val/v1"}],
        "images": [
            {
                "file_name": "val/v1/000000.JPEG",
                "height": 10,
                "width": 20,
                "id": 3,
                "frame_id": 0,
                "video_id": 2,
                "is_vid_train_frame": False,
            },
            {
                "file_name": "val/v0/000001.JPEG",
                "height": 10,
                "width": 20,
                "id": 2,
                "frame_id": 1,
                "video_id": 1,
                "is_vid_train_frame": False,
            },
            {
                "file_name": "val/v0/000000.JPEG",
                "height": 10,
                "width": 20,
                "id": 1,
                "frame_id": 0,
                "video_id": 1,
                "is_vid_train_frame": False,
            },
        ],
        "annotations": [
            {
                "id": 1,
                "video_id": 1,
                "image_id": 1,
                "category_id": 3,
                "instance_id": 7,
                "bbox": [1, 2, 3, 4],
                "area": 12,
                "iscrowd": False,
                "occluded": True,
                "generated": False,
            },
            {
                "id": 2,
                "video_id": 2,
                "image_id": 3,
                "category_id": 30,
                "instance_id": 8,
                "bbox": [15, 0, 10, 10],
                "area": 100,
                "iscrowd": False,
                "occluded": False,
                "generated": True,
            },
        ],
    }
    p = str(tmp_path / "vid.json")
    with open(p, "w") as f:
        json.dump(vid, f)
    frames = load_coco_vid_json(p, str(tmp_path / "img"), class_names=V[0], wnids=V[1])
    assert [
        (f["image_id"], f["video_id"], f["frame_id"], f["video_length"], f["video_name"])
        for f in frames
    ] == [(1, 1, 0, 2, "v0"), (2, 1, 1, 2, "v0"), (3, 2, 0, 1, "v1")]
    assert frames[0]["file_name"] == str(tmp_path / "img" / "val/v0/000000.JPEG")
    a = frames[0]["annotations"][0]
    assert (a["bbox"], a["category_id"], a["instance_id"], a["occluded"], a["generated"]) == (
        [1.0, 2.0, 4.0, 6.0],
        2,
        7,
        True,
        False,
    )
    # box clipped from x2=25 to the 20-pixel width
    assert frames[2]["annotations"][0]["bbox"] == [15.0, 0.0, 20.0, 10.0]

    det = {
        "categories": [
            {"id": i + 1, "name": n, "encode_name": w} for i, (n, w) in enumerate(zip(*V))
        ]
        + [{"id": 31, "name": "other_categeries", "encode_name": None}],
        "images": [
            {
                "file_name": "train/a.JPEG",
                "height": 10,
                "width": 20,
                "id": 1,
                "is_vid_train_frame": True,
            },
            {
                "file_name": "train/b.JPEG",
                "height": 10,
                "width": 20,
                "id": 2,
                "is_vid_train_frame": False,
            },
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 31,
                "bbox": [0, 0, 5, 5],
                "area": 25,
                "iscrowd": False,
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 9,
                "bbox": [1, 1, 5, 5],
                "area": 25,
                "iscrowd": False,
            },
            {
                "id": 3,
                "image_id": 2,
                "category_id": 1,
                "bbox": [1, 1, 5, 5],
                "area": 25,
                "iscrowd": False,
            },
        ],
    }
    p = str(tmp_path / "det.json")
    with open(p, "w") as f:
        json.dump(det, f)
    with caplog.at_level(logging.WARNING):
        keys = load_coco_vid_json(p, "/data/DET", class_names=V[0], wnids=V[1])
    assert "skipped 1 objects" in caplog.text
    assert len(keys) == 1  # only the is_vid_train_frame image
    f = keys[0]
    assert (f["video_id"], f["frame_id"], f["video_length"], f["video_name"]) == (
        1,
        0,
        1,
        "det/train/a",
    )
    assert [(a["category_id"], a["instance_id"]) for a in f["annotations"]] == [(8, 0)]


def test_json_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_coco_vid_json(str(tmp_path / "nope.json"), str(tmp_path))
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        load_coco_vid_json(str(p), str(tmp_path))
    p.write_text(
        json.dumps(
            {
                "categories": [{"id": 1, "name": "a"}],
                "videos": [{"id": 1, "name": "v"}],
                "images": [
                    {
                        "id": 1,
                        "file_name": "v/0.jpg",
                        "height": 5,
                        "width": 5,
                        "video_id": 1,
                        "frame_id": 1,
                    }
                ],
                "annotations": [],
            }
        )
    )
    with pytest.raises(ValueError, match=r"bad.json: video 1 has frame ids \[1\]"):
        load_coco_vid_json(str(p), str(tmp_path))


# ---------------------------------------------------------------- registration


@pytest.fixture
def names():
    registered = []
    yield registered
    for n in registered:
        unregister_vid_dataset(n)


def test_register_raw_and_json(root, converted, names):
    names += ["_t_raw_train", "_t_json_train", "_t_raw_det", "_t_json_val"]
    register_vid_dataset("_t_raw_train", raw_root=root, split="train")
    register_vid_dataset(
        "_t_json_train",
        json_file=os.path.join(converted, "imagenet_vid_train.json"),
        image_root=os.path.join(root, "Data", "VID"),
        class_names=V[0],
        wnids=V[1],
    )
    register_vid_dataset("_t_raw_det", raw_root=root, layout="det")
    register_vid_dataset(
        "_t_json_val",
        json_file=os.path.join(converted, "imagenet_vid_val.json"),
        image_root=os.path.join(root, "Data", "VID"),
    )
    for n in ("_t_raw_train", "_t_json_train"):
        keys = DatasetCatalog.get(n)
        assert [(f["video_id"], f["frame_id"]) for f in keys] == [(1, 1), (1, 3), (2, 0)]
        assert all(f["dataset_name"] == n for f in keys)
        index = get_frame_index(n)
        assert index.video_length(1) == 4 and index.video_length(2) == 2
        assert (
            index.frame(1, 0)["annotations"][1]["instance_id"] == 5
        )  # a non-key frame is available
        assert index.frame(1, 3)["file_name"].endswith(TRAIN_A + "/000003.JPEG")
        keys[0]["annotations"].clear()  # key frame dicts are copies: the index is unaffected
        assert DatasetCatalog.get(n)[0]["annotations"] == index.frame(1, 1)["annotations"] == []
        keys = DatasetCatalog.get(n)
        assert keys[1]["annotations"] == index.frame(1, 3)["annotations"] != []
        md = MetadataCatalog.get(n)
        assert md.thing_classes == IMAGENET_VID_CLASSES and md.wnids == IMAGENET_VID_WNIDS
        assert md.evaluator_type == "vid"
    assert MetadataCatalog.get("_t_json_train").json_file.endswith("imagenet_vid_train.json")
    assert MetadataCatalog.get("_t_raw_train").root == root
    det = DatasetCatalog.get("_t_raw_det")
    assert [(f["video_id"], f["video_length"]) for f in det] == [(1, 1), (2, 1)]
    assert get_frame_index("_t_raw_det").frame(2, 0)["video_name"].startswith("det/")
    # json without class arguments: classes from its categories (read lazily)
    assert MetadataCatalog.get("_t_json_val").thing_classes == IMAGENET_VID_CLASSES
    assert len(DatasetCatalog.get("_t_json_val")) == 3


def test_register_custom_classes_and_all_frames(root, names):
    names += ["_t_custom", "_t_custom_all"]
    write_text(os.path.join(root, "classes.txt"), "n02391049 zebra\nn02131653 bear\n")
    register_vid_dataset(
        "_t_custom", raw_root=root, split="train"
    )  # <root>/classes.txt is picked up
    register_vid_dataset(
        "_t_custom_all",
        raw_root=root,
        split="train",
        key_frames_only=False,
        class_names=["Z"],
        wnids=["n02391049"],
    )
    assert MetadataCatalog.get("_t_custom").thing_classes == ["zebra", "bear"]
    assert MetadataCatalog.get("_t_custom").as_dict()["wnids"] == ["n02391049", "n02131653"]
    ann = DatasetCatalog.get("_t_custom")[1]["annotations"]
    assert [(a["category_id"], a["bbox"]) for a in ann] == [(0, [50.0, 20.0, 64.0, 47.0])]
    assert len(DatasetCatalog.get("_t_custom_all")) == 6
    assert MetadataCatalog.get("_t_custom_all").thing_classes == ["Z"]


def test_registration_is_lazy_and_missing_files_are_clear(tmp_path, names):
    names += ["_t_missing_json", "_t_missing_raw"]
    missing = str(tmp_path / "nowhere" / "a.json")
    register_vid_dataset(
        "_t_missing_json", json_file=missing, image_root=str(tmp_path)
    )  # no error yet
    register_vid_dataset(
        "_t_missing_raw",
        raw_root=str(tmp_path / "raw"),
        split="val",
        classes_file=str(tmp_path / "raw" / "classes.txt"),
    )
    assert "_t_missing_json" in DatasetCatalog.list()
    with pytest.raises(FileNotFoundError, match="nowhere/a.json"):
        DatasetCatalog.get("_t_missing_json")
    with pytest.raises(FileNotFoundError, match="raw/Lists/VID_val_videos.txt"):
        get_frame_index("_t_missing_raw")
    with pytest.raises(FileNotFoundError, match="raw/classes.txt"):
        _ = MetadataCatalog.get("_t_missing_raw").thing_classes
    assert MetadataCatalog.get("_t_missing_raw").evaluator_type == "vid"


def test_register_relative_root(root, names, monkeypatch):
    names += ["_t_rel"]
    monkeypatch.chdir(os.path.dirname(root))
    register_vid_dataset("_t_rel", raw_root=os.path.basename(root), split="val")
    frames = DatasetCatalog.get("_t_rel")
    assert len(frames) == 3 and frames[0]["file_name"] == os.path.join(
        root, "Data", "VID", VAL_A, "000000.JPEG"
    )


def test_config_registers_its_coco_vid_datasets(root, converted, names, tmp_path):
    """DATASETS.COCO_VID: setting up the config registers its json datasets; the loaders load them."""
    from selsa_d2.data import build_video_test_loader, register_datasets_from_config
    from selsa_d2.data.build import get_video_train_dataset_and_sampler
    from selsa_d2.engine import setup_selsa_cfg

    names += ["_t_cfg_train", "_t_cfg_val"]
    image_root = os.path.join(root, "Data", "VID")
    train_json, val_json = (
        os.path.join(converted, f"imagenet_vid_{s}.json") for s in ("train", "val")
    )
    yaml_file = tmp_path / "pair.yaml"  # nested lists, as a YAML config writes them
    yaml_file.write_text(
        f"DATASETS:\n  COCO_VID: [[_t_cfg_train, {train_json}, {image_root}]]\n"
        "  TRAIN: [_t_cfg_train]\nINPUT:\n  MIN_SIZE_TEST: 24\nDATALOADER:\n  NUM_WORKERS: 0\n"
        "  FILTER_EMPTY_ANNOTATIONS: False\nVERSION: 2\n"
    )
    assert "_t_cfg_val" not in DatasetCatalog.list()
    setup_selsa_cfg(str(yaml_file))  # the YAML's nested list
    assert "_t_cfg_train" in DatasetCatalog.list() and "_t_cfg_val" not in DatasetCatalog.list()
    cfg = setup_selsa_cfg(
        str(yaml_file),
        [
            "DATASETS.COCO_VID",
            repr((("_t_cfg_train", train_json, image_root), ("_t_cfg_val", val_json, image_root))),
            "DATASETS.TEST",
            "('_t_cfg_val',)",
        ],
    )  # and as a command-line override (run_demo.py)
    assert {"_t_cfg_train", "_t_cfg_val"} <= set(DatasetCatalog.list())

    items = list(build_video_test_loader(cfg, "_t_cfg_val"))
    assert [(b[0]["video_id"], b[0]["frame_id"]) for b in items] == [(1, 0), (1, 1), (1, 2)]
    assert items[0][0]["image"].shape[1] == 24 and items[0][0]["file_name"].startswith(image_root)
    assert (
        MetadataCatalog.get("_t_cfg_val").thing_classes == IMAGENET_VID_CLASSES
    )  # from the json's categories
    train, _ = get_video_train_dataset_and_sampler(cfg)
    assert [(f["video_id"], f["frame_id"]) for f in train] == [(1, 1), (1, 3), (2, 0)]
    assert MetadataCatalog.get("_t_cfg_train").json_file == train_json

    assert register_datasets_from_config(cfg) == [
        "_t_cfg_train",
        "_t_cfg_val",
    ]  # again: nothing changes
    clash = cfg.clone()
    clash.defrost()
    clash.DATASETS.COCO_VID = (("_t_cfg_val", train_json, image_root),)
    with pytest.raises(ValueError, match="'_t_cfg_val' is already registered with other files"):
        register_datasets_from_config(clash)
    clash.DATASETS.COCO_VID = (("_t_cfg_other", train_json),)
    with pytest.raises(
        ValueError, match=r"DATASETS.COCO_VID\[0\] must be a \(name, json_file, image_root\) triple"
    ):
        register_datasets_from_config(clash)


def test_register_argument_errors(root):
    with pytest.raises(ValueError, match="exactly one of json_file and raw_root"):
        register_vid_dataset("_t_x", raw_root=root, json_file="a.json", image_root=root)
    with pytest.raises(ValueError, match="needs split"):
        register_vid_dataset("_t_x", raw_root=root)
    with pytest.raises(ValueError, match="layout"):
        register_vid_dataset("_t_x", raw_root=root, split="train", layout="mot")
    assert "_t_x" not in DatasetCatalog.list()


def test_builtins_registered():
    import selsa_d2  # noqa: F401

    for n in (
        "imagenet_vid_train_15frames",
        "imagenet_vid_val",
        "imagenet_det_train_30cls",
        "synthetic_vid_train",
        "synthetic_vid_val",
    ):
        assert n in DatasetCatalog.list()
        assert MetadataCatalog.get(n).evaluator_type == "vid"
    assert MetadataCatalog.get("imagenet_det_train_30cls").thing_classes == IMAGENET_VID_CLASSES
    assert MetadataCatalog.get("imagenet_vid_val").image_root.endswith(
        os.path.join("ILSVRC2015", "Data", "VID")
    )


def test_converter_on_synthetic_layout(tmp_path):
    """The converter and the registration work on make_synthetic_vid.py output (its own classes)."""
    out = str(tmp_path / "synthetic_vid")
    generate(out, num_train_videos=1, num_val_videos=1, frames=6, size=(96, 64))
    ann = str(tmp_path / "ann")
    assert (
        run_script(
            "datasets/prepare_imagenet_vid.py", "--root", out, "--out", ann, "--no-progress"
        ).returncode
        == 0
    )
    names, ids = read_classes_file(os.path.join(out, "classes.txt"))
    raw, keys = load_ilsvrc_vid_frames(out, "train", names, ids)
    js, flagged = load_coco_vid_frames(
        os.path.join(ann, "imagenet_vid_train.json"), os.path.join(out, "Data", "VID")
    )
    assert js == raw and flagged == keys and len(raw) == 6
    assert sum(len(f["annotations"]) for f in raw) > 0
    assert not os.path.exists(
        os.path.join(ann, "imagenet_det_30plus1cls.json")
    )  # no DET list: skipped


def test_converter_list_frame_base_matches_mmtracking(tmp_path):
    """--list-frame-base 1 marks the frame before each listed number, as mmtracking's converter."""
    out = str(tmp_path / "synthetic_vid")
    # 30 frames: the listed key frames are 1, 3, ..., 29 (none is 0, which a 1-based list cannot name)
    generate(out, num_train_videos=1, num_val_videos=1, frames=30, size=(96, 64))
    image_root = os.path.join(out, "Data", "VID")
    key_frames = {}
    for base in (0, 1):
        ann = str(tmp_path / f"ann{base}")
        assert (
            run_script(
                "datasets/prepare_imagenet_vid.py",
                *("--root", out, "--out", ann, "--no-progress", "--splits", "train"),
                *("--list-frame-base", base),
            ).returncode
            == 0
        )
        frames, flagged = load_coco_vid_frames(
            os.path.join(ann, "imagenet_vid_train.json"), image_root
        )
        key_frames[base] = sorted(fid for _, fid in flagged)
    assert key_frames[0] == list(range(1, 30, 2))
    assert key_frames[1] == [f - 1 for f in key_frames[0]]
