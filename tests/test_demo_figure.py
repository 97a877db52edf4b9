"""The demo's outcome figure: per-frame outcomes, the stills' rule, the drawing."""

import cv2
import numpy as np

from selsa_d2.evaluation.frame_outcomes import (
    CORRECT,
    EMPTY,
    MISSED,
    WRONG_CLASS,
    differing_frames,
    frame_outcome,
)
from selsa_d2.outcome_figure import VideoFrame, draw_demo_figure, pick_stills

GT = np.array([[10, 10, 50, 50], [60, 60, 90, 90]], float)


def test_frame_outcome_uses_the_top_detection_at_iou_half():
    cls = [0, 1]
    assert frame_outcome(GT, cls, GT, [0.9, 0.8], [0, 1]) == CORRECT
    # the top-scoring overlapping detection decides, even if a lower one has the right class
    boxes = np.vstack([GT, GT[:1] + 1])
    assert frame_outcome(GT, cls, boxes, [0.6, 0.8, 0.9], [0, 1, 2]) == WRONG_CLASS
    # below the score threshold or IoU < 0.5: missed
    assert frame_outcome(GT, cls, GT, [0.9, 0.3], [0, 1]) == MISSED
    shifted = GT + [[30, 0, 30, 0], [0, 0, 0, 0]]
    assert frame_outcome(GT, cls, shifted, [0.9, 0.9], [0, 1]) == MISSED
    # wrong class wins over missed; no gt: empty
    assert frame_outcome(GT, cls, GT[:1], [0.9], [1]) == WRONG_CLASS
    assert frame_outcome(np.zeros((0, 4)), [], GT, [0.9, 0.9], [0, 1]) == EMPTY
    assert frame_outcome(GT, cls, np.zeros((0, 4)), [], []) == MISSED


def test_differing_frames_both_ways():
    a = [CORRECT, WRONG_CLASS, MISSED, CORRECT, EMPTY]
    b = [CORRECT, CORRECT, CORRECT, MISSED, EMPTY]
    assert differing_frames(list("vwxyz"), a, b) == (["w", "x"], ["y"])


def _frame(t, degraded, outcomes, video=0, file_name=""):
    f = VideoFrame(
        {
            "video_id": video,
            "frame_id": t,
            "degradations": ["blur"] if degraded else [],
            "file_name": file_name,
        },
        GT[:1],
        [0],
        [],
    )
    f.outcomes = outcomes
    return f


def test_stills_rule_prefers_degraded_frames_and_spreads():
    good, bad = CORRECT, WRONG_CLASS
    frames = [
        _frame(0, False, [bad, good]),
        _frame(1, True, [bad, good]),
        _frame(2, True, [bad, good]),
        _frame(3, True, [bad, good]),
        _frame(4, False, [good, bad]),
        _frame(5, False, [good, good]),
    ]
    # second model right: degraded 1, 2, 3 -> first and last; first model right: only clean 4
    assert pick_stills(frames, 2) == [(1, "second"), (3, "second"), (4, "first")]
    assert pick_stills(frames, 1) == [(1, "second"), (4, "first")]
    assert pick_stills(frames[5:], 2) == []


def test_figure_counts_and_draws(tmp_path):
    paths = []
    for t in range(4):
        img = np.full((100, 120, 3), 40 * t, np.uint8)
        path = tmp_path / f"{t}.png"
        cv2.imwrite(str(path), img)
        paths.append(str(path))
    right = (GT[:1], np.array([0.9]), np.array([0]))
    wrong = (GT[:1], np.array([0.9]), np.array([1]))
    none = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))
    dets = [(wrong, right), (none, right), (right, wrong), (right, right)]
    frames = [
        VideoFrame(
            {
                "video_id": 3,
                "frame_id": t,
                "degradations": ["blur"] if t < 2 else [],
                "file_name": paths[t],
                "height": 100,
            },
            GT[:1],
            [0],
            list(d),
        )
        for t, d in enumerate(dets)
    ]
    figure, info = draw_demo_figure(frames, ["single frame", "SELSA"], ["cat", "dog"])
    assert figure.ndim == 3 and figure.dtype == np.uint8 and figure.shape[0] > 200
    assert info["counts"] == {
        "SELSA right, single frame wrong": 2,
        "single frame right, SELSA wrong": 1,
    }
    assert [(s["frame_id"], s["right"]) for s in info["stills"]] == [
        (0, "SELSA"),
        (1, "SELSA"),
        (2, "single frame"),
    ]
    assert info["outcomes"]["SELSA"] == {CORRECT: 3, WRONG_CLASS: 1, MISSED: 0, EMPTY: 0}
    assert info["outcomes"]["single frame"] == {CORRECT: 2, WRONG_CLASS: 1, MISSED: 1, EMPTY: 0}
