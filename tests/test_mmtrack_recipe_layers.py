"""The pieces of the mmtracking training recipe, one by one (the end-to-end check against
mmtracking itself is tests/test_mmtrack_training_parity.py)."""

import math

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import build_backbone

from selsa_d2 import add_selsa_config
from selsa_d2.modeling.box_head import SelsaBoxHead
from selsa_d2.modeling.norm import FrozenStatsBatchNorm2d
from selsa_d2.modeling.roi_heads import build_roi_proposal_matcher
from selsa_d2.modeling.rpn import MaxIoUMatcher
from selsa_d2.solver import GlobalNormClippedSGD, build_selsa_optimizer


def _bn(channels=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    bn = torch.nn.BatchNorm2d(channels)
    with torch.no_grad():
        bn.weight.copy_(1 + 0.1 * torch.randn(channels, generator=g))
        bn.bias.copy_(0.1 * torch.randn(channels, generator=g))
        bn.running_mean.copy_(torch.randn(channels, generator=g))
        bn.running_var.copy_(0.5 + torch.rand(channels, generator=g))
    return bn


def test_frozen_stats_bn_is_bn_in_eval_mode_with_trained_affine():
    bn = _bn()
    ours = FrozenStatsBatchNorm2d.convert_batchnorm(_bn())
    assert isinstance(ours, FrozenStatsBatchNorm2d)
    x = torch.randn(2, 4, 5, 5)
    ours.train()  # training mode changes nothing: running statistics, no update
    stats = ours.running_mean.clone(), ours.running_var.clone()
    y = ours(x)
    torch.testing.assert_close(y, bn.eval()(x), rtol=0, atol=1e-6)
    torch.testing.assert_close((ours.running_mean, ours.running_var), stats, rtol=0, atol=0)
    y.square().sum().backward()
    assert ours.weight.grad is not None and ours.bias.grad is not None
    # the same numbers as Detectron2's FrozenBN (used at test time and in frozen stages)
    frozen = FrozenBatchNorm2d.convert_frozen_batchnorm(_bn())
    torch.testing.assert_close(ours(x), frozen(x), rtol=1e-6, atol=1e-6)


def test_frozen_stats_bn_state_dict_is_frozen_bn_s():
    ours = FrozenStatsBatchNorm2d(4)
    assert set(ours.state_dict()) == {"weight", "bias", "running_mean", "running_var"}
    sd = _bn().state_dict()  # with num_batches_tracked, as mmdet / torchvision checkpoints
    result = ours.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    torch.testing.assert_close(ours.running_var, sd["running_var"])


def _dc5_cfg(norm):
    cfg = get_cfg()
    add_selsa_config(cfg)
    cfg.merge_from_file("configs/selsa_R_50_DC5_7e_imagenetvid.yaml")
    cfg.MODEL.RESNETS.NORM = norm
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def test_freeze_at_freezes_frozen_stats_bn_and_trains_the_others():
    cfg = _dc5_cfg("FrozenStatsBN")
    backbone = build_backbone(cfg, ShapeSpec(channels=3))
    resnet = backbone.bottom_up
    for block in [resnet.stem, *resnet.res2]:  # FREEZE_AT 2: stem + res2
        assert not any(isinstance(m, FrozenStatsBatchNorm2d) for m in block.modules())
        assert all(not p.requires_grad for p in block.parameters())
    norms = [m for s in (resnet.res3, resnet.res4, resnet.res5) for m in s.modules()]
    norms = [m for m in norms if isinstance(m, FrozenStatsBatchNorm2d)]
    assert len(norms) == 42 and all(m.weight.requires_grad for m in norms)
    # weight decay reaches them (WEIGHT_DECAY_NORM, mmdet: every parameter decays)
    optimizer = build_selsa_optimizer(cfg, backbone)
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert all(decay[id(m.weight)] == 1e-4 for m in norms)
    # same state dict keys as the FrozenBN model: checkpoints move freely between the two
    frozen = build_backbone(_dc5_cfg("FrozenBN"), ShapeSpec(channels=3))
    assert list(backbone.state_dict()) == list(frozen.state_dict())


def test_roi_matcher_low_quality_match_goes_to_the_later_gt():
    # proposal 0: IoU 0.642 with gt B (index 0) and 0.580 with gt A (index 1), the best
    # proposal of both; proposal 1: a plain positive of B; proposal 2: negative. Then the two
    # appended gts (IoU 1 with themselves).
    iou = torch.tensor(
        [
            [0.642, 0.60, 0.1, 1.0, 0.39],
            [0.580, 0.30, 0.2, 0.39, 1.0],
        ]
    )
    cfg = get_cfg()
    add_selsa_config(cfg)
    cfg.MODEL.ROI_HEADS.IOU_THRESHOLDS = [0.5]
    cfg.MODEL.ROI_HEADS.IOU_LABELS = [0, 1]
    matches, labels = build_roi_proposal_matcher(cfg)(iou)  # Detectron2's
    assert matches[:3].tolist() == [0, 0, 1] and labels.tolist() == [1, 1, 0, 1, 1]
    cfg.MODEL.ROI_HEADS.LOW_QUALITY_MATCHES = True
    matcher = build_roi_proposal_matcher(cfg)
    assert isinstance(matcher, MaxIoUMatcher) and matcher.gt_appended
    matches, labels = matcher(iou)
    assert matches.tolist() == [1, 0, 1, 0, 1] and labels.tolist() == [1, 1, 0, 1, 1]
    # without leaving the appended gts out, every gt's best match would be itself (IoU 1)
    plain = MaxIoUMatcher([0.5], [0, 1], low_quality_min_iou=0.5)
    assert plain(iou)[0][0] == 0


def test_roi_matcher_needs_min_iou_for_low_quality():
    iou = torch.tensor([[0.45, 0.2], [0.3, 0.1]])
    matcher = MaxIoUMatcher([0.5], [0, 1], low_quality_min_iou=0.5)
    assert matcher(iou)[1].tolist() == [0, 0]


@pytest.mark.parametrize("fc_init, bound", [("c2_xavier", "d2"), ("xavier_uniform", "glorot")])
def test_box_head_fc_init(fc_init, bound):
    torch.manual_seed(0)
    head = SelsaBoxHead(
        ShapeSpec(channels=64, height=7, width=7), fc_dims=[256, 256], fc_init=fc_init
    )
    fan_in, fan_out = 64 * 49, 256
    expected = math.sqrt(3 / fan_in) if bound == "d2" else math.sqrt(6 / (fan_in + fan_out))
    w = head.fc1.weight
    assert w.abs().max() <= expected and w.abs().max() > 0.98 * expected
    assert torch.count_nonzero(head.fc1.bias) == 0
    with pytest.raises(ValueError, match="FC_INIT"):
        SelsaBoxHead(ShapeSpec(channels=4, height=7, width=7), fc_dims=[8], fc_init="kaiming")


def test_global_norm_clipping_is_mmcv_s_clip_grad_norm():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(5, 3), torch.nn.Linear(3, 2)
    for m in (a, b):
        for p in m.parameters():
            p.grad = 10 * torch.randn_like(p)
    b.bias.requires_grad_(False)  # no gradient, not clipped, not stepped
    b.bias.grad = None
    params = [*a.parameters(), b.weight]
    total = torch.stack([p.grad.norm() for p in params]).norm()
    assert total > 1  # clip_grad_norm_: grads x max_norm / (total + 1e-6)
    expected = [p.grad * (1.0 / (total + 1e-6)) for p in params]
    opt = GlobalNormClippedSGD(params, max_norm=1.0, lr=1.0)
    before = [p.detach().clone() for p in params]
    opt.step()
    for p, p0, g in zip(params, before, expected):
        torch.testing.assert_close(p.detach(), p0 - g)
