"""torchvision ResNet/ResNeXt -> Detectron2 ImageNet-pretrained layout: same features after conversion."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_resnet_backbone

from selsa_d2.checkpoint.torchvision import (
    convert_torchvision_checkpoint,
    convert_torchvision_state_dict,
)

REPO = Path(__file__).resolve().parents[1]


def _randomize_bn(model, seed):
    """Non-trivial BN statistics/affine so that a mis-mapped BN tensor shows in the features."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=g) + 0.5
            m.bias.data = torch.randn(n, generator=g) * 0.1
            m.running_mean = torch.randn(n, generator=g) * 0.1
            m.running_var = torch.rand(n, generator=g) + 0.5
    return model.eval()


def _d2_backbone(depth, groups=1, width=64):
    cfg = get_cfg()
    r = cfg.MODEL.RESNETS
    r.DEPTH, r.NUM_GROUPS, r.WIDTH_PER_GROUP = depth, groups, width
    r.STRIDE_IN_1X1 = False  # torchvision: stride in the 3x3 conv
    r.RES2_OUT_CHANNELS = 64 if depth in (18, 34) else 256
    r.NORM = "FrozenBN"
    r.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    return build_resnet_backbone(cfg, ShapeSpec(channels=3)).eval()


def _torchvision_features(model, x):
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    out = {}
    for i in range(1, 5):
        x = getattr(model, f"layer{i}")(x)
        out[f"res{i + 1}"] = x
    return out


@pytest.mark.parametrize(
    "arch,depth,groups,width",
    [("resnet18", 18, 1, 64), ("resnet50", 50, 1, 64), ("resnext50_32x4d", 50, 32, 4)],
)
def test_converted_backbone_gives_torchvision_features(tmp_path, arch, depth, groups, width):
    torch.manual_seed(0)
    tv = _randomize_bn(getattr(torchvision.models, arch)(weights=None), seed=1)
    src, dst = tmp_path / f"{arch}.pth", tmp_path / f"{arch}.pkl"
    torch.save(tv.state_dict(), src)
    summary = convert_torchvision_checkpoint(str(src), str(dst))
    assert summary["dropped fc"] == 2 and summary["stem"] == 5

    with open(dst, "rb") as f:
        data = pickle.load(f)
    assert data["__author__"] == "torchvision" and data["matching_heuristics"] is True
    assert (
        "stem.conv1.norm.running_var" in data["model"]
        and "res2.0.conv1.norm.weight" in data["model"]
    )

    d2 = _d2_backbone(depth, groups, width)
    DetectionCheckpointer(d2).load(str(dst))
    # every parameter/buffer of the Detectron2 backbone came from the file
    state = d2.state_dict()
    assert set(state) == set(data["model"])
    for k, v in data["model"].items():
        assert torch.equal(state[k], torch.as_tensor(v)), k

    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours, ref = d2(x), _torchvision_features(tv, x)
    for name in ref:
        torch.testing.assert_close(ours[name], ref[name], rtol=1e-4, atol=1e-4)


def test_unexpected_key_is_named():
    sd = torchvision.models.resnet18(weights=None).state_dict()
    sd["layer5.0.conv1.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match="layer5.0.conv1.weight"):
        convert_torchvision_state_dict(sd)
    with pytest.raises(KeyError, match="conv1.weight"):
        convert_torchvision_state_dict({"fc.weight": torch.zeros(1)})


def test_cli(tmp_path):
    src, dst = tmp_path / "r18.pth", tmp_path / "r18.pkl"
    torch.save({"state_dict": torchvision.models.resnet18(weights=None).state_dict()}, src)
    r = subprocess.run(
        [sys.executable, str(REPO / "tools" / "convert_torchvision_to_d2.py"), str(src), str(dst)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "res5" in r.stdout and dst.is_file()
    r = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "convert_torchvision_to_d2.py"),
            str(tmp_path / "nope.pth"),
            str(dst),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "nope.pth" in r.stdout + r.stderr
