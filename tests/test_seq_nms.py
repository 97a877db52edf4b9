"""Seq-NMS: the vectorised implementation against a plain loop-by-loop re-statement of FGFA's
``lib/nms/seq_nms.py`` written here (independent of the package's own reference), a hand-worked
example, and the parameter checks."""

import numpy as np
import pytest

from selsa_d2.postprocessing.seq_nms import SeqNMSParams, seq_nms_class, seq_nms_video
from selsa_d2.testing import random_video_detections


# ---------------------------------------------------------------------- the re-statement
def _iou(a, b):
    """FGFA's overlap of two boxes, pixel-inclusive (+1)."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(0.0, iw) * max(0.0, ih)
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (area_a + area_b - inter)


def loop_seq_nms(boxes, scores, p: SeqNMSParams):
    """One class, one video: per frame (kept box indices, their scores)."""
    n = len(boxes)
    boxes = [[list(map(float, b)) for b in fb] for fb in boxes]
    score = [[float(s) for s in fs] for fs in scores]
    # links[f][i] = set of boxes j of frame f + 1 linked to box i of frame f
    links = [
        [
            {j for j in range(len(boxes[f + 1])) if _iou(bi, boxes[f + 1][j]) >= p.link_iou}
            for bi in boxes[f]
        ]
        for f in range(n - 1)
    ]
    removed = [set() for _ in range(n)]
    no_start = set()  # (frame, box) of found sequences
    while sum(len(s) for fl in links for s in fl) > 0:
        # dynamic program, box after box, strict '>' (first predecessor wins ties)
        val = [
            [0.0 if (f, i) in no_start else score[f][i] for i in range(len(boxes[f]))]
            for f in range(n)
        ]
        prev = [[-1] * len(boxes[f]) for f in range(n)]
        for f in range(1, n):
            for i in range(len(boxes[f - 1])):
                for j in sorted(links[f - 1][i]):
                    if val[f - 1][i] + score[f][j] > val[f][j]:
                        val[f][j] = val[f - 1][i] + score[f][j]
                        prev[f][j] = i
        best, end = 0.0, None  # padding counts as 0, so 0 never wins over a real box
        for f in range(n):
            for i in range(len(boxes[f])):
                if val[f][i] > best:
                    best, end = val[f][i], (f, i)
        if end is None or best < p.min_sequence_score:
            break
        f, i = end
        seq = [(f, i)]
        while prev[f][i] != -1:
            i = prev[f][i]
            f -= 1
            seq.append((f, i))
        seq.reverse()
        new = best / len(seq) if p.rescore == "mean" else max(score[f][i] for f, i in seq)
        for f, i in seq:
            score[f][i] = new
        for f, i in seq:
            gone = [
                k for k in range(len(boxes[f])) if _iou(boxes[f][i], boxes[f][k]) >= p.suppress_iou
            ]
            for k in gone:
                if f < n - 1:
                    links[f][k] = set()
                if f > 0:
                    for s in links[f - 1]:
                        s.discard(k)
            for k in gone:
                if k != i:
                    removed[f].add(k)
                    score[f][k] = 0.0
            no_start.add((f, i))
    return [
        (
            [k for k in range(len(boxes[f])) if k not in removed[f]],
            [score[f][k] for k in range(len(boxes[f])) if k not in removed[f]],
        )
        for f in range(n)
    ]


def _random_class_video(rng, with_ties: bool):
    frames = int(rng.integers(1, 12))
    boxes, scores = [], []
    for _ in range(frames):
        n = int(rng.choice([0, 0, 1, 3, 6, 10]))  # empty frames are common
        if with_ties:
            xy = rng.integers(0, 6, size=(n, 2)) * 4.0
            wh = rng.integers(2, 5, size=(n, 2)) * 4.0
            s = rng.choice([0.1, 0.2, 0.3, 0.5], size=n)
        else:
            xy = rng.uniform(0, 30, size=(n, 2))
            wh = rng.uniform(3, 20, size=(n, 2))
            s = rng.uniform(0.002, 1.0, size=n)
        boxes.append(np.hstack([xy, xy + wh]).reshape(-1, 4))
        scores.append(s)
    return boxes, scores


def _check_equal(boxes, scores, p):
    keep, new = seq_nms_class(boxes, scores, p)
    expected = loop_seq_nms(boxes, scores, p)
    for f, (idx, sc) in enumerate(expected):
        assert np.flatnonzero(keep[f]).tolist() == idx, f"frame {f}"
        np.testing.assert_array_equal(new[f][keep[f]], np.asarray(sc, dtype=np.float64).reshape(-1))


@pytest.mark.parametrize("with_ties", [True, False])
@pytest.mark.parametrize("rescore", ["mean", "max"])
def test_matches_loop_restatement(with_ties, rescore):
    rng = np.random.default_rng(7 + with_ties)
    p = SeqNMSParams(rescore=rescore)
    for _ in range(60):
        _check_equal(*_random_class_video(rng, with_ties), p)


def test_matches_loop_restatement_other_thresholds():
    rng = np.random.default_rng(3)
    p = SeqNMSParams(link_iou=0.3, suppress_iou=0.6, min_sequence_score=0.5)
    for _ in range(40):
        _check_equal(*_random_class_video(rng, True), p)


def test_video_matches_per_class_loop_and_thresholds():
    """seq_nms_video: per class, on the boxes with score > SCORE_THRESH only."""
    rng = np.random.default_rng(11)
    video = random_video_detections(rng, 12, 40, 4, quantize=4.0)
    video[5] = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
    p = SeqNMSParams(score_thresh=0.05)
    out = seq_nms_video([v[0] for v in video], [v[1] for v in video], [v[2] for v in video], p)
    for cls in range(4):
        rows = [np.flatnonzero((v[2] == cls) & (v[1] > 0.05)) for v in video]
        expected = loop_seq_nms(
            [v[0][r] for v, r in zip(video, rows)], [v[1][r] for v, r in zip(video, rows)], p
        )
        for f, (idx, sc) in enumerate(expected):
            got = [(i, s) for i, s in zip(*out[f]) if video[f][2][i] == cls]
            assert [i for i, _ in got] == rows[f][idx].tolist()
            np.testing.assert_allclose([s for _, s in got], np.float32(sc), rtol=0, atol=0)
    # boxes at or below the threshold are dropped
    for f, (idx, _) in enumerate(out):
        assert (video[f][1][idx] > 0.05).all()


def test_hand_worked_example():
    """Frame 0: A (0.9), B (0.2); frame 1: A' (0.6) and A'' (0.5) both linked to A, B' (0.3)
    linked to B; frame 2 empty; frame 3: A again (0.4), unlinked across the empty frame.
    Sequence 1: A -> A' (sum 1.5, mean 0.75); A'' (IoU 0.68 with A') is removed. Sequence 2:
    B -> B' (0.5, mean 0.25). Then no link is left: frame 3's box keeps 0.4."""
    a, b = [0, 0, 9, 9], [50, 50, 59, 59]
    boxes = [
        np.array([a, b], float),
        np.array([[1, 0, 10, 9], [0, 1, 9, 10], b], float),
        np.zeros((0, 4)),
        np.array([a], float),
    ]
    scores = [np.array([0.9, 0.2]), np.array([0.6, 0.5, 0.3]), np.zeros(0), np.array([0.4])]
    keep, new = seq_nms_class(boxes, scores, SeqNMSParams())
    assert [k.tolist() for k in keep] == [[True, True], [True, False, True], [], [True]]
    np.testing.assert_allclose(new[0], [0.75, 0.25])
    np.testing.assert_allclose(new[1][[0, 2]], [0.75, 0.25])
    np.testing.assert_allclose(new[3], [0.4])
    keep, new = seq_nms_class(boxes, scores, SeqNMSParams(rescore="max"))
    np.testing.assert_allclose(new[0], [0.9, 0.3])
    np.testing.assert_allclose(new[1][[0, 2]], [0.9, 0.3])
    # a sequence sum below MIN_SEQUENCE_SCORE stops everything
    keep, new = seq_nms_class(boxes, scores, SeqNMSParams(min_sequence_score=2.0))
    assert all(k.all() for k in keep)
    np.testing.assert_allclose(new[1], scores[1])


def test_no_links_changes_nothing():
    """FGFA stops when no link is left, even with strong single boxes."""
    boxes = [np.array([[0, 0, 9, 9]], float), np.array([[100, 100, 109, 109]], float)]
    keep, new = seq_nms_class(boxes, [np.array([0.9]), np.array([0.8])], SeqNMSParams())
    assert [k.tolist() for k in keep] == [[True], [True]]
    np.testing.assert_allclose(np.concatenate(new), [0.9, 0.8])
    keep, new = seq_nms_class([], [], SeqNMSParams())
    assert keep == [] and new == []


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"link_iou": 0.0}, "LINK_IOU"),
        ({"suppress_iou": 1.5}, "SUPPRESS_IOU"),
        ({"score_thresh": -0.1}, "SCORE_THRESH"),
        ({"min_sequence_score": 0.0}, "MIN_SEQUENCE_SCORE"),
        ({"rescore": "median"}, "RESCORE"),
    ],
)
def test_params_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SeqNMSParams(**kwargs)


def test_mismatched_inputs_are_errors():
    with pytest.raises(ValueError, match="frame 0 has 1 boxes, 2 scores"):
        seq_nms_video([np.zeros((1, 4))], [np.ones(2)], [np.zeros(1, int)], SeqNMSParams())
