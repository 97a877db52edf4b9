"""Raw ILSVRC VID/DET readers on the hand-written fixture, and their bad-input handling."""

import json
import logging
import os
import shutil

import pytest
from detectron2.structures import BoxMode
from fixtures_ilsvrc import (
    DET_1,
    DET_2,
    TRAIN_A,
    TRAIN_B,
    TRAIN_LIST,
    VAL_A,
    make_ilsvrc_fixture,
    obj,
    write_text,
    xml_text,
)
from repo_scripts import run_script

from selsa_d2.data.classes import IMAGENET_VID_CLASSES, IMAGENET_VID_WNIDS, read_classes_file
from selsa_d2.data.ilsvrc import (
    load_ilsvrc_det,
    load_ilsvrc_vid,
    load_ilsvrc_vid_frames,
    parse_vid_list,
)

C = IMAGENET_VID_WNIDS.index


@pytest.fixture
def root(tmp_path):
    return make_ilsvrc_fixture(str(tmp_path / "ILSVRC"))


def _ann(box, cls, inst, occluded=False, generated=False):
    return {
        "bbox": [float(v) for v in box],
        "bbox_mode": BoxMode.XYXY_ABS,
        "category_id": cls,
        "instance_id": inst,
        "occluded": occluded,
        "generated": generated,
        "iscrowd": 0,
    }


def _train(root, **kw):
    return load_ilsvrc_vid_frames(
        root, "train", IMAGENET_VID_CLASSES, IMAGENET_VID_WNIDS, dataset_name="t", **kw
    )


def test_vid_classes_standard_order():
    assert len(IMAGENET_VID_WNIDS) == 30 and len(set(IMAGENET_VID_WNIDS)) == 30
    assert IMAGENET_VID_CLASSES[0] == "airplane" and IMAGENET_VID_WNIDS[0] == "n02691156"
    assert IMAGENET_VID_CLASSES[9] == "domestic_cat" and IMAGENET_VID_WNIDS[9] == "n02121808"
    assert IMAGENET_VID_CLASSES[-1] == "zebra" and IMAGENET_VID_WNIDS[-1] == "n02391049"


def test_vid_train_all_frames_and_keys(root, caplog):
    with caplog.at_level(logging.INFO):
        frames, keys = _train(root)
    assert len(frames) == 6
    assert keys == [(1, 1), (1, 3), (2, 0)]
    assert [(f["video_id"], f["frame_id"], f["video_length"], f["image_id"]) for f in frames] == [
        (1, 0, 4, 1),
        (1, 1, 4, 2),
        (1, 2, 4, 3),
        (1, 3, 4, 4),
        (2, 0, 2, 5),
        (2, 1, 2, 6),
    ]
    f0, f1, f2, f3 = frames[:4]
    assert f0["file_name"] == os.path.join(root, "Data", "VID", TRAIN_A, "000000.JPEG")
    assert os.path.isabs(f0["file_name"]) and os.path.isfile(f0["file_name"])
    assert (f0["height"], f0["width"]) == (48, 64)
    assert f0["video_name"] == "ILSVRC2015_train_00000000" and f0["dataset_name"] == "t"
    # non-contiguous track ids 0 and 5 kept as instance ids; occluded flag
    assert f0["annotations"] == [
        _ann((2, 3, 20, 30), C("n02691156"), 0),
        _ann((30, 10, 60, 40), C("n02391049"), 5, occluded=True),
    ]
    assert f1["annotations"] == []  # frame without objects is kept
    # generated flag; the unknown WordNet id is skipped
    assert f2["annotations"] == [_ann((4, 5, 22, 32), 0, 0, generated=True)]
    # partly outside: clipped to the 64x48 image
    assert f3["annotations"] == [_ann((50, 20, 64, 47), 29, 5)]
    assert f3["degradations"] == ["blur", "noise"] and f0["degradations"] == []
    # the video without any object is kept, with empty annotations
    assert [f["annotations"] for f in frames[4:]] == [[], []]
    assert frames[4]["video_name"] == "ILSVRC2015_train_00000001"
    log = caplog.text
    assert (
        "skipped 1 objects whose class is not one of the dataset's 30 classes" in log
        and "n99999999" in log
    )
    assert "clipped 1 boxes" in log and "000003.xml" in log


def test_vid_train_key_frames_only(root):
    keys = load_ilsvrc_vid(root, "train", IMAGENET_VID_CLASSES, IMAGENET_VID_WNIDS)
    assert [(f["video_id"], f["frame_id"]) for f in keys] == [(1, 1), (1, 3), (2, 0)]
    every = load_ilsvrc_vid(
        root, "train", IMAGENET_VID_CLASSES, IMAGENET_VID_WNIDS, key_frames_only=False
    )
    assert len(every) == 6


def test_list_frame_base_one(root, caplog):
    # mmtracking's reading of the list: number - 1. Line 3 names frame 0 (frame -1 for mmtracking,
    # which flags nothing): skipped and counted; its video stays, without key frames.
    with caplog.at_level(logging.WARNING):
        frames, keys = _train(root, list_frame_base=1)
    assert keys == [(1, 0), (1, 2)]
    assert len(frames) == 6
    assert "skipped 1 lines naming frame 0" in caplog.text and "[3]" in caplog.text
    write_text(
        os.path.join(root, "Lists", "VID_train_15frames.txt"), f"{TRAIN_A} 1 1 4\n{TRAIN_A} 1 4 4\n"
    )
    _, keys = _train(root, list_frame_base=1)
    assert keys == [(1, 0), (1, 3)]
    # past the end is still an error
    write_text(os.path.join(root, "Lists", "VID_train_15frames.txt"), f"{TRAIN_A} 1 5 4\n")
    with pytest.raises(
        ValueError, match=r"VID_train_15frames.txt:1: frame number 5 outside 1\.\.4"
    ):
        _train(root, list_frame_base=1)
    with pytest.raises(ValueError, match="list_frame_base"):
        _train(root, list_frame_base=2)


def test_parse_vid_list_frame_bases(tmp_path):
    lst = str(tmp_path / "list.txt")
    write_text(lst, "train/v 1 0 3\ntrain/v 1 2 3\n\ntrain/w 1 1 2\ntrain/v 1 2 3\n")
    zero = parse_vid_list(lst, key_frames_listed=True)
    assert {v: i["key_frames"] for v, i in zero.items()} == {"train/v": [0, 2], "train/w": [1]}
    one = parse_vid_list(lst, key_frames_listed=True, list_frame_base=1)
    assert {v: i["key_frames"] for v, i in one.items()} == {"train/v": [1], "train/w": [0]}
    assert one["train/w"]["line"] == f"{lst}:4" and one["train/v"]["num_frames"] == 3


def test_list_files_with_byte_order_mark_and_bad_bytes(tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_bytes(b"\xef\xbb\xbftrain/v 1 0 3\n")
    assert list(parse_vid_list(str(lst), key_frames_listed=True)) == ["train/v"]
    lst.write_bytes(b"train/v 1 0 3\ntrain/\xff 1 0 3\n")
    with pytest.raises(ValueError, match=r"list\.txt.*line 2|list\.txt:2"):
        parse_vid_list(str(lst), key_frames_listed=True)


def test_converter_frame_base_one_flags_mmtracking_key_frames(root, tmp_path):
    """prepare_imagenet_vid.py --list-frame-base 1 flags what mmtracking's imagenet2coco_vid.py
    flags: frame (number - 1) of each line; a line naming 0 (mmtracking: frame -1) flags nothing."""
    ann = str(tmp_path / "ann")
    assert (
        run_script(
            "datasets/prepare_imagenet_vid.py",
            *("--root", root, "--out", ann, "--no-progress", "--splits", "train"),
            *("--list-frame-base", "1"),
        ).returncode
        == 0
    )
    with open(os.path.join(ann, "imagenet_vid_train.json")) as f:
        data = json.load(f)
    names = {v["id"]: v["name"] for v in data["videos"]}
    flagged = {
        (names[im["video_id"]], im["frame_id"]) for im in data["images"] if im["is_vid_train_frame"]
    }
    expected = set()
    for line in TRAIN_LIST:  # mmtracking's rule, restated
        video, _, number, _ = line.split()
        expected.add((video, int(number) - 1))
    assert flagged == {k for k in expected if k[1] >= 0} == {(TRAIN_A, 0), (TRAIN_A, 2)}
    assert len(data["images"]) == 6  # every frame of both videos, as mmtracking


def test_vid_val_every_frame_is_key(root, caplog):
    with caplog.at_level(logging.INFO):
        frames, keys = load_ilsvrc_vid_frames(root, "val", IMAGENET_VID_CLASSES, IMAGENET_VID_WNIDS)
    assert keys == [(1, 0), (1, 1), (1, 2)]
    assert [f["annotations"] for f in frames] == [
        [_ann((10, 10, 30, 30), 2, 2)],
        [_ann((11, 10, 31, 30), 2, 2)],
        [_ann((12, 10, 32, 30), 2, 2)],
    ]
    assert frames[1]["degradations"] == []  # empty element
    assert "skipped 1 boxes that lie entirely outside their image" in caplog.text
    assert frames[0]["video_name"] == "ILSVRC2015_val_00000000"


def test_det_reader(root, caplog):
    with caplog.at_level(logging.INFO):
        frames = load_ilsvrc_det(root, IMAGENET_VID_CLASSES, IMAGENET_VID_WNIDS, dataset_name="d")
    assert [(f["image_id"], f["video_id"], f["frame_id"], f["video_length"]) for f in frames] == [
        (1, 1, 0, 1),
        (2, 2, 0, 1),
    ]
    assert frames[0]["file_name"] == os.path.join(root, "Data", "DET", DET_1 + ".JPEG")
    assert frames[0]["video_name"] == "det/" + DET_1
    assert frames[0]["annotations"] == [
        _ann((5, 6, 25, 26), C("n02084071"), 0),
        _ann((30, 8, 60, 40), 6, 1),
    ]
    assert frames[1]["annotations"] == [_ann((0, 0, 64, 48), 0, 0)]
    assert "n99999999" in caplog.text


def test_det_repeated_lines_are_separate_samples(root, caplog):
    """FGFA, MEGA and mmtracking keep each line of DET_train_30classes.txt (repeats included)."""
    write_text(
        os.path.join(root, "Lists", "DET_train_30classes.txt"),
        f"{DET_1} 1\n{DET_2} 2\n\n{DET_1} 3\n{DET_1}.JPEG 4\n",
    )
    with caplog.at_level(logging.INFO):
        frames = load_ilsvrc_det(root, IMAGENET_VID_CLASSES, IMAGENET_VID_WNIDS, dataset_name="d")
    assert [(f["image_id"], f["video_id"], f["video_name"]) for f in frames] == [
        (1, 1, "det/" + DET_1),
        (2, 2, "det/" + DET_2),
        (3, 3, "det/" + DET_1),
        (4, 4, "det/" + DET_1),
    ]
    assert frames[2]["file_name"] == frames[3]["file_name"] == frames[0]["file_name"]
    assert frames[2]["annotations"] == frames[0]["annotations"]
    assert frames[2]["annotations"] is not frames[0]["annotations"]  # no shared mutable state
    assert "2 lines repeat an image listed before (1 images listed more than once)" in caplog.text
    assert "skipped 1 objects whose class" in caplog.text  # the repeated XML's skip counted once
    assert "Read 4 DET samples (2 distinct images)" in caplog.text


def test_custom_classes(root):
    classes = os.path.join(root, "my_classes.txt")
    write_text(classes, "# custom\nn02391049 zebra\nn02691156 plane\n")
    names, ids = read_classes_file(classes)
    assert (names, ids) == (["zebra", "plane"], ["n02391049", "n02691156"])
    frames, _ = load_ilsvrc_vid_frames(root, "train", names, ids)
    assert [(a["category_id"], a["instance_id"]) for a in frames[0]["annotations"]] == [
        (1, 0),
        (0, 5),
    ]
    # readable names match too (custom XML may carry names instead of ids)
    frames, _ = load_ilsvrc_vid_frames(root, "train", ["n02391049"], ["zebra_id"])
    assert [a["instance_id"] for a in frames[0]["annotations"]] == [5]


# ---------------------------------------------------------------- bad input


def _xml_path(root, video, i):
    return os.path.join(root, "Annotations", "VID", video, f"{i:06d}.xml")


def test_xml_without_size_names_file(root):
    p = _xml_path(root, TRAIN_A, 2)
    write_text(p, xml_text([obj("n02691156", (1, 1, 5, 5), 0)], size=False))
    with pytest.raises(ValueError, match=r"000002\.xml has no <size>") as e:
        _train(root)
    assert p in str(e.value)


def test_unparseable_xml_names_file(root):
    p = _xml_path(root, VAL_A, 1)
    write_text(p, "<annotation><size>")
    with pytest.raises(ValueError, match="Cannot parse annotation XML") as e:
        load_ilsvrc_vid_frames(root, "val", IMAGENET_VID_CLASSES, IMAGENET_VID_WNIDS)
    assert p in str(e.value)


def test_malformed_boxes_skipped_and_logged(root, caplog):
    p = _xml_path(root, TRAIN_A, 0)
    write_text(
        p,
        xml_text(
            [
                obj("n02691156", ("a", 1, 5, 5), 0),
                obj("n02691156", (9, 1, 5, 5), 1),
                obj("n02691156", (1, 9, 5, 5), 2),
                obj("n02691156", (1, 1, 5, 5), 3),
            ]
        ),
    )
    with caplog.at_level(logging.WARNING):
        frames, _ = _train(root)
    assert [a["instance_id"] for a in frames[0]["annotations"]] == [3]
    assert caplog.text.count(p) >= 3
    assert "non-numeric box" in caplog.text and "empty or inverted box" in caplog.text
    assert "skipped 3 objects with malformed boxes" in caplog.text


def test_missing_video_dir_names_list_line(root):
    shutil.rmtree(os.path.join(root, "Data", "VID", TRAIN_B))
    with pytest.raises(FileNotFoundError) as e:
        _train(root)
    msg = str(e.value)
    assert "VID_train_15frames.txt:3" in msg and os.path.join(root, "Data", "VID", TRAIN_B) in msg


def test_frame_count_mismatch(root):
    os.remove(os.path.join(root, "Data", "VID", TRAIN_A, "000003.JPEG"))
    with pytest.raises(ValueError, match=r"4 frames in the list but .* holds 3") as e:
        _train(root)
    assert "VID_train_15frames.txt:1" in str(e.value) and "000003.JPEG" in str(e.value)


def test_list_frame_number_out_of_range(root):
    write_text(os.path.join(root, "Lists", "VID_train_15frames.txt"), f"{TRAIN_A} 1 4 4\n")
    with pytest.raises(
        ValueError, match=r"VID_train_15frames.txt:1: frame number 4 outside 0\.\.3"
    ):
        _train(root)


def test_missing_xml_names_file(root):
    p = _xml_path(root, VAL_A, 2)
    os.rename(p, p.replace("000002.xml", "000002.xml.bak"))
    with pytest.raises(ValueError, match="missing") as e:  # the dir no longer holds 000002.xml
        load_ilsvrc_vid_frames(root, "val", IMAGENET_VID_CLASSES, IMAGENET_VID_WNIDS)
    assert "000002.xml" in str(e.value)


def test_missing_det_image_names_list_line(root):
    img = os.path.join(root, "Data", "DET", DET_2 + ".JPEG")
    os.remove(img)
    with pytest.raises(FileNotFoundError) as e:
        load_ilsvrc_det(root, IMAGENET_VID_CLASSES, IMAGENET_VID_WNIDS)
    assert "DET_train_30classes.txt:2" in str(e.value) and img in str(e.value)


def test_missing_list_file(root):
    os.remove(os.path.join(root, "Lists", "VID_val_videos.txt"))
    with pytest.raises(FileNotFoundError, match="VID_val_videos.txt"):
        load_ilsvrc_vid_frames(root, "val", IMAGENET_VID_CLASSES, IMAGENET_VID_WNIDS)


def test_det_repeats_registered_indexed_and_evaluated(root, tmp_path):
    """Repeated DET lines keep unique image/video ids through registration, the frame index, the
    json converter round trip and the evaluator (Detectron2's COCO conversion included)."""
    import torch
    from detectron2.data import DatasetCatalog
    from detectron2.structures import Boxes, Instances

    from selsa_d2.data import (
        get_frame_index,
        load_coco_vid_frames,
        register_vid_dataset,
        unregister_vid_dataset,
    )
    from selsa_d2.evaluation import VIDEvaluator

    write_text(
        os.path.join(root, "Lists", "DET_train_30classes.txt"), f"{DET_1} 1\n{DET_2} 2\n{DET_1} 3\n"
    )
    name = f"det_repeats_{os.getpid()}"
    register_vid_dataset(name, raw_root=root, layout="det")
    try:
        dicts = DatasetCatalog.get(name)
        assert [d["image_id"] for d in dicts] == [1, 2, 3]
        assert len(get_frame_index(name)) == 3  # three one-frame videos
        ev = VIDEvaluator(name, distributed=False)
        for d in dicts:
            inst = Instances((d["height"], d["width"]))
            inst.pred_boxes = Boxes(
                torch.tensor([a["bbox"] for a in d["annotations"]], dtype=torch.float32)
            )
            inst.scores = torch.full((len(d["annotations"]),), 0.9)
            inst.pred_classes = torch.tensor([a["category_id"] for a in d["annotations"]])
            ev.process([{"image_id": d["image_id"]}], [{"instances": inst}])
        res = ev.evaluate()
        assert res["vid"]["mAP"] == pytest.approx(100.0) and res["bbox"]["AP50"] == pytest.approx(
            100.0
        )
    finally:
        unregister_vid_dataset(name)
    ann = str(tmp_path / "ann")
    assert (
        run_script(
            "datasets/prepare_imagenet_vid.py",
            "--root",
            root,
            "--out",
            ann,
            "--no-progress",
            "--splits",
            "det",
        ).returncode
        == 0
    )
    with open(os.path.join(ann, "imagenet_det_30plus1cls.json")) as f:
        data = json.load(f)
    assert [(im["id"], im["file_name"]) for im in data["images"]] == [
        (1, DET_1 + ".JPEG"),
        (2, DET_2 + ".JPEG"),
        (3, DET_1 + ".JPEG"),
    ]
    assert all(im["is_vid_train_frame"] for im in data["images"])
    det_json = os.path.join(ann, "imagenet_det_30plus1cls.json")
    frames, _ = load_coco_vid_frames(det_json, os.path.join(root, "Data", "DET"))
    assert [f["image_id"] for f in frames] == [1, 2, 3]
