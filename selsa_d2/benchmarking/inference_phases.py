"""The inference benchmark's phases: timing (variants interleaved frame by frame), memory,
end to end (the predictors) and Temporal RoI Align."""

import gc
import logging
import os

import torch
from detectron2.engine import DefaultPredictor
from detectron2.layers import ShapeSpec

from ..data.sampling import TestReferenceSampler
from ..modeling import TemporalRoIAlign, VideoInferenceEngine
from ..predictor import VideoPredictor
from . import configs, measure
from .inference_models import (
    TROI_CONFIG,
    config_files,
    model_cfgs,
    randomize_and_share,
    video_input,
)
from .inference_variants import SharedFrameComputation, Variant, timed_call

logger = logging.getLogger("bench_inference")


def timing_phase(args, selsa, baseline, video) -> list[Variant]:
    length = args.frames
    images = [video.frame(t) for t in range(length)]
    store: dict = {}

    def sampler(n):
        return TestReferenceSampler("offline", "adaptive_stride", num_refs=n)

    kfr = selsa.video_engine.key_frame_as_ref
    shared = SharedFrameComputation(selsa, store, args.device, reuse=False)
    cached = VideoInferenceEngine(
        shared, sampler(args.key_refs), cache_features=True, key_frame_as_ref=kfr
    )
    mmtracking = VideoInferenceEngine(
        selsa, sampler(args.key_refs), key_frame_as_ref=kfr, cache="feature_maps"
    )
    full = VideoInferenceEngine(
        selsa, sampler(args.key_refs), cache_features=False, key_frame_as_ref=kfr
    )
    variants = [
        Variant("faster_rcnn", 0, baseline),
        Variant("selsa_cached", args.key_refs, cached.process, cached, cached.ref_sampler, shared),
        Variant(
            "selsa_mmtracking",
            args.key_refs,
            mmtracking.process,
            mmtracking,
            mmtracking.ref_sampler,
            max_frames=args.recompute_frames,
        ),
        Variant(
            "selsa_full_recompute",
            args.key_refs,
            full.process,
            full,
            full.ref_sampler,
            max_frames=args.recompute_frames,
        ),
    ]
    for n in args.refs:
        sh = SharedFrameComputation(selsa, store, args.device, reuse=True)
        eng = VideoInferenceEngine(sh, sampler(n), cache_features=True, key_frame_as_ref=kfr)
        variants.append(Variant(f"sweep_{n}", n, eng.process, eng, eng.ref_sampler, sh))

    # warm-up: one-frame videos through both models (first-call allocations, kernel selection)
    with torch.no_grad(), measure.autocast(args.device, args.amp):
        one = configs.frame_dict(video, 0, length, image=images[0])
        baseline([one])
        selsa.video_engine.process(
            [{k: v for k, v in one.items() if k not in ("video_id", "frame_id", "video_length")}]
        )
    separate_memory = measure.memory_sampling_disturbs_timing(args.device)
    for rep in range(args.repeat):
        store.clear()
        for v in variants:
            v.start_pass()
        for t in range(length):
            k = t % len(variants)
            for v in variants[k:] + variants[:k]:
                if v.applies(t):
                    timed_call(
                        v,
                        video_input(video, images, t, length, v.sampler),
                        args,
                        memory=not separate_memory,
                    )
            logger.info("pass %d frame %d/%d done", rep + 1, t + 1, length)
        for v in variants:
            v.end_pass(length)
    store.clear()
    if separate_memory:
        call_memory_pass(
            args, [v for v in variants if not v.name.startswith("sweep_")], video, images
        )
    return variants


def call_memory_pass(args, variants: list[Variant], video, images):
    """Peak memory per call on the CPU, untimed: each variant alone over the first
    ``--recompute-frames`` frames of the video (frame 0 included: the cached engine computes the
    references supplied with it), sampled by :class:`measure.PeakMemory`."""
    length = args.frames
    for v in variants:
        if v.engine is not None:
            v.engine.reset()
        for t in range(min(args.recompute_frames, length)):
            with (
                measure.PeakMemory(args.device) as pm,
                torch.no_grad(),
                measure.autocast(args.device, args.amp),
            ):
                v.run([video_input(video, images, t, length, v.sampler)])
            v.peak_call_bytes = max(v.peak_call_bytes, pm.delta)
        if v.engine is not None:
            v.engine.reset()
        logger.info("call memory: %s done", v.name)


def memory_phase(args, selsa, video) -> list[dict]:
    rows = []
    sampler = TestReferenceSampler("offline", "adaptive_stride", num_refs=args.key_refs)
    for length in args.mem_frames:
        engine = VideoInferenceEngine(
            selsa,
            sampler,
            cache_features=True,
            key_frame_as_ref=selsa.video_engine.key_frame_as_ref,
        )
        peak_cache = 0
        gc.collect()
        with (
            measure.PeakMemory(args.device) as pm,
            torch.no_grad(),
            measure.autocast(args.device, args.amp),
        ):
            for t in range(length):
                engine.process([video_input(video, None, t, length, sampler)])
                peak_cache = max(peak_cache, measure.engine_cache_bytes(engine))
        rows.append(
            {
                "variant": "selsa_cached",
                "refs": args.key_refs,
                "frames": length,
                "peak_mem_delta_mb": measure.mb(pm.delta),
                "peak_cache_frames": engine.peak_cache_size,
                "cache_frames_bound": sampler.max_cached_frames(),
                "peak_cache_mb": measure.mb(peak_cache),
                "frames_computed": engine.frames_computed,
            }
        )
        logger.info("memory phase: %d frames done", length)
        del engine
    return rows


def e2e_phase(args, video) -> dict | None:
    """VideoPredictor.predict_video (SELSA config) vs DefaultPredictor (baseline config), same
    BGR frames, whole videos alternated; per-frame ms = median over repeats of video time / frames."""
    if not args.e2e_frames:
        return None
    # the predictors' test-time resize keeps the frames' size (a no-op, as at 600x1000)
    size = [
        "INPUT.MIN_SIZE_TEST",
        min(args.height, args.width),
        "INPUT.MAX_SIZE_TEST",
        max(args.height, args.width),
    ]
    selsa_cfg, base_cfg = model_cfgs(args, size)
    torch.manual_seed(args.seed)
    video_predictor = VideoPredictor(selsa_cfg, mode="offline")
    default_predictor = DefaultPredictor(base_cfg)
    randomize_and_share(video_predictor.model, default_predictor.model, args.seed)
    frames = video.bgr_frames(args.e2e_frames)
    resized = video_predictor.prepare(frames[0], 0, 0, 1)["image"].shape[1:]
    if tuple(resized) != (args.height, args.width):
        raise RuntimeError(
            f"end-to-end: the predictor resized {args.height}x{args.width} frames to {tuple(resized)}"
        )

    def run_baseline():
        for f in frames:
            default_predictor(f)

    def run_selsa():
        video_predictor.predict_video(frames)

    runs = {"DefaultPredictor": run_baseline, "VideoPredictor.predict_video": run_selsa}
    with measure.autocast(args.device, args.amp):
        default_predictor(frames[0])
        video_predictor.predict_video(frames[:1])
    ms: dict[str, list[float]] = {k: [] for k in runs}
    for rep in range(args.e2e_repeat):
        order = list(runs) if rep % 2 == 0 else list(runs)[::-1]
        for name in order:
            with measure.Stopwatch(args.device) as sw, measure.autocast(args.device, args.amp):
                runs[name]()
            ms[name].append(1000.0 * sw.seconds / len(frames))
        logger.info("end-to-end repeat %d/%d done", rep + 1, args.e2e_repeat)
    base = measure.median(ms["DefaultPredictor"])
    sel = measure.median(ms["VideoPredictor.predict_video"])
    return {
        "frames": len(frames),
        "repeat": args.e2e_repeat,
        "refs": selsa_cfg.INPUT.VIDEO.TEST_NUM_REFS,
        "sampler": selsa_cfg.INPUT.VIDEO.TEST_SAMPLER,
        "baseline_config": os.path.relpath(config_files(args)[1], configs.REPO_ROOT),
        "selsa_config": os.path.relpath(config_files(args)[0], configs.REPO_ROOT),
        "default_predictor_ms_per_frame": round(base, 2),
        "video_predictor_ms_per_frame": round(sel, 2),
        "ratio": round(sel / base, 4),
        "runs_ms_per_frame": {k: [round(x, 2) for x in v] for k, v in ms.items()},
        # each repeat's two videos ran back to back: their ratio shows how much load drift moves it
        "ratio_per_repeat": [
            round(s / b, 4)
            for s, b in zip(ms["VideoPredictor.predict_video"], ms["DefaultPredictor"])
        ],
    }


def troi_phase(args) -> dict:
    """Per-key-frame time of Temporal RoI Align's search and aggregation (module docstring)."""
    cfg = configs.build_cfg(TROI_CONFIG, args.device, args.depth, args.tiny)
    channels, stride = cfg.MODEL.SELSA.NECK_CHANNELS, 16
    torch.manual_seed(args.seed)
    troi = TemporalRoIAlign(cfg, ShapeSpec(channels=channels, stride=stride)).to(args.device).eval()
    rois, res = cfg.MODEL.RPN.POST_NMS_TOPK_TEST, cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
    maps_n = args.key_refs + int(cfg.MODEL.SELSA.INFERENCE.KEY_FRAME_AS_REF)
    h, w = -(-args.height // stride), -(-args.width // stride)
    g = torch.Generator().manual_seed(args.seed)
    key = torch.relu(torch.randn(rois, channels, res, res, generator=g)).to(args.device)
    maps = [
        torch.relu(torch.randn(channels, h, w, generator=g)).to(args.device) for _ in range(maps_n)
    ]
    search_ms, aggregate_ms = [], []
    with torch.no_grad(), measure.autocast(args.device, args.amp):
        troi(key[:4], maps)  # warm-up: first-call allocations, kernel selection
        for rep in range(args.troi_repeat):
            with measure.Stopwatch(args.device) as sw:
                similar = troi.most_similar_features(key, maps)
            search_ms.append(1000.0 * sw.seconds)
            with measure.Stopwatch(args.device) as sw:
                troi.aggregate(key, similar)
            aggregate_ms.append(1000.0 * sw.seconds)
            del similar
            logger.info("troi phase: pass %d/%d done", rep + 1, args.troi_repeat)
    queries = rois * res * res
    blocks = troi.num_temporal_attention_blocks
    return {
        "rois": rois,
        "maps": maps_n,
        "map_size": [h, w],
        "channels": channels,
        "num_most_similar_points": troi.num_most_similar_points,
        "attention_blocks": blocks,
        "chunk_size": troi.chunk_size,
        "search_gmacs": round(queries * maps_n * h * w * channels / 1e9, 3),
        "embed_gmacs": round((maps_n + 1) * queries * channels * channels * 9 / 1e9, 3)
        if blocks
        else 0.0,
        "search_ms": round(measure.median(search_ms), 1),
        "aggregate_ms": round(measure.median(aggregate_ms), 1),
        "search_ms_passes": [round(x, 1) for x in search_ms],
        "aggregate_ms_passes": [round(x, 1) for x in aggregate_ms],
    }
