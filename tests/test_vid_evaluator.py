"""VIDEvaluator through process/evaluate on registered in-memory datasets."""

import contextlib
import io
import json
import math
import uuid

import detectron2.utils.comm as comm
import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from selsa_d2.config import add_selsa_config
from selsa_d2.evaluation import VIDEvaluator, merge_predictions
from selsa_d2.evaluation import vid_metrics as vm
from selsa_d2.evaluation.vid_evaluator import gt_frames_from_dicts

CLASSES = ["cat", "dog", "car"]  # "car" has no gt
H, W = 240, 320


def make_dicts():
    """Two videos of 6 frames: video 0 holds a static cat and a fast dog, video 1 a static dog.
    Frames 3..5 of each video are degraded ("blur"); the others are clean."""
    dicts, image_id = [], 100
    for video_id in range(2):
        for t in range(6):
            anns = []
            if video_id == 0:
                anns.append({"bbox": [20, 20, 80, 90], "category_id": 0, "instance_id": 0})
                anns.append(
                    {"bbox": [30 * t, 150, 30 * t + 40, 200], "category_id": 1, "instance_id": 1}
                )
            else:
                anns.append({"bbox": [100, 50, 200, 150], "category_id": 1, "instance_id": 0})
            for a in anns:
                a.update(bbox_mode=BoxMode.XYXY_ABS, occluded=False, generated=False, iscrowd=0)
            dicts.append(
                {
                    "file_name": f"/nonexistent/{video_id}/{t:06d}.JPEG",
                    "height": H,
                    "width": W,
                    "image_id": image_id,
                    "video_id": video_id,
                    "frame_id": t,
                    "video_length": 6,
                    "video_name": f"v{video_id}",
                    "annotations": anns,
                    "degradations": ["blur"] if t >= 3 else [],
                }
            )
            image_id += 1
    return dicts


def register(dicts, **meta):
    name = f"vid_eval_test_{uuid.uuid4().hex[:8]}"
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=list(CLASSES), evaluator_type="vid", **meta)
    return name


def instances(boxes, scores, classes):
    inst = Instances((H, W))
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.scores = torch.tensor(scores, dtype=torch.float32)
    inst.pred_classes = torch.tensor(classes, dtype=torch.int64)
    return inst


def imperfect_outputs(dicts):
    """Deterministic detections: jittered true boxes, misses on degraded frames, false positives."""
    rng = np.random.RandomState(0)
    pairs = []
    for d in dicts:
        boxes, scores, classes = [], [], []
        for k, a in enumerate(d["annotations"]):
            if d["degradations"] and k == 0:
                continue  # missed on degraded frames
            b = np.array(a["bbox"], dtype=np.float64) + rng.uniform(-6, 6, size=4)
            boxes.append(b.tolist())
            scores.append(float(rng.uniform(0.3, 1.0)))
            classes.append(a["category_id"])
        boxes.append([250.0, 10.0, 300.0, 60.0])  # background false positive
        scores.append(float(rng.uniform(0.1, 0.9)))
        classes.append(int(rng.randint(0, 3)))
        inp = {
            k: d[k] for k in ("image_id", "video_id", "frame_id", "height", "width", "file_name")
        }
        pairs.append((inp, {"instances": instances(boxes, scores, classes)}))
    return pairs


def run_evaluator(name, pairs, output_dir=None, distributed=False):
    ev = VIDEvaluator(name, output_dir=output_dir, distributed=distributed)
    ev.reset()
    for inp, out in pairs:
        ev.process([inp], [out])
    return ev.evaluate()


def coco_ap50_direct(dicts, pairs):
    """pycocotools on a COCO gt built here by hand (category id = contiguous + 1)."""
    images, anns = [], []
    for d in dicts:
        images.append({"id": d["image_id"], "width": W, "height": H, "file_name": d["file_name"]})
        for a in d["annotations"]:
            x1, y1, x2, y2 = a["bbox"]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": d["image_id"],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                    "category_id": a["category_id"] + 1,
                }
            )
    coco = COCO()
    coco.dataset = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)],
    }
    results = []
    for inp, out in pairs:
        inst = out["instances"]
        for b, s, c in zip(
            inst.pred_boxes.tensor.tolist(), inst.scores.tolist(), inst.pred_classes.tolist()
        ):
            results.append(
                {
                    "image_id": inp["image_id"],
                    "category_id": c + 1,
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                    "score": s,
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_perfect_detections_and_files(tmp_path):
    dicts = make_dicts()
    name = register(dicts)
    pairs = []
    for d in dicts:
        boxes = [a["bbox"] for a in d["annotations"]]
        classes = [a["category_id"] for a in d["annotations"]]
        pairs.append(
            (
                {"image_id": d["image_id"], "video_id": d["video_id"], "frame_id": d["frame_id"]},
                {"instances": instances(boxes, [0.9] * len(boxes), classes)},
            )
        )
    res = run_evaluator(name, pairs, output_dir=str(tmp_path))
    vid, bbox = res["vid"], res["bbox"]
    for key in ("mAP", "AP-cat", "AP-dog", "mAP_slow", "mAP_fast", "mAP_degraded", "mAP_clean"):
        assert vid[key] == pytest.approx(100.0), key
    assert math.isnan(vid["AP-car"])
    assert math.isnan(vid["mAP_medium"])  # no gt moves at medium speed
    assert bbox["AP50"] == pytest.approx(100.0) and bbox["AP"] == pytest.approx(100.0)
    assert set(bbox) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}

    metrics = json.load(open(tmp_path / "vid_metrics.json"))
    assert metrics["vid"]["mAP"] == pytest.approx(100.0)
    assert metrics["vid"]["AP-car"] is None  # NaN written as null
    assert metrics["categories"] == [
        {"id": 1, "name": "cat"},
        {"id": 2, "name": "dog"},
        {"id": 3, "name": "car"},
    ]
    dets = json.load(open(tmp_path / "vid_detections.json"))
    assert len(dets) == sum(len(d["annotations"]) for d in dicts)
    first = dets[0]
    assert first["image_id"] == 100 and first["category_id"] == 1  # cat -> contiguous 0 + 1
    np.testing.assert_allclose(first["bbox"], [20, 20, 60, 70])
    assert first["score"] == pytest.approx(0.9)


def test_metrics_match_direct_computation():
    dicts = make_dicts()
    name = register(dicts)
    pairs = imperfect_outputs(dicts)
    res = run_evaluator(name, pairs)

    stats = coco_ap50_direct(dicts, pairs)
    assert res["bbox"]["AP50"] / 100 == pytest.approx(stats[1], abs=1e-6)
    assert res["bbox"]["AP"] / 100 == pytest.approx(stats[0], abs=1e-6)
    assert 0 < stats[1] < 1

    frames = gt_frames_from_dicts(dicts)
    dets = {
        inp["image_id"]: {
            "boxes": o["instances"].pred_boxes.tensor.numpy(),
            "scores": o["instances"].scores.numpy(),
            "classes": o["instances"].pred_classes.numpy(),
        }
        for inp, o in pairs
    }
    aps, mean = vm.vid_eval(frames, dets, 3)
    assert res["vid"]["mAP"] == pytest.approx(mean * 100)
    assert res["vid"]["AP-cat"] == pytest.approx(aps[0] * 100)
    degraded = [d["image_id"] for d in dicts if d["degradations"]]
    clean = [d["image_id"] for d in dicts if not d["degradations"]]
    for key, ids in (("mAP_degraded", degraded), ("mAP_clean", clean)):
        expected = vm.vid_eval(*vm.select_frames(frames, dets, ids), 3)[1] * 100
        assert res["vid"][key] == pytest.approx(expected)
    assert res["vid"]["mAP_degraded"] < res["vid"]["mAP_clean"]
    speed = vm.vid_eval_by_speed(frames, dets, 3)
    for group in ("slow", "fast"):
        assert res["vid"][f"mAP_{group}"] == pytest.approx(speed[group][1] * 100)


def test_missing_frames_and_unknown_images():
    dicts = make_dicts()
    name = register(dicts)
    pairs = imperfect_outputs(dicts)
    full = run_evaluator(name, pairs)
    partial = run_evaluator(name, pairs[:6])  # video 1 not predicted: its gts are missed
    assert partial["vid"]["AP-dog"] < full["vid"]["AP-dog"]

    bad_inp = dict(pairs[0][0], image_id=99999)
    with pytest.raises(ValueError, match="99999"):
        run_evaluator(name, [(bad_inp, pairs[0][1])])


def test_no_degradation_keys_without_records():
    dicts = make_dicts()
    for d in dicts:
        del d["degradations"]
    name = register(dicts)
    res = run_evaluator(name, imperfect_outputs(make_dicts()))
    assert "mAP_degraded" not in res["vid"] and "mAP_clean" not in res["vid"]


def test_dataset_category_id_mapping(tmp_path):
    dicts = make_dicts()
    name = register(dicts, thing_dataset_id_to_contiguous_id={7: 0, 3: 1, 11: 2})
    pairs = imperfect_outputs(dicts)
    res = run_evaluator(name, pairs, output_dir=str(tmp_path))
    dets = json.load(open(tmp_path / "vid_detections.json"))
    assert {d["category_id"] for d in dets} <= {7, 3, 11}
    # the mapping changes ids, not results
    plain = run_evaluator(register(dicts), pairs)
    assert res["bbox"]["AP50"] == pytest.approx(plain["bbox"]["AP50"])
    assert res["vid"]["mAP"] == pytest.approx(plain["vid"]["mAP"])


def test_distributed_gather(monkeypatch):
    dicts = make_dicts()
    name = register(dicts)
    pairs = imperfect_outputs(dicts)
    single = run_evaluator(name, pairs, distributed=False)

    # rank 0's evaluator sees the even frames; the gather hands it rank 1's odd frames too
    ev_rank1 = VIDEvaluator(name, distributed=True)
    for inp, out in pairs[1::2]:
        ev_rank1.process([inp], [out])
    monkeypatch.setattr(comm, "synchronize", lambda: None)
    monkeypatch.setattr(comm, "gather", lambda data, dst=0: [data, ev_rank1._predictions])
    monkeypatch.setattr(comm, "is_main_process", lambda: True)
    ev = VIDEvaluator(name, distributed=True)
    for inp, out in pairs[0::2]:
        ev.process([inp], [out])
    gathered = ev.evaluate()
    for task in ("vid", "bbox"):
        for k, v in single[task].items():
            assert gathered[task][k] == pytest.approx(v, nan_ok=True), k

    # non-main ranks return {}
    monkeypatch.setattr(comm, "is_main_process", lambda: False)
    assert ev.evaluate() == {}


def test_box_convention_from_config(tmp_path):
    """gt [100, 100, 129, 129] and detection [96, 92, 137, 125]: IoU 780/1548 = 0.5039 with the
    devkit's +1 (a TP), 725/1469 = 0.4935 without (pycocotools and the continuous option: no match)."""
    dicts = [
        {
            "file_name": "/nonexistent/0.JPEG",
            "height": H,
            "width": W,
            "image_id": 1,
            "video_id": 1,
            "frame_id": 0,
            "video_length": 1,
            "video_name": "v",
            "annotations": [
                {
                    "bbox": [100, 100, 129, 129],
                    "bbox_mode": BoxMode.XYXY_ABS,
                    "category_id": 0,
                    "instance_id": 0,
                    "iscrowd": 0,
                }
            ],
        }
    ]
    name = register(dicts)
    pair = (
        {"image_id": 1, "video_id": 1, "frame_id": 0},
        {"instances": instances([[96, 92, 137, 125]], [0.9], [0])},
    )
    cfg = get_cfg()
    add_selsa_config(cfg)
    assert cfg.TEST.VID.BOX_CONVENTION == "devkit"
    results = {}
    for conv in ("devkit", "continuous"):
        cfg.TEST.VID.BOX_CONVENTION = conv
        ev = VIDEvaluator(cfg, name, str(tmp_path / conv), distributed=False)
        assert ev.output_dir == str(tmp_path / conv)
        ev.reset()
        ev.process([pair[0]], [pair[1]])
        results[conv] = ev.evaluate()
        assert json.load(open(tmp_path / conv / "vid_metrics.json"))["vid_box_convention"] == conv
    assert results["devkit"]["vid"]["AP-cat"] == pytest.approx(100.0)
    assert results["continuous"]["vid"]["AP-cat"] == 0.0
    for conv in results:  # pycocotools, no +1, whatever the VID convention
        assert results[conv]["bbox"]["AP50"] == 0.0
    cfg.TEST.VID.BOX_CONVENTION = "inclusive"
    with pytest.raises(ValueError, match="inclusive"):
        VIDEvaluator(cfg, name)


def test_merge_predictions():
    a = [{"image_id": 3}, {"image_id": 1}]
    b = [{"image_id": 2}]
    assert [p["image_id"] for p in merge_predictions([a, b])] == [1, 2, 3]
    with pytest.raises(ValueError, match="more than once"):
        merge_predictions([a, [{"image_id": 1}]])
