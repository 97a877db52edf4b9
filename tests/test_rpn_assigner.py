"""mmdet MaxIoUAssigner semantics for the RPN: MaxIoUMatcher and MaxIoUAssignerRPN."""

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.proposal_generator import build_proposal_generator
from detectron2.structures import Boxes, Instances
from tiny_model import tiny_selsa_cfg

from selsa_d2.modeling import MaxIoUAssignerRPN, MaxIoUMatcher

RPN_THRESHOLDS, RPN_LABELS = [0.3, 0.7], [0, -1, 1]


def mmdet_assign(iou: torch.Tensor, pos_thr=0.7, neg_thr=0.3, min_pos_iou=0.3):
    """Independent re-statement of mmdet 2.x ``MaxIoUAssigner.assign_wrt_overlaps`` with
    ``gt_max_assign_all=True, match_low_quality=True``: gt index + 1 per anchor, 0 negative,
    -1 ignored."""
    num_gts, num_anchors = iou.shape
    if num_gts == 0:
        return torch.zeros(num_anchors, dtype=torch.long)
    assigned = torch.full((num_anchors,), -1, dtype=torch.long)
    for j in range(num_anchors):
        best = max(range(num_gts), key=lambda i: (iou[i, j].item(), -i))  # first maximum
        if iou[best, j] < neg_thr:
            assigned[j] = 0
        if iou[best, j] >= pos_thr:
            assigned[j] = best + 1
    for i in range(num_gts):
        gt_best = iou[i].max()
        if gt_best >= min_pos_iou:
            for j in range(num_anchors):
                if iou[i, j] == gt_best:
                    assigned[j] = i + 1
    return assigned


def as_mmdet(matches: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Detectron2 (matches, labels) -> mmdet's encoding (gt index + 1 / 0 / -1)."""
    out = torch.where(labels == 1, matches + 1, labels.long())
    return out


def rpn_matcher(min_iou=0.3):
    return MaxIoUMatcher(RPN_THRESHOLDS, RPN_LABELS, low_quality_min_iou=min_iou)


# ---------------------------------------------------------------- hand-made IoU matrices
def test_best_anchor_below_min_pos_iou_stays_negative():
    # the gt's best anchor has IoU 0.25: negative under mmdet (min_pos_iou 0.3),
    # positive under Detectron2's unconditional low-quality matching.
    iou = torch.tensor([[0.25, 0.10, 0.0]])
    matches, labels = rpn_matcher(0.3)(iou)
    assert labels.tolist() == [0, 0, 0]
    _, d2_labels = Matcher(RPN_THRESHOLDS, RPN_LABELS, allow_low_quality_matches=True)(iou)
    assert d2_labels.tolist() == [1, 0, 0]


def test_best_anchor_in_ignore_band_below_min_stays_ignored():
    # each anchor is the best of one gt, with IoU 0.29 and 0.28: both below the floor, negative
    iou = torch.tensor([[0.29, 0.05], [0.0, 0.28]])
    _, labels = rpn_matcher(0.3)(iou)
    assert labels.tolist() == [0, 0]


def test_best_anchor_at_or_above_min_pos_iou_becomes_positive():
    # 0.35 is in the ignore band [0.3, 0.7) but it is the gt's best anchor -> positive
    iou = torch.tensor([[0.35, 0.31, 0.2]])
    matches, labels = rpn_matcher(0.3)(iou)
    assert labels.tolist() == [1, -1, 0]
    assert matches[0] == 0
    # exactly at the floor counts (mmdet: >= min_pos_iou)
    _, labels = rpn_matcher(0.3)(torch.tensor([[0.3, 0.1]]))
    assert labels.tolist() == [1, 0]


def test_ties_within_a_gt_all_become_positive():
    iou = torch.tensor([[0.4, 0.4, 0.39, 0.1]])
    _, labels = rpn_matcher(0.3)(iou)
    assert labels.tolist() == [1, 1, -1, 0]


def test_anchor_best_for_two_gts_goes_to_the_last_gt():
    # anchor 0 is the best anchor of both gts (IoU 0.5 each): mmdet's loop assigns it to gt 1
    iou = torch.tensor([[0.5, 0.2], [0.5, 0.1]])
    matches, labels = rpn_matcher(0.3)(iou)
    assert labels[0] == 1 and matches[0] == 1


def test_low_quality_match_overrides_the_argmax_gt():
    # anchor 0: IoU 0.8 with gt 0 (positive, matched to gt 0 by argmax), but it is gt 1's best
    # anchor (0.5): mmdet reassigns it to gt 1; Detectron2's Matcher keeps gt 0.
    iou = torch.tensor([[0.8, 0.9], [0.5, 0.1]])
    matches, labels = rpn_matcher(0.3)(iou)
    assert labels.tolist() == [1, 1]
    assert matches.tolist() == [1, 0]
    d2_matches, _ = Matcher(RPN_THRESHOLDS, RPN_LABELS, allow_low_quality_matches=True)(iou)
    assert d2_matches.tolist() == [0, 0]


def test_no_gt_all_negative():
    matches, labels = rpn_matcher(0.3)(torch.zeros(0, 4))
    assert labels.tolist() == [0, 0, 0, 0]


def test_min_iou_zero_is_detectron2_labelling():
    torch.manual_seed(0)
    iou = torch.rand(5, 200) * 0.8
    _, labels = rpn_matcher(0.0)(iou)
    _, d2_labels = Matcher(RPN_THRESHOLDS, RPN_LABELS, allow_low_quality_matches=True)(iou)
    assert torch.equal(labels, d2_labels)


def test_invalid_min_iou():
    with pytest.raises(ValueError, match="low_quality_min_iou"):
        rpn_matcher(1.5)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("min_iou", [0.0, 0.3, 0.5])
def test_matches_mmdet_assigner_on_random_matrices(seed, min_iou):
    g = torch.Generator().manual_seed(seed)
    # quantised IoUs make ties (within and across gts) frequent
    iou = torch.randint(0, 10, (4, 60), generator=g).float() / 10
    iou[seed % 4] *= 0.3  # one gt with only low-quality anchors
    matches, labels = rpn_matcher(min_iou)(iou)
    expected = mmdet_assign(iou, min_pos_iou=min_iou)
    assert as_mmdet(matches, labels).tolist() == expected.tolist()


# ---------------------------------------------------------------- the RPN
def _rpn(name="MaxIoUAssignerRPN", boundary=0, min_iou=0.3):
    cfg = tiny_selsa_cfg()
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = name
    cfg.MODEL.RPN.BOUNDARY_THRESH = boundary
    cfg.MODEL.RPN.LOW_QUALITY_MIN_IOU = min_iou
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 256
    return build_proposal_generator(cfg, {"neck": ShapeSpec(channels=8, stride=16)})


def _gt(boxes, size=(100, 100)):
    inst = Instances(size)
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    return inst


# A0 crosses the left border (IoU 0.625 with the gt), A1 inside (IoU 0.6), A2 inside, no overlap.
ANCHORS = [Boxes(torch.tensor([[-30.0, 0, 50, 50], [0, 0, 30, 50], [60, 60, 90, 90]]))]
GT = [[0.0, 0, 50, 50]]


def test_rpn_is_selected_by_config():
    rpn = _rpn()
    assert type(rpn) is MaxIoUAssignerRPN
    assert (
        isinstance(rpn.anchor_matcher, MaxIoUMatcher)
        and rpn.anchor_matcher.low_quality_min_iou == 0.3
    )


def test_gt_best_inside_anchor_gets_the_low_quality_match():
    # mmdet labels only the inside anchors: the gt's best is A1 (0.6 >= 0.3) -> positive
    labels, boxes = _rpn().label_and_sample_anchors(ANCHORS, [_gt(GT)])
    assert labels[0].tolist() == [-1, 1, 0]
    torch.testing.assert_close(boxes[0][1], torch.tensor(GT[0]))
    # Detectron2 matches all anchors: the best (A0) is outside and dropped, A1 stays ignored
    d2_labels, _ = _rpn("RPN").label_and_sample_anchors(ANCHORS, [_gt(GT)])
    assert d2_labels[0].tolist() == [-1, -1, 0]


def test_without_boundary_all_anchors_are_matched():
    labels, _ = _rpn(boundary=-1).label_and_sample_anchors(ANCHORS, [_gt(GT)])
    assert labels[0].tolist() == [1, -1, 0]


def test_image_without_gt_and_sampling():
    rpn = _rpn()
    rpn.batch_size_per_image = 2
    labels, boxes = rpn.label_and_sample_anchors(ANCHORS, [_gt([])])
    assert sorted(labels[0].tolist()) == [-1, 0, 0]  # A0 outside; A1, A2 negative and sampled
    assert labels[0][0] == -1 and boxes[0].shape == (3, 4)
    rpn.batch_size_per_image = 1
    labels, _ = rpn.label_and_sample_anchors(ANCHORS, [_gt([])])
    assert (labels[0] == 0).sum() == 1 and (labels[0] == -1).sum() == 2
