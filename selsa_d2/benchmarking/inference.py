"""The inference benchmark (``benchmarks/bench_inference.py``): its presets, arguments and run;
:data:`DESCRIPTION` is its ``--help``."""

import argparse

from . import configs, report, run_setup
from .inference_models import build_models
from .inference_phases import e2e_phase, memory_phase, timing_phase, troi_phase
from .inference_report import TARGET_RATIO, print_report, summarize

DESCRIPTION = """Per-frame video inference time and memory: SELSA (cached, mmtracking's policy, full
recompute, growing reference counts) against single-frame Faster R-CNN with the same backbone, measured in the same run.

    python benchmarks/bench_inference.py                      # R-50-DC5, 600x1000, 30 frames, CPU
    python benchmarks/bench_inference.py --quick              # smaller images and video
    python benchmarks/bench_inference.py --device cuda --amp  # GPU, float16 autocast
    python benchmarks/bench_inference.py --tiny               # tests' tiny model (seconds)
    python benchmarks/bench_inference.py --troi-only          # Temporal RoI Align search alone

Models have random weights (``MODEL.WEIGHTS ""``: nothing is downloaded); the baseline gets
SELSA's backbone, RPN, FC and predictor weights, so both see the same proposals. Frames are
synthetic (textured background, moving rectangles) at the network input size.

Variants, measured interleaved frame by frame (the order rotates every frame), so that load from
other processes hits them alike:

* ``faster_rcnn``: the baseline, ``GeneralizedRCNN`` on every frame.
* ``selsa_cached``: :class:`VideoInferenceEngine` with the per-frame cache (every frame computed
  once), offline adaptive-stride references (``--key-refs``, default 14).
* ``selsa_mmtracking``: mmtracking's test policy (``mmtrack/models/vid/selsa.py``): the
  references' backbone features cached, the key frame's backbone and every reference's RPN,
  RoIAlign and FC layers recomputed per key frame (:class:`VideoInferenceEngine` with
  ``cache="feature_maps"``).
* ``selsa_full_recompute``: ``CACHE_FEATURES False``: every reference recomputed from its image,
  backbone included, for every key frame (an upper bound, not what mmtracking does).
  The two recomputing variants run on the first ``--recompute-frames`` key frames only (they
  cost the same for every key frame after the first); their per-frame time is extrapolated to
  the video: (first key frame + (frames - 1) x the mean of the others) / frames.
* reference sweep (``--refs``): the cached engine with 1, 2, 4, ... references. The sweep engines
  take a frame's features (backbone .. FC projections, identical computation) from the frame
  ``selsa_cached`` or an earlier sweep engine computed and are charged the measured time of that
  computation, so the sweep costs no extra backbone passes; everything else is their own time.

End to end (``--e2e-frames``, 0 to skip): ``VideoPredictor.predict_video`` on the SELSA config
against Detectron2's ``DefaultPredictor`` on ``configs/faster_rcnn_R_50_DC5_7e_imagenetvid.yaml``,
the same BGR frames (at the network input size, so the resize is a no-op), preprocessing
included, whole videos alternated ``--e2e-repeat`` times.

Per-frame time = a variant's total time over the video / frames, median over ``--repeat`` passes.
"median-based" (drift-resistant): the cached engines compute the references supplied with frame 0
in one burst, so a change of machine load during it weighs on them and not on the baseline; this
estimate charges every frame computation (and every baseline call) the median over the pass and
takes the rest (attention, heads) as measured.
Memory: per call, the peak above the level before the call (CUDA: ``max_memory_allocated`` of
the timed calls; CPU: malloc's bytes in use, sampled during a separate untimed pass of each
variant alone over the first ``--recompute-frames`` frames, because the sampling thread would
slow the timed calls; see ``selsa_d2.benchmarking.measure.memory_sampling_disturbs_timing``); the engine's cache
(frames and MB held between frames); and a memory phase running the cached engine alone over
videos of ``--mem-frames`` lengths, showing memory bounded by the reference count, not by the
video length.
"""

_FULL = dict(
    frames=30,
    height=600,
    width=1000,
    refs=[1, 2, 4, 8, 14, 30],
    key_refs=14,
    mem_frames=[30, 90],
    recompute_frames=3,
    repeat=1,
    e2e_frames=16,
    e2e_repeat=2,
    troi_repeat=2,
)
# the defaults of the options left unset: the full run, --quick, --tiny
PRESETS = {
    "full": _FULL,
    "quick": dict(
        _FULL, frames=16, height=320, width=544, refs=[1, 2, 4, 8, 14], mem_frames=[16, 48]
    ),
    "tiny": dict(
        _FULL,
        frames=4,
        height=64,
        width=96,
        refs=[1, 2],
        key_refs=2,
        mem_frames=[4, 8],
        recompute_frames=2,
        e2e_frames=4,
        e2e_repeat=1,
    ),
}


def parse_args(argv=None):
    p = run_setup.model_benchmark_parser(
        DESCRIPTION,
        quick_help="320x544, 16 frames, refs up to 14",
        tiny_help="the tests' tiny R-18 model, 4 frames (seconds)",
        amp_help="torch.autocast (float16 on CUDA, bfloat16 on CPU)",
    )
    p.add_argument("--frames", type=int, help="video length of the timing phase (default 30)")
    p.add_argument(
        "--refs", type=int, nargs="+", help="reference counts of the sweep (default 1 2 4 8 14 30)"
    )
    p.add_argument("--key-refs", type=int, help="references of the SELSA variants (default 14)")
    p.add_argument(
        "--recompute-frames",
        type=int,
        help="key frames timed for selsa_mmtracking / selsa_full_recompute (default 3)",
    )
    p.add_argument(
        "--e2e-frames",
        type=int,
        help="frames of the end-to-end predictor comparison (default 16; 0: skip)",
    )
    p.add_argument(
        "--e2e-repeat",
        type=int,
        help="whole-video repeats of the end-to-end comparison (default 2)",
    )
    p.add_argument(
        "--mem-frames",
        type=int,
        nargs="*",
        help="video lengths of the memory phase (default 30 90)",
    )
    p.add_argument(
        "--repeat", type=int, help="passes over the video; the median is reported (default 1)"
    )
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument(
        "--full-proposals",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="RPN without NMS, so each frame has POST_NMS_TOPK_TEST proposals like a trained model",
    )
    p.add_argument(
        "--troi",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time Temporal RoI Align's search and aggregation per key frame",
    )
    p.add_argument(
        "--troi-only", action="store_true", help="time only Temporal RoI Align (no SELSA phases)"
    )
    p.add_argument(
        "--troi-repeat",
        type=int,
        help="passes of the TRoI phase; the median is reported (default 2)",
    )
    p.add_argument(
        "--fpn",
        action="store_true",
        help="SELSA-FPN vs Detectron2's Faster R-CNN-FPN (configs/*_R_50_FPN_7e_imagenetvid.yaml) "
        "instead of the DC5 models; not with --tiny",
    )
    p.add_argument("--seed", type=int, default=0)
    run_setup.add_cpu_malloc_arg(p)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    run_setup.finish_args(p, args, PRESETS)
    if (
        min(
            args.frames,
            args.recompute_frames,
            args.repeat,
            args.key_refs,
            args.e2e_repeat,
            args.troi_repeat,
        )
        < 1
        or min(args.refs) < 1
    ):
        p.error(
            "--frames, --recompute-frames, --repeat, --e2e-repeat, --troi-repeat, --key-refs and --refs must be >= 1"
        )
    if args.e2e_frames < 0:
        p.error("--e2e-frames must be >= 0")
    if args.fpn and args.tiny:
        p.error("--fpn has no --tiny preset (the tiny overrides are a DC5 model)")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    run_setup.start_run(args)
    settings = (
        "frames",
        "height",
        "width",
        "device",
        "amp",
        "depth",
        "tiny",
        "refs",
        "key_refs",
        "recompute_frames",
        "mem_frames",
        "repeat",
        "seed",
        "e2e_frames",
        "e2e_repeat",
        "troi_repeat",
        "fpn",
    )
    if args.troi_only:
        result = {
            "benchmark": "inference_troi",
            "date": report.now_iso(),
            "hardware": report.hardware_info(args.device),
            "settings": {k: getattr(args, k) for k in settings},
            "troi": troi_phase(args),
        }
        print_report(result)
        report.write_json(args.json, result)
        return result
    selsa, baseline = build_models(args)
    video = configs.SyntheticVideo(args.height, args.width, seed=args.seed)
    variants = timing_phase(args, selsa, baseline, video)
    result = {
        "benchmark": "inference",
        "date": report.now_iso(),
        "hardware": report.hardware_info(args.device),
        "settings": {k: getattr(args, k) for k in settings},
    }
    result.update(summarize(variants, args))
    del variants
    result["memory"] = memory_phase(args, selsa, video)
    del selsa, baseline
    result["end_to_end"] = e2e_phase(args, video)
    if result["end_to_end"] is not None:
        e2e = result["end_to_end"]["ratio"]
        result["target"].update({"end_to_end_ratio": e2e, "met_end_to_end": e2e <= TARGET_RATIO})
    if args.troi:
        result["troi"] = troi_phase(args)
    print_report(result)
    report.write_json(args.json, result)
    return result
