#!/usr/bin/env python
"""The main job (`make demo`): single-frame Faster R-CNN vs SELSA on a video dataset, same start.

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

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SINGLE_FRAME_CONFIG = "configs/synthetic/faster_rcnn_tiny.yaml"
SELSA_CONFIG = "configs/synthetic/selsa_tiny.yaml"
# --fpn: the same comparison on Detectron2's FPN detector (single-frame config, SELSA config)
FPN_CONFIGS = (
    "configs/synthetic/faster_rcnn_fpn_tiny.yaml",
    "configs/synthetic/selsa_fpn_tiny.yaml",
)
# The dataset names the synthetic configs use; train_net.py registers them under
# $DETECTRON2_DATASETS/synthetic_vid (selsa_d2/data/datasets.py).
DATASET_DIRNAME = "synthetic_vid"

# The names a COCO-VID json pair is registered under (DATASETS.COCO_VID) in every step.
JSON_TRAIN_NAME, JSON_VAL_NAME = "demo_coco_vid_train", "demo_coco_vid_val"

# (key, label): the evaluated models, in table order.
MODELS = (
    ("faster_rcnn", "Faster R-CNN (single frame)"),
    ("selsa", "SELSA"),
    ("selsa_key_frame_only", "SELSA, key frame only"),
    ("faster_rcnn_seq_nms", "single frame + Seq-NMS"),
    ("selsa_seq_nms", "SELSA + Seq-NMS"),
)
# (key, evaluated model, config): Seq-NMS rows, from that model's saved detections (no inference)
SEQ_NMS_ROWS = (
    ("faster_rcnn_seq_nms", "faster_rcnn", SINGLE_FRAME_CONFIG),
    ("selsa_seq_nms", "selsa", SELSA_CONFIG),
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
# (label, vid metric) of the gain rows
GAIN_METRICS = (("overall", "mAP"), ("degraded", "mAP_degraded"), ("clean", "mAP_clean"))


@dataclass(frozen=True)
class Budget:
    """Iterations of the shared single-frame stage and of each continuation (same for both models)."""

    shared_iters: int = 400
    continue_iters: int = 200


# Both continuations train the same parts of the network: the ResNet (stem to res4, all of the
# tiny configs' bottom-up network) stays as the shared stage left it, the neck, RPN and box head
# (plus, for SELSA, the new aggregators) train. Features are then identical for both models, so
# what SELSA adds is what it reads from the other frames; it also makes SELSA's iterations,
# which run the backbone on 3 frames per key frame, about twice as cheap. (Frozen ResNet norms
# become FrozenBN, so the from-scratch zero-init, overwritten by the checkpoint anyway, is off.)
CONTINUATION_OPTS = ("MODEL.BACKBONE.FREEZE_AT", 4, "MODEL.SELSA.ZERO_INIT_RESIDUAL", False)


def schedule_opts(iters: int) -> list[str]:
    """A full step schedule of ``iters`` iterations: warm-up, decay at 75 % and 92 % (the tiny
    configs' 600-iteration shape, scaled)."""
    if iters < 1:
        raise ValueError(f"a training stage needs at least 1 iteration (got {iters})")
    first = max(1, int(0.75 * iters))
    steps = [
        s for s in (first, max(first + 1, int(0.92 * iters))) if s < iters
    ]  # increasing, before the end
    return [
        "SOLVER.MAX_ITER",
        iters,
        "SOLVER.STEPS",
        "(" + ", ".join(map(str, steps)) + ("," if len(steps) == 1 else "") + ")",
        "SOLVER.WARMUP_ITERS",
        min(50, max(1, iters // 10)),
        "SOLVER.CHECKPOINT_PERIOD",
        max(50, iters // 4),
    ]


def banner(text: str) -> None:
    print(f"\n{'=' * 100}\n== {text}\n{'=' * 100}", flush=True)


def _run(cmd, env, log: Path | None = None) -> None:
    cmd = [str(c) for c in cmd]
    print("$ " + " ".join(cmd), flush=True)
    if log is None:
        subprocess.run(cmd, cwd=REPO, env=env, check=True)
        return
    with open(log, "a") as f:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd, output=f"see {log}")


class StepError(RuntimeError):
    """A step that cannot run or be reused; the message is one line naming the folder and why."""


def _step_lib():
    """The package's step bookkeeping (imported late: it imports torch via the package)."""
    from selsa_d2 import step_record
    from selsa_d2.checkpoint.integrity import checkpoint_problem

    return step_record, checkpoint_problem


# ------------------------------------------------------------------------------------- dataset
def count_classes(dataset_dir: Path) -> int:
    """Number of classes in ``<dataset_dir>/classes.txt`` (the file the raw layout registers)."""
    classes_file = dataset_dir / "classes.txt"
    if not classes_file.is_file():
        raise FileNotFoundError(
            f"{classes_file} does not exist: --dataset-root needs the raw ILSVRC VID layout with a classes.txt "
            "('<class id> <name>' per line; see datasets/README.md)"
        )
    ids = [line.split()[0] for line in classes_file.read_text().splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"{classes_file} lists no classes")
    return len(ids)


def datasets_root_for(dataset_dir: Path, work_dir: Path) -> Path:
    """A ``$DETECTRON2_DATASETS`` under which ``synthetic_vid`` is ``dataset_dir``.

    The configs' dataset names (``synthetic_vid_train`` / ``_val``) are registered by train_net.py
    at ``$DETECTRON2_DATASETS/synthetic_vid``; any other directory is linked there, so a user's
    dataset takes exactly the demo's code path.
    """
    dataset_dir = dataset_dir.resolve()
    if dataset_dir.name == DATASET_DIRNAME:
        return dataset_dir.parent
    root = work_dir / "datasets"
    link = root / DATASET_DIRNAME
    root.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and Path(os.readlink(link)) != dataset_dir:
        link.unlink()
    if not link.exists():
        link.symlink_to(dataset_dir, target_is_directory=True)
    return root


@dataclass
class CocoVidPair:
    """A COCO-VID json pair (mmtracking's format): the training and the validation split, images
    under one root. Every step registers it through ``DATASETS.COCO_VID`` (as
    ``JSON_TRAIN_NAME`` / ``JSON_VAL_NAME``) and trains / evaluates on it."""

    train_json: Path
    val_json: Path
    image_root: Path
    _num_classes: int | None = field(default=None, init=False, repr=False, compare=False)

    def num_classes(self) -> int:
        """The json's category count, checked once: both files exist and have the same categories,
        the image root is a directory. Errors name the file."""
        if self._num_classes is None:
            from selsa_d2.data import read_coco_vid_categories  # noqa: E402  (imports torch: only here)

            if not self.image_root.is_dir():
                raise FileNotFoundError(f"--image-root {self.image_root} is not a directory")
            classes = {}
            for flag, path in (("--train-json", self.train_json), ("--val-json", self.val_json)):
                if not path.is_file():
                    raise FileNotFoundError(f"{flag} {path} does not exist")
                classes[flag] = read_coco_vid_categories(str(path))
                if not classes[flag][0]:
                    raise ValueError(
                        f"{path} has no categories: the demo takes the class count from them"
                    )
            if classes["--train-json"] != classes["--val-json"]:
                raise ValueError(
                    f"{self.train_json} and {self.val_json} have different categories "
                    f"({classes['--train-json'][0]} vs {classes['--val-json'][0]}): the model's class indices "
                    "follow the training json's, so the validation json needs the same categories in the same order"
                )
            self._num_classes = len(classes["--train-json"][0])
        return self._num_classes

    def opts(self) -> list[str]:
        """Config options that register the pair and train / evaluate on it."""
        triples = (
            (JSON_TRAIN_NAME, str(self.train_json), str(self.image_root)),
            (JSON_VAL_NAME, str(self.val_json), str(self.image_root)),
        )
        return [
            "DATASETS.COCO_VID",
            repr(triples),
            "DATASETS.TRAIN",
            repr((JSON_TRAIN_NAME,)),
            "DATASETS.TEST",
            repr((JSON_VAL_NAME,)),
        ]


# ------------------------------------------------------------------------------------- training
@dataclass
class Comparison:
    """Where one shared-start comparison lives and how it is run (see :func:`run_comparison`).

    The dataset is ``dataset_dir`` (raw ILSVRC VID layout with ``classes.txt``, used under the
    synthetic configs' dataset names) or, when ``coco_vid`` is given (``dataset_dir`` None), a
    COCO-VID json pair."""

    out_dir: Path
    dataset_dir: Path | None
    budget: Budget
    seed: int = 0
    device: str = "cpu"
    opts: Sequence[str] = ()
    log: Path | None = None  # None: train_net.py output goes to the console
    coco_vid: CocoVidPair | None = None
    configs: tuple[str, str] = (SINGLE_FRAME_CONFIG, SELSA_CONFIG)  # (single frame, SELSA)

    def __post_init__(self):
        if (self.dataset_dir is None) == (self.coco_vid is None):
            raise ValueError("Comparison needs exactly one of dataset_dir and coco_vid")

    def env(self) -> dict[str, str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.dataset_dir is not None:
            env["DETECTRON2_DATASETS"] = str(datasets_root_for(self.dataset_dir, self.out_dir))
        return env

    def common_opts(self) -> list:
        if self.coco_vid is not None:
            dataset = [
                "MODEL.ROI_HEADS.NUM_CLASSES",
                self.coco_vid.num_classes(),
            ] + self.coco_vid.opts()
        else:
            dataset = ["MODEL.ROI_HEADS.NUM_CLASSES", count_classes(self.dataset_dir)]
        return ["MODEL.DEVICE", self.device, "SEED", self.seed] + dataset + list(self.opts)

    def val_dataset(self) -> str:
        """The evaluated dataset's registered name."""
        return JSON_VAL_NAME if self.coco_vid is not None else f"{DATASET_DIRNAME}_val"

    def dataset_identity(self) -> dict:
        """The dataset as a step's input: its paths and the digests of its class, list and json
        files (a changed or other dataset makes earlier steps not reusable)."""
        step_record, _ = _step_lib()
        if self.coco_vid is not None:
            files = [self.coco_vid.train_json, self.coco_vid.val_json]
        else:
            lists = self.dataset_dir / "Lists"
            files = [
                self.dataset_dir / "classes.txt",
                lists / "VID_train_15frames.txt",
                lists / "VID_val_videos.txt",
            ]
        return {"record": self.dataset_record(), "files": step_record.files_digest(files)}

    def dataset_record(self):
        """What summary.json records as the dataset."""
        if self.coco_vid is not None:
            return {
                k: str(getattr(self.coco_vid, k)) for k in ("train_json", "val_json", "image_root")
            }
        return str(self.dataset_dir)


def train(c: Comparison, key: str, config: str, iters: int, init: Path | None) -> Path:
    """Train (or resume) one stage into ``c.out_dir/key``; return its final checkpoint."""
    step_record, checkpoint_problem = _step_lib()
    model_dir = c.out_dir / key
    final = model_dir / "model_final.pth"
    weights = ["MODEL.WEIGHTS", init] + list(CONTINUATION_OPTS) if init is not None else []
    # DATASETS.TEST () skips DefaultTrainer's evaluation after training: evaluate() does it.
    opts = c.common_opts() + schedule_opts(iters) + weights + ["DATASETS.TEST", "()"]
    identity = {
        "step": "train",
        "config": config,
        "opts": [str(o) for o in opts],
        "dataset": c.dataset_identity(),
        "init_checkpoint": step_record.file_digest(str(init)) if init is not None else None,
    }
    differs = step_record.compare(step_record.read_record(str(model_dir)), identity)
    started = model_dir.is_dir() and any(
        p.name == "last_checkpoint" or p.suffix == ".pth" for p in model_dir.iterdir()
    )
    if started and differs:
        raise StepError(
            f"{model_dir} holds a training step {differs}; delete the folder {model_dir} to "
            "train this step again, or give another --out"
        )
    if not differs and checkpoint_problem(str(final)) is None:
        print(f"{final}: complete, made by the same inputs: reusing it", flush=True)
        return final
    step_record.write_record(str(model_dir), identity)
    # --resume continues an interrupted step (and completes a model_final.pth a kill cut short)
    cmd = [sys.executable, "train_net.py", "--config-file", config, "--resume"]
    _run(cmd + ["OUTPUT_DIR", model_dir] + opts, c.env(), c.log)
    problem = checkpoint_problem(str(final))
    if problem:
        raise StepError(f"training step {key}: {final} {problem} after train_net.py finished")
    return final


def evaluate(c: Comparison, key: str, config: str, weights: Path, extra: Sequence = ()) -> dict:
    """``train_net.py --eval-only`` into ``c.out_dir/key/inference``; reuses a finished result."""
    step_record, _ = _step_lib()
    eval_dir = c.out_dir / key
    results = eval_dir / "inference" / "results.json"
    opts = c.common_opts() + list(extra)
    identity = {
        "step": "evaluate",
        "config": config,
        "opts": [str(o) for o in opts],
        "dataset": c.dataset_identity(),
        "weights": step_record.file_digest(str(weights)),
    }
    record_dir = str(eval_dir / "inference")
    if results.exists() and not step_record.compare(step_record.read_record(record_dir), identity):
        print(f"{results}: made by the same inputs: reusing it", flush=True)
    else:  # missing, or of other weights / options: evaluate (again)
        results.unlink(missing_ok=True)  # a failed rerun must not leave the old result behind
        step_record.write_record(record_dir, identity)
        cmd = [sys.executable, "train_net.py", "--config-file", config, "--eval-only"]
        _run(cmd + ["OUTPUT_DIR", eval_dir, "MODEL.WEIGHTS", weights] + opts, c.env(), c.log)
    try:
        with open(results) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise StepError(f"evaluation step {key}: cannot read {results} ({e})") from None


def rescore_with_seq_nms(c: Comparison, key: str, source: str, config: str) -> dict:
    """``tools/rescore_detections.py --seq-nms`` on ``source``'s saved detections (post-NMS,
    capped: see docs/demo.md) into ``c.out_dir/key``; reuses a finished result."""
    step_record, _ = _step_lib()
    out = c.out_dir / key
    metrics = out / "vid_metrics.json"
    detections = c.out_dir / source / "inference" / "vid_detections.json"
    identity = {
        "step": "rescore_seq_nms",
        "config": config,
        "opts": [str(o) for o in c.common_opts()],
        "dataset": c.dataset_identity(),
        "detections": step_record.file_digest(str(detections)),
    }
    if metrics.exists() and not step_record.compare(step_record.read_record(str(out)), identity):
        print(f"{metrics}: made by the same inputs: reusing it", flush=True)
    else:  # missing, or of other detections / options: score again
        metrics.unlink(missing_ok=True)  # a failed rerun must not leave the old result behind
        step_record.write_record(str(out), identity)
        cmd = [sys.executable, "tools/rescore_detections.py", "--config-file", config]
        cmd += ["--detections", detections, "--seq-nms", "--output-dir", out]
        _run(cmd + c.common_opts(), c.env(), c.log)
    try:
        with open(metrics) as f:
            data = json.load(f)
        return {"vid": data["vid"], "bbox": data["bbox"]}
    except (OSError, ValueError, KeyError) as e:
        raise StepError(f"Seq-NMS step {key}: cannot read {metrics} ({e})") from None


def run_comparison(c: Comparison, progress=banner) -> dict:
    """Shared single-frame stage, both continuations, three evaluations; returns the summary dict."""
    b = c.budget
    single_frame_config, selsa_config = c.configs
    progress(
        f"shared start: single-frame detector, {b.shared_iters} iterations ({single_frame_config})"
    )
    shared = train(c, "shared_start", single_frame_config, b.shared_iters, None)
    progress(f"continuation 1/2: single-frame detector, {b.continue_iters} more iterations")
    single = train(c, "faster_rcnn", single_frame_config, b.continue_iters, shared)
    progress(
        f"continuation 2/2: SELSA from the same checkpoint, {b.continue_iters} iterations ({selsa_config})"
    )
    selsa = train(c, "selsa", selsa_config, b.continue_iters, shared)
    results = {}
    progress("evaluation 1/3: single-frame detector")
    results["faster_rcnn"] = evaluate(c, "faster_rcnn", single_frame_config, single)
    progress("evaluation 2/3: SELSA")
    results["selsa"] = evaluate(c, "selsa", selsa_config, selsa)
    progress(
        "evaluation 3/3: SELSA, key frame only (same weights, MODEL.SELSA.INFERENCE.KEY_FRAME_ONLY True)"
    )
    results["selsa_key_frame_only"] = evaluate(
        c,
        "selsa_key_frame_only",
        selsa_config,
        selsa,
        ["MODEL.SELSA.INFERENCE.KEY_FRAME_ONLY", True],
    )
    progress("Seq-NMS (TEST.VID.SEQ_NMS) on both models' saved detections, no inference")
    configs = {SINGLE_FRAME_CONFIG: single_frame_config, SELSA_CONFIG: selsa_config}  # --fpn
    for key, source, config in SEQ_NMS_ROWS:
        results[key] = rescore_with_seq_nms(c, key, source, configs[config])
    return summarize(results, c)


# ------------------------------------------------------------------------------------- results
def _vid(results: dict, key: str, metric: str) -> float | None:
    return results.get(key, {}).get("vid", {}).get(metric)


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def gains(results: dict) -> dict:
    """``gain_from_references`` (SELSA - SELSA key frame only, same weights) and
    ``selsa_vs_single_frame`` (SELSA - single frame), each {overall, degraded, clean} in AP points."""
    return {
        "gain_from_references": {
            name: _diff(_vid(results, "selsa", m), _vid(results, "selsa_key_frame_only", m))
            for name, m in GAIN_METRICS
        },
        "selsa_vs_single_frame": {
            name: _diff(_vid(results, "selsa", m), _vid(results, "faster_rcnn", m))
            for name, m in GAIN_METRICS
        },
    }


def summarize(results: dict, c: Comparison | None = None) -> dict:
    summary = {"models": results, **gains(results)}
    if c is not None:
        summary["run"] = {
            "seed": c.seed,
            "dataset": c.dataset_record(),
            "configs": list(c.configs),
            **asdict(c.budget),
            # results depend on the thread count (floating-point sums): recorded for comparisons
            "threads": os.environ.get("OMP_NUM_THREADS", f"default ({os.cpu_count()} cores)"),
        }
    return summary


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def format_table(results: dict) -> str:
    """One row per evaluated model, the TABLE_COLUMNS metrics (AP in percent; '-' when absent)."""
    rows = []
    for key, label in MODELS:
        if key not in results:
            continue
        rows.append(
            [label]
            + [
                _fmt(results[key].get(section, {}).get(metric))
                for _, section, metric in TABLE_COLUMNS
            ]
        )
    return _table(["model"] + [c[0] for c in TABLE_COLUMNS], rows)


def format_gains(summary: dict) -> str:
    """Two rows: gain from references and SELSA minus single frame, overall / degraded / clean."""
    rows = [
        ["gain from references (SELSA - key frame only)"]
        + [_fmt(summary["gain_from_references"][n], True) for n, _ in GAIN_METRICS],
        ["SELSA - single frame"]
        + [_fmt(summary["selsa_vs_single_frame"][n], True) for n, _ in GAIN_METRICS],
    ]
    return _table(["vid/mAP difference (AP points)"] + [n for n, _ in GAIN_METRICS], rows)


# ------------------------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
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
    args = parse_args(argv)
    start = time.time()
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
        from selsa_d2 import synthetic  # (imports torch/detectron2: keep start-up fast)

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
    from selsa_d2.file_io import atomic_write_text  # noqa: E402  (imports torch: only here)

    atomic_write_text(str(out_dir / "summary.json"), json.dumps(summary, indent=2))
    atomic_write_text(str(out_dir / "summary.md"), table + "\n\n" + gain_table + "\n")

    renders = []
    if not args.no_render:
        banner("9/9 rendering single-frame vs SELSA: a validation video and the outcome figure")
        if c.dataset_dir is not None:
            os.environ["DETECTRON2_DATASETS"] = c.env()["DETECTRON2_DATASETS"]
        from render_demo import (  # sibling script; imports torch
            render_comparison,
            render_outcome_figure,
        )

        opts = [str(o) for o in c.common_opts()]
        renders = render_comparison(
            {
                "faster_rcnn": (
                    "Faster R-CNN (single frame)",
                    c.configs[0],
                    out_dir / "faster_rcnn" / "model_final.pth",
                ),
                "selsa": ("SELSA", c.configs[1], out_dir / "selsa" / "model_final.pth"),
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


if __name__ == "__main__":
    sys.exit(main())
