"""AMP against float32 detections (``benchmarks/check_amp.py``).

:data:`DESCRIPTION` is the command's ``--help``."""

import argparse
import logging

import torch
from detectron2.structures import Instances, pairwise_iou

from ..data.sampling import TestReferenceSampler
from ..modeling import VideoInferenceEngine
from . import configs, inference, measure, report
from .inference_models import build_models, video_input

DESCRIPTION = """Do SELSA's detections under AMP (float16 autocast on CUDA, bfloat16 on the CPU) match float32?

    python benchmarks/check_amp.py --device cuda          # R-50-DC5, 600x1000, 8 frames, 14 refs
    python benchmarks/check_amp.py --tiny                 # the tests' tiny model on the CPU

The same random-weight model (see bench_inference.py) runs a synthetic video through the cached
engine twice, in float32 and under autocast. Per frame, the ``--top`` highest-scoring float32
detections are matched to AMP detections of the same class with IoU >= ``--iou``; a match also
needs the scores within ``--score-tol``. The check passes when at least ``--min-matched`` of them
match in every frame (exit code 1 otherwise). Random weights spread the scores over all classes,
so near-ties around rank ``--top`` may drop a few detections; trained weights match more closely.
"""


logger = logging.getLogger("check_amp")


def match_detections(
    ref: Instances, other: Instances, top: int, iou: float, score_tol: float
) -> dict:
    """Fraction of ``ref``'s ``top`` best detections with a same-class detection in ``other`` at
    IoU >= ``iou`` and score within ``score_tol``; and the largest score difference of the matches."""
    ref = ref[ref.scores.argsort(descending=True)[:top]]
    if len(ref) == 0:
        return {"matched": 1.0, "max_score_diff": 0.0, "compared": 0}
    if len(other) == 0:
        return {"matched": 0.0, "max_score_diff": float("inf"), "compared": len(ref)}
    overlap = pairwise_iou(ref.pred_boxes, other.pred_boxes.to(ref.pred_boxes.device))  # [R, O]
    same = ref.pred_classes[:, None] == other.pred_classes.to(ref.pred_classes.device)[None, :]
    diff = (ref.scores[:, None] - other.scores.to(ref.scores.device).float()[None, :]).abs()
    ok = (overlap >= iou) & same & (diff <= score_tol)
    matched = ok.any(dim=1)
    best = torch.where(ok, diff, torch.full_like(diff, float("inf"))).min(dim=1).values
    max_diff = float(best[matched].max()) if matched.any() else float("inf")
    return {
        "matched": float(matched.float().mean()),
        "max_score_diff": max_diff,
        "compared": len(ref),
    }


def run_video(selsa, video, length: int, refs: int, device: str, amp: bool) -> list[Instances]:
    sampler = TestReferenceSampler("offline", "adaptive_stride", num_refs=refs)
    engine = VideoInferenceEngine(
        selsa, sampler, key_frame_as_ref=selsa.video_engine.key_frame_as_ref
    )
    out = []
    with torch.no_grad(), measure.autocast(device, amp):
        for t in range(length):
            (res,) = engine.process([video_input(video, None, t, length, sampler)])
            inst = res["instances"].to("cpu")
            inst.scores = inst.scores.float()
            inst.pred_boxes.tensor = inst.pred_boxes.tensor.float()
            out.append(inst)
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--tiny", action="store_true", help="the tests' tiny model, 64x96")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--refs", type=int, default=14)
    p.add_argument("--top", type=int, default=100, help="float32 detections compared per frame")
    p.add_argument("--iou", type=float, default=0.9)
    p.add_argument("--score-tol", type=float, default=0.02)
    p.add_argument(
        "--min-matched",
        type=float,
        default=0.9,
        help="fraction of --top that must match, per frame",
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda but torch.cuda.is_available() is False")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    inf_args = inference.parse_args(
        ["--device", args.device, "--seed", str(args.seed)] + (["--tiny"] if args.tiny else [])
    )
    selsa, _ = build_models(inf_args)
    video = configs.SyntheticVideo(inf_args.height, inf_args.width, seed=args.seed)
    fp32 = run_video(selsa, video, args.frames, args.refs, args.device, amp=False)
    amp = run_video(selsa, video, args.frames, args.refs, args.device, amp=True)
    per_frame = [
        match_detections(a, b, args.top, args.iou, args.score_tol) for a, b in zip(fp32, amp)
    ]
    worst = min(f["matched"] for f in per_frame)
    result = {
        "hardware": report.hardware_info(args.device),
        "frames": args.frames,
        "refs": args.refs,
        "tolerance": {
            "top": args.top,
            "iou": args.iou,
            "score_tol": args.score_tol,
            "min_matched": args.min_matched,
        },
        "per_frame": per_frame,
        "worst_matched": worst,
        "passed": worst >= args.min_matched,
    }
    print(
        f"AMP vs float32 on {report.hardware_line(result['hardware'])}: worst frame {worst:.3f} of the top "
        f"{args.top} detections matched (IoU >= {args.iou}, same class, score within {args.score_tol}); "
        f"max score difference {max(f['max_score_diff'] for f in per_frame):.4f}: "
        f"{'PASS' if result['passed'] else 'FAIL'} (needs >= {args.min_matched})"
    )
    return result
