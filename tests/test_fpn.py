"""SELSA on Detectron2's FPN detector: multi-level training and cached video inference, starting
from a single-frame Faster R-CNN-FPN checkpoint in Detectron2's model-zoo format, VideoPredictor,
and Temporal RoI Align's refusal of multi-level features."""

import os
import pickle

import pytest
import torch
from detectron2.modeling import GeneralizedRCNN, build_model
from detectron2.modeling.backbone import FPN
from detectron2.utils.events import EventStorage
from tiny_model import (
    REPO_ROOT,
    frame_input,
    randomize_frozen_bn,
    results_close,
    synthetic_video,
    tiny_fpn_cfg,
    torch_threads,
    training_inputs,
    video_inputs,
)

from selsa_d2.checkpoint.loading import WeightsCheckpointer, describe_uninitialised
from selsa_d2.data.sampling import TestReferenceSampler as RefSampler  # "Test*": not collected
from selsa_d2.modeling import SelsaRCNN
from selsa_d2.predictor import VideoPredictor


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def frames():
    return synthetic_video(8, 80, 112, seed=0)


def _build(cfg, seed=0):
    torch.manual_seed(seed)
    model = build_model(cfg)
    randomize_frozen_bn(model, seed)
    return model.eval()


def _video(model, inputs):
    model.video_engine.reset()
    with torch.no_grad():
        return [o["instances"] for o in model(inputs)]


def test_selsa_fpn_pools_all_levels_and_trains():
    model = _build(tiny_fpn_cfg()).train()
    assert isinstance(model, SelsaRCNN) and isinstance(model.backbone, FPN)
    assert model.roi_heads.box_in_features == ["p2", "p3", "p4", "p5"]
    assert len(model.roi_heads.box_pooler.level_poolers) == 4
    with EventStorage(0):
        losses = model(training_inputs(num_keys=2, num_refs=2))
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}
    sum(losses.values()).backward()
    agg = model.roi_heads.box_head.aggregators[0]
    # references reach the loss through the aggregators (key and reference RoIs on FPN levels)
    assert agg.ref_fc.weight.grad is not None and agg.ref_fc.weight.grad.abs().sum() > 0
    assert model.proposal_generator.training  # the references' test-mode RPN restored


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_cached_equals_recomputed(frames, mode):
    cached = _build(tiny_fpn_cfg(INPUT__VIDEO__TEST_MODE=mode))
    recomputed = _build(
        tiny_fpn_cfg(INPUT__VIDEO__TEST_MODE=mode, MODEL__SELSA__INFERENCE__CACHE_FEATURES=False)
    )
    sampler = cached.video_engine.ref_sampler
    inputs = video_inputs(frames, sampler, video_id=3)
    a, b = _video(cached, inputs), _video(recomputed, inputs)
    assert sum(len(x) for x in a) > 0
    for t, (x, y) in enumerate(zip(a, b)):
        assert results_close(x, y, atol=1e-4) is None, f"frame {t}: {results_close(x, y)}"
    assert cached.video_engine.frames_computed == len(frames)
    assert recomputed.video_engine.frames_computed > 2 * len(frames)


def test_engine_equals_plain_multi_level_roi_heads_forward(frames):
    """The cached per-frame path (one image at a time) gives the batched ROI-heads forward's
    detections: all key and reference RoIs pooled over p2-p5 in one call."""
    model = _build(tiny_fpn_cfg(), seed=1)
    sampler = RefSampler("offline", "fixed_window", num_refs=2, stride=2)
    model.video_engine.ref_sampler = sampler
    model.video_engine.reset()
    with torch.no_grad():
        raw = model.inference(video_inputs(frames, sampler), do_postprocess=False)
    for t in (0, 5):
        ids = [t] + sampler.refs(t, len(frames)) + [t]
        inputs = [frame_input(frames[i], 0, i, len(frames)) for i in ids]
        with torch.no_grad():
            images = model.preprocess_image(inputs)
            feats = model.backbone(images.tensor)
            props, _ = model.proposal_generator(images, feats, None)
            want, _ = model.roi_heads(images, feats, props[:1], ref_proposals=props[1:])
        assert len(want[0]) > 0
        # batched and one-image convolutions round differently: the random network's FPN maps
        # reach ~2e4 and differ by ~1.5e-6 of that, ~2e-3 px in boxes, ~4e-4 in scores
        assert results_close(raw[t], want[0], atol=1e-2) is None


def test_cached_frame_holds_no_feature_maps(frames):
    """What a frame caches with FPN: its proposals, layer-0 key input and per-FC-layer reference
    keys/values, (1 + 2 * NUM_FC) * P * FC_DIM floats; not the five FPN maps."""
    cfg = tiny_fpn_cfg()
    model = _build(cfg)
    with torch.no_grad():
        f = model.compute_frame_features(frame_input(frames[0], 0, 0, 1))
    assert f.feature_maps is None
    p, d = len(f), cfg.MODEL.ROI_BOX_HEAD.FC_DIM
    assert 0 < p <= cfg.MODEL.RPN.POST_NMS_TOPK_TEST and f.key_input.shape == (p, d)
    rows = [t for layer in f.memory for t in layer]
    assert len(rows) == 2 * cfg.MODEL.ROI_BOX_HEAD.NUM_FC
    assert all(t.shape == (p, d) for t in rows)


# ---------------------------------------------------------------- from a Detectron2 checkpoint
def _zoo_checkpoint(model, path):
    """``model``'s weights as a Detectron2 model-zoo file: .pkl of numpy arrays with an
    ``__author__``, or .pth with a "model" dict (what DetectionCheckpointer writes)."""
    state = model.state_dict()
    if str(path).endswith(".pkl"):
        with open(path, "wb") as f:
            pickle.dump(
                {"model": {k: v.numpy() for k, v in state.items()}, "__author__": "test zoo"}, f
            )
    else:
        torch.save({"model": state, "iteration": 0}, path)
    return str(path)


@pytest.fixture(scope="module")
def faster_rcnn_fpn():
    model = _build(tiny_fpn_cfg(single_frame=True), seed=5)
    assert type(model) is GeneralizedRCNN
    names = set(model.state_dict())
    assert {"roi_heads.box_head.fc1.weight", "roi_heads.box_head.fc2.weight"} <= names
    assert {
        "roi_heads.box_predictor.cls_score.weight",
        "roi_heads.box_predictor.bbox_pred.bias",
    } <= (names)
    return model


@pytest.mark.parametrize("suffix", [".pkl", ".pth"])
def test_zoo_checkpoint_starts_selsa_fpn_as_that_detector(
    frames, faster_rcnn_fpn, tmp_path, suffix
):
    path = _zoo_checkpoint(faster_rcnn_fpn, tmp_path / f"model_final{suffix}")
    cfg = tiny_fpn_cfg(MODEL__SELSA__ZERO_INIT_AGGREGATOR_OUTPUT=True)
    selsa = _build(cfg, seed=9)  # other random weights everywhere: the file must overwrite them
    checkpointer = WeightsCheckpointer(selsa)
    checkpointer.load(path, checkpointables=[])
    aggregator_keys = sorted(k for k in selsa.state_dict() if ".aggregators." in k)
    assert len(aggregator_keys) == 8 * cfg.MODEL.ROI_BOX_HEAD.NUM_FC
    assert checkpointer.uninitialised_keys == aggregator_keys
    assert checkpointer.shape_mismatches == []

    inputs = video_inputs(frames, selsa.video_engine.ref_sampler)
    got = _video(selsa, inputs)
    with torch.no_grad():
        want = [faster_rcnn_fpn([frame_input(f, 0, 0, 1)])[0]["instances"] for f in frames]
    assert sum(len(x) for x in want) > 0
    for t, (x, y) in enumerate(zip(got, want)):
        assert results_close(x, y, atol=1e-5) is None, f"frame {t}: {results_close(x, y)}"


def test_zoo_checkpoint_with_other_class_count_reports_class_layers(faster_rcnn_fpn, tmp_path):
    path = _zoo_checkpoint(faster_rcnn_fpn, tmp_path / "model_final.pkl")  # 3 classes
    selsa = _build(tiny_fpn_cfg(num_classes=5, MODEL__SELSA__ZERO_INIT_AGGREGATOR_OUTPUT=True))
    checkpointer = WeightsCheckpointer(selsa)
    checkpointer.load(path, checkpointables=[])
    missing = checkpointer.uninitialised_keys
    class_keys = {
        f"roi_heads.box_predictor.{m}.{p}"
        for m in ("cls_score", "bbox_pred")
        for p in ("weight", "bias")
    }
    assert class_keys <= set(missing)
    assert all(k in class_keys or ".aggregators." in k for k in missing)
    report = describe_uninitialised(missing, checkpointer.shape_mismatches)
    assert "SELSA aggregators" in report
    assert "the file's are for 3 classes, the model's for 5" in report
    assert "other parameters" not in report
    # a checkpoint of another architecture is named as such
    assert "other parameters backbone.fpn_lateral2.weight" in describe_uninitialised(
        ["backbone.fpn_lateral2.weight"]
    )


# ---------------------------------------------------------------- predictor, TRoI
def test_video_predictor_with_fpn(frames, tmp_path):
    model = _build(tiny_fpn_cfg(), seed=0)
    path = tmp_path / "selsa_fpn.pth"
    torch.save({"model": model.state_dict()}, path)
    cfg = tiny_fpn_cfg(
        MODEL__WEIGHTS=str(path), INPUT__MIN_SIZE_TEST=80, INPUT__VIDEO__TEST_NUM_REFS=3
    )
    pred = VideoPredictor(cfg)
    offline = pred.predict_video(frames)
    sampler = pred.reference_sampler("offline")
    model.video_engine.ref_sampler = sampler
    direct = _video(model, video_inputs(frames, sampler, fmt="BGR"))  # Detectron2's FPN: BGR
    assert len(offline) == len(frames) and sum(len(x) for x in offline) > 0
    for x, y in zip(offline, direct):
        assert results_close(x, y, atol=1e-4) is None
    streamed = list(pred.stream(iter(frames)))
    assert len(streamed) == len(frames) and streamed[0].image_size == (80, 112)


def test_temporal_roi_align_refuses_fpn():
    cfg = tiny_fpn_cfg(MODEL__ROI_HEADS__NAME="SelsaTRoIROIHeads")
    with pytest.raises(
        ValueError, match=r"one feature map per frame.*\['p2', 'p3', 'p4', 'p5'\].*FPN"
    ):
        build_model(cfg)


# ---------------------------------------------------------------- the ImageNet VID configs
def _value(cfg, dotted: str):
    for name in dotted.split("."):
        cfg = getattr(cfg, name)
    return cfg


@pytest.mark.parametrize(
    "name, zoo",
    [
        ("selsa_R_50_FPN_7e_imagenetvid.yaml", "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"),
        ("selsa_R_101_FPN_7e_imagenetvid.yaml", "COCO-Detection/faster_rcnn_R_101_FPN_3x.yaml"),
    ],
)
def test_fpn_config_is_detectron2_zoo_detector_plus_aggregators(name, zoo):
    """The model-zoo Faster R-CNN-FPN's state dict is SELSA-FPN's minus the aggregators (the class
    layers differ in size only: 80 COCO vs 30 VID classes); same test-time settings that decide
    its detections; schedule and references as the DC5 recipe."""
    from detectron2 import model_zoo
    from detectron2.config import get_cfg

    from selsa_d2.config import add_selsa_config

    def load(path):
        cfg = get_cfg()
        add_selsa_config(cfg)
        cfg.merge_from_file(path)
        cfg.MODEL.DEVICE = "cpu"
        return cfg

    selsa_cfg = load(os.path.join(REPO_ROOT, "configs", name))
    zoo_cfg = load(model_zoo.get_config_file(zoo))
    dc5_cfg = load(os.path.join(REPO_ROOT, "configs", name.replace("FPN", "DC5")))
    for key in (
        "MODEL.PIXEL_MEAN",
        "MODEL.PIXEL_STD",
        "INPUT.FORMAT",
        "MODEL.RESNETS.STRIDE_IN_1X1",
        "MODEL.ANCHOR_GENERATOR.SIZES",
        "MODEL.ANCHOR_GENERATOR.OFFSET",
        "MODEL.RPN.IN_FEATURES",
        "MODEL.RPN.PRE_NMS_TOPK_TEST",
        "MODEL.RPN.NMS_THRESH",
        "MODEL.ROI_HEADS.IN_FEATURES",
        "MODEL.ROI_BOX_HEAD.POOLER_TYPE",
        "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO",
        "MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS",
        "MODEL.WEIGHTS",
    ):
        assert _value(selsa_cfg, key) == _value(zoo_cfg, key), key
    for key in ("SOLVER", "DATASETS", "INPUT.VIDEO", "INPUT.MIN_SIZE_TEST", "INPUT.MAX_SIZE_TEST"):
        assert _value(selsa_cfg, key) == _value(dc5_cfg, key), key
    selsa = build_model(selsa_cfg).state_dict()
    detector = build_model(zoo_cfg).state_dict()
    aggregators = {k for k in selsa if ".aggregators." in k}
    assert len(aggregators) == 16 and set(selsa) - aggregators == set(detector)
    class_layers = {k for k in detector if "box_predictor." in k}
    for k in set(detector) - class_layers:
        assert selsa[k].shape == detector[k].shape, k
    assert selsa["roi_heads.box_predictor.cls_score.weight"].shape == (31, 1024)
    assert detector["roi_heads.box_predictor.cls_score.weight"].shape == (81, 1024)


def test_fpn_backbone_honours_zero_init_residual():
    cfg = tiny_fpn_cfg(MODEL__RESNETS__NORM="BN", MODEL__SELSA__ZERO_INIT_RESIDUAL=True)
    bottom_up = build_model(cfg).backbone.bottom_up
    last_norms = [block.conv3.norm.weight for stage in bottom_up.stages for block in stage]
    assert len(last_norms) == 16 and all(bool((w == 0).all()) for w in last_norms)
