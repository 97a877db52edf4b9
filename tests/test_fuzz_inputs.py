"""Fuzz-style bad input through the readers, the mapper and video inference.

Every case must end in the outcome ``datasets/README.md`` ("Bad input") documents: an error that
names the offending file (or list line / frame), or a logged skip with the rest of the data
intact, or a correct result. Never a hang (each test runs under an alarm), never a bare
traceback from deep inside Detectron2, never a silently wrong result.
"""

import json
import logging
import os
import shutil
import signal
import uuid

import cv2
import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.structures import BoxMode
from fixtures_ilsvrc import BEAR, CAR, obj, write_jpeg, write_text, xml_text
from tiny_model import results_close, synthetic_video, tiny_selsa_cfg, torch_threads

from selsa_d2.data import (
    VideoDatasetMapper,
    build_video_test_loader,
    register_vid_dataset,
    unregister_vid_dataset,
)
from selsa_d2.data.classes import IMAGENET_VID_WNIDS
from selsa_d2.data.sampling import (
    TestReferenceSampler as RefSampler,
)  # alias: pytest would collect "Test*"
from selsa_d2.predictor import VideoPredictor

W, H = 64, 48
VIDEO = "val/vid_a"
N = 3
TIMEOUT_S = 60


@pytest.fixture(autouse=True)
def _no_hang():
    """Fail (instead of hanging) when a case takes longer than TIMEOUT_S."""

    def on_alarm(signum, frame):
        raise TimeoutError(f"fuzz case did not finish within {TIMEOUT_S} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TIMEOUT_S)
    try:
        with torch_threads(1):
            yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def logs(caplog):
    """caplog that also sees selsa_d2's loggers when Detectron2's setup_logger stopped propagation."""
    logger = logging.getLogger("selsa_d2")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO)
    yield caplog
    logger.removeHandler(caplog.handler)


# ---------------------------------------------------------------------------- raw layout
class RawVid:
    """A raw ILSVRC-layout val split with one clean video of N frames (a bear moving right)."""

    def __init__(self, root: str):
        self.root = root
        self.list_lines = [f"{VIDEO} 1 0 {N}"]
        for i in range(N):
            self.write_frame(VIDEO, i, [obj(BEAR, (10 + i, 10, 30 + i, 30), 2)])
        self.write_list()

    def img(self, video=VIDEO, i=0):
        return os.path.join(self.root, "Data", "VID", video, f"{i:06d}.JPEG")

    def xml(self, video=VIDEO, i=0):
        return os.path.join(self.root, "Annotations", "VID", video, f"{i:06d}.xml")

    def list_file(self):
        return os.path.join(self.root, "Lists", "VID_val_videos.txt")

    def write_frame(self, video, i, objects, size=(W, H)):
        write_jpeg(self.img(video, i), seed=i, width=size[0], height=size[1])
        write_text(self.xml(video, i), xml_text(objects, width=size[0], height=size[1]))

    def write_xml(self, i, text):
        write_text(self.xml(VIDEO, i), text)

    def write_list(self):
        write_text(self.list_file(), "\n".join(self.list_lines) + "\n")

    def register(self):
        name = f"fuzz_vid_{uuid.uuid4().hex[:8]}"
        register_vid_dataset(name, raw_root=self.root, split="val", wnids=IMAGENET_VID_WNIDS)
        return name


@pytest.fixture
def raw(tmp_path):
    names = []
    data = RawVid(str(tmp_path / "ILSVRC"))
    data.registered = names
    yield data
    for n in names:
        unregister_vid_dataset(n)


def read(raw: RawVid):
    name = raw.register()
    raw.registered.append(name)
    return name, DatasetCatalog.get(name)


def _bad_object_xml(inner: str) -> str:
    """An XML with one bear object whose <bndbox>/<trackid> part is ``inner``."""
    return (
        f"<annotation><size><width>{W}</width><height>{H}</height></size>"
        f"<object><name>{BEAR}</name>{inner}<occluded>0</occluded><generated>0</generated></object></annotation>"
    )


def _box(x1, y1, x2, y2, trackid="<trackid>2</trackid>"):
    return _bad_object_xml(
        f"{trackid}<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>"
    )


# Cases that must raise: (mutation of the clean dataset, exception type, message parts naming
# the offending file). ``r`` is the RawVid; parts are formatted with its paths.
READER_ERRORS = {
    "xml_unparseable": (
        lambda r: r.write_xml(1, "<annotation><size><width>64</wid"),
        ValueError,
        ["Cannot parse annotation XML", "{xml1}"],
    ),
    "xml_binary_garbage": (
        lambda r: open(r.xml(VIDEO, 1), "wb").write(os.urandom(64) + b"\x00"),
        ValueError,
        ["Cannot parse annotation XML", "{xml1}"],
    ),
    "xml_empty_file": (lambda r: r.write_xml(1, ""), ValueError, ["Cannot parse", "{xml1}"]),
    "xml_no_size": (
        lambda r: r.write_xml(1, xml_text([], size=False)),
        ValueError,
        ["{xml1}", "no <size>"],
    ),
    "xml_size_not_numeric": (
        lambda r: r.write_xml(1, xml_text([], width="wide")),
        ValueError,
        ["{xml1}", "numeric <width>"],
    ),
    "xml_size_zero": (
        lambda r: r.write_xml(1, xml_text([], height=0)),
        ValueError,
        ["{xml1}", "not positive"],
    ),
    "xml_size_negative": (
        lambda r: r.write_xml(1, xml_text([], width=-64)),
        ValueError,
        ["{xml1}", "not positive"],
    ),
    "xml_missing": (
        lambda r: os.remove(r.xml(VIDEO, 1)),
        ValueError,
        ["{ann_dir}", "missing: ['000001.xml']"],
    ),
    "jpeg_missing": (
        lambda r: os.remove(r.img(VIDEO, 2)),
        ValueError,
        ["{img_dir}", "missing: ['000002.JPEG']"],
    ),
    "empty_video_dir": (
        lambda r: [os.remove(r.img(VIDEO, i)) for i in range(N)],
        ValueError,
        ["{list}:1", "{img_dir}", "holds 0"],
    ),
    "video_dir_missing": (
        lambda r: shutil.rmtree(os.path.dirname(r.img())),
        FileNotFoundError,
        ["{list}:1", "{img_dir}", "does not exist"],
    ),
    "list_zero_frames": (
        lambda r: (setattr(r, "list_lines", [f"{VIDEO} 1 0 0"]), r.write_list()),
        ValueError,
        ["{list}:1", "frame count 0"],
    ),
    "list_more_frames_than_files": (
        lambda r: (setattr(r, "list_lines", [f"{VIDEO} 1 0 5"]), r.write_list()),
        ValueError,
        ["{list}:1", "5 frames in the list", "holds 3"],
    ),
    "list_names_missing_video": (
        lambda r: (r.list_lines.append("val/vid_zz 2 0 4"), r.write_list()),
        FileNotFoundError,
        ["{list}:2", "vid_zz", "does not exist"],
    ),
    "list_empty": (
        lambda r: (setattr(r, "list_lines", []), r.write_list()),
        ValueError,
        ["{list}", "lists no videos"],
    ),
    "list_garbage_line": (
        lambda r: (setattr(r, "list_lines", ["\x00\x01 garbage"]), r.write_list()),
        ValueError,
        ["{list}:1", "expected"],
    ),
}


@pytest.mark.parametrize("case", sorted(READER_ERRORS))
def test_reader_errors_name_the_file(raw, case):
    mutate, exc, parts = READER_ERRORS[case]
    mutate(raw)
    with pytest.raises(exc) as info:
        read(raw)
    paths = dict(
        xml1=raw.xml(VIDEO, 1),
        list=raw.list_file(),
        img_dir=os.path.dirname(raw.img()),
        ann_dir=os.path.dirname(raw.xml()),
    )
    for part in parts:
        assert part.format(**paths) in str(info.value)


# Cases the readers skip with a log line: (XML of frame 1, expected annotations of frame 1,
# log text that must appear). Frames 0 and 2 must be untouched.
READER_SKIPS = {
    "box_inverted": (_box(30, 10, 10, 30), [], "empty or inverted box"),
    "box_zero_width": (_box(10, 10, 10, 30), [], "empty or inverted box"),
    "box_negative_size_coords": (_box(-5, -5, -20, -20), [], "empty or inverted box"),
    "box_non_numeric": (_box("a", 10, "b", 30), [], "non-numeric box"),
    "box_nan": (_box("nan", 10, 20, 30), [], "non-numeric box"),
    "box_inf": (_box(0, 10, "inf", 30), [], "non-numeric box"),
    "box_missing_coordinate": (
        _bad_object_xml("<trackid>2</trackid><bndbox><xmin>1</xmin></bndbox>"),
        [],
        "non-numeric box",
    ),
    "no_bndbox": (_bad_object_xml("<trackid>2</trackid>"), [], "non-numeric box"),
    "box_left_of_image": (_box(-30, 10, -5, 30), [], "entirely outside their image"),
    "box_below_image": (_box(10, 60, 30, 90), [], "entirely outside their image"),
    "box_partly_outside_is_clipped": (
        _box(-10, 30, 80, 70),
        [[0.0, 30.0, float(W), float(H)]],
        "clipped 1 boxes",
    ),
    "no_trackid": (_box(10, 10, 30, 30, trackid=""), [], "without an integer <trackid>"),
    "bad_trackid": (
        _box(10, 10, 30, 30, trackid="<trackid>x</trackid>"),
        [],
        "without an integer <trackid>",
    ),
    "unknown_class": (
        xml_text([obj("n00000000", (10, 10, 30, 30), 2)]),
        [],
        "not one of the dataset's 30 classes",
    ),
    "no_objects": (xml_text([]), [], "1 frames have no annotated objects (kept)"),
}


@pytest.mark.parametrize("case", sorted(READER_SKIPS))
def test_reader_skips_are_logged(raw, logs, case):
    text, boxes, message = READER_SKIPS[case]
    raw.write_xml(1, text)
    _, frames = read(raw)
    assert [f["frame_id"] for f in frames] == list(range(N))  # the frame is kept
    assert [a["bbox"] for a in frames[1]["annotations"]] == boxes
    for i in (0, 2):
        assert [a["bbox"] for a in frames[i]["annotations"]] == [[10.0 + i, 10.0, 30.0 + i, 30.0]]
    assert message in logs.text
    if "box" in case and "clipped" not in case and "outside" not in case:
        assert raw.xml(VIDEO, 1) in logs.text  # per-object warnings name the file


def test_one_frame_video_reads(raw):
    raw.list_lines.append("val/vid_one 2 0 1")
    raw.write_list()
    raw.write_frame("val/vid_one", 0, [obj(CAR, (1, 2, 40, 30), 7)])
    name, frames = read(raw)
    one = [f for f in frames if f["video_name"] == "vid_one"]
    assert len(frames) == N + 1 and len(one) == 1
    assert (one[0]["frame_id"], one[0]["video_length"]) == (0, 1)
    assert one[0]["annotations"][0]["bbox"] == [1.0, 2.0, 40.0, 30.0]
    assert one[0]["annotations"][0]["instance_id"] == 7


def test_mismatched_frame_sizes_read_per_frame(raw):
    """The reader keeps each frame's own size; the mapper (below) rejects mixing them."""
    raw.write_frame(VIDEO, 2, [obj(BEAR, (10, 10, 70, 50), 2)], size=(80, 60))
    _, frames = read(raw)
    assert [(f["width"], f["height"]) for f in frames] == [(W, H), (W, H), (80, 60)]
    assert frames[2]["annotations"][0]["bbox"] == [10.0, 10.0, 70.0, 50.0]  # not clipped to 64x48


# ---------------------------------------------------------------------------- COCO-VID json
def _coco(tmp_path, mutate=None):
    data = {
        "categories": [{"id": 1, "name": "bear", "encode_name": BEAR}],
        "videos": [{"id": 1, "name": "val/v1"}],
        "images": [
            {
                "id": 10 + i,
                "file_name": f"val/v1/{i:06d}.JPEG",
                "height": H,
                "width": W,
                "frame_id": i,
                "video_id": 1,
                "is_vid_train_frame": False,
            }
            for i in range(N)
        ],
        "annotations": [
            {
                "id": 100 + i,
                "video_id": 1,
                "image_id": 10 + i,
                "category_id": 1,
                "instance_id": 0,
                "bbox": [10, 10, 20, 20],
                "area": 400,
                "iscrowd": 0,
            }
            for i in range(N)
        ],
    }
    if mutate:
        mutate(data)
    path = str(tmp_path / f"ann_{uuid.uuid4().hex[:6]}.json")
    with open(path, "w") as f:
        f.write(data if isinstance(data, str) else json.dumps(data))
    return path


def _ann1(data, **kw):
    data["annotations"][1].update(kw)


def _dup_image_id(d):
    """A second video whose first frame reuses image id 10 of video 1 (with its own box)."""
    d["videos"].append({"id": 2, "name": "val/v2"})
    d["images"].append(
        {
            "id": 10,
            "file_name": "val/v2/000000.JPEG",
            "height": H,
            "width": W,
            "frame_id": 0,
            "video_id": 2,
        }
    )
    d["annotations"].append(
        {
            "id": 200,
            "video_id": 2,
            "image_id": 10,
            "category_id": 1,
            "instance_id": 0,
            "bbox": [1, 1, 5, 5],
        }
    )


COCO_ERRORS = {
    "not_json": (lambda d: "{not json", ValueError, "Cannot parse COCO-VID json"),
    # issue 13: duplicate ids would give one video's boxes to another's frame
    "duplicate_image_id": (_dup_image_id, ValueError, "image id 10 appears 2 times"),
    "category_without_name": (
        lambda d: d["categories"][0].pop("name") and None,
        ValueError,
        "has no name",
    ),
    "category_without_id": (lambda d: d["categories"][0].pop("id"), ValueError, "has no id"),
    "category_id_not_int": (
        lambda d: d["categories"][0].update(id="one"),
        ValueError,
        "non-integer id",
    ),
    "instance_id_not_int": (
        lambda d: _ann1(d, instance_id="car"),
        ValueError,
        "instance_id must be an integer",
    ),
    "instance_id_fraction": (
        lambda d: _ann1(d, instance_id=1.5),
        ValueError,
        "instance_id must be an integer",
    ),
    "images_not_a_list": (
        lambda d: d.update(images={"10": d["images"][0]}),
        ValueError,
        "'images' must be a list",
    ),
    "annotations_not_a_list": (
        lambda d: d.update(annotations="none"),
        ValueError,
        "'annotations' must be a list",
    ),
    "image_not_an_object": (
        lambda d: d["images"].append(7),
        ValueError,
        "images[3] must be an object",
    ),
    "not_utf8": (lambda d: None, ValueError, "not UTF-8"),
    "not_coco_vid": (lambda d: d.pop("images"), ValueError, "is not a COCO-VID file"),
    "frame_id_gap": (lambda d: d["images"][2].update(frame_id=5), ValueError, "expected 0..2"),
    "image_without_video_id": (
        lambda d: d["images"][1].pop("video_id"),
        ValueError,
        "no video_id/frame_id",
    ),
    "image_without_size": (lambda d: d["images"][1].pop("width"), ValueError, "image 11"),
    "image_size_not_numeric": (
        lambda d: d["images"][1].update(height="tall"),
        ValueError,
        "image 11",
    ),
    "image_size_zero": (lambda d: d["images"][1].update(height=0), ValueError, "image 11"),
}


@pytest.fixture
def coco_registered():
    names = []
    yield names
    for n in names:
        unregister_vid_dataset(n)


def _read_coco(path, names):
    name = f"fuzz_json_{uuid.uuid4().hex[:8]}"
    names.append(name)
    register_vid_dataset(name, json_file=path, image_root="/nonexistent_images")
    return DatasetCatalog.get(name)


@pytest.mark.parametrize("case", sorted(COCO_ERRORS))
def test_coco_vid_errors_name_the_file(tmp_path, coco_registered, case):
    mutate, exc, message = COCO_ERRORS[case]

    def apply(d):
        out = mutate(d)
        return out if isinstance(out, str) else None

    path = _coco(tmp_path)
    with open(path) as f:
        data = json.load(f)
    replaced = apply(data)
    with open(path, "w") as f:
        f.write(replaced if replaced is not None else json.dumps(data))
    if case == "not_utf8":  # a category name saved as Latin-1
        with open(path, "wb") as f:
            f.write(json.dumps(data).encode().replace(b'"bear"', b'"b\xe4r"'))
    with pytest.raises(exc) as info:
        _read_coco(path, coco_registered)
    assert path in str(info.value) and message in str(info.value)


COCO_SKIPS = {
    "box_negative_width": (lambda d: _ann1(d, bbox=[30, 10, -5, 10]), "empty or inverted box"),
    "box_zero_height": (lambda d: _ann1(d, bbox=[30, 10, 5, 0]), "empty or inverted box"),
    "box_outside": (lambda d: _ann1(d, bbox=[100, 100, 5, 5]), "entirely outside their image"),
    "box_not_a_list": (lambda d: _ann1(d, bbox="10 10 5 5"), "non-numeric box"),
    "box_missing": (lambda d: d["annotations"][1].pop("bbox"), "non-numeric box"),
    "unknown_category": (lambda d: _ann1(d, category_id=9), "not one of the dataset's 1 classes"),
    "annotation_of_missing_image": (
        lambda d: _ann1(d, image_id=999),
        "annotations of images not in the file",
    ),
}


@pytest.mark.parametrize("case", sorted(COCO_SKIPS))
def test_coco_vid_skips_are_logged(tmp_path, coco_registered, logs, case):
    mutate, message = COCO_SKIPS[case]
    frames = _read_coco(_coco(tmp_path, mutate), coco_registered)
    assert [f["frame_id"] for f in frames] == list(range(N))
    assert frames[1]["annotations"] == []
    for i in (0, 2):
        assert [a["bbox"] for a in frames[i]["annotations"]] == [[10.0, 10.0, 30.0, 30.0]]
    assert message in logs.text


def test_coco_vid_empty_video_skipped_and_one_frame_video_kept(tmp_path, coco_registered, logs):
    def mutate(d):
        d["videos"] += [{"id": 2, "name": "val/empty"}, {"id": 3, "name": "val/one"}]
        d["images"].append(
            {
                "id": 50,
                "file_name": "val/one/000000.JPEG",
                "height": H,
                "width": W,
                "frame_id": 0,
                "video_id": 3,
            }
        )

    frames = _read_coco(_coco(tmp_path, mutate), coco_registered)
    assert [(f["video_id"], f["frame_id"], f["video_length"]) for f in frames] == [
        (1, 0, 3),
        (1, 1, 3),
        (1, 2, 3),
        (3, 0, 1),
    ]
    assert "video 2 has no images; ignored" in logs.text


# ---------------------------------------------------------------------------- mapper
def _test_mapper(num_refs=3):
    return VideoDatasetMapper(
        False,
        augmentations=[T.ResizeShortestEdge(48, 96)],
        image_format="BGR",
        test_ref_sampler=RefSampler("offline", "adaptive_stride", num_refs=num_refs),
    )


def _train_mapper():
    return VideoDatasetMapper(
        True,
        augmentations=[T.ResizeShortestEdge(48, 96)],
        image_format="BGR",
        train_num_refs=2,
        train_frame_range=9,
    )


def _truncate(path, keep=0.5):
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * keep)])


# (mutation applied after the dataset was read, exception, message parts); frame 0's test-time
# references are frames 1 and 2 (adaptive stride over 3 frames), so mapping frame 0 reads all.
MAPPER_ERRORS = {
    "jpeg_truncated": (
        lambda r: _truncate(r.img(VIDEO, 1)),
        ValueError,
        ["Cannot read frame file", "{img1}"],
    ),
    "jpeg_truncated_few_bytes": (lambda r: _truncate(r.img(VIDEO, 1), 0.1), ValueError, ["{img1}"]),
    "jpeg_zero_bytes": (
        lambda r: _truncate(r.img(VIDEO, 1), 0.0),
        ValueError,
        ["Cannot read frame file", "{img1}"],
    ),
    "jpeg_garbage": (
        lambda r: open(r.img(VIDEO, 1), "wb").write(b"\xff\xd8" + os.urandom(300)),
        ValueError,
        ["{img1}"],
    ),
    "jpeg_deleted_after_reading": (
        lambda r: os.remove(r.img(VIDEO, 1)),
        FileNotFoundError,
        ["Frame file not found", "{img1}"],
    ),
    "jpeg_size_differs_from_xml": (
        lambda r: write_jpeg(r.img(VIDEO, 1), seed=1, width=W + 8, height=H),
        ValueError,
        ["{img1}", "Mismatched image shape"],
    ),
}


@pytest.mark.parametrize("train", [False, True], ids=["test", "train"])
@pytest.mark.parametrize("case", sorted(MAPPER_ERRORS))
def test_mapper_errors_name_the_file(raw, case, train):
    mutate, exc, parts = MAPPER_ERRORS[case]
    _, frames = read(raw)
    mutate(raw)
    mapper = _train_mapper() if train else _test_mapper()
    # as key frame
    with pytest.raises(exc) as info:
        mapper(frames[1])
    for part in parts:
        assert part.format(img1=raw.img(VIDEO, 1)) in str(info.value)
    if not train:  # as a (future) reference of frame 0
        with pytest.raises(exc) as info:
            mapper(frames[0])
        assert raw.img(VIDEO, 1) in str(info.value)
    if not train:
        assert mapper(frames[2])["frame_id"] == 2  # the other frames still map (no refs to supply)


def test_mapper_mismatched_frame_sizes_names_both_files(raw):
    raw.write_frame(VIDEO, 2, [obj(BEAR, (10, 10, 70, 50), 2)], size=(80, 60))
    _, frames = read(raw)
    for mapper in (_test_mapper(), _train_mapper()):
        with pytest.raises(
            ValueError, match="all frames of a video must have the same size"
        ) as info:
            for _ in range(20):  # training references are random: one of 20 draws picks frame 2
                mapper(frames[0])
        assert raw.img(VIDEO, 2) in str(info.value) and raw.img(VIDEO, 0) in str(info.value)


def test_mapper_one_frame_video(raw):
    raw.list_lines = ["val/vid_one 1 0 1"]
    raw.write_list()
    raw.write_frame("val/vid_one", 0, [obj(CAR, (4, 4, 40, 30), 1)])
    _, frames = read(raw)
    out = _train_mapper()(frames[0])
    assert [r["frame_id"] for r in out["ref_frames"]] == [0, 0]  # the key frame repeated
    assert all(torch.equal(r["image"], out["image"]) for r in out["ref_frames"])
    assert out["instances"].gt_boxes.tensor.tolist() == [
        [4.0, 4.0, 40.0, 30.0]
    ]  # 48 px short side: no resize
    assert _test_mapper()(frames[0])["ref_frames"] == []


def test_mapper_drops_bad_boxes_in_hand_made_dicts(raw, logs):
    """Dataset dicts that bypass the readers: empty/inverted boxes are skipped with a warning
    naming the file (Detectron2 alone would turn an inverted box into a valid one); boxes are
    clipped to the image and those left empty dropped (Detectron2), so no degenerate box
    reaches the model."""
    _, frames = read(raw)
    d = dict(
        frames[0],
        annotations=[
            {"bbox": [10.0, 10.0, 30.0, 30.0], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0},
            {
                "bbox": [30.0, 10.0, 10.0, 30.0],
                "bbox_mode": BoxMode.XYXY_ABS,
                "category_id": 1,
            },  # inverted
            {
                "bbox": [100.0, 100.0, 120.0, 130.0],
                "bbox_mode": BoxMode.XYXY_ABS,
                "category_id": 2,
            },  # outside
            {
                "bbox": [-20.0, 40.0, 20.0, 90.0],
                "bbox_mode": BoxMode.XYXY_ABS,
                "category_id": 3,
            },  # partly outside
        ],
    )
    inst = _train_mapper()(d)["instances"]
    boxes = sorted(inst.gt_boxes.tensor.tolist())
    assert boxes == [[0.0, 40.0, 20.0, 48.0], [10.0, 10.0, 30.0, 30.0]]
    assert sorted(inst.gt_classes.tolist()) == [0, 3]
    assert (
        f"{raw.img(VIDEO, 0)} (video vid_a, frame 0" in logs.text
        and "empty or inverted box" in logs.text
    )
    xywh = dict(
        d,
        annotations=[
            {"bbox": [30.0, 10.0, -20.0, 20.0], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 1}
        ],
    )
    assert len(_train_mapper()(xywh)["instances"]) == 0


# ---------------------------------------------------------------------------- video inference
@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    cfg = tiny_selsa_cfg(
        MODEL__ROI_HEADS__SCORE_THRESH_TEST=0.0, INPUT__MIN_SIZE_TEST=48, INPUT__MAX_SIZE_TEST=96
    )
    torch.manual_seed(0)
    with torch_threads(1):
        model = build_model(cfg).eval()
    out = tmp_path_factory.mktemp("fuzz_model")
    DetectionCheckpointer(model, save_dir=str(out)).save("w")
    cfg.MODEL.WEIGHTS = str(out / "w.pth")
    return VideoPredictor(cfg)


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_inference_empty_video(predictor, mode):
    assert predictor.predict_video([], mode=mode) == []
    assert list(predictor.stream(iter([]))) == []


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_inference_one_frame_video(predictor, mode):
    frame = synthetic_video(1, H, W, seed=3)[0]
    (res,) = predictor.predict_video([frame], mode=mode)
    assert predictor.engine.frames_computed >= 1 and predictor.engine.cache_size == 0
    alone = predictor(frame)["instances"]  # a single image (offline: its references are itself)
    assert res.image_size == (H, W) and len(res) > 0
    assert results_close(res, alone, atol=1e-5) is None


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_inference_mismatched_frame_sizes(predictor, mode):
    """VideoPredictor resizes every frame on its own and returns detections at each frame's own
    size; features of differently sized frames aggregate like any others (documented)."""
    frames = synthetic_video(4, H, W, seed=4)
    frames[2] = cv2.resize(frames[2], (W + 32, H + 16))
    results = predictor.predict_video(frames, mode=mode)
    for frame, res in zip(frames, results):
        h, w = frame.shape[:2]
        assert res.image_size == (h, w) and len(res) > 0
        boxes = res.pred_boxes.tensor
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    assert predictor.engine.cache_size == 0


@pytest.mark.parametrize(
    "bad",
    [None, np.zeros((H, W), np.uint8), np.zeros((H, W, 4), np.uint8), "frame.jpg"],
    ids=["none", "grayscale", "rgba", "path"],
)
def test_inference_bad_frame_names_it(predictor, bad):
    frames = synthetic_video(3, H, W, seed=5)
    frames[1] = bad
    with pytest.raises(ValueError, match=r"Frame 1: expected a BGR image array"):
        predictor.predict_video(frames)
    # the failed video leaves no state behind: the next video works
    assert len(predictor.predict_video(synthetic_video(2, H, W, seed=6))) == 2


def _run_loader(predictor, name):
    model = predictor.model
    model.video_engine.ref_sampler = RefSampler("offline", "adaptive_stride", num_refs=4)
    model.video_engine.reset()
    cfg = predictor.cfg.clone()
    cfg.defrost()
    cfg.INPUT.VIDEO.TEST_MODE, cfg.INPUT.VIDEO.TEST_SAMPLER, cfg.INPUT.VIDEO.TEST_NUM_REFS = (
        "offline",
        "adaptive_stride",
        4,
    )
    outs = []
    with torch.no_grad():
        for batch in build_video_test_loader(cfg, name):
            outs.append((batch[0], model(batch)[0]["instances"]))
    return outs


def test_engine_through_test_loader_one_frame_and_mismatched_videos(raw, predictor):
    """End to end: a one-frame video next to a normal one; every frame gets its own detections."""
    raw.list_lines.append("val/vid_one 2 0 1")
    raw.write_list()
    raw.write_frame("val/vid_one", 0, [obj(CAR, (4, 4, 40, 30), 1)], size=(80, 60))
    name, _ = read(raw)
    outs = _run_loader(predictor, name)
    assert [(b["video_id"], b["frame_id"]) for b, _ in outs] == [(1, 0), (1, 1), (1, 2), (2, 0)]
    for b, inst in outs:
        assert inst.image_size == (b["height"], b["width"])


def test_engine_through_test_loader_truncated_jpeg(raw, predictor):
    name, _ = read(raw)
    _truncate(raw.img(VIDEO, 2))
    with pytest.raises(ValueError, match="Cannot read frame file") as info:
        _run_loader(predictor, name)
    assert raw.img(VIDEO, 2) in str(info.value)


# ---------------------------------------------------------------------------- issue 13: text encodings
def test_coco_vid_bom_and_whole_number_instance_ids(tmp_path, coco_registered):
    path = _coco(
        tmp_path, lambda d: (_ann1(d, instance_id="4"), d["annotations"][2].update(instance_id=5.0))
    )
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(b"\xef\xbb\xbf" + data)  # a byte-order mark, as some editors save
    frames = _read_coco(path, coco_registered)
    assert [f["annotations"][0]["instance_id"] for f in frames] == [0, 4, 5]


def test_classes_file_with_byte_order_mark(tmp_path, raw):
    """The BOM must not become part of the first class id (its objects would be 'unknown')."""
    from selsa_d2.data.classes import read_classes_file

    path = tmp_path / "classes.txt"
    path.write_bytes("\ufeff".encode() + f"{BEAR} bear\n{CAR} car\n".encode())
    assert read_classes_file(str(path)) == (["bear", "car"], [BEAR, CAR])
    # through a dataset: the bear objects (first class) are kept
    os.replace(path, os.path.join(raw.root, "classes.txt"))
    name = f"fuzz_vid_{uuid.uuid4().hex[:8]}"
    register_vid_dataset(name, raw_root=raw.root, split="val")
    raw.registered.append(name)
    frames = DatasetCatalog.get(name)
    assert [[a["category_id"] for a in f["annotations"]] for f in frames] == [[0]] * N


@pytest.mark.parametrize("line", [1, 3])
def test_classes_file_not_utf8_names_file_and_line(tmp_path, line):
    from selsa_d2.data.classes import read_classes_file

    lines = [f"{BEAR} bear".encode(), f"{CAR} car".encode(), b"n0001 caf\xe9"]
    lines[line - 1] = b"n0001 caf\xe9"
    path = tmp_path / "classes.txt"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(ValueError, match="not UTF-8") as info:
        read_classes_file(str(path))
    assert f"{path}:{line}:" in str(info.value)


# ---------------------------------------------------------------------------- issue 13: weights for inference
@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """Checkpoints for the tiny 3-class SELSA model: complete, and broken in the ways users break them."""
    import pickle

    from tiny_model import build_tiny_model

    d = tmp_path_factory.mktemp("weights")
    with torch_threads(1):
        selsa = build_tiny_model(tiny_selsa_cfg(num_classes=3))
        four = build_tiny_model(tiny_selsa_cfg(num_classes=4))
    torch.save({"model": selsa.state_dict()}, d / "good.pth")
    torch.save({"model": four.state_dict()}, d / "four_classes.pth")
    baseline = {
        k: v for k, v in selsa.state_dict().items() if ".aggregators." not in k
    }  # a Faster R-CNN
    torch.save({"model": baseline}, d / "baseline.pth")
    (d / "random.pth").write_bytes(np.random.RandomState(0).bytes(4096))
    (d / "empty.pth").write_bytes(b"")
    with open(d / "pickle.pkl", "wb") as f:
        pickle.dump({"config": "not weights", "lr": 0.1}, f)
    torch.save({"epoch": 3, "meta": {"a": 1}}, d / "no_model.pth")
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, d / "other_model.pth")
    (d / "a_directory.pth").mkdir()
    return d


WEIGHT_ERRORS = {
    "missing": ("nope.pth", "file not found"),
    "directory": ("a_directory.pth", "is a directory"),
    "empty": ("empty.pth", "file is empty"),
    "random_bytes": ("random.pth", "not a readable checkpoint"),
    "plain_pickle": ("pickle.pkl", "not a model checkpoint"),
    "no_model": ("no_model.pth", "not a model checkpoint"),
    "other_model": ("other_model.pth", "none of its 1 tensors is a parameter of the model"),
    "baseline_into_selsa": ("baseline.pth", "roi_heads.box_head.aggregators.0.fc.{bias, weight}"),
    "num_classes_mismatch": ("four_classes.pth", "(5, 64) in the file, (4, 64) in the model"),
}


@pytest.mark.parametrize("case", sorted(WEIGHT_ERRORS))
def test_inference_weights_errors_name_the_file(weight_files, case):
    from selsa_d2.checkpoint.loading import WeightsError

    name, message = WEIGHT_ERRORS[case]
    path = str(weight_files / name)
    cfg = tiny_selsa_cfg(num_classes=3, MODEL__WEIGHTS=path)
    with pytest.raises(WeightsError) as info:
        VideoPredictor(cfg)
    text = str(info.value)
    assert path in text and message in text and "\n" not in text, text


def test_inference_weights_empty_needs_the_flag(weight_files):
    from selsa_d2.checkpoint.loading import WeightsError

    with pytest.raises(WeightsError, match="MODEL.WEIGHTS is empty.*TEST.ALLOW_MISSING_WEIGHTS"):
        VideoPredictor(tiny_selsa_cfg())
    assert VideoPredictor(tiny_selsa_cfg(TEST__ALLOW_MISSING_WEIGHTS=True)).model is not None
    # partial weights with the flag: loaded, the rest left random, with a warning
    cfg = tiny_selsa_cfg(
        MODEL__WEIGHTS=str(weight_files / "baseline.pth"), TEST__ALLOW_MISSING_WEIGHTS=True
    )
    pred = VideoPredictor(cfg)
    good = torch.load(weight_files / "good.pth")["model"]
    assert torch.equal(
        pred.model.state_dict()["roi_heads.box_head.fc1.weight"],
        good["roi_heads.box_head.fc1.weight"],
    )


def test_inference_weights_complete_load_exactly(weight_files):
    pred = VideoPredictor(tiny_selsa_cfg(MODEL__WEIGHTS=str(weight_files / "good.pth")))
    good = torch.load(weight_files / "good.pth")["model"]
    state = pred.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in good.items())


# ---------------------------------------------------------------------------- issue 13: frame dtypes
def _as_float01(f):
    return f.astype(np.float32) / 255.0


@pytest.mark.parametrize(
    "convert, message",
    [
        (_as_float01, "dtype float32"),
        (lambda f: f.astype(np.float64), "dtype float64"),
        (lambda f: f.astype(np.uint16) * 257, "dtype uint16"),
        (lambda f: f.astype(bool), "dtype bool"),
        (lambda f: np.zeros((0, 0, 3), np.uint8), "empty"),
        (lambda f: np.zeros((H, 0, 3), np.uint8), "empty"),
        (lambda f: f[:, :, :1], r"\[H, W, 3\]"),
        (lambda f: np.dstack([f, f[:, :, :1]]), r"\[H, W, 3\]"),
    ],
    ids=["float32_0_1", "float64", "uint16", "bool", "0x0", "Hx0", "one_channel", "four_channels"],
)
def test_inference_frame_dtype_and_shape_are_checked(predictor, convert, message):
    """Only uint8 BGR frames: a float frame in [0, 1] would run as a nearly black image and give
    plausible but wrong detections, so every other dtype is refused with a hint."""
    frames = synthetic_video(3, H, W, seed=7)
    frames[2] = convert(frames[2])
    for run in (lambda: predictor.predict_video(frames), lambda: list(predictor.stream(frames))):
        with pytest.raises(ValueError, match=message) as info:
            run()
        assert str(info.value).startswith("Frame 2:")
    # the documented explicit conversion of [0, 1] floats gives the uint8 result back
    frame = synthetic_video(1, H, W, seed=7)[0]
    converted = (_as_float01(frame) * 255).round().astype(np.uint8)
    assert (
        results_close(predictor(converted)["instances"], predictor(frame)["instances"], atol=1e-6)
        is None
    )


# ---------------------------------------------------------------------------- issue 13: mmtracking converter
@pytest.fixture
def converter():
    from repo_scripts import run_script

    def run(*argv):
        out = run_script("tools/convert_mmtrack_to_d2.py", *argv)
        return out.returncode, out.stdout + out.stderr

    return run


def test_converter_refuses_to_overwrite_its_input(converter, tmp_path, monkeypatch):
    src = tmp_path / "good.pth"
    src.write_bytes(b"checkpoint bytes")  # refused before it is read
    os.symlink(src, tmp_path / "alias.pth")
    monkeypatch.chdir(tmp_path)
    for out in (src, "./good.pth", tmp_path / "alias.pth"):
        code, text = converter(src, out)
        assert code == 1 and "is the input checkpoint" in text and str(out) in text, text
    assert src.read_bytes() == b"checkpoint bytes"


def test_converter_output_folder_must_exist(converter, tmp_path):
    src = tmp_path / "good.pth"
    src.write_bytes(b"x")
    code, text = converter(src, tmp_path / "missing" / "out.pth")
    assert code == 1 and f"output folder {tmp_path / 'missing'} does not exist" in text, text
    code, text = converter(src, tmp_path)
    assert code == 1 and "is a directory" in text


@pytest.mark.parametrize("bad", ["missing", "random_bytes", "plain_pickle", "directory", "empty"])
def test_converter_unusable_input_is_one_line(converter, tmp_path, bad):
    import pickle

    src = tmp_path / "in.pth"
    if bad == "random_bytes":
        src.write_bytes(np.random.RandomState(2).bytes(1000))
    elif bad == "plain_pickle":
        with open(src, "wb") as f:
            pickle.dump({"not": "a checkpoint"}, f)
    elif bad == "directory":
        src.mkdir()
    elif bad == "empty":
        src.write_bytes(b"")
    expected = {
        "missing": "file not found",
        "random_bytes": "not a readable PyTorch checkpoint",
        "plain_pickle": "not a readable PyTorch checkpoint",
        "directory": "is a directory",
        "empty": "file is empty",
    }[bad]
    code, text = converter(src, tmp_path / "out.pth")
    lines = [line for line in text.splitlines() if "Conversion failed" in line]
    assert code == 1 and len(lines) == 1, text
    assert lines[0].startswith(f"Conversion failed: mmtracking checkpoint {src}: {expected}"), (
        lines[0]
    )
    assert not (tmp_path / "out.pth").exists()


# ---------------------------------------------------------------------------- issue 13: prepare_imagenet_vid --out
def test_prepare_out_pointing_at_a_file(raw, tmp_path):
    from repo_scripts import run_script

    def prepare(out):
        return run_script(
            "datasets/prepare_imagenet_vid.py",
            *("--root", raw.root, "--out", out, "--no-progress", "--splits", "val"),
        )

    a_file = tmp_path / "annotations.json"
    a_file.write_text("{}")
    for out, problem in (
        (a_file, "is a file, not a directory"),
        (a_file / "sub", "cannot be created"),
    ):
        result = prepare(out)
        assert result.returncode == 2
        assert f"--out {out} {problem}" in result.stderr
    assert a_file.read_text() == "{}"
    assert prepare(tmp_path / "new").returncode == 0
    assert (tmp_path / "new" / "imagenet_vid_val.json").is_file()
