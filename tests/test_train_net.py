"""train_net.py end to end on CPU: training (loss decreases), --eval-only, --resume, 2 processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from selsa_d2 import cpu_allocator
from selsa_d2.synthetic import generate

REPO = Path(__file__).resolve().parents[1]
SELSA_CFG = "configs/synthetic/selsa_tiny.yaml"
BASELINE_CFG = "configs/synthetic/faster_rcnn_tiny.yaml"
# Small enough for CI's 2 cores; the model is the tiny synthetic one with narrower heads.
TINY = [
    "INPUT.MIN_SIZE_TRAIN",
    "(96,)",
    "INPUT.MAX_SIZE_TRAIN",
    "160",
    "INPUT.MIN_SIZE_TEST",
    "96",
    "INPUT.MAX_SIZE_TEST",
    "160",
    "INPUT.VIDEO.TEST_NUM_REFS",
    "4",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "SOLVER.BASE_LR",
    "0.01",
    "SOLVER.WARMUP_ITERS",
    "2",
    "SOLVER.STEPS",
    "()",
    "DATALOADER.NUM_WORKERS",
    "0",
    "MODEL.SELSA.NECK_CHANNELS",
    "32",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "64",
    "TEST.DETECTIONS_PER_IMAGE",
    "20",
]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("d2_datasets")
    generate(root / "synthetic_vid", num_train_videos=4, num_val_videos=2, frames=10, seed=3)
    return root


def _train_net(data_root, config, out_dir, *args, timeout=600):
    env = dict(
        os.environ, DETECTRON2_DATASETS=str(data_root), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1"
    )
    cmd = [
        sys.executable,
        "train_net.py",
        "--config-file",
        config,
        *args,
        "OUTPUT_DIR",
        str(out_dir),
        *TINY,
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    return proc


def _metrics(out_dir):
    with open(out_dir / "metrics.json") as f:
        return [json.loads(line) for line in f if line.strip()]


def _losses(out_dir):
    return [(m["iteration"], m["total_loss"]) for m in _metrics(out_dir) if "total_loss" in m]


@pytest.fixture(scope="module")
def trained_selsa(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("selsa_run")
    _train_net(data_root, SELSA_CFG, out, "SOLVER.MAX_ITER", "60", "SOLVER.CHECKPOINT_PERIOD", "20")
    return out


def test_training_decreases_loss(trained_selsa):
    # Detectron2 writes the median loss of the last 20 iterations every 20 iterations.
    logged = _losses(trained_selsa)
    assert [it for it, _ in logged] == [19, 39, 59], logged
    losses = [loss for _, loss in logged]
    assert losses[-1] < 0.75 * losses[0], f"total loss did not decrease: {losses}"
    assert (trained_selsa / "model_final.pth").exists()
    assert all(torch.isfinite(torch.tensor(losses)))


def test_cpu_run_logs_the_package_and_retains_freed_memory(trained_selsa):
    log = (trained_selsa / "log.txt").read_text()
    retained = (
        "selsa_d2.cpu_allocator INFO: RETAIN_FREED_CPU_MEMORY: glibc malloc keeps freed memory"
        in log
    )
    assert retained == cpu_allocator.is_glibc()
    assert "selsa_d2.data.frame_index INFO: Frame index of synthetic_vid_train" in log


def test_eval_only_writes_vid_metrics(data_root, trained_selsa, tmp_path):
    _train_net(
        data_root,
        SELSA_CFG,
        tmp_path,
        "--eval-only",
        "MODEL.WEIGHTS",
        str(trained_selsa / "model_final.pth"),
    )
    with open(tmp_path / "inference" / "vid_metrics.json") as f:
        metrics = json.load(f)
    for key in ("mAP", "mAP_slow", "mAP_medium", "mAP_fast", "mAP_degraded", "mAP_clean"):
        assert key in metrics["vid"], key
    assert "AP50" in metrics["bbox"]
    assert (
        metrics["vid_box_convention"] == "devkit"
    )  # TEST.VID.BOX_CONVENTION reached the evaluator
    with open(tmp_path / "inference" / "results.json") as f:
        results = json.load(f)
    assert (
        results["timing"]["frames"] == 2 * 10
    )  # every validation frame went through the model once
    assert results["timing"]["ms_per_frame"] > 0
    with open(tmp_path / "inference" / "vid_detections.json") as f:
        detections = json.load(f)
    assert detections and {"image_id", "category_id", "bbox", "score"} <= set(detections[0])


def test_resume_continues_at_the_right_iteration(data_root, trained_selsa, tmp_path):
    # Resume a copy of the 60-iteration run with a longer schedule: it must start at iteration 60.
    for name in ("model_final.pth", "last_checkpoint"):
        (tmp_path / name).write_bytes((trained_selsa / name).read_bytes())
    _train_net(
        data_root,
        SELSA_CFG,
        tmp_path,
        "--resume",
        "SOLVER.MAX_ITER",
        "64",
        "SOLVER.CHECKPOINT_PERIOD",
        "100",
    )
    iterations = [it for it, _ in _losses(tmp_path)]
    assert iterations == [63], iterations  # the final iteration is always written
    ckpt = torch.load(tmp_path / "model_final.pth", map_location="cpu")
    assert ckpt["iteration"] == 63
    # optimizer and LR scheduler state travel with the checkpoint (Detectron2's trainer state)
    assert "optimizer" in ckpt["trainer"]["_trainer"] and "LRScheduler" in ckpt["trainer"]["hooks"]


def test_two_process_cpu_training(data_root, tmp_path):
    """Detectron2's launch with 2 processes on the CPU (gloo): DDP, distributed sampler, comm."""
    _train_net(
        data_root,
        BASELINE_CFG,
        tmp_path,
        "--num-gpus",
        "2",
        "--dist-url",
        "auto",
        "SOLVER.MAX_ITER",
        "4",
        "SOLVER.CHECKPOINT_PERIOD",
        "100",
    )
    assert (tmp_path / "model_final.pth").exists()
    assert "World size: 2" in (tmp_path / "log.txt").read_text()


def test_two_process_cpu_selsa_training_and_eval(data_root, tmp_path):
    _train_net(
        data_root,
        SELSA_CFG,
        tmp_path,
        "--num-gpus",
        "2",
        "--dist-url",
        "auto",
        "SOLVER.MAX_ITER",
        "3",
        "SOLVER.CHECKPOINT_PERIOD",
        "100",
    )
    weights = tmp_path / "model_final.pth"
    assert weights.exists()
    # Evaluation split by whole videos across the 2 processes, gathered on the main one.
    _train_net(
        data_root,
        SELSA_CFG,
        tmp_path / "eval",
        "--num-gpus",
        "2",
        "--dist-url",
        "auto",
        "--eval-only",
        "MODEL.WEIGHTS",
        str(weights),
    )
    with open(tmp_path / "eval" / "inference" / "vid_detections.json") as f:
        image_ids = {d["image_id"] for d in json.load(f)}
    assert len(image_ids) > 10  # frames of both validation videos, from both processes


# ------------------------------------------------------------------ issue 13: weights
def _train_net_fails(data_root, config, out_dir, *args, timeout=600):
    env = dict(
        os.environ, DETECTRON2_DATASETS=str(data_root), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1"
    )
    cmd = [
        sys.executable,
        "train_net.py",
        "--config-file",
        config,
        *args,
        "OUTPUT_DIR",
        str(out_dir),
        *TINY,
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode != 0, f"{' '.join(cmd)} succeeded:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]  # one line, not a traceback
    return proc.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def baseline_weights(trained_selsa, tmp_path_factory):
    """The trained SELSA checkpoint without its aggregators: what a Faster R-CNN checkpoint gives."""
    ckpt = torch.load(trained_selsa / "model_final.pth", map_location="cpu")
    path = tmp_path_factory.mktemp("baseline") / "no_aggregators.pth"
    torch.save(
        {"model": {k: v for k, v in ckpt["model"].items() if ".aggregators." not in k}}, path
    )
    return path


def test_eval_only_refuses_weights_that_leave_parameters_random(
    data_root, baseline_weights, tmp_path
):
    line = _train_net_fails(
        data_root, SELSA_CFG, tmp_path, "--eval-only"
    )  # the tiny configs' MODEL.WEIGHTS ""
    assert (
        line.startswith("train_net.py: error: MODEL.WEIGHTS is empty")
        and "TEST.ALLOW_MISSING_WEIGHTS" in line
    )
    line = _train_net_fails(
        data_root, SELSA_CFG, tmp_path, "--eval-only", "MODEL.WEIGHTS", str(baseline_weights)
    )
    assert (
        str(baseline_weights) in line
        and "roi_heads.box_head.aggregators.0.fc.{bias, weight}" in line
    )
    assert not (tmp_path / "inference" / "results.json").exists()


@pytest.mark.parametrize("bad", ["missing", "random_bytes", "directory"])
def test_unusable_weight_file_is_one_line(data_root, tmp_path, bad):
    path = tmp_path / "w.pth"
    if bad == "random_bytes":
        path.write_bytes(os.urandom(3000))
    elif bad == "directory":
        path.mkdir()
    message = {
        "missing": "file not found",
        "random_bytes": "not a readable checkpoint",
        "directory": "is a directory",
    }
    # training too: Detectron2 would stop with an AssertionError / UnpicklingError / IsADirectoryError traceback
    for mode in (
        (["--eval-only"], ["SOLVER.MAX_ITER", "1"]) if bad == "random_bytes" else (["--eval-only"],)
    ):
        line = _train_net_fails(
            data_root, SELSA_CFG, tmp_path / "out", *mode, "MODEL.WEIGHTS", str(path)
        )
        assert line.startswith(f"train_net.py: error: MODEL.WEIGHTS {path}: {message[bad]}"), line


def test_training_from_partial_weights_logs_the_new_modules_once(
    data_root, baseline_weights, tmp_path
):
    """Fine-tuning a baseline checkpoint into SELSA is normal: it trains, and the log lists the
    newly initialised aggregators once."""
    _train_net(
        data_root,
        SELSA_CFG,
        tmp_path,
        "MODEL.WEIGHTS",
        str(baseline_weights),
        "SOLVER.MAX_ITER",
        "1",
        "SOLVER.CHECKPOINT_PERIOD",
        "100",
    )
    log = (tmp_path / "log.txt").read_text()
    assert log.count("Some model parameters or buffers are not found in the checkpoint") == 1
    assert "roi_heads.box_head.aggregators.0.fc.{bias, weight}" in log
    assert (tmp_path / "model_final.pth").exists()
