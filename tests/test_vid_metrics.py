"""Hand-computed ImageNet VID AP cases for selsa_d2.evaluation.vid_metrics.

Unless a test says otherwise, the values are worked out under the devkit convention (the default):
a box [x1, y1, x2, y2] spans x2 - x1 + 1 by y2 - y1 + 1 pixels, e.g. BOX_A is 51 x 51 = 2601."""

import numpy as np
import pytest

from selsa_d2.evaluation import vid_metrics as vm


def gt(image_id, boxes, classes, instance_ids=None, video_id=0, frame_id=None):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return {
        "image_id": image_id,
        "video_id": video_id,
        "frame_id": image_id if frame_id is None else frame_id,
        "boxes": boxes,
        "classes": np.asarray(classes, dtype=np.int64),
        "instance_ids": np.asarray(
            list(range(len(boxes))) if instance_ids is None else instance_ids, dtype=np.int64
        ),
    }


def det(boxes, scores, classes):
    return {
        "boxes": np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        "scores": np.asarray(scores, dtype=np.float64),
        "classes": np.asarray(classes, dtype=np.int64),
    }


BOX_A = [10, 10, 60, 60]
BOX_B = [100, 100, 150, 160]
FAR = [300, 300, 350, 350]


def test_average_precision_all_point():
    # precision envelope: 1.0 up to recall 0.5, then 2/3 up to recall 1.0
    assert vm.average_precision([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3]) == pytest.approx(
        0.5 + 0.5 * 2 / 3
    )
    assert vm.average_precision([], []) == 0.0


def test_perfect_detections_ap_one():
    frames = [gt(0, [BOX_A, BOX_B], [0, 1]), gt(1, [BOX_A], [1])]
    dets = {0: det([BOX_A, BOX_B], [0.9, 0.8], [0, 1]), 1: det([BOX_A], [0.7], [1])}
    aps, mean = vm.vid_eval(frames, dets, num_classes=2)
    np.testing.assert_allclose(aps, [1.0, 1.0])
    assert mean == 1.0


def test_false_positive_ranked_above_true_positive():
    # one gt, FP (0.9) above TP (0.8): recall [0, 1], precision [0, 1/2] -> AP = 1/2
    frames = [gt(0, [BOX_A], [0])]
    aps, _ = vm.vid_eval(frames, {0: det([FAR, BOX_A], [0.9, 0.8], [0, 0])}, 1)
    assert aps[0] == pytest.approx(0.5)
    # two gts, TP 0.95, FP 0.9, TP 0.8: rec [.5,.5,1], prec [1,.5,2/3] -> AP = .5*1 + .5*2/3 = 5/6
    frames = [gt(0, [BOX_A], [0]), gt(1, [BOX_B], [0])]
    dets = {0: det([BOX_A, FAR], [0.95, 0.9], [0, 0]), 1: det([BOX_B], [0.8], [0])}
    aps, mean = vm.vid_eval(frames, dets, 1)
    assert aps[0] == pytest.approx(5 / 6)
    assert mean == pytest.approx(5 / 6)


def test_duplicate_detection_is_false_positive():
    frames = [gt(0, [BOX_A], [0]), gt(1, [BOX_B], [0])]
    dup = [12, 12, 60, 60]  # 49 x 49 inside BOX_A's 51 x 51: IoU 2401 / 2601 = 0.923
    dets = {0: det([BOX_A, dup], [0.9, 0.85], [0, 0]), 1: det([BOX_B], [0.7], [0])}
    aps, _ = vm.vid_eval(frames, dets, 1)
    assert aps[0] == pytest.approx(5 / 6)  # same ladder as TP, FP, TP
    order, matched, _ = vm.match_frame(
        frames[0]["boxes"], [0], dets[0]["boxes"], dets[0]["scores"], [0, 0]
    )
    assert order.tolist() == [0, 1] and matched.tolist() == [0, -1]


def test_greedy_by_score_not_by_iou():
    # the higher-scored detection takes the gt even though the other one overlaps it better
    loose = [10, 10, 60, 90]  # 51 x 81 = 4131 holding BOX_A (2601): IoU 2601 / 4131 = 0.6296
    order, matched, ious = vm.match_frame([BOX_A], [0], [BOX_A, loose], [0.5, 0.9], [0, 0])
    assert order.tolist() == [1, 0]
    assert matched.tolist() == [0, -1]
    assert ious[0, 0] == pytest.approx(2601 / 4131)


def test_small_object_rule():
    small = [0, 0, 8, 8]  # 9 x 9 pixels: threshold 81 / (19 * 19) = 0.2244
    thr = vm.vid_iou_thresholds(np.array([small, [0, 0, 100, 100]]))
    np.testing.assert_allclose(thr, [81 / 19**2, 0.5])
    # continuous: 8 x 8, 64 / 18**2 = 0.1975
    thr = vm.vid_iou_thresholds(np.array([small, [0, 0, 100, 100]]), box_convention="continuous")
    np.testing.assert_allclose(thr, [64 / 18**2, 0.5])
    part = [
        0,
        0,
        8,
        2.4,
    ]  # 9 x 3.4 = 30.6 inside small's 81: IoU 0.3778 (continuous 19.2 / 64 = 0.3)
    assert vm.pairwise_iou([part], [small])[0, 0] == pytest.approx(30.6 / 81)
    assert vm.pairwise_iou([part], [small], "continuous")[0, 0] == pytest.approx(0.3)
    aps, _ = vm.vid_eval([gt(0, [small], [0])], {0: det([part], [0.9], [0])}, 1)
    assert aps[0] == pytest.approx(1.0)  # 0.3778 >= 0.2244: a match under the VID rule
    # a similar relative overlap on a large box is no match at 0.5: 101 x 31 / (101 x 101) = 0.307
    aps, _ = vm.vid_eval(
        [gt(0, [[0, 0, 100, 100]], [0])], {0: det([[0, 0, 100, 30]], [0.9], [0])}, 1
    )
    assert aps[0] == 0.0


def test_devkit_boxes_flip_a_match():
    """FGFA's imagenet_vid_eval.py adds 1 to widths, heights and the intersection."""
    g, d = [100, 100, 129, 129], [96, 92, 137, 125]
    # devkit: gt 30 x 30 = 900, det 42 x 34 = 1428, intersection 30 x 26 = 780, union 1548
    assert vm.pairwise_iou([d], [g])[0, 0] == pytest.approx(780 / 1548)  # 0.5039
    # continuous: 29 x 29 = 841, 41 x 33 = 1353, intersection 29 x 25 = 725, union 1469
    assert vm.pairwise_iou([d], [g], "continuous")[0, 0] == pytest.approx(725 / 1469)  # 0.4935
    frames, dets = [gt(0, [g], [0])], {0: det([d], [0.9], [0])}
    assert vm.vid_eval(frames, dets, 1)[1] == 1.0  # threshold min(0.5, 900 / 1600) = 0.5: TP
    assert vm.vid_eval(frames, dets, 1, box_convention="continuous")[1] == 0.0  # FP
    with pytest.raises(ValueError, match="box convention"):
        vm.vid_eval(frames, dets, 1, box_convention="inclusive")


def test_devkit_touching_boxes_overlap_by_one_pixel_column():
    # [0, 0, 9, 9] and [9, 0, 18, 9] share pixel column 9: intersection 1 x 10, union 100 + 100 - 10
    assert vm.pairwise_iou([[9, 0, 18, 9]], [[0, 0, 9, 9]])[0, 0] == pytest.approx(10 / 190)
    assert vm.pairwise_iou([[9, 0, 18, 9]], [[0, 0, 9, 9]], "continuous")[0, 0] == 0.0
    assert vm.pairwise_iou([[10, 0, 18, 9]], [[0, 0, 9, 9]])[0, 0] == 0.0  # no shared pixel


def test_class_without_gt_is_excluded():
    frames = [gt(0, [BOX_A], [0])]
    dets = {0: det([BOX_A, BOX_B, FAR], [0.9, 0.95, 0.99], [0, 2, 2])}  # class 2 has no gt
    aps, mean = vm.vid_eval(frames, dets, num_classes=3)
    assert aps[0] == 1.0 and np.isnan(aps[1]) and np.isnan(aps[2])
    assert mean == 1.0


def test_wrong_class_is_false_positive():
    frames = [gt(0, [BOX_A], [0]), gt(1, [BOX_B], [1])]
    dets = {0: det([BOX_A], [0.9], [1]), 1: det([BOX_B], [0.9], [1])}
    aps, mean = vm.vid_eval(frames, dets, 2)
    assert aps[0] == 0.0 and aps[1] == pytest.approx(0.5)
    assert mean == pytest.approx(0.25)


def test_frames_without_detections_and_unknown_images():
    frames = [gt(0, [BOX_A], [0]), gt(1, [BOX_A], [0])]
    aps, _ = vm.vid_eval(frames, {0: det([BOX_A], [0.9], [0])}, 1)
    assert aps[0] == pytest.approx(0.5)  # frame 1: no detections, gt missed
    with pytest.raises(ValueError, match="not in the ground truth"):
        vm.vid_eval(frames, {7: det([BOX_A], [0.9], [0])}, 1)


def test_motion_iou_values():
    boxes = [[0, 0, 10, 10], [1, 0, 11, 10], [2, 0, 12, 10]]
    frames = [gt(i, [b], [0], [5]) for i, b in enumerate(boxes)]
    frames.append(gt(3, [[0, 0, 10, 10]], [0], [9], video_id=1, frame_id=0))  # alone in its video
    m = vm.compute_motion_ious(frames, frame_range=10)
    # 11 x 11 boxes (121 px) shifted by 1 and 2 pixels: intersections 10 x 11 and 9 x 11
    i1, i2 = 110 / (242 - 110), 99 / (242 - 99)
    np.testing.assert_allclose([m[0][0], m[1][0], m[2][0]], [(i1 + i2) / 2, i1, (i1 + i2) / 2])
    assert np.isnan(m[3][0])
    m1 = vm.compute_motion_ious(frames, frame_range=1)
    np.testing.assert_allclose([m1[0][0], m1[1][0], m1[2][0]], [i1, i1, i1])
    # continuous boxes: 10 x 10, intersections 90 and 80
    mc = vm.compute_motion_ious(frames, frame_range=10, box_convention="continuous")
    assert mc[1][0] == pytest.approx(90 / 110) and mc[0][0] == pytest.approx(
        (90 / 110 + 80 / 120) / 2
    )
    # NaN (no neighbour) is never ignored (FGFA's test iou < lo or iou > hi is False): counts in every group
    for group in vm.SPEED_GROUPS:
        assert not vm.speed_group_ignore([m[3]], group)[0][0]


def _two_track_video(n=11):
    """Video 0: instance 0 static (slow), instance 1 moving 40 px/frame with width 50 (fast)."""
    frames = []
    for t in range(n):
        fast = [40 * t, 200, 40 * t + 50, 250]
        frames.append(gt(t, [BOX_A, fast], [0, 0], [0, 1]))
    return frames


def test_speed_groups_static_and_fast_tracks():
    frames = _two_track_video()
    m = vm.compute_motion_ious(frames)
    assert all(x[0] == 1.0 for x in m)  # static -> slow
    assert all(x[1] < 0.7 for x in m)  # fast
    ig_slow = vm.speed_group_ignore(m, "slow")
    assert all(x.tolist() == [False, True] for x in ig_slow)
    ig_medium = vm.speed_group_ignore(m, "medium")
    assert all(x.tolist() == [True, True] for x in ig_medium)


def test_speed_group_ignore_rule():
    frames = _two_track_video()
    # detect only the fast object, with a high score, and the static one with a lower score
    dets = {f["image_id"]: det(f["boxes"][::-1], [0.9, 0.8], [0, 0]) for f in frames}
    res = vm.vid_eval_by_speed(frames, dets, 1)
    # in "slow", detections of the fast (ignored) gt are neither TP nor FP -> AP 1, not lower
    assert res["slow"][1] == pytest.approx(1.0)
    assert res["fast"][1] == pytest.approx(1.0)
    assert np.isnan(res["medium"][1])  # no gt in the group
    # only the fast object detected: slow AP 0, fast AP 1
    dets = {f["image_id"]: det(f["boxes"][1:], [0.9], [0]) for f in frames}
    res = vm.vid_eval_by_speed(frames, dets, 1)
    assert res["slow"][1] == 0.0 and res["fast"][1] == pytest.approx(1.0)


def test_speed_group_unmatched_detection_weights():
    frames = _two_track_video(3)
    # frame 0: a background detection overlapping nothing (score 0.95) before the static TP (0.8).
    # FGFA tie rule: FP weight = fraction of the frame's gts that are ignored = 1/2 in both groups.
    dets = {0: det([FAR, BOX_A], [0.95, 0.8], [0, 0])}
    motion = vm.compute_motion_ious(frames)
    acc = vm.accumulate_tp_fp(frames, dets, 1, gt_ignore=vm.speed_group_ignore(motion, "slow"))
    np.testing.assert_allclose(acc["fp"], [0.5, 0.0])
    np.testing.assert_allclose(acc["tp"], [0.0, 1.0])
    assert acc["npos"].tolist() == [3]
    # a detection overlapping only the (ignored) fast gt with the wrong class is not an FP in "slow"
    wrong = det([frames[0]["boxes"][1]], [0.9], [1])
    acc = vm.accumulate_tp_fp(
        frames, {0: wrong}, 2, gt_ignore=vm.speed_group_ignore(motion, "slow")
    )
    assert acc["fp"].tolist() == [0.0]
    # ... but it is in "fast"
    acc = vm.accumulate_tp_fp(
        frames, {0: wrong}, 2, gt_ignore=vm.speed_group_ignore(motion, "fast")
    )
    assert acc["fp"].tolist() == [1.0]
    # an unmatched detection in a frame without gts weighs the given empty-frame fraction
    acc = vm.accumulate_tp_fp(
        [gt(0, [], [])], {0: det([FAR], [0.9], [0])}, 1, empty_frame_fp_weight=0.25
    )
    assert acc["fp"].tolist() == [0.25]


def test_empty_frame_fp_weight_counts_empty_frames_as_zero():
    # FGFA reads a frame without gt as one motion IoU of 0; NaN stays in the denominator only.
    # values: 1.0, 0.1, 0 (empty frame), NaN -> slow 1/4, medium 0/4, fast 2/4
    motion = [np.array([1.0, 0.1]), np.zeros(0), np.array([np.nan])]
    weights = {g: vm.empty_frame_fp_weight(motion, g) for g in vm.SPEED_GROUPS}
    assert weights == {"slow": 0.25, "medium": 0.0, "fast": 0.5}
    assert vm.empty_frame_fp_weight([], "slow") == 1.0


def test_speed_groups_with_an_empty_frame():
    """Three frames with a static (slow) and a fast object, then a frame without gt holding a
    background detection scored above everything else."""
    frames = _two_track_video(3) + [gt(3, [], [], [])]
    dets = {
        t: det(frames[t]["boxes"][::-1], [0.9 - 0.01 * t, 0.8 - 0.01 * t], [0, 0]) for t in range(3)
    }
    dets[3] = det([FAR], [0.95], [0])
    motion = vm.compute_motion_ious(frames)
    # motion IoUs: 3 x 1.0 (slow), 3 below 0.7 (fast), and 0 for the empty frame: 7 values
    assert vm.empty_frame_fp_weight(motion, "slow") == pytest.approx(3 / 7)
    assert vm.empty_frame_fp_weight(motion, "fast") == pytest.approx(4 / 7)
    res = vm.vid_eval_by_speed(frames, dets, 1, motion_ious=motion)
    # slow: FP of weight 3/7 first, the fast detections matched to ignored gts (neither TP nor FP),
    # then 3 TPs: precision 1/(1+3/7), 2/(2+3/7), 3/(3+3/7) = 7/8 at recall 1; the envelope is 7/8
    assert res["slow"][1] == pytest.approx(7 / 8)
    # fast: FP of weight 4/7, then 3 TPs: precision at recall 1 is 3 / (3 + 4/7) = 21/25
    assert res["fast"][1] == pytest.approx(21 / 25)
    assert np.isnan(res["medium"][1])  # no gt in the group
    # the overall AP counts the background detection as a full FP: 6 TPs after it, 6/7 at recall 1
    assert vm.vid_eval(frames, dets, 1)[1] == pytest.approx(6 / 7)


def test_subset_selection():
    frames = [gt(0, [BOX_A], [0]), gt(1, [BOX_B], [0])]
    dets = {0: det([FAR], [0.8], [0]), 1: det([BOX_B], [0.9], [0])}
    assert vm.vid_eval(*vm.select_frames(frames, dets, [0]), 1)[1] == 0.0
    assert vm.vid_eval(*vm.select_frames(frames, dets, [1]), 1)[1] == 1.0
    # all frames: TP (0.9) then FP (0.8), one of two gts found -> AP = 0.5
    assert vm.vid_eval(frames, dets, 1)[1] == pytest.approx(0.5)


# ---------------------------------------------------------------- a scalar re-statement of the devkit


def _devkit_iou(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - iw * ih
    return iw * ih / union


def _devkit_ap(frames, dets, num_classes, motion=None, lo=0.0, hi=1.0):
    """Per-detection loops in the order of FGFA's imagenet_vid_eval(_motion).py, written from its
    description: greedy by score, per-gt small-object threshold, motion-range ignore and FP weights."""
    all_motion = [] if motion is None else [v for m in motion for v in (m if len(m) else [0.0])]
    empty_weight = sum(lo <= v <= hi for v in all_motion) / len(all_motion) if all_motion else 1.0
    npos = [0] * num_classes
    rows = []  # (score, class, tp, fp)
    for f_idx, fr in enumerate(frames):
        g_boxes, g_cls = fr["boxes"].tolist(), fr["classes"].tolist()
        ignored = (
            [False] * len(g_cls) if motion is None else [v < lo or v > hi for v in motion[f_idx]]
        )
        for c, ig in zip(g_cls, ignored):
            npos[c] += not ig
        thr = [
            min(
                0.5,
                (b[2] - b[0] + 1) * (b[3] - b[1] + 1) / ((b[2] - b[0] + 11) * (b[3] - b[1] + 11)),
            )
            for b in g_boxes
        ]
        d = dets.get(fr["image_id"])
        if d is None:
            continue
        taken = [False] * len(g_cls)
        for j in sorted(range(len(d["scores"])), key=lambda j: -d["scores"][j]):
            bb, label = d["boxes"][j].tolist(), int(d["classes"][j])
            best, kbest, ov_ig, ov_nig = -1.0, -1, -1.0, -1.0
            for k, bg in enumerate(g_boxes):
                ov = _devkit_iou(bb, bg)
                if ov > 0 and ov >= thr[k] and ov > best and not taken[k] and label == g_cls[k]:
                    best, kbest = ov, k
                if ignored[k]:
                    ov_ig = max(ov_ig, ov)
                else:
                    ov_nig = max(ov_nig, ov)
            if kbest >= 0:
                taken[kbest] = True
                rows.append((d["scores"][j], label, float(not ignored[kbest]), 0.0))
            elif ov_nig > ov_ig:
                rows.append((d["scores"][j], label, 0.0, 1.0))
            elif ov_ig > ov_nig:
                rows.append((d["scores"][j], label, 0.0, 0.0))
            elif not g_cls:
                rows.append((d["scores"][j], label, 0.0, empty_weight))
            else:
                rows.append((d["scores"][j], label, 0.0, sum(ignored) / len(ignored)))
    rows.sort(key=lambda r: -r[0])
    aps = []
    for c in range(num_classes):
        if npos[c] == 0:
            continue
        tp = np.cumsum([r[2] for r in rows if r[1] == c])
        fp = np.cumsum([r[3] for r in rows if r[1] == c])
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        aps.append(vm.average_precision(tp / npos[c], prec))
    return float(np.mean(aps)) if aps else float("nan")


def _random_video(rng, n_frames=12, num_classes=3):
    """Integer boxes of 2..4 tracks drifting 0..3 pixels a frame (track 0 without instance id, so
    without motion IoU), some frames without gt, jittered detections mostly of the right class,
    background detections."""
    tracks = [
        (
            rng.randint(num_classes),
            rng.uniform(0, 200, 2),
            rng.uniform(8, 60, 2),
            rng.uniform(-3, 3, 2),
        )
        for _ in range(rng.randint(2, 5))
    ]
    frames, dets = [], {}
    for t in range(n_frames):
        boxes, classes, inst = [], [], []
        if rng.rand() > 0.2:
            for i, (c, xy, wh, v) in enumerate(tracks):
                x, y = np.round(xy + v * t)
                boxes.append([x, y, x + round(wh[0]), y + round(wh[1])])
                classes.append(c)
                inst.append(i if i else -1)
        frames.append(gt(t, boxes, classes, inst))
        d_boxes, d_classes = [], []
        for b, c in zip(boxes, classes):
            for _ in range(rng.randint(0, 3)):
                d_boxes.append(np.array(b) + rng.randint(-3, 4, 4))
                d_classes.append(c if rng.rand() < 0.8 else rng.randint(num_classes))
        for _ in range(rng.randint(0, 2)):
            d_boxes.append(np.concatenate([rng.uniform(0, 250, 2).round()] * 2) + [0, 0, 20, 20])
            d_classes.append(rng.randint(num_classes))
        if d_boxes:
            d_boxes = np.array(d_boxes, dtype=np.float64)
            d_boxes[:, 2:] = np.maximum(d_boxes[:, 2:], d_boxes[:, :2])
            dets[t] = det(d_boxes, rng.uniform(0, 1, len(d_boxes)).round(2), d_classes)
    return frames, dets


@pytest.mark.parametrize("seed", range(6))
def test_matches_scalar_devkit_restatement(seed):
    rng = np.random.RandomState(seed)
    frames, dets = _random_video(rng)
    assert vm.vid_eval(frames, dets, 3)[1] == pytest.approx(_devkit_ap(frames, dets, 3))
    motion = vm.compute_motion_ious(frames, frame_range=3)
    res = vm.vid_eval_by_speed(frames, dets, 3, motion_ious=motion)
    for group, (lo, hi) in vm.SPEED_GROUPS.items():
        assert res[group][1] == pytest.approx(
            _devkit_ap(frames, dets, 3, motion, lo, hi), nan_ok=True
        ), group
