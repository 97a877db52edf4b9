"""Seq-NMS in the pipeline: the model's candidates, VideoPredictor, the evaluator, and re-scoring
saved detections (tools/rescore_detections.py's logic)."""

import json

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from test_vid_evaluator import imperfect_outputs, make_dicts, register
from tiny_model import (
    build_tiny_model,
    synthetic_video,
    tiny_selsa_cfg,
    torch_threads,
    video_inputs,
)

from selsa_d2.config import add_selsa_config
from selsa_d2.data.sampling import TestReferenceSampler as RefSampler
from selsa_d2.evaluation import VIDEvaluator
from selsa_d2.evaluation.saved_detections import (
    DetectionsFileError,
    load_saved_detections,
    rescore_saved_detections,
    seq_nms_on_predictions,
)
from selsa_d2.postprocessing.seq_nms import SeqNMSParams
from selsa_d2.postprocessing.video import SeqNMSSettings, finish_frame, seq_nms_frames
from selsa_d2.predictor import VideoPredictor


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with torch_threads(1):
        yield


def _seq_cfg(**overrides):
    return tiny_selsa_cfg(
        TEST__VID__SEQ_NMS__ENABLED=True,
        TEST__ALLOW_MISSING_WEIGHTS=True,
        MODEL__WEIGHTS="",
        **overrides,
    )


def test_model_candidates_give_the_usual_detections():
    """With Seq-NMS enabled the model's "instances" are unchanged, and per-frame NMS + cap of its
    candidates (same score threshold) are those detections."""
    frames = synthetic_video(5, 80, 112, seed=0)
    sampler = RefSampler("offline", "adaptive_stride", num_refs=3)
    plain = build_tiny_model(seed=0)
    thresh = plain.roi_heads.box_predictor.test_score_thresh
    seq = build_tiny_model(_seq_cfg(TEST__VID__SEQ_NMS__SCORE_THRESH=thresh), seed=0)
    assert seq.candidate_score_thresh == thresh and plain.candidate_score_thresh is None
    outs = []
    for model in (plain, seq):
        model.video_engine.configure(ref_sampler=sampler)
        outs.append(model.inference(video_inputs(frames, sampler, video_id=3)))
    predictor = plain.roi_heads.box_predictor
    total = 0
    for a, b in zip(*outs):
        assert set(b) == {"instances", "candidates"}
        x, y, c = a["instances"], b["instances"], b["candidates"]
        assert torch.equal(x.pred_boxes.tensor, y.pred_boxes.tensor)
        assert torch.equal(x.scores, y.scores)
        keep = finish_frame(
            c.pred_boxes.tensor,
            c.scores,
            c.pred_classes,
            predictor.test_nms_thresh,
            predictor.test_topk_per_image,
        )
        assert len(c) >= len(x)
        torch.testing.assert_close(c.pred_boxes.tensor[keep], x.pred_boxes.tensor)
        torch.testing.assert_close(c.scores[keep], x.scores)
        assert torch.equal(c.pred_classes[keep], x.pred_classes)
        total += len(x)
    assert total > 0


def test_predictor_applies_seq_nms_offline_and_refuses_online():
    cfg = _seq_cfg()
    frames = [np.ascontiguousarray(f) for f in synthetic_video(4, 80, 112, seed=1)]
    torch.manual_seed(0)
    predictor = VideoPredictor(cfg)
    results = predictor.predict_video(frames)
    assert len(results) == 4 and all(len(r) <= cfg.TEST.DETECTIONS_PER_IMAGE for r in results)
    with pytest.raises(ValueError, match="Seq-NMS links every frame"):
        predictor.predict_video(frames, mode="online")
    with pytest.raises(ValueError, match="Seq-NMS links every frame"):
        predictor.stream(iter(frames))
    with pytest.raises(ValueError, match="INPUT.VIDEO.TEST_MODE offline"):
        build_tiny_model(_seq_cfg(INPUT__VIDEO__TEST_MODE="online"))
    with pytest.raises(ValueError, match="RESCORE"):
        build_tiny_model(_seq_cfg(TEST__VID__SEQ_NMS__RESCORE="median"))


def _settings():
    # what SeqNMSSettings.from_config gives for Detectron2's defaults (_eval_cfg)
    return SeqNMSSettings(SeqNMSParams(), nms_thresh=0.5, max_per_frame=100, min_score=0.05)


def _eval_cfg(seq_nms: bool):
    cfg = get_cfg()
    add_selsa_config(cfg)
    cfg.TEST.VID.SEQ_NMS.ENABLED = seq_nms
    return cfg


def test_evaluator_applies_seq_nms_per_video():
    dicts = make_dicts()
    name = register(dicts)
    pairs = imperfect_outputs(dicts)
    ev = VIDEvaluator(_eval_cfg(True), name, distributed=False)
    ev.reset()
    for inp, out in pairs:
        ev.process([inp], [{"candidates": out["instances"]}])
    got = ev.evaluate()
    # the same by hand: Seq-NMS per video over the same boxes, then the plain evaluator
    plain = VIDEvaluator(name, distributed=False)
    preds = []
    for video in (0, 1):
        vp = [(i, o["instances"]) for i, o in pairs if i["video_id"] == video]
        done = seq_nms_frames(
            [o.pred_boxes.tensor.numpy() for _, o in vp],
            [o.scores.numpy() for _, o in vp],
            [o.pred_classes.numpy() for _, o in vp],
            _settings(),
        )
        for (i, _), (b, s, c) in zip(vp, done):
            preds.append(
                {
                    **{k: i[k] for k in ("image_id", "video_id", "frame_id")},
                    "boxes": b,
                    "scores": s,
                    "classes": c,
                }
            )
    expected = plain.evaluate_predictions(preds)
    assert got["vid"]["mAP"] == pytest.approx(expected["vid"]["mAP"])
    assert got["bbox"]["AP50"] == pytest.approx(expected["bbox"]["AP50"])
    # frames without video fields are one-frame videos
    ev.reset()
    for inp, out in pairs[:3]:
        image_only = {"image_id": inp["image_id"]}
        ev.process([image_only], [{"candidates": out["instances"]}])
    assert [p["image_id"] for p in ev._predictions] == [i["image_id"] for i, _ in pairs[:3]]
    ev.reset()
    with pytest.raises(ValueError, match="no 'candidates'"):
        ev.process([pairs[0][0]], [pairs[0][1]])


def _saved(tmp_path):
    dicts = make_dicts()
    name = register(dicts)
    pairs = imperfect_outputs(dicts)
    ev = VIDEvaluator(name, output_dir=str(tmp_path / "run"), distributed=False)
    ev.reset()
    for inp, out in pairs:
        ev.process([inp], [out])
    return name, ev.evaluate(), tmp_path / "run" / "vid_detections.json"


def test_rescore_saved_detections_matches_eval_and_applies_seq_nms(tmp_path):
    name, original, path = _saved(tmp_path)
    again = rescore_saved_detections(_eval_cfg(False), name, str(path))
    assert again["vid"]["mAP"] == pytest.approx(original["vid"]["mAP"], abs=1e-6)
    assert again["vid"]["mAP_degraded"] == pytest.approx(original["vid"]["mAP_degraded"], abs=1e-6)
    assert again["bbox"]["AP"] == pytest.approx(original["bbox"]["AP"], abs=1e-6)

    out = tmp_path / "seq"
    seq = rescore_saved_detections(_eval_cfg(True), name, str(path), output_dir=str(out))
    preds = seq_nms_on_predictions(load_saved_detections(str(path), name), _settings())
    expected = VIDEvaluator(name, distributed=False).evaluate_predictions(preds)
    assert seq["vid"]["mAP"] == pytest.approx(expected["vid"]["mAP"])
    assert (out / "vid_metrics.json").exists()
    with pytest.raises(ValueError, match="would overwrite the input"):
        rescore_saved_detections(_eval_cfg(False), name, str(path), output_dir=str(path.parent))


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d.append({**d[0], "image_id": 99999}), "image id not in dataset"),
        (lambda d: d.append({**d[0], "category_id": 42}), "category id not among"),
        (lambda d: d.append({**d[0], "bbox": [1, 2, 3]}), "bbox must be 4 finite numbers"),
        (lambda d: d.append({**d[0], "bbox": [1, 2, -3, 4]}), "width and height"),
        (lambda d: d.append({**d[0], "score": "high"}), "score must be a finite number"),
        (lambda d: d.append({"image_id": d[0]["image_id"]}), "missing"),
        (lambda d: d.append(7), "not a JSON object"),
    ],
)
def test_saved_detections_that_do_not_fit_are_named_errors(tmp_path, edit, match):
    name, _, path = _saved(tmp_path)
    data = json.loads(path.read_text())
    edit(data)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(DetectionsFileError, match=match) as info:
        load_saved_detections(str(bad), name)
    assert "bad.json" in str(info.value) and f"entry {len(data) - 1}" in str(info.value)
    bad.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(DetectionsFileError, match="expected a JSON list"):
        load_saved_detections(str(bad), name)
