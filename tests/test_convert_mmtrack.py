"""mmtracking SELSA checkpoint -> selsa-d2 conversion.

Random checkpoints are built from the key/shape lists of mmtracking 0.14's SELSA models
(../shared/reference/mmtracking_selsa, beside the repository). The numerical checks compare the
converted model against independent re-implementations of mmdet 2.28 / mmtracking 0.14 formulas
(AnchorGenerator scale_major, delta2bbox, RPN post-processing, SelsaAggregator, SelsaBBoxHead)
evaluated with the *original* mmtracking tensors.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from repo_scripts import run_script

from selsa_d2.checkpoint.mmtrack import (
    check_arch_against_cfg,
    convert_mmtrack_checkpoint,
    convert_mmtrack_state_dict,
    infer_mmtrack_arch,
)

REPO = Path(__file__).resolve().parents[1]
# beside the repository; SELSA_MMTRACK_REFERENCE overrides (e.g. for a git worktree elsewhere)
REF_DIR = Path(
    os.environ.get(
        "SELSA_MMTRACK_REFERENCE", REPO.parent / "shared" / "reference" / "mmtracking_selsa"
    )
)
P = "detector."

pytestmark = pytest.mark.skipif(
    not REF_DIR.is_dir(),
    reason=f"mmtracking key lists not found at {REF_DIR} (shared/reference beside the repo)",
)


def load_recording_incompatible_keys(model, path):
    """Load ``path`` into ``model`` with Detectron2's checkpointer; return its incompatible keys."""
    from detectron2.checkpoint import DetectionCheckpointer

    incompatible = []

    class _Checkpointer(DetectionCheckpointer):
        def _log_incompatible_keys(self, inc):
            incompatible.append(inc)
            super()._log_incompatible_keys(inc)

    _Checkpointer(model).load(str(path))
    return incompatible[0]


def _key_list(name):
    with open(REF_DIR / f"selsa_{name}_dc5_state_dict_keys.json") as f:
        return [(k, tuple(s)) for k, s in json.load(f)["keys"]]


def _random_state_dict(keys, seed=0, scale=0.02):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in keys:
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(1234, dtype=torch.long)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[k] = torch.randn(shape, generator=g) * scale
    return sd


def _zeros_state_dict(keys):
    return {
        k: torch.zeros(s, dtype=torch.long if k.endswith("tracked") else torch.float32)
        for k, s in keys
    }


@pytest.fixture(scope="module")
def r50_sd():
    return _random_state_dict(_key_list("r50"))


@pytest.fixture(scope="module")
def r50_converted(r50_sd):
    return convert_mmtrack_state_dict(r50_sd)


# ------------------------------------------------------------------ independent mmdet re-implementations
def mmdet_base_anchors(base_size=16, scales=(4, 8, 16, 32), ratios=(0.5, 1.0, 2.0)):
    """mmdet AnchorGenerator.gen_single_level_base_anchors, scale_major=True, center_offset=0."""
    scales, ratios = (
        torch.tensor(scales, dtype=torch.float32),
        torch.tensor(ratios, dtype=torch.float32),
    )
    h_ratios = torch.sqrt(ratios)
    w_ratios = 1 / h_ratios
    ws = (base_size * w_ratios[:, None] * scales[None, :]).reshape(-1)
    hs = (base_size * h_ratios[:, None] * scales[None, :]).reshape(-1)
    return torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], dim=-1)


def mmdet_grid_anchors(feat_h, feat_w, stride=16):
    """[H*W*A, 4]: all A anchors of location (0,0), then (0,1), ... (row-major)."""
    base = mmdet_base_anchors()
    sx = torch.arange(feat_w, dtype=torch.float32) * stride
    sy = torch.arange(feat_h, dtype=torch.float32) * stride
    yy, xx = torch.meshgrid(sy, sx, indexing="ij")
    shifts = torch.stack([xx, yy, xx, yy], -1).reshape(-1, 4)
    return (base[None] + shifts[:, None]).reshape(-1, 4)


def mmdet_delta2bbox(rois, deltas, stds, max_shape=None, wh_ratio_clip=16 / 1000):
    """mmdet 2.28 delta2bbox (means 0, clip_border=True, add_ctr_clamp=False)."""
    n, k4 = deltas.shape
    d = deltas.reshape(-1, 4) * torch.tensor(stds, dtype=deltas.dtype)
    rois = rois.repeat(1, k4 // 4).reshape(-1, 4)
    pxy = (rois[:, :2] + rois[:, 2:]) * 0.5
    pwh = rois[:, 2:] - rois[:, :2]
    max_ratio = abs(math.log(wh_ratio_clip))
    dwh = d[:, 2:].clamp(min=-max_ratio, max=max_ratio)
    gxy = pxy + pwh * d[:, :2]
    gwh = pwh * dwh.exp()
    boxes = torch.cat([gxy - gwh * 0.5, gxy + gwh * 0.5], dim=-1)
    if max_shape is not None:
        boxes[:, 0::2] = boxes[:, 0::2].clamp(min=0, max=max_shape[1])
        boxes[:, 1::2] = boxes[:, 1::2].clamp(min=0, max=max_shape[0])
    return boxes.reshape(n, k4)


def mmdet_rpn_head(sd, feat):
    """mmdet RPNHead.forward_single + flattening as in _get_bboxes_single: (scores [HWA], deltas [HWA,4])."""
    h = P + "rpn_head."
    x = F.relu(F.conv2d(feat, sd[h + "rpn_conv.weight"], sd[h + "rpn_conv.bias"], padding=1))
    cls = F.conv2d(x, sd[h + "rpn_cls.weight"], sd[h + "rpn_cls.bias"])
    reg = F.conv2d(x, sd[h + "rpn_reg.weight"], sd[h + "rpn_reg.bias"])
    return cls[0].permute(1, 2, 0).reshape(-1), reg[0].permute(1, 2, 0).reshape(-1, 4)


def mmdet_rpn_proposals(sd, feat, img_shape, nms_pre=6000, iou=0.7, max_per_img=300):
    """mmdet 2.28 RPNHead._get_bboxes_single + _bbox_post_process (one level, min_bbox_size 0)."""
    from torchvision.ops import nms

    logits, deltas = mmdet_rpn_head(sd, feat)
    scores = logits.sigmoid()
    anchors = mmdet_grid_anchors(*feat.shape[-2:])
    if scores.numel() > nms_pre:
        scores, idx = scores.sort(descending=True)
        scores, idx = scores[:nms_pre], idx[:nms_pre]
        deltas, anchors = deltas[idx], anchors[idx]
    boxes = mmdet_delta2bbox(anchors, deltas, (1.0, 1.0, 1.0, 1.0), max_shape=img_shape)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    valid = (w > 0) & (h > 0)
    boxes, scores = boxes[valid], scores[valid]
    keep = nms(boxes, scores, iou)[:max_per_img]
    return boxes[keep], scores[keep]


def mmtrack_aggregator(sd, i, x, ref_x, num_blocks=16):
    """mmtrack SelsaAggregator.forward with aggregator.<i> weights."""
    a = f"{P}roi_head.bbox_head.aggregator.{i}."
    lin = lambda name, t: F.linear(t, sd[a + name + ".weight"], sd[a + name + ".bias"])  # noqa: E731
    n, c = x.shape
    m = ref_x.shape[0]
    cb = c // num_blocks
    q = lin("fc_embed", x).view(n, num_blocks, cb).permute(1, 0, 2)
    k = lin("ref_fc_embed", ref_x).view(m, num_blocks, cb).permute(1, 2, 0)
    w = (torch.bmm(q, k) / cb**0.5).softmax(dim=2)
    v = lin("ref_fc", ref_x).view(m, num_blocks, cb).permute(1, 0, 2)
    out = torch.bmm(w, v).permute(1, 0, 2).reshape(n, c)
    return lin("fc", out)


def mmtrack_bbox_head(sd, x, ref_x):
    """mmtrack SelsaBBoxHead.forward: (cls_score [N, K+1], bbox_pred [N, 4K])."""
    h = P + "roi_head.bbox_head."
    x, ref_x = x.flatten(1), ref_x.flatten(1)
    num_fcs = len({k.split(".")[4] for k in sd if k.startswith(h + "shared_fcs.")})
    for i in range(num_fcs):
        W, b = sd[f"{h}shared_fcs.{i}.weight"], sd[f"{h}shared_fcs.{i}.bias"]
        x, ref_x = F.linear(x, W, b), F.linear(ref_x, W, b)
        x = x + mmtrack_aggregator(sd, i, x, ref_x)
        x, ref_x = F.relu(x), F.relu(ref_x)
    cls = F.linear(x, sd[h + "fc_cls.weight"], sd[h + "fc_cls.bias"])
    reg = F.linear(x, sd[h + "fc_reg.weight"], sd[h + "fc_reg.bias"])
    return cls, reg


# ------------------------------------------------------------------ name mapping (no model needed)
def _expected_name(k):
    """Test-side mapping, written independently of the converter's regex table."""
    k = k[len(P) :]
    simple = {
        "backbone.conv1.weight": "backbone.bottom_up.stem.conv1.weight",
        "neck.convs.0.conv.weight": "backbone.neck.weight",
        "neck.convs.0.conv.bias": "backbone.neck.bias",
    }
    if k in simple:
        return simple[k]
    if k.startswith("backbone.bn1."):
        return "backbone.bottom_up.stem.conv1.norm." + k.split(".")[-1]
    if k.startswith("backbone.layer"):
        parts = k.split(".")  # backbone layerN i module [sub] field
        stage, block = int(parts[1][len("layer") :]) + 1, parts[2]
        pre = f"backbone.bottom_up.res{stage}.{block}."
        if parts[3] == "downsample":
            return pre + ("shortcut.weight" if parts[4] == "0" else "shortcut.norm." + parts[5])
        if parts[3].startswith("bn"):
            return pre + f"conv{parts[3][2:]}.norm.{parts[4]}"
        return pre + f"{parts[3]}.{parts[4]}"
    for old, new in [
        ("rpn_head.rpn_conv.", "proposal_generator.rpn_head.conv."),
        ("rpn_head.rpn_cls.", "proposal_generator.rpn_head.objectness_logits."),
        ("rpn_head.rpn_reg.", "proposal_generator.rpn_head.anchor_deltas."),
        ("roi_head.bbox_head.shared_fcs.0.", "roi_heads.box_head.fc1."),
        ("roi_head.bbox_head.shared_fcs.1.", "roi_heads.box_head.fc2."),
        ("roi_head.bbox_head.shared_fcs.2.", "roi_heads.box_head.fc3."),
        (
            "roi_head.bbox_roi_extractor.embed_network.conv.",
            "roi_heads.temporal_roi_align.embed_network.",
        ),
        ("roi_head.bbox_head.aggregator.", "roi_heads.box_head.aggregators."),
        ("roi_head.bbox_head.fc_cls.", "roi_heads.box_predictor.cls_score."),
        ("roi_head.bbox_head.fc_reg.", "roi_heads.box_predictor.bbox_pred."),
    ]:
        if k.startswith(old):
            return new + k[len(old) :]
    raise AssertionError(k)


def _d2_cell_anchors():
    from detectron2.modeling.anchor_generator import DefaultAnchorGenerator

    gen = DefaultAnchorGenerator(
        sizes=[[64, 128, 256, 512]], aspect_ratios=[[0.5, 1.0, 2.0]], strides=[16], offset=0.0
    )
    return list(gen.cell_anchors)[0]


def _perm_from_geometry():
    """perm[j] = mmdet anchor index with the same box as Detectron2 anchor j (found by matching boxes)."""
    mm, d2 = mmdet_base_anchors(), _d2_cell_anchors()
    dist = (d2[:, None, :] - mm[None, :, :]).abs().amax(-1)
    assert (dist.min(1).values < 1e-3).all(), "anchor sets differ"
    perm = dist.argmin(1)
    assert sorted(perm.tolist()) == list(range(12))
    return perm


def test_anchor_orders_differ_as_documented():
    perm = _perm_from_geometry()
    # Detectron2 size-major (j = s*3 + r), mmdet ratio-major (i = r*4 + s)
    assert perm.tolist() == [r * 4 + s for s in range(4) for r in range(3)]
    assert perm.tolist() != list(range(12))


def test_every_tensor_lands_where_expected(r50_sd, r50_converted):
    new_sd, summary, arch = r50_converted
    assert (arch.depth, arch.num_groups, arch.num_classes, arch.num_anchors) == (50, 1, 30, 12)
    perm = _perm_from_geometry()
    mapped = set()
    for k, v in r50_sd.items():
        if k.endswith("num_batches_tracked"):
            continue
        name = _expected_name(k)
        assert name in new_sd, f"{k} -> {name} missing"
        mapped.add(name)
        out = new_sd[name]
        assert out.dtype == v.dtype and out.shape == v.shape, name
        if ".rpn_cls." in k:
            for j in range(12):
                assert torch.equal(out[j], v[perm[j]]), (name, j)
        elif ".rpn_reg." in k:
            for j in range(12):
                assert torch.equal(out[4 * j : 4 * j + 4], v[4 * perm[j] : 4 * perm[j] + 4]), (
                    name,
                    j,
                )
        else:
            assert torch.equal(out, v), name
    assert mapped == set(new_sd), "converter produced keys the test mapping does not know"
    assert not any("num_batches_tracked" in k for k in new_sd)
    assert summary["dropped num_batches_tracked"] == 53
    assert summary["aggregators"] == 16 and summary["rpn"] == 6 and summary["box_predictor"] == 4
    assert sum(summary.values()) == len(r50_sd) == 350
    # background is the last class in both frameworks: cls_score copied unchanged
    assert new_sd["roi_heads.box_predictor.cls_score.weight"].shape == (31, 1024)
    assert new_sd["roi_heads.box_predictor.bbox_pred.weight"].shape == (120, 1024)


@pytest.mark.parametrize("name,depth,groups,width", [("r101", 101, 1, 64), ("x101", 101, 64, 4)])
def test_r101_x101_convert(name, depth, groups, width):
    keys = _key_list(name)
    new_sd, summary, arch = convert_mmtrack_state_dict(_zeros_state_dict(keys))
    assert (arch.depth, arch.num_groups, arch.width_per_group) == (depth, groups, width)
    assert len(new_sd) == len(keys) - summary["dropped num_batches_tracked"] == 552
    assert summary["res4"] == 23 * 15 + 5
    for k, shape in keys:
        if not k.endswith("num_batches_tracked"):
            assert tuple(new_sd[_expected_name(k)].shape) == shape, k


def _broken(mutate):
    sd = _zeros_state_dict(_key_list("r50"))
    mutate(sd)
    return sd


@pytest.mark.parametrize(
    "mutate,exc,needle",
    [
        (
            lambda sd: sd.pop(P + "backbone.layer3.2.bn2.running_var"),
            KeyError,
            "layer3.2.bn2.running_var",
        ),
        (
            lambda sd: sd.pop(P + "roi_head.bbox_head.aggregator.1.ref_fc.bias"),
            KeyError,
            "aggregator.1.ref_fc.bias",
        ),
        (
            lambda sd: sd.__setitem__(P + "roi_head.bbox_head.foo.weight", torch.zeros(3)),
            KeyError,
            "bbox_head.foo.weight",
        ),
        (
            lambda sd: sd.__setitem__(P + "backbone.layer1.0.bn1.extra", torch.zeros(64)),
            KeyError,
            "layer1.0.bn1.extra",
        ),
        (
            lambda sd: sd.__setitem__(P + "backbone.layer4.3.conv1.weight", torch.zeros(1)),
            ValueError,
            "layer4.3",
        ),
        (
            lambda sd: sd.__setitem__("backbone.conv1.weight", torch.zeros(1)),
            KeyError,
            "'backbone.conv1.weight'",
        ),
        (
            lambda sd: sd.__setitem__(
                P + "backbone.layer2.1.conv3.weight", torch.zeros(512, 128, 3, 3)
            ),
            ValueError,
            "layer2.1.conv3.weight",
        ),
        (
            lambda sd: sd.__setitem__(P + "neck.convs.0.conv.bias", torch.zeros(256)),
            ValueError,
            "neck.convs.0.conv.bias",
        ),
        (
            lambda sd: sd.__setitem__(P + "rpn_head.rpn_reg.weight", torch.zeros(36, 512, 1, 1)),
            ValueError,
            "rpn_reg.weight",
        ),
    ],
)
def test_bad_checkpoints_fail_naming_the_key(mutate, exc, needle):
    sd = _broken(mutate)
    with pytest.raises((exc, ValueError, KeyError)) as e:
        convert_mmtrack_state_dict(sd)
    assert needle in str(e.value)


def test_depth_not_inferable_is_an_error():
    sd = _zeros_state_dict([kv for kv in _key_list("r50") if ".layer3.5." not in kv[0]])
    with pytest.raises(ValueError, match="depth"):
        infer_mmtrack_arch(sd)


# ------------------------------------------------------------------ config / CLI
def _mmtrack_cfg(depth=50, groups=1, width=64):
    from detectron2.config import get_cfg

    from selsa_d2.config import add_selsa_config

    cfg = get_cfg()
    add_selsa_config(cfg)
    m = cfg.MODEL
    m.META_ARCHITECTURE = "SelsaRCNN"
    m.DEVICE = "cpu"
    m.WEIGHTS = ""
    m.BACKBONE.NAME = "build_selsa_dc5_backbone"
    m.RESNETS.DEPTH, m.RESNETS.NUM_GROUPS, m.RESNETS.WIDTH_PER_GROUP = depth, groups, width
    m.RESNETS.RES5_DILATION = 2
    m.RESNETS.STRIDE_IN_1X1 = False
    m.RESNETS.OUT_FEATURES = ["res5"]
    m.SELSA.NECK_CHANNELS = 512
    m.RPN.IN_FEATURES = ["neck"]
    m.RPN.PRE_NMS_TOPK_TEST, m.RPN.POST_NMS_TOPK_TEST, m.RPN.NMS_THRESH = 6000, 300, 0.7
    m.ROI_HEADS.NAME = "SelsaROIHeads"
    m.ROI_HEADS.NUM_CLASSES = 30
    m.ROI_HEADS.IN_FEATURES = ["neck"]
    m.ROI_BOX_HEAD.NAME = "SelsaBoxHead"
    m.ROI_BOX_HEAD.NUM_FC, m.ROI_BOX_HEAD.FC_DIM = 2, 1024
    m.ROI_BOX_HEAD.POOLER_RESOLUTION, m.ROI_BOX_HEAD.POOLER_TYPE = 7, "ROIAlignV2"
    m.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = 2
    m.ROI_BOX_HEAD.BBOX_REG_WEIGHTS = (5.0, 5.0, 5.0, 5.0)
    m.ANCHOR_GENERATOR.SIZES = [[64, 128, 256, 512]]
    m.ANCHOR_GENERATOR.ASPECT_RATIOS = [[0.5, 1.0, 2.0]]
    m.ANCHOR_GENERATOR.OFFSET = 0.0
    return cfg


def test_config_check():
    arch = infer_mmtrack_arch(_zeros_state_dict(_key_list("x101")))
    check_arch_against_cfg(arch, _mmtrack_cfg(101, 64, 4))
    with pytest.raises(ValueError, match="NUM_GROUPS"):
        check_arch_against_cfg(arch, _mmtrack_cfg(101, 32, 8))
    with pytest.raises(ValueError, match="DEPTH"):
        check_arch_against_cfg(arch, _mmtrack_cfg(50, 64, 4))


def test_repo_configs_match_checkpoints():
    from detectron2.config import get_cfg

    from selsa_d2.checkpoint.mmtrack import mmtrack_inference_mismatches
    from selsa_d2.config import add_selsa_config

    for name, yaml in [
        ("r50", "selsa_R_50_DC5_7e_imagenetvid"),
        ("r101", "selsa_R_101_DC5_7e_imagenetvid"),
        ("x101", "selsa_X_101_DC5_7e_imagenetvid"),
    ]:
        path = REPO / "configs" / f"{yaml}.yaml"
        if not path.is_file():
            pytest.skip(f"{path} not written yet")
        cfg = get_cfg()
        add_selsa_config(cfg)
        cfg.merge_from_file(str(path))
        check_arch_against_cfg(infer_mmtrack_arch(_zeros_state_dict(_key_list(name))), cfg)
        assert mmtrack_inference_mismatches(cfg) == [], yaml


def test_cli_roundtrip(tmp_path, capsys):
    sd = _zeros_state_dict(_key_list("r50"))
    sd[P + "rpn_head.rpn_cls.bias"] = torch.arange(12.0)
    src = tmp_path / "selsa_mmtrack.pth"
    torch.save({"meta": {"CLASSES": ("a",) * 30}, "state_dict": sd}, src)
    dst = tmp_path / "selsa_d2.pth"
    r = subprocess.run(
        [sys.executable, str(REPO / "tools" / "convert_mmtrack_to_d2.py"), str(src), str(dst)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert r.returncode == 0, r.stderr
    assert "297 tensors" in r.stdout and "aggregators" in r.stdout
    out = torch.load(dst)
    assert out["__author__"] == "mmtracking" and out["matching_heuristics"] is False
    assert out["model"]["proposal_generator.rpn_head.objectness_logits.bias"].tolist() == [
        r * 4 + s for s in range(4) for r in range(3)
    ]
    # a broken checkpoint: non-zero exit and the key in the message
    del sd[P + "backbone.layer1.1.conv2.weight"]
    torch.save({"state_dict": sd}, src)
    out = run_script("tools/convert_mmtrack_to_d2.py", src, dst)
    assert out.returncode == 1
    assert "layer1.1.conv2.weight" in out.stdout + out.stderr


# ------------------------------------------------------------------ the converted checkpoint in our model
def _model_available():
    try:
        from detectron2.modeling import META_ARCH_REGISTRY

        import selsa_d2.modeling  # noqa: F401

        META_ARCH_REGISTRY.get("SelsaRCNN")
        return True
    except Exception:
        return False


needs_model = pytest.mark.skipif(
    not _model_available(), reason="selsa_d2.modeling.SelsaRCNN not available"
)


@pytest.fixture(scope="module")
def loaded_model(r50_sd, tmp_path_factory):
    """Full-size R-50-DC5 SELSA built from cfg, weights loaded through DetectionCheckpointer."""
    from detectron2.modeling import build_model

    path = tmp_path_factory.mktemp("ckpt") / "mmtrack.pth"
    src = path.with_name("src.pth")
    torch.save({"state_dict": r50_sd}, src)
    convert_mmtrack_checkpoint(str(src), str(path), _mmtrack_cfg())
    src.unlink()
    torch.manual_seed(0)
    model = build_model(_mmtrack_cfg()).eval()

    return model, load_recording_incompatible_keys(model, path)


@needs_model
def test_checkpoint_loads_exactly(loaded_model, r50_converted):
    model, inc = loaded_model
    assert inc.missing_keys == [] and inc.unexpected_keys == [] and inc.incorrect_shapes == []
    state = model.state_dict()
    for k, v in r50_converted[0].items():
        assert torch.equal(state[k], v), k


@needs_model
def test_aggregator_matches_mmtrack(loaded_model, r50_sd):
    model, _ = loaded_model
    g = torch.Generator().manual_seed(1)
    x, ref = torch.randn(5, 1024, generator=g), torch.randn(11, 1024, generator=g)
    with torch.no_grad():
        for i in range(2):
            ours = model.roi_heads.box_head.aggregators[i](x, ref)
            torch.testing.assert_close(
                ours, mmtrack_aggregator(r50_sd, i, x, ref), rtol=1e-4, atol=1e-5
            )


@needs_model
def test_box_head_and_predictor_match_mmtrack(loaded_model, r50_sd):
    model, _ = loaded_model
    g = torch.Generator().manual_seed(2)
    x, ref = torch.randn(4, 512, 7, 7, generator=g), torch.randn(9, 512, 7, 7, generator=g)
    with torch.no_grad():
        feats = model.roi_heads.box_head(x, ref)
        cls, reg = model.roi_heads.box_predictor(feats)
    mm_cls, mm_reg = mmtrack_bbox_head(r50_sd, x, ref)
    torch.testing.assert_close(cls, mm_cls, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(reg, mm_reg, rtol=1e-4, atol=1e-4)
    # decoding: Detectron2 Box2BoxTransform(5,5,5,5) == mmdet delta2bbox with stds 0.2
    rois = torch.tensor(
        [[10.0, 20.0, 90.0, 60.0], [0.0, 0.0, 30.0, 100.0], [50, 5, 55, 95], [3, 3, 200, 150]]
    )
    ours = model.roi_heads.box_predictor.box2box_transform.apply_deltas(reg, rois)
    torch.testing.assert_close(
        ours, mmdet_delta2bbox(rois, mm_reg, (0.2, 0.2, 0.2, 0.2)), rtol=1e-5, atol=1e-4
    )


@pytest.fixture(scope="module")
def converted_rpn(r50_converted):
    """Detectron2's RPN built from the mmtracking-matching config, loaded with the converted weights.

    (The same ``RPN``/``StandardRPNHead`` SelsaRCNN builds; standalone so the check does not
    depend on the rest of the model.)"""
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.proposal_generator import build_proposal_generator

    rpn = build_proposal_generator(
        _mmtrack_cfg(), {"neck": ShapeSpec(channels=512, stride=16)}
    ).eval()
    pre = "proposal_generator."
    sd = {k[len(pre) :]: v for k, v in r50_converted[0].items() if k.startswith(pre)}
    inc = rpn.load_state_dict(sd, strict=True)
    assert not inc.missing_keys and not inc.unexpected_keys
    return rpn


def test_rpn_matches_mmdet(converted_rpn, r50_sd):
    from detectron2.structures import ImageList

    rpn = converted_rpn
    g = torch.Generator().manual_seed(3)
    feat = torch.randn(1, 512, 6, 8, generator=g)
    img_h, img_w = 90, 120  # padded input 96x128
    mm_logits, mm_deltas = mmdet_rpn_head(r50_sd, feat)  # mmdet order: (y, x, ratio, scale)
    perm = _perm_from_geometry()
    with torch.no_grad():
        logits, deltas = rpn.rpn_head([feat])
        anchors = rpn.anchor_generator([feat])[0].tensor
    # Detectron2 head layout: logits [N, A, H, W]; deltas [N, A*4, H, W]
    d2_logits = logits[0][0].permute(1, 2, 0).reshape(6, 8, 12)
    d2_deltas = deltas[0][0].reshape(12, 4, 6, 8).permute(2, 3, 0, 1)
    torch.testing.assert_close(
        d2_logits, mm_logits.reshape(6, 8, 12)[:, :, perm], rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(
        d2_deltas, mm_deltas.reshape(6, 8, 12, 4)[:, :, perm], rtol=1e-4, atol=1e-5
    )
    # anchors: same boxes at the same places
    mm_anchors = mmdet_grid_anchors(6, 8).reshape(6, 8, 12, 4)[:, :, perm]
    torch.testing.assert_close(anchors.reshape(6, 8, 12, 4), mm_anchors, rtol=0, atol=1e-4)
    # decoded boxes
    ours = rpn.box2box_transform.apply_deltas(d2_deltas.reshape(-1, 4), anchors)
    ours[:, 0::2] = ours[:, 0::2].clamp(0, img_w)
    ours[:, 1::2] = ours[:, 1::2].clamp(0, img_h)
    ref = mmdet_delta2bbox(
        mm_anchors.reshape(-1, 4), d2_deltas.reshape(-1, 4), (1.0,) * 4, (img_h, img_w)
    )
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-4)
    # full test-time proposal generation (topk 6000, clip, drop empty, NMS 0.7, keep 300)
    images = ImageList(torch.zeros(1, 3, 96, 128), [(img_h, img_w)])
    with torch.no_grad():
        proposals, _ = rpn(images, {"neck": feat})
    mm_boxes, mm_scores = mmdet_rpn_proposals(r50_sd, feat, (img_h, img_w))
    assert len(proposals[0]) == len(mm_boxes) > 50
    torch.testing.assert_close(proposals[0].proposal_boxes.tensor, mm_boxes, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(
        proposals[0].objectness_logits.sigmoid(), mm_scores, rtol=1e-5, atol=1e-6
    )


# ------------------------------------------------------------------ SELSA + Temporal RoI Align checkpoints
TROI_EMBED = P + "roi_head.bbox_roi_extractor.embed_network.conv."


@pytest.fixture(scope="module")
def troi_sd():
    return _random_state_dict(_key_list("troialign_r50"), seed=4)


def test_troi_every_tensor_lands_where_expected(troi_sd):
    new_sd, summary, arch = convert_mmtrack_state_dict(troi_sd)
    assert arch.temporal_roi_align and arch.num_shared_fcs == 3 and arch.num_aggregators == 3
    for k, v in troi_sd.items():
        if not k.endswith("num_batches_tracked") and ".rpn_" not in k:
            assert torch.equal(new_sd[_expected_name(k)], v), k
    assert {_expected_name(k) for k in troi_sd if not k.endswith("num_batches_tracked")} == set(
        new_sd
    )
    assert new_sd["roi_heads.temporal_roi_align.embed_network.weight"].shape == (512, 512, 3, 3)
    assert new_sd["roi_heads.box_head.fc3.weight"].shape == (1024, 1024)
    assert (
        summary["temporal_roi_align"] == 2
        and summary["box_head"] == 6
        and summary["aggregators"] == 24
    )
    assert sum(summary.values()) == len(troi_sd) == 362


@pytest.mark.parametrize(
    "name,depth,groups", [("troialign_r101", 101, 1), ("troialign_x101", 101, 64)]
)
def test_troi_r101_x101_convert(name, depth, groups):
    keys = _key_list(name)
    new_sd, summary, arch = convert_mmtrack_state_dict(_zeros_state_dict(keys))
    assert (arch.depth, arch.num_groups, arch.temporal_roi_align, arch.num_shared_fcs) == (
        depth,
        groups,
        True,
        3,
    )
    assert len(new_sd) == len(keys) - summary["dropped num_batches_tracked"] == 564
    for k, shape in keys:
        if not k.endswith("num_batches_tracked"):
            assert tuple(new_sd[_expected_name(k)].shape) == shape, k


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda sd: sd.pop(TROI_EMBED + "bias"), "embed_network.conv.bias"),
        (
            lambda sd: sd.__setitem__(TROI_EMBED + "weight", torch.zeros(512, 512, 1, 1)),
            "embed_network.conv.weight",
        ),
        (
            lambda sd: sd.__setitem__(P + "roi_head.bbox_roi_extractor.foo", torch.zeros(1)),
            "bbox_roi_extractor.foo",
        ),
        (lambda sd: sd.pop(P + "roi_head.bbox_head.aggregator.2.fc.bias"), "aggregator.2.fc.bias"),
        (lambda sd: [sd.pop(k) for k in list(sd) if ".aggregator.2." in k], "aggregators"),
    ],
)
def test_troi_bad_checkpoints_fail_naming_the_key(mutate, needle):
    sd = _zeros_state_dict(_key_list("troialign_r50"))
    mutate(sd)
    with pytest.raises((KeyError, ValueError)) as e:
        convert_mmtrack_state_dict(sd)
    assert needle in str(e.value)


def _troi_cfg(depth=50, groups=1, width=64):
    cfg = _mmtrack_cfg(depth, groups, width)
    cfg.MODEL.ROI_HEADS.NAME = "SelsaTRoIROIHeads"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 3
    return cfg


def test_troi_config_check():
    troi = infer_mmtrack_arch(_zeros_state_dict(_key_list("troialign_r50")))
    selsa = infer_mmtrack_arch(_zeros_state_dict(_key_list("r50")))
    check_arch_against_cfg(troi, _troi_cfg())
    check_arch_against_cfg(selsa, _mmtrack_cfg())
    with pytest.raises(ValueError) as e:
        check_arch_against_cfg(troi, _mmtrack_cfg())
    assert "ROI_HEADS.NAME" in str(e.value) and "NUM_FC" in str(e.value)
    with pytest.raises(ValueError, match="embed network"):
        check_arch_against_cfg(selsa, _troi_cfg())
    cfg = _troi_cfg()
    cfg.MODEL.SELSA.TROI.NUM_TEMPORAL_ATTENTION_BLOCKS = 0
    with pytest.raises(ValueError, match="NUM_TEMPORAL_ATTENTION_BLOCKS"):
        check_arch_against_cfg(troi, cfg)


def test_repo_troi_configs_match_checkpoints():
    from detectron2.config import get_cfg

    from selsa_d2.checkpoint.mmtrack import mmtrack_inference_mismatches
    from selsa_d2.config import add_selsa_config

    for name, depth in [("r50", "R_50"), ("r101", "R_101"), ("x101", "X_101")]:
        cfg = get_cfg()
        add_selsa_config(cfg)
        cfg.merge_from_file(
            str(REPO / "configs" / f"selsa_troialign_{depth}_DC5_7e_imagenetvid.yaml")
        )
        check_arch_against_cfg(
            infer_mmtrack_arch(_zeros_state_dict(_key_list("troialign_" + name))), cfg
        )
        assert mmtrack_inference_mismatches(cfg) == [], depth
        cfg.MODEL.SELSA.TROI.NUM_MOST_SIMILAR_POINTS = 3
        assert mmtrack_inference_mismatches(cfg) == [
            "MODEL.SELSA.TROI.NUM_MOST_SIMILAR_POINTS = 3 (mmtracking: 2)"
        ]


def test_troi_cli_roundtrip(tmp_path):
    src, dst = tmp_path / "troi_mmtrack.pth", tmp_path / "troi_d2.pth"
    torch.save({"state_dict": _zeros_state_dict(_key_list("troialign_r50"))}, src)
    r = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "convert_mmtrack_to_d2.py"),
            str(src),
            str(dst),
            "--config",
            str(REPO / "configs" / "selsa_troialign_R_50_DC5_7e_imagenetvid.yaml"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert r.returncode == 0, r.stderr
    assert "309 tensors" in r.stdout and "temporal_roi_align" in r.stdout
    assert "Differs from mmtracking" not in r.stderr + r.stdout


@needs_model
def test_troi_checkpoint_loads_exactly_and_matches_mmtrack(troi_sd, tmp_path):
    """A converted random TRoI checkpoint: no missing / unexpected keys in SelsaTRoIROIHeads, and
    its Temporal RoI Align and 3-FC box head compute what mmtracking's do with those tensors."""
    from detectron2.modeling import build_model
    from test_temporal_roi_align import mmtrack_most_similar_roi_align, mmtrack_temporal_aggregation

    src, path = tmp_path / "src.pth", tmp_path / "troi.pth"
    torch.save({"state_dict": troi_sd}, src)
    convert_mmtrack_checkpoint(str(src), str(path), _troi_cfg())
    torch.manual_seed(0)
    model = build_model(_troi_cfg()).eval()
    inc = load_recording_incompatible_keys(model, path)
    assert inc.missing_keys == [] and inc.unexpected_keys == [] and inc.incorrect_shapes == []

    g = torch.Generator().manual_seed(5)
    roi = torch.randn(3, 512, 7, 7, generator=g)
    maps = torch.relu(torch.randn(2, 512, 5, 6, generator=g))
    ref_rois = torch.randn(4, 512, 7, 7, generator=g)
    with torch.no_grad():
        troi = model.roi_heads.temporal_roi_align(roi, list(maps))
        cls, reg = model.roi_heads.box_predictor(model.roi_heads.box_head(troi, ref_rois))
        mm_troi = mmtrack_temporal_aggregation(
            roi,
            mmtrack_most_similar_roi_align(roi, maps),
            troi_sd[TROI_EMBED + "weight"],
            troi_sd[TROI_EMBED + "bias"],
        )
    torch.testing.assert_close(troi, mm_troi, rtol=1e-4, atol=1e-4)
    mm_cls, mm_reg = mmtrack_bbox_head(troi_sd, mm_troi, ref_rois)
    torch.testing.assert_close(cls, mm_cls, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(reg, mm_reg, rtol=1e-4, atol=1e-4)
