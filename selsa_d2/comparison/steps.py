"""The steps of one comparison (:func:`run_comparison`): shared start, both continuations, the
evaluations and the Seq-NMS re-scorings, each run through the repository's ``train_net.py`` or
``tools/rescore_detections.py`` in a subprocess and reused only when complete and made by the same
inputs (``step.json``, :mod:`selsa_d2.step_record`).

The scripts and configs are the repository's: this sub-package runs from a checkout installed
with ``pip install -e .`` (as ``make setup`` does), whose root is :data:`REPO`.
"""

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import step_record
from ..checkpoint.integrity import checkpoint_problem
from .dataset import DATASET_DIRNAME, JSON_VAL_NAME, CocoVidPair, count_classes, datasets_root_for
from .report import summarize

# The repository checkout this package is installed from (editable install).
REPO = Path(__file__).resolve().parents[2]
SINGLE_FRAME_CONFIG = "configs/synthetic/faster_rcnn_tiny.yaml"
SELSA_CONFIG = "configs/synthetic/selsa_tiny.yaml"
# --fpn: the same comparison on Detectron2's FPN detector (single-frame config, SELSA config)
FPN_CONFIGS = (
    "configs/synthetic/faster_rcnn_fpn_tiny.yaml",
    "configs/synthetic/selsa_fpn_tiny.yaml",
)
# (key, evaluated model, config): Seq-NMS rows, from that model's saved detections (no inference)
SEQ_NMS_ROWS = (
    ("faster_rcnn_seq_nms", "faster_rcnn", SINGLE_FRAME_CONFIG),
    ("selsa_seq_nms", "selsa", SELSA_CONFIG),
)


def check_repository() -> None:
    """Raise a one-line error when :data:`REPO` is not a checkout with ``train_net.py`` (the
    package was installed without ``-e``)."""
    if not (REPO / "train_net.py").is_file():
        raise StepError(
            f"{REPO} has no train_net.py: the demo comparison runs the repository's scripts; "
            "install selsa-d2 from a checkout with `pip install -e .` (make setup)"
        )


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
    """A step's heading on the console."""
    print(f"\n{'=' * 100}\n== {text}\n{'=' * 100}", flush=True)


def run_command(cmd, env, log: Path | None = None) -> None:
    """``cmd`` (a script of the repository and its arguments) from the repository root; its output
    goes to the console, or appended to ``log``."""
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
    run_command(cmd + ["OUTPUT_DIR", model_dir] + opts, c.env(), c.log)
    problem = checkpoint_problem(str(final))
    if problem:
        raise StepError(f"training step {key}: {final} {problem} after train_net.py finished")
    return final


def evaluate(c: Comparison, key: str, config: str, weights: Path, extra: Sequence = ()) -> dict:
    """``train_net.py --eval-only`` into ``c.out_dir/key/inference``; reuses a finished result."""
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
        run_command(cmd + ["OUTPUT_DIR", eval_dir, "MODEL.WEIGHTS", weights] + opts, c.env(), c.log)
    try:
        with open(results) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise StepError(f"evaluation step {key}: cannot read {results} ({e})") from None


def rescore_with_seq_nms(c: Comparison, key: str, source: str, config: str) -> dict:
    """``tools/rescore_detections.py --seq-nms`` on ``source``'s saved detections (post-NMS,
    capped: see docs/demo.md) into ``c.out_dir/key``; reuses a finished result."""
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
        run_command(cmd + c.common_opts(), c.env(), c.log)
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
