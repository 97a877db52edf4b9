"""Seq-NMS speed (``benchmarks/bench_seq_nms.py``).

:data:`DESCRIPTION` is the command's ``--help``."""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
import tracemalloc

import numpy as np
import torch

from ..postprocessing.seq_nms import SeqNMSParams, seq_nms_class, seq_nms_video
from ..postprocessing.seq_nms_reference import seq_nms_class_reference
from ..testing import random_video_detections
from .report import format_table, hardware_info, hardware_line, now_iso, write_json

DESCRIPTION = """Seq-NMS speed: the vectorised implementation vs a loop-by-loop transliteration of FGFA's.

Input: one synthetic video (``selsa_d2.testing.random_video_detections``: a few moving objects,
jittered candidate boxes around them, some clutter), ``--boxes`` candidates per frame over
``--classes`` classes, i.e. what Seq-NMS sees before per-frame NMS. Reported:

* the vectorised ``seq_nms_video`` on the whole ``--frames`` video (seconds, seconds per 100
  frames) and its peak traced memory (``tracemalloc``, a separate run);
* both implementations on the first ``--ref-frames`` frames (same input, outputs checked equal):
  the measured ratio. The loop version on the whole video is only extrapolated (linearly, a lower
  bound: its full dynamic program per sequence grows with the video), unless ``--ref-frames``
  equals ``--frames``.

CPU seconds (``time.process_time``) are what one idle core would take; wall seconds are
printed beside them (the machine may be shared). One thread (``torch.set_num_threads(1)``; numpy's element-wise operations are single-threaded).
"""


TARGET_SECONDS_PER_100_FRAMES = 1.0
TARGET_RATIO = 10.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=DESCRIPTION.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--boxes", type=int, default=300, help="candidates per frame")
    p.add_argument("--classes", type=int, default=30)
    p.add_argument("--ref-frames", type=int, default=100, help="frames timed for both versions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=1, help="passes of the vectorised run (median)")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    if not 1 <= args.ref_frames <= args.frames:
        p.error("--ref-frames must be in [1, --frames]")
    return args


def _split(video):
    return [f[0] for f in video], [f[1] for f in video], [f[2] for f in video]


def _reference_video(video, params: SeqNMSParams):
    """The loop version over every class, in ``seq_nms_video``'s output form."""
    boxes, scores, classes = _split(video)
    out_keep = [np.zeros(len(s), dtype=bool) for s in scores]
    out_scores = [np.zeros(len(s)) for s in scores]
    for cls in np.unique(np.concatenate(classes)).tolist():
        rows = [
            np.flatnonzero((c == cls) & (s > params.score_thresh)) for c, s in zip(classes, scores)
        ]
        keep, new = seq_nms_class_reference(
            [b[r] for b, r in zip(boxes, rows)], [s[r] for s, r in zip(scores, rows)], params
        )
        for f, r in enumerate(rows):
            out_keep[f][r], out_scores[f][r] = keep[f], new[f]
    return [(np.flatnonzero(k), s[k].astype(np.float32)) for k, s in zip(out_keep, out_scores)]


def _timed(fn):
    """(result, wall seconds, CPU seconds of this process): on a shared machine the CPU time is
    what one idle core would take; both are reported."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(1)
    params = SeqNMSParams()
    video = random_video_detections(
        np.random.default_rng(args.seed), args.frames, args.boxes, args.classes
    )
    hw = hardware_info("cpu")
    print(hardware_line(hw))

    times, walls = [], []
    for _ in range(args.repeat):
        _, wall, cpu = _timed(lambda: seq_nms_video(*_split(video), params))
        times.append(cpu)
        walls.append(wall)
    full, full_wall = float(np.median(times)), float(np.median(walls))
    tracemalloc.start()
    seq_nms_video(*_split(video), params)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # the largest single class of the video, the bound the memory claim refers to
    classes = np.concatenate([f[2] for f in video])
    largest = int(np.bincount(classes).argmax())
    cls_frames = [(f[0][f[2] == largest], f[1][f[2] == largest]) for f in video]
    tracemalloc.start()
    seq_nms_class([b for b, _ in cls_frames], [s for _, s in cls_frames], params)
    class_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    sub = video[: args.ref_frames]
    vec_out, vec_sub_wall, vec_sub = _timed(lambda: seq_nms_video(*_split(sub), params))
    ref_out, ref_sub_wall, ref_sub = _timed(lambda: _reference_video(sub, params))
    same = all(
        np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(vec_out, ref_out)
    )
    ratio = ref_sub / vec_sub
    ref_full_estimate = ref_sub * args.frames / args.ref_frames
    per100 = full / args.frames * 100
    rows = [
        ["vectorised", args.frames, full_wall, full, per100, None],
        [
            "vectorised",
            args.ref_frames,
            vec_sub_wall,
            vec_sub,
            vec_sub / args.ref_frames * 100,
            1.0,
        ],
        [
            "loop (FGFA transliteration)",
            args.ref_frames,
            ref_sub_wall,
            ref_sub,
            ref_sub / args.ref_frames * 100,
            ratio,
        ],
    ]
    if args.ref_frames < args.frames:
        rows.append(
            [
                f"loop, extrapolated x{args.frames / args.ref_frames:g} (lower bound)",
                args.frames,
                None,
                ref_full_estimate,
                ref_sub / args.ref_frames * 100,
                ref_full_estimate / full,
            ]
        )
    headers = ["implementation", "frames", "wall s", "CPU s", "CPU s / 100 frames", "x (CPU)"]
    table = format_table(headers, rows)
    print(
        f"Seq-NMS, {args.boxes} candidates/frame, {args.classes} classes, seed {args.seed}, "
        f"1 thread, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n{table}"
    )
    print(
        f"outputs equal on {args.ref_frames} frames: {same}; peak traced memory of the "
        f"{args.frames}-frame video: {peak / 2**20:.1f} MB (largest class alone: "
        f"{class_peak / 2**20:.1f} MB)"
    )
    met = per100 < TARGET_SECONDS_PER_100_FRAMES and ratio >= TARGET_RATIO
    print(
        f"target (< {TARGET_SECONDS_PER_100_FRAMES} CPU s / 100 frames, >= {TARGET_RATIO:g}x the loop "
        f"version): {'met' if met else 'NOT met'}"
    )
    result = {
        "benchmark": "seq_nms",
        "date": now_iso(),
        "hardware": hw,
        "settings": {**vars(args), "params": dataclasses.asdict(params)},
        "load_average_1min_at_end": os.getloadavg()[0],
        "vectorised_cpu_seconds": full,
        "vectorised_wall_seconds": full_wall,
        "vectorised_cpu_seconds_all_passes": times,
        "vectorised_cpu_seconds_per_100_frames": per100,
        "subset_frames": args.ref_frames,
        "subset_vectorised_cpu_seconds": vec_sub,
        "subset_loop_cpu_seconds": ref_sub,
        "subset_vectorised_wall_seconds": vec_sub_wall,
        "subset_loop_wall_seconds": ref_sub_wall,
        "ratio_loop_over_vectorised": ratio,
        "loop_cpu_seconds_extrapolated_full": ref_full_estimate,
        "outputs_equal_on_subset": same,
        "peak_traced_mb": peak / 2**20,
        "largest_class_peak_traced_mb": class_peak / 2**20,
        "target": {
            "seconds_per_100_frames": TARGET_SECONDS_PER_100_FRAMES,
            "ratio": TARGET_RATIO,
            "met": met,
        },
    }
    write_json(args.json, result)
    if not same:
        raise SystemExit("Seq-NMS: the vectorised and the loop versions disagree")
    return result
