"""SELSA model parts: aggregator math, box head, ROI heads, backbone, training forward."""

import math

import pytest
import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone
from detectron2.structures import ImageList
from detectron2.utils.events import EventStorage
from tiny_model import build_tiny_model, tiny_selsa_cfg, torch_threads, training_inputs

from selsa_d2.modeling import (
    ReferenceMemory,
    SelsaAggregator,
    SelsaBoxHead,
    SelsaDC5Backbone,
    SelsaRCNN,
    SelsaROIHeads,
)


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with torch_threads(1):
        yield


def reference_aggregate(agg: SelsaAggregator, x, ref_x):
    """Independent per-head loop of mmtracking's SelsaAggregator.forward."""
    g = agg.num_attention_blocks
    d = x.shape[1] // g
    q, k, v = agg.fc_embed(x), agg.ref_fc_embed(ref_x), agg.ref_fc(ref_x)
    heads = []
    for h in range(g):
        sl = slice(h * d, (h + 1) * d)
        w = torch.softmax(q[:, sl] @ k[:, sl].T / math.sqrt(d), dim=1)
        heads.append(w @ v[:, sl])
    return agg.fc(torch.cat(heads, dim=1))


def reference_box_head(head: SelsaBoxHead, x, ref_x):
    x, ref = x.flatten(1), ref_x.flatten(1)
    for fc, agg in zip(head.fcs, head.aggregators):
        x, ref = fc(x), fc(ref)
        x = x + (reference_aggregate(agg, x, ref) if len(ref) else 0)
        x, ref = F.relu(x), F.relu(ref)
    return x


# ---------------------------------------------------------------- aggregator
@pytest.mark.parametrize("heads", [1, 4, 16])
def test_aggregator_matches_per_head_formula(heads):
    torch.manual_seed(0)
    agg = SelsaAggregator(32, heads)
    x, ref = torch.randn(7, 32), torch.randn(11, 32)
    out = agg(x, ref)
    assert out.shape == (7, 32)
    torch.testing.assert_close(out, reference_aggregate(agg, x, ref), atol=1e-5, rtol=0)
    # a reference set that is the same rows twice gives the same softmax weights
    torch.testing.assert_close(agg(x, torch.cat([ref, ref])), out, atol=1e-5, rtol=0)


def test_aggregator_without_references_is_zero():
    agg = SelsaAggregator(16, 4)
    out = agg(torch.randn(5, 16), torch.zeros(0, 16))
    assert out.shape == (5, 16) and torch.count_nonzero(out) == 0


def test_aggregator_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="divisible"):
        SelsaAggregator(30, 4)


def test_aggregator_grouped_equals_separate():
    torch.manual_seed(1)
    agg = SelsaAggregator(16, 4)
    x1, x2, r1, r2 = torch.randn(3, 16), torch.randn(4, 16), torch.randn(5, 16), torch.randn(2, 16)
    k, v = agg.project_reference(torch.cat([r1, r2]))
    out = agg.attend_grouped(torch.cat([x1, x2]), k, v, [3, 4], [5, 2])
    torch.testing.assert_close(out, torch.cat([agg(x1, r1), agg(x2, r2)]), atol=1e-6, rtol=0)


# ---------------------------------------------------------------- box head
def _box_head(seed=0, channels=8, fc_dim=32, blocks=4):
    torch.manual_seed(seed)
    return SelsaBoxHead(
        ShapeSpec(channels=channels, height=7, width=7),
        fc_dims=[fc_dim, fc_dim],
        num_attention_blocks=blocks,
    )


def test_box_head_state_dict_names():
    names = list(_box_head().state_dict())
    assert names[:4] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert "aggregators.0.fc_embed.weight" in names and "aggregators.1.ref_fc.bias" in names
    assert {n.split(".")[2] for n in names if n.startswith("aggregators.0.")} == {
        "fc_embed",
        "ref_fc_embed",
        "ref_fc",
        "fc",
    }


def test_box_head_matches_explicit_computation_and_cached_split():
    head = _box_head()
    x, ref = torch.randn(6, 8, 7, 7), torch.randn(9, 8, 7, 7)
    expected = reference_box_head(head, x, ref)
    torch.testing.assert_close(head(x, ref), expected, atol=1e-5, rtol=0)
    # the per-frame split shared with video inference: references' memory once, key input =
    # layer 0's pre-ReLU output
    _, memory = head.frame_features(ref)
    assert len(memory) == 9 and len(memory.layers) == 2 and memory[0][0].shape == (9, 32)
    key_input, _ = head.frame_features(x)
    torch.testing.assert_close(
        head.attend_references(key_input, memory), expected, atol=1e-5, rtol=0
    )
    # concatenating memories (with spare rows for an appended key frame) equals one memory
    _, m1 = head.frame_features(ref[:4])
    _, m2 = head.frame_features(ref[4:])
    _, mx = head.frame_features(x)
    joined = ReferenceMemory.cat([m1, m2], spare_rows=6)
    torch.testing.assert_close(
        head.attend_references(key_input, joined), expected, atol=1e-5, rtol=0
    )
    _, both = head.frame_features(torch.cat([ref, x]))
    appended = joined.append(mx)
    assert appended.spare_rows == 0 and len(appended) == 15
    torch.testing.assert_close(
        head.attend_references(key_input, appended),
        head.attend_references(key_input, both),
        atol=1e-5,
        rtol=0,
    )


def test_box_head_without_references_is_plain_two_fc_head():
    head = _box_head()
    x = torch.randn(4, 8, 7, 7)
    plain = F.relu(head.fc2(F.relu(head.fc1(x.flatten(1)))))
    torch.testing.assert_close(head(x), plain, atol=0, rtol=0)
    torch.testing.assert_close(head(x, torch.zeros(0, 8, 7, 7)), plain, atol=0, rtol=0)


def test_box_head_batch_of_two_equals_separate():
    head = _box_head(seed=3)
    x1, x2 = torch.randn(3, 8, 7, 7), torch.randn(5, 8, 7, 7)
    r1, r2 = torch.randn(4, 8, 7, 7), torch.randn(6, 8, 7, 7)
    both = head(torch.cat([x1, x2]), torch.cat([r1, r2]), [3, 5], [4, 6])
    torch.testing.assert_close(both, torch.cat([head(x1, r1), head(x2, r2)]), atol=1e-5, rtol=0)


def test_box_head_config_errors():
    cfg = tiny_selsa_cfg()
    cfg.MODEL.ROI_BOX_HEAD.NUM_CONV = 1
    with pytest.raises(ValueError, match="NUM_CONV"):
        SelsaBoxHead(cfg, ShapeSpec(channels=8, height=7, width=7))


# ---------------------------------------------------------------- backbone
def test_dc5_backbone_r50_layout():
    cfg = tiny_selsa_cfg()
    cfg.merge_from_list(
        [
            "MODEL.RESNETS.DEPTH",
            50,
            "MODEL.RESNETS.RES2_OUT_CHANNELS",
            256,
            "MODEL.RESNETS.RES5_DILATION",
            2,
            "MODEL.RESNETS.OUT_FEATURES",
            ["res5"],
            "MODEL.SELSA.BACKBONE_OUT_FEATURE",
            "res5",
            "MODEL.SELSA.NECK_CHANNELS",
            512,
            "MODEL.BACKBONE.FREEZE_AT",
            2,
        ]
    )
    bb = build_backbone(cfg)
    assert isinstance(bb, SelsaDC5Backbone)
    assert bb.size_divisibility == 16
    shape = bb.output_shape()["neck"]
    assert (shape.channels, shape.stride) == (512, 16)
    sd = bb.state_dict()
    for name in [
        "bottom_up.stem.conv1.weight",
        "bottom_up.stem.conv1.norm.running_var",
        "bottom_up.res2.0.shortcut.weight",
        "bottom_up.res2.0.conv1.norm.weight",
        "bottom_up.res5.2.conv3.weight",
        "neck.weight",
        "neck.bias",
    ]:
        assert name in sd, name
    assert tuple(sd["neck.weight"].shape) == (512, 2048, 3, 3)
    res = bb.bottom_up
    assert res.res3[0].conv2.stride == (2, 2) and res.res3[0].conv1.stride == (
        1,
        1,
    )  # pytorch style
    assert all(block.conv2.dilation == (2, 2) for block in res.res5)  # block 0 included, as mmdet
    assert res.res5[0].conv2.stride == (1, 1)
    out = bb(torch.randn(1, 3, 64, 96))
    assert list(out) == ["neck"] and out["neck"].shape == (1, 512, 4, 6)
    assert (out["neck"] >= 0).all()  # ReLU


def test_backbone_rejects_stride_32_feature():
    cfg = tiny_selsa_cfg()
    cfg.merge_from_list(
        ["MODEL.RESNETS.OUT_FEATURES", ["res5"], "MODEL.SELSA.BACKBONE_OUT_FEATURE", "res5"]
    )
    with pytest.raises(ValueError, match="stride-16"):
        build_backbone(cfg)


def test_tiny_backbone_res4():
    model = build_tiny_model()
    assert isinstance(model, SelsaRCNN) and isinstance(model.roi_heads, SelsaROIHeads)
    assert not hasattr(model.backbone.bottom_up, "res5")
    out = model.backbone(torch.randn(2, 3, 48, 64))
    assert out["neck"].shape == (2, 32, 3, 4)


# ---------------------------------------------------------------- ROI heads
def _features_and_proposals(model, num_images, seed=0):
    """Random neck features and RPN proposals for ``num_images`` 64x96 images."""
    torch.manual_seed(seed)
    feats = {"neck": torch.relu(torch.randn(num_images, 32, 4, 6))}
    images = ImageList(torch.zeros(num_images, 3, 64, 96), [(64, 96)] * num_images)
    with torch.no_grad():
        was = model.proposal_generator.training
        model.proposal_generator.eval()
        proposals, _ = model.proposal_generator(images, feats, None)
        model.proposal_generator.train(was)
    return images, feats, proposals


def test_roi_heads_inference_batch_of_two_equals_separate():
    model = build_tiny_model()
    images, feats, props = _features_and_proposals(model, 5)
    heads = model.roi_heads
    sel = lambda idx: {"neck": feats["neck"][idx]}  # noqa: E731
    with torch.no_grad():
        both, _ = heads(images, feats, props[:2], ref_proposals=props[2:], num_refs=[2, 1])
        first, _ = heads(images, sel([0, 2, 3]), props[:1], ref_proposals=props[2:4])
        second, _ = heads(images, sel([1, 4]), props[1:2], ref_proposals=props[4:5], num_refs=[1])
        alone, _ = heads(images, sel([0]), props[:1])
    for got, want in [(both[0], first[0]), (both[1], second[0])]:
        assert len(got) == len(want) > 0
        torch.testing.assert_close(got.scores, want.scores, atol=1e-5, rtol=0)
        torch.testing.assert_close(got.pred_boxes.tensor, want.pred_boxes.tensor, atol=1e-4, rtol=0)
    # the references matter
    assert len(alone[0]) != len(first[0]) or not torch.allclose(alone[0].scores, first[0].scores)


def test_roi_heads_key_without_references_is_single_frame_faster_rcnn():
    model = build_tiny_model()
    images, feats, props = _features_and_proposals(model, 1)
    heads = model.roi_heads
    with torch.no_grad():
        got, _ = heads(images, feats, props)
        pooled = heads.box_pooler([feats["neck"]], [props[0].proposal_boxes])
        x = F.relu(heads.box_head.fc2(F.relu(heads.box_head.fc1(pooled.flatten(1)))))
        want, _ = heads.box_predictor.inference(heads.box_predictor(x), props)
    assert len(got[0]) == len(want[0]) > 0
    torch.testing.assert_close(got[0].scores, want[0].scores, atol=1e-6, rtol=0)


def test_roi_heads_rejects_mismatched_reference_counts():
    model = build_tiny_model()
    images, feats, props = _features_and_proposals(model, 4)
    with pytest.raises(ValueError, match="num_refs"):
        model.roi_heads(images, feats, props[:2], ref_proposals=props[2:], num_refs=[1, 2])


def _grads_of(module):
    return {n: p.grad for n, p in module.named_parameters() if p.requires_grad}


def test_training_forward_losses_and_gradients_reach_references():
    model = build_tiny_model(eval_mode=False)
    batch = training_inputs(num_keys=2, num_refs=2)
    captured = {}

    def hook(_module, _inp, out):
        out["neck"].register_hook(lambda g: captured.setdefault("grad", g))

    handle = model.backbone.register_forward_hook(hook)
    with EventStorage():
        losses = model(batch)
    handle.remove()
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    # backbone ran once over 2 keys + 4 references; the references' slice gets gradient
    grad = captured["grad"]
    assert grad.shape[0] == 6
    assert grad[2:].abs().sum() > 0, "no gradient through the reference RoI features"
    for i in range(2):
        for name in ("fc_embed", "ref_fc_embed", "ref_fc", "fc"):
            g = getattr(model.roi_heads.box_head.aggregators[i], name).weight.grad
            assert g is not None and g.abs().sum() > 0, f"aggregators.{i}.{name}"
    assert model.backbone.neck.weight.grad.abs().sum() > 0


def test_training_losses_depend_on_references_and_rpn_mode_restored():
    batch = training_inputs(num_keys=1, num_refs=2, seed=3)
    other = training_inputs(num_keys=1, num_refs=2, seed=5)
    swapped = [dict(batch[0], ref_frames=other[0]["ref_frames"])]
    out = []
    for b in (batch, swapped):
        model = build_tiny_model(eval_mode=False)
        torch.manual_seed(0)  # same proposal sampling
        with EventStorage():
            out.append(model(b))
        assert model.proposal_generator.training
    assert out[0]["loss_rpn_cls"] == out[1]["loss_rpn_cls"]  # RPN loss: key frames only
    assert out[0]["loss_cls"] != out[1]["loss_cls"]


def test_training_keys_with_different_reference_counts():
    model = build_tiny_model(eval_mode=False)
    batch = training_inputs(num_keys=2, num_refs=2)
    batch[1]["ref_frames"] = batch[1]["ref_frames"][:1]
    batch.append(dict(training_inputs(num_keys=1, num_refs=1, seed=7)[0], ref_frames=[]))
    with EventStorage():
        losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values())
