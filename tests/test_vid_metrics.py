"""Hand-computed ImageNet VID AP cases for selsa_d2.evaluation.vid_metrics."""
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
    assert vm.average_precision([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3]) == pytest.approx(0.5 + 0.5 * 2 / 3)
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
    dup = [12, 12, 60, 60]  # IoU with BOX_A = 0.9216
    dets = {0: det([BOX_A, dup], [0.9, 0.85], [0, 0]), 1: det([BOX_B], [0.7], [0])}
    aps, _ = vm.vid_eval(frames, dets, 1)
    assert aps[0] == pytest.approx(5 / 6)  # same ladder as TP, FP, TP
    order, matched, _ = vm.match_frame(frames[0]["boxes"], [0], dets[0]["boxes"], dets[0]["scores"], [0, 0])
    assert order.tolist() == [0, 1] and matched.tolist() == [0, -1]


def test_greedy_by_score_not_by_iou():
    # the higher-scored detection takes the gt even though the other one overlaps it better
    loose = [10, 10, 60, 90]  # IoU 2500/4000 = 0.625
    order, matched, ious = vm.match_frame([BOX_A], [0], [BOX_A, loose], [0.5, 0.9], [0, 0])
    assert order.tolist() == [1, 0]
    assert matched.tolist() == [0, -1]
    assert ious[0, 0] == pytest.approx(0.625)


def test_small_object_rule():
    small = [0, 0, 8, 8]
    thr = vm.vid_iou_thresholds(np.array([small, [0, 0, 100, 100]]))
    np.testing.assert_allclose(thr, [64 / 18**2, 0.5])
    part = [0, 0, 8, 2.4]  # IoU 19.2 / 64 = 0.3
    assert vm.pairwise_iou([part], [small])[0, 0] == pytest.approx(0.3)
    aps, _ = vm.vid_eval([gt(0, [small], [0])], {0: det([part], [0.9], [0])}, 1)
    assert aps[0] == pytest.approx(1.0)  # 0.3 >= 0.1975: a match under the VID rule
    # the same relative overlap on a large box is no match at 0.5
    aps, _ = vm.vid_eval([gt(0, [[0, 0, 100, 100]], [0])], {0: det([[0, 0, 100, 30]], [0.9], [0])}, 1)
    assert aps[0] == 0.0


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
    i1, i2 = 90 / 110, 80 / 120  # IoU at 1 and 2 pixels of shift
    np.testing.assert_allclose([m[0][0], m[1][0], m[2][0]], [(i1 + i2) / 2, i1, (i1 + i2) / 2])
    assert np.isnan(m[3][0])
    m1 = vm.compute_motion_ious(frames, frame_range=1)
    np.testing.assert_allclose([m1[0][0], m1[1][0], m1[2][0]], [i1, i1, i1])
    # NaN (no neighbour) is never ignored, as in FGFA: counts in every group
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
    acc = vm.accumulate_tp_fp(frames, {0: wrong}, 2, gt_ignore=vm.speed_group_ignore(motion, "slow"))
    assert acc["fp"].tolist() == [0.0]
    # ... but it is in "fast"
    acc = vm.accumulate_tp_fp(frames, {0: wrong}, 2, gt_ignore=vm.speed_group_ignore(motion, "fast"))
    assert acc["fp"].tolist() == [1.0]
    # an unmatched detection in a frame without gts weighs the given empty-frame fraction
    acc = vm.accumulate_tp_fp([gt(0, [], [])], {0: det([FAR], [0.9], [0])}, 1, empty_frame_fp_weight=0.25)
    assert acc["fp"].tolist() == [0.25]


def test_subset_selection():
    frames = [gt(0, [BOX_A], [0]), gt(1, [BOX_B], [0])]
    dets = {0: det([FAR], [0.8], [0]), 1: det([BOX_B], [0.9], [0])}
    assert vm.vid_eval(*vm.select_frames(frames, dets, [0]), 1)[1] == 0.0
    assert vm.vid_eval(*vm.select_frames(frames, dets, [1]), 1)[1] == 1.0
    # all frames: TP (0.9) then FP (0.8), one of two gts found -> AP = 0.5
    assert vm.vid_eval(frames, dets, 1)[1] == pytest.approx(0.5)
