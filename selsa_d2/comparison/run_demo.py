"""``make demo`` (``tools/run_demo.py``): its arguments and what it runs (:data:`DESCRIPTION`)."""

import argparse
import itertools
import json
import os
import subprocess
import time
from pathlib import Path

from .. import synthetic
from ..file_io import atomic_write_text
from .dataset import (
    DATASET_DIRNAME,
    CocoVidPair,
    count_classes,
    datasets_root_for,
    register_synthetic_dataset,
)
from .render import render_comparison, render_outcome_figure
from .report import format_gains, format_table
from .steps import (
    FPN_CONFIGS,
    REPO,
    Budget,
    Comparison,
    StepError,
    banner,
    check_repository,
    run_comparison,
)

DESCRIPTION = """The main job (`make demo`): single-frame Faster R-CNN vs SELSA on a video dataset, same start.

1. generates the synthetic dataset (raw ILSVRC VID layout) unless it is already there, or uses
   yours: ``--dataset-root DIR`` (raw ILSVRC VID layout with ``classes.txt``) or
   ``--train-json A --val-json B --image-root DIR`` (a COCO-VID json pair, registered in every
   step through the config key ``DATASETS.COCO_VID``);
2. shared start: trains the tiny single-frame detector (``configs/synthetic/faster_rcnn_tiny.yaml``);
3. continues that checkpoint for the same number of iterations twice: as the single-frame
   detector, and as SELSA (``selsa_tiny.yaml``: only the aggregators are new, their output fc
   zero-initialised, so SELSA starts as exactly the single-frame detector);
4. evaluates both, plus the SELSA model in the "key frame only" setting (same weights, no
   reference frames: ``MODEL.SELSA.INFERENCE.KEY_FRAME_ONLY``), and prints the comparison and
   the gain from references (overall / degraded / clean);
5. scores both models' saved detections again after Seq-NMS (no inference: the "+ Seq-NMS" rows);
6. renders an annotated video and the outcome figure (demo_figure.png, see docs/demo.md).

Every step goes through ``train_net.py``; an interrupted run resumes, and a finished step is
reused only when it is complete and its ``step.json`` records the same inputs (config, options,
seed, dataset files, the digest of the checkpoint it starts from); a step of another run in
``--out`` is refused with a message naming what differs. Runs on the CPU by default and
downloads nothing.
"""


def parse_args(argv=None) -> argparse.Namespace:
    """``tools/run_demo.py``'s arguments, checked (``parser.error`` exits naming the flag)."""
    parser = argparse.ArgumentParser(
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="output/demo", help="where models, metrics and renders go")
    parser.add_argument(
        "--data-root",
        default=os.environ.get("DETECTRON2_DATASETS", "datasets"),
        help="the generated dataset goes to <data-root>/synthetic_vid",
    )
    parser.add_argument(
        "--dataset-root",
        default=None,
        help="your own dataset instead of the generated one: the raw ILSVRC VID layout "
        "(Data/VID, Annotations/VID, Lists/VID_train_15frames.txt, Lists/VID_val_videos.txt) "
        "with a classes.txt; the class count is taken from it",
    )
    parser.add_argument(
        "--train-json",
        default=None,
        help="your own dataset as a COCO-VID json pair (mmtracking's format): the training json "
        "(with --val-json and --image-root; not with --dataset-root); the class count is taken "
        "from its categories",
    )
    parser.add_argument(
        "--val-json", default=None, help="the validation json of the pair (same categories)"
    )
    parser.add_argument(
        "--image-root", default=None, help="the directory the jsons' file_name are relative to"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shared-iters", type=int, default=Budget.shared_iters)
    parser.add_argument("--continue-iters", type=int, default=Budget.continue_iters)
    parser.add_argument("--no-render", action="store_true", help="skip the video and still")
    parser.add_argument(
        "--fpn",
        action="store_true",
        help=f"compare on Detectron2's FPN detector ({' and '.join(FPN_CONFIGS)})",
    )
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="extra config options for every step (KEY VALUE ...)"
    )
    args = parser.parse_args(argv)
    for flag, value in (
        ("--shared-iters", args.shared_iters),
        ("--continue-iters", args.continue_iters),
    ):
        if value < 1:
            parser.error(f"{flag} must be at least 1 (got {value})")
    out = (REPO / args.out).resolve()
    if out.exists() and not out.is_dir():
        parser.error(f"--out {args.out} is a file, not a folder")
    json_flags = {
        "--train-json": args.train_json,
        "--val-json": args.val_json,
        "--image-root": args.image_root,
    }
    given = [flag for flag, value in json_flags.items() if value is not None]
    if given and args.dataset_root is not None:
        parser.error(
            f"--dataset-root and {' / '.join(given)} are two ways to give your dataset: use one"
        )
    if given and len(given) < len(json_flags):
        parser.error(
            f"a COCO-VID json pair needs --train-json, --val-json and --image-root (missing: "
            f"{', '.join(f for f in json_flags if f not in given)})"
        )
    return args


def comparison_from_args(args: argparse.Namespace) -> Comparison:
    """The comparison the arguments ask for (its dataset: the json pair, ``--dataset-root`` or the
    synthetic one under ``--data-root``, not generated here)."""
    budget = Budget(args.shared_iters, args.continue_iters)
    kwargs = dict(seed=args.seed, device=args.device, opts=args.opts)
    if args.fpn:
        kwargs["configs"] = FPN_CONFIGS
    out_dir = (REPO / args.out).resolve()
    absolute = lambda p: Path(p).expanduser().resolve()  # noqa: E731  (steps run in the repository)
    if args.train_json is not None:
        pair = CocoVidPair(
            absolute(args.train_json), absolute(args.val_json), absolute(args.image_root)
        )
        return Comparison(out_dir, None, budget, coco_vid=pair, **kwargs)
    if args.dataset_root is not None:
        return Comparison(out_dir, absolute(args.dataset_root), budget, **kwargs)
    return Comparison(
        out_dir, (REPO / args.data_root).resolve() / DATASET_DIRNAME, budget, **kwargs
    )


def main(argv=None) -> int:
    """``tools/run_demo.py`` (``make demo``); user errors exit with ``run_demo.py: error: <cause>``."""
    args = parse_args(argv)
    start = time.time()
    try:
        check_repository()
    except StepError as e:
        raise SystemExit(f"run_demo.py: error: {e}") from None
    c = comparison_from_args(args)
    out_dir = c.out_dir
    if c.coco_vid is not None or args.dataset_root is not None:
        try:  # the user's dataset: checked before any step, one line naming the file
            if c.coco_vid is not None:
                p = c.coco_vid
                banner(
                    f"1/9 dataset: COCO-VID {p.train_json} (train), {p.val_json} (val), images {p.image_root} "
                    f"({p.num_classes()} classes)"
                )
            else:
                banner(f"1/9 dataset: {c.dataset_dir} ({count_classes(c.dataset_dir)} classes)")
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(f"run_demo.py: error: {e}") from None
    else:
        banner("1/9 synthetic video dataset")
        synthetic.generate(c.dataset_dir, **synthetic.VARIANTS["demo"])

    steps = itertools.count(2)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        summary = run_comparison(c, progress=lambda text: banner(f"{next(steps)}/9 {text}"))
    except (StepError, OSError, ValueError) as e:
        raise SystemExit(f"run_demo.py: error: {e}") from None
    except subprocess.CalledProcessError as e:
        where = f" ({e.output})" if e.output else " (its error is printed above)"
        raise SystemExit(
            f"run_demo.py: error: {' '.join(e.cmd[:4])} ... failed with exit status "
            f"{e.returncode}{where}"
        ) from None
    table, gain_table = format_table(summary["models"]), format_gains(summary)
    atomic_write_text(str(out_dir / "summary.json"), json.dumps(summary, indent=2))
    atomic_write_text(str(out_dir / "summary.md"), table + "\n\n" + gain_table + "\n")

    renders = []
    if not args.no_render:
        banner("9/9 rendering single-frame vs SELSA: a validation video and the outcome figure")
        if c.dataset_dir is not None:  # the rendered dataset is the one the steps used
            register_synthetic_dataset(datasets_root_for(c.dataset_dir, c.out_dir))
        opts = [str(o) for o in c.common_opts()]
        renders = render_comparison(
            {
                "faster_rcnn": (
                    "Faster R-CNN (single frame)",
                    str(REPO / c.configs[0]),
                    out_dir / "faster_rcnn" / "model_final.pth",
                ),
                "selsa": ("SELSA", str(REPO / c.configs[1]), out_dir / "selsa" / "model_final.pth"),
            },
            out_dir,
            device=args.device,
            opts=opts,
        )
        figure, _ = render_outcome_figure(
            c.val_dataset(),
            [
                (label, out_dir / key / "inference" / "vid_detections.json")
                for key, label in (("faster_rcnn", "single frame"), ("selsa", "SELSA"))
            ],
            out_dir / "demo_figure.png",
        )
        renders.append(figure)

    banner(
        f"Results on {c.val_dataset()} (AP in %, ImageNet VID protocol; bbox/AP50 is COCO-style) "
        f"after {(time.time() - start) / 60:.1f} min"
    )
    print(table)
    print()
    print(gain_table)
    print(f"\nmetrics: {out_dir / 'summary.json'}")
    for path in renders:
        print(f"render:  {path}")
    return 0
