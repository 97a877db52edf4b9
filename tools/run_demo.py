#!/usr/bin/env python
"""The main job (`make demo`): single-frame Faster R-CNN vs SELSA on a synthetic video dataset.

1. generates the synthetic dataset (raw ILSVRC VID layout) unless it is already there;
2. trains the tiny single-frame baseline and the tiny SELSA model with ``train_net.py``
   (same backbone, schedule and data; an interrupted run resumes, a finished one is reused);
3. evaluates both with ``train_net.py --eval-only`` and prints one comparison table;
4. renders an annotated video and a side-by-side still of degraded frames under ``--out``.

Everything runs on the CPU by default and downloads nothing.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = (
    # (key, label, config)
    ("faster_rcnn", "Faster R-CNN (single frame)", "configs/synthetic/faster_rcnn_tiny.yaml"),
    ("selsa", "SELSA", "configs/synthetic/selsa_tiny.yaml"),
)
TABLE_COLUMNS = (
    # (header, results section, key)
    ("vid/mAP", "vid", "mAP"),
    ("mAP degraded", "vid", "mAP_degraded"),
    ("mAP clean", "vid", "mAP_clean"),
    ("slow", "vid", "mAP_slow"),
    ("medium", "vid", "mAP_medium"),
    ("fast", "vid", "mAP_fast"),
    ("bbox/AP50", "bbox", "AP50"),
    ("ms/frame", "timing", "ms_per_frame"),
)


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_synthetic_vid", REPO / "datasets" / "make_synthetic_vid.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


def _banner(text: str) -> None:
    print(f"\n{'=' * 100}\n== {text}\n{'=' * 100}", flush=True)


def _run(cmd, env) -> None:
    print("$ " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], cwd=REPO, env=env, check=True)


def train_and_evaluate(key: str, config: str, out_dir: Path, opts, env, device: str) -> dict:
    """Train (unless model_final.pth exists) and evaluate one model; return its results.json."""
    model_dir = out_dir / key
    final = model_dir / "model_final.pth"
    common = ["OUTPUT_DIR", model_dir, "MODEL.DEVICE", device] + list(opts)
    if final.exists():
        print(f"{final} exists: skipping training (delete it, or `make clean-demo`, to retrain)")
    else:
        # DATASETS.TEST () skips the evaluation DefaultTrainer runs after training: the next step does it.
        _run([sys.executable, "train_net.py", "--config-file", config, "--resume"] + common + ["DATASETS.TEST", "()"], env)
    _run([sys.executable, "train_net.py", "--config-file", config, "--eval-only", "MODEL.WEIGHTS", final] + common, env)
    with open(model_dir / "inference" / "results.json") as f:
        return json.load(f)


def format_table(results: dict) -> str:
    """One row per model, the TABLE_COLUMNS metrics (AP in percent; '-' when absent)."""
    header = ["model"] + [c[0] for c in TABLE_COLUMNS]
    rows = []
    for key, label, _ in MODELS:
        if key not in results:
            continue
        row = [label]
        for _, section, metric in TABLE_COLUMNS:
            value = results[key].get(section, {}).get(metric)
            row.append("-" if value is None else f"{value:.1f}")
        rows.append(row)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="output/demo", help="where models, metrics and renders go")
    parser.add_argument("--data-root", default=os.environ.get("DETECTRON2_DATASETS", "datasets"),
                        help="$DETECTRON2_DATASETS; the dataset goes to <data-root>/synthetic_vid")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--train-videos", type=int, default=24)
    parser.add_argument("--val-videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--no-render", action="store_true", help="skip the video and still")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="extra config options for both models (KEY VALUE ...)")
    args = parser.parse_args(argv)

    start = time.time()
    out_dir = (REPO / args.out).resolve()
    data_root = (REPO / args.data_root).resolve()
    env = dict(os.environ, DETECTRON2_DATASETS=str(data_root), PYTHONUNBUFFERED="1")

    _banner("1/4 synthetic video dataset")
    _load_generator().generate(
        data_root / "synthetic_vid", num_train_videos=args.train_videos, num_val_videos=args.val_videos,
        frames=args.frames,
    )

    results = {}
    for step, (key, label, config) in enumerate(MODELS, start=2):
        _banner(f"{step}/4 {label}: train_net.py, then train_net.py --eval-only ({config})")
        results[key] = train_and_evaluate(key, config, out_dir, args.opts, env, args.device)

    table = format_table(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "summary.json", "w") as f:
        json.dump(results, f, indent=2)
    with open(out_dir / "summary.md", "w") as f:
        f.write(table + "\n")

    renders = []
    if not args.no_render:
        _banner("4/4 rendering single-frame vs SELSA on a validation video")
        os.environ["DETECTRON2_DATASETS"] = str(data_root)
        sys.path.insert(0, str(REPO / "tools"))
        from render_demo import render_comparison  # noqa: E402  (imports torch/detectron2: keep start-up fast)

        renders = render_comparison(
            {key: (label, config, out_dir / key / "model_final.pth") for key, label, config in MODELS},
            out_dir, device=args.device, opts=args.opts,
        )

    _banner(f"Results on synthetic_vid_val (AP in %, ImageNet VID protocol; bbox/AP50 is COCO-style) "
            f"after {(time.time() - start) / 60:.1f} min")
    print(table)
    print(f"\nmetrics: {out_dir / 'summary.json'}")
    for path in renders:
        print(f"render:  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
