"""Training iteration time and peak memory (``benchmarks/bench_train.py``).

:data:`DESCRIPTION` is the command's ``--help``."""

import logging
import math

import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from . import configs, measure, report, run_setup

DESCRIPTION = """Training iteration time and peak memory: SELSA (key frame + ``--refs`` references) against the
single-frame Faster R-CNN baseline with the same backbone, measured in the same run.

    python benchmarks/bench_train.py                 # R-50-DC5, 600x1000, CPU
    python benchmarks/bench_train.py --quick         # 320x544
    python benchmarks/bench_train.py --device cuda --amp
    python benchmarks/bench_train.py --tiny          # the tests' tiny model (seconds)

An iteration is forward, backward and an SGD step on a synthetic batch of ``--batch`` key frames
(random images, a few random gt boxes), each with ``--refs`` reference frames for SELSA (the
baseline gets the same key frames and ignores the references). Random weights, nothing
downloaded; the baseline starts from SELSA's weights. The two models alternate iteration by
iteration (the order swaps every round) after ``--warmup`` untimed iterations each; the median
per-iteration time is reported with its ratio to the baseline's. Memory: per iteration, the peak
above the level before it (CUDA ``max_memory_allocated`` of the timed iterations; CPU: malloc's
bytes in use, sampled during one extra untimed iteration per model, see
``selsa_d2.benchmarking.measure.memory_sampling_disturbs_timing``).
"""


logger = logging.getLogger("bench_train")

PRESETS = {
    "full": dict(height=600, width=1000, iters=3, warmup=1),
    "quick": dict(height=320, width=544, iters=3, warmup=1),
    "tiny": dict(height=64, width=96, iters=2, warmup=1),
}


def synthetic_batch(args, num_classes: int, seed: int) -> list[dict]:
    """``--batch`` key-frame dicts (mapper training format) with gt boxes and ``ref_frames``."""
    video = configs.SyntheticVideo(args.height, args.width, seed=seed)
    g = torch.Generator().manual_seed(seed)
    h, w = args.height, args.width
    batch = []
    span = args.refs + 1
    for k in range(args.batch):
        boxes = []
        for _ in range(args.gt_boxes):
            bw = float(torch.randint(max(8, w // 10), max(9, w // 2), (1,), generator=g))
            bh = float(torch.randint(max(8, h // 10), max(9, h // 2), (1,), generator=g))
            x1 = float(torch.randint(0, max(1, int(w - bw)), (1,), generator=g))
            y1 = float(torch.randint(0, max(1, int(h - bh)), (1,), generator=g))
            boxes.append([x1, y1, x1 + bw, y1 + bh])
        inst = Instances((h, w))
        inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        inst.gt_classes = torch.randint(0, num_classes, (args.gt_boxes,), generator=g)
        key = configs.frame_dict(video, k * span, span * args.batch, video_id=k)
        key["instances"] = inst
        key["ref_frames"] = [
            configs.frame_dict(video, k * span + 1 + r, span * args.batch, video_id=k)
            for r in range(args.refs)
        ]
        batch.append(key)
    return batch


class Trainee:
    """A model, its optimizer and the per-iteration measurements."""

    def __init__(self, name: str, model, args):
        self.name, self.model = name, model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=1e-4)
        cuda_amp = args.amp and args.device.startswith("cuda")
        self.scaler = torch.cuda.amp.GradScaler(enabled=cuda_amp)
        self.iter_ms: list[float] = []
        self.peak_bytes = 0
        self.last_loss = float("nan")

    def step(self, batch, args, timed: bool, memory: bool):
        """One iteration; ``timed``: record its time, ``memory``: measure and record its peak."""
        with (
            measure.PeakMemory(args.device, enabled=memory) as pm,
            measure.Stopwatch(args.device) as sw,
        ):
            with measure.autocast(args.device, args.amp):
                losses = self.model(batch)
                loss = sum(losses.values())
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.last_loss = float(loss.detach())
        if not math.isfinite(self.last_loss):
            raise FloatingPointError(
                f"bench_train: {self.name} loss became {self.last_loss}: {losses}"
            )
        if timed:
            self.iter_ms.append(1000.0 * sw.seconds)
        if memory:
            self.peak_bytes = max(self.peak_bytes, pm.delta)


def build_trainees(args):
    selsa_cfg = configs.build_cfg(configs.SELSA_CONFIG, args.device, args.depth, args.tiny)
    base_cfg = configs.build_cfg(configs.BASELINE_CONFIG, args.device, args.depth, args.tiny)
    torch.manual_seed(args.seed)
    selsa = build_model(selsa_cfg)
    configs.randomize_frozen_bn(selsa, args.seed)
    baseline = build_model(base_cfg)
    not_copied = configs.share_weights(selsa, baseline)
    if not_copied:
        raise RuntimeError(f"Baseline parameters without a SELSA counterpart: {not_copied}")
    return [
        Trainee("faster_rcnn", baseline, args),
        Trainee(f"selsa_{args.refs}refs", selsa, args),
    ], selsa_cfg


def summarize(trainees: list[Trainee], args) -> dict:
    base_ms = measure.median(trainees[0].iter_ms)
    rows = []
    for t in trainees:
        ms = measure.median(t.iter_ms)
        rows.append(
            {
                "name": t.name,
                "refs": 0 if t is trainees[0] else args.refs,
                "images_per_iter": args.batch * (1 if t is trainees[0] else 1 + args.refs),
                "ms_per_iter": round(ms, 1),
                "iters_per_s": round(1000.0 / ms, 4),
                "ratio_vs_baseline": round(ms / base_ms, 4),
                "iter_ms": [round(x, 1) for x in t.iter_ms],
                "peak_iter_mem_mb": measure.mb(t.peak_bytes),
                "last_loss": round(t.last_loss, 4),
            }
        )
    base_mem = rows[0]["peak_iter_mem_mb"]
    for r in rows:
        r["mem_ratio_vs_baseline"] = (
            round(r["peak_iter_mem_mb"] / base_mem, 3) if base_mem > 0 else None
        )
    return {"baseline": rows[0], "variants": rows[1:]}


def print_report(result: dict):
    s = result["settings"]
    print(f"\nSELSA training benchmark  {result['date']}")
    print(f"hardware: {report.hardware_line(result['hardware'])}")
    print(
        f"model: R-{s['depth'] if not s['tiny'] else '18 (tiny)'}-DC5, random weights, {s['height']}x{s['width']}, "
        f"{s['batch']} key frame(s)/iter, amp={s['amp']}, {s['iters']} timed iterations after {s['warmup']} warm-up"
    )
    rows = [result["baseline"]] + result["variants"]
    print(
        report.format_table(
            [
                "model",
                "refs",
                "images/iter",
                "ratio",
                "ms/iter",
                "iters/s",
                "peak iter MB",
                "mem ratio",
            ],
            [
                [
                    r["name"],
                    r["refs"],
                    r["images_per_iter"],
                    r["ratio_vs_baseline"],
                    r["ms_per_iter"],
                    r["iters_per_s"],
                    r["peak_iter_mem_mb"],
                    r["mem_ratio_vs_baseline"],
                ]
                for r in rows
            ],
        )
    )


def parse_args(argv=None):
    p = run_setup.model_benchmark_parser(
        DESCRIPTION,
        quick_help="320x544 images",
        tiny_help="the tests' tiny R-18 model, 64x96 images",
        amp_help="torch.autocast (+GradScaler on CUDA)",
    )
    p.add_argument("--refs", type=int, default=2, help="SELSA reference frames per key frame")
    p.add_argument(
        "--batch", type=int, default=1, help="key frames per iteration (mmtracking: 1 per GPU)"
    )
    p.add_argument("--gt-boxes", type=int, default=3, help="gt boxes per key frame")
    p.add_argument("--iters", type=int, help="timed iterations per model (default 3)")
    p.add_argument("--warmup", type=int, help="untimed iterations per model first (default 1)")
    p.add_argument(
        "--lr", type=float, default=1e-4, help="SGD learning rate (small: random weights)"
    )
    p.add_argument("--threads", type=int, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    run_setup.add_cpu_malloc_arg(p)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    run_setup.finish_args(p, args, PRESETS)
    if min(args.iters, args.batch, args.gt_boxes) < 1 or args.refs < 0 or args.warmup < 0:
        p.error("--iters, --batch, --gt-boxes must be >= 1 and --refs, --warmup >= 0")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    run_setup.start_run(args)
    trainees, cfg = build_trainees(args)
    batch = synthetic_batch(args, cfg.MODEL.ROI_HEADS.NUM_CLASSES, args.seed)
    separate_memory = measure.memory_sampling_disturbs_timing(args.device)
    with EventStorage(0):
        for t in trainees:
            for _ in range(args.warmup):
                t.step(batch, args, timed=False, memory=False)
        for i in range(args.iters):
            for t in trainees if i % 2 == 0 else trainees[::-1]:
                t.step(batch, args, timed=True, memory=not separate_memory)
            logger.info("round %d/%d done", i + 1, args.iters)
        if separate_memory:  # one more, untimed iteration each with the memory sampler
            for t in trainees:
                t.step(batch, args, timed=False, memory=True)
    result = {
        "benchmark": "train",
        "date": report.now_iso(),
        "hardware": report.hardware_info(args.device),
        "settings": {
            k: getattr(args, k)
            for k in (
                "height",
                "width",
                "device",
                "amp",
                "depth",
                "tiny",
                "refs",
                "batch",
                "gt_boxes",
                "iters",
                "warmup",
                "lr",
                "seed",
            )
        },
    }
    result.update(summarize(trainees, args))
    print_report(result)
    report.write_json(args.json, result)
    return result
