"""Loop-by-loop Seq-NMS, a close Python 3 transliteration of FGFA's ``lib/nms/seq_nms.py``
(msracver/Flow-Guided-Feature-Aggregation: ``createLinks``, ``maxPath``, ``findMaxPath``,
``rescore``, ``deleteLink``), with the thresholds as arguments.

The baseline of ``benchmarks/bench_seq_nms.py``; slow (Python loops over box pairs and a full
dynamic program per sequence). Use :func:`selsa_d2.postprocessing.seq_nms.seq_nms_class`.
"""

from __future__ import annotations

import numpy as np

from .seq_nms import SeqNMSParams

__all__ = ["seq_nms_class_reference"]


def _create_links(dets: list[np.ndarray], link_iou: float) -> list[list[list[int]]]:
    links = []
    for f in range(len(dets) - 1):
        d1, d2 = dets[f], dets[f + 1]
        areas2 = (d2[:, 2] - d2[:, 0] + 1) * (d2[:, 3] - d2[:, 1] + 1)
        frame_links = []
        for b1 in d1:
            area1 = (b1[2] - b1[0] + 1) * (b1[3] - b1[1] + 1)
            x1 = np.maximum(b1[0], d2[:, 0])
            y1 = np.maximum(b1[1], d2[:, 1])
            x2 = np.minimum(b1[2], d2[:, 2])
            y2 = np.minimum(b1[3], d2[:, 3])
            w = np.maximum(0.0, x2 - x1 + 1)
            h = np.maximum(0.0, y2 - y1 + 1)
            inter = w * h
            ovrs = inter / (area1 + areas2 - inter)
            frame_links.append([k for k, o in enumerate(ovrs) if o >= link_iou])
        links.append(frame_links)
    return links


def _find_max_path(links, dets, blocked):
    num_frames = len(dets)
    max_boxes = max(len(d) for d in dets)
    if max_boxes == 0:
        return 0, [], 0.0
    a = np.zeros((num_frames, max_boxes))
    b = np.full((num_frames, max_boxes), -1)
    for f in range(num_frames):
        for j in range(len(dets[f])):
            if (f, j) not in blocked:
                a[f, j] = dets[f][j][-1]
    for i in range(1, num_frames):
        for box_id, nexts in enumerate(links[i - 1]):
            for nxt in nexts:
                w = a[i - 1, box_id] + dets[i][nxt][-1]
                if w > a[i, nxt]:
                    a[i, nxt] = w
                    b[i, nxt] = box_id
    i, j = np.unravel_index(a.argmax(), a.shape)
    path, total = [int(j)], float(a[i, j])
    while b[i, j] != -1:
        path.append(int(b[i, j]))
        j = b[i, j]
        i -= 1
    path.reverse()
    return int(i), path, total


def _delete_links(dets, links, root, path, thresh):
    delete_set, num_deleted = [], 0
    for i, box_ind in enumerate(path):
        frame = dets[root + i]
        areas = (frame[:, 2] - frame[:, 0] + 1) * (frame[:, 3] - frame[:, 1] + 1)
        b1 = frame[box_ind]
        x1 = np.maximum(b1[0], frame[:, 0])
        y1 = np.maximum(b1[1], frame[:, 1])
        x2 = np.minimum(b1[2], frame[:, 2])
        y2 = np.minimum(b1[3], frame[:, 3])
        w = np.maximum(0.0, x2 - x1 + 1)
        h = np.maximum(0.0, y2 - y1 + 1)
        inter = w * h
        ovrs = inter / (areas[box_ind] + areas - inter)
        deletes = [k for k, o in enumerate(ovrs) if o >= thresh]
        delete_set.append(deletes)
        if root + i < len(links):
            for d in deletes:
                num_deleted += len(links[root + i][d])
                links[root + i][d] = []
        if i > 0 or root > 0:
            for prior in links[root + i - 1]:
                for d in deletes:
                    if d in prior:
                        prior.remove(d)
                        num_deleted += 1
    return delete_set, num_deleted


def seq_nms_class_reference(
    boxes: list[np.ndarray], scores: list[np.ndarray], params: SeqNMSParams
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Same contract as :func:`~selsa_d2.postprocessing.seq_nms.seq_nms_class`."""
    dets = [
        np.hstack([np.asarray(b, np.float64).reshape(-1, 4), np.asarray(s, np.float64)[:, None]])
        for b, s in zip(boxes, scores)
    ]
    links = _create_links(dets, params.link_iou)
    removed = [set() for _ in dets]
    blocked: set[tuple[int, int]] = set()
    num_links = sum(len(n) for frame in links for n in frame)
    while True:
        root, path, total = _find_max_path(links, dets, blocked)
        if total < params.min_sequence_score or num_links == 0 or len(path) < 1:
            break
        if params.rescore == "mean":
            new_score = total / len(path)
        else:
            new_score = max(dets[root + i][k][4] for i, k in enumerate(path))
        for i, k in enumerate(path):
            dets[root + i][k][4] = new_score
        delete_set, num_deleted = _delete_links(dets, links, root, path, params.suppress_iou)
        num_links -= num_deleted
        for i, k in enumerate(path):
            delete_set[i].remove(k)
            blocked.add((root + i, k))
            for d in delete_set[i]:
                dets[root + i][d] = np.zeros(5)
            removed[root + i].update(delete_set[i])
    keep = [
        np.array([k not in removed[f] for k in range(len(d))], dtype=bool)
        for f, d in enumerate(dets)
    ]
    return keep, [d[:, 4].copy() for d in dets]
