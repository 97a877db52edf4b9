"""Robustness of training and long-video inference.

* Kill-and-resume: ``train_net.py`` killed with SIGKILL after a checkpoint, then ``--resume``.
  What Detectron2 guarantees on resume (and what is asserted): training continues at
  ``last checkpoint's iteration + 1``; model, optimizer (momentum buffers) and LR scheduler state
  are restored, so the LR follows the original schedule; the run ends at ``MAX_ITER``. It does
  *not* replay the data order from where it stopped: ``TrainingSampler`` restarts its seeded
  stream (same ``SEED`` -> the same order as a fresh start), so no order is asserted.
* Non-finite losses raise Detectron2's ``FloatingPointError`` and stop training.
* Inference over a 2,000-frame video keeps the engine's cache within
  ``sampler.max_cached_frames()`` and the process memory flat.
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.solver import build_lr_scheduler
from tiny_model import REPO_ROOT, tiny_selsa_cfg, torch_threads

from selsa_d2.config import add_selsa_config
from selsa_d2.data import register_vid_dataset
from selsa_d2.data.datasets import unregister_vid_dataset
from selsa_d2.engine import SelsaTrainer
from selsa_d2.predictor import VideoPredictor
from selsa_d2.synthetic import generate

TINY_CONFIG = os.path.join(REPO_ROOT, "configs", "synthetic", "selsa_tiny.yaml")
MAX_ITER, CHECKPOINT_PERIOD = 12, 3
# Small and fast: ~0.2 s per iteration on one CPU thread. Warm-up spans the run and a step at
# iteration 7, so the LR differs at every iteration and a restarted schedule would show.
TRAIN_OPTS = [
    "SOLVER.MAX_ITER",
    str(MAX_ITER),
    "SOLVER.CHECKPOINT_PERIOD",
    str(CHECKPOINT_PERIOD),
    "SOLVER.IMS_PER_BATCH",
    "2",
    "SOLVER.BASE_LR",
    "0.02",
    "SOLVER.WARMUP_ITERS",
    "10",
    "SOLVER.STEPS",
    "(7,)",
    "INPUT.MIN_SIZE_TRAIN",
    "(96,)",
    "INPUT.MAX_SIZE_TRAIN",
    "128",
    "DATALOADER.NUM_WORKERS",
    "0",
    "MODEL.SELSA.NECK_CHANNELS",
    "32",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "64",
    "DATASETS.TEST",
    "()",
]


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    """$DETECTRON2_DATASETS holding a tiny synthetic_vid (3 train + 2 val videos of 8 frames)."""
    root = tmp_path_factory.mktemp("d2_datasets")
    generate(
        root / "synthetic_vid",
        num_train_videos=3,
        num_val_videos=2,
        frames=8,
        size=(64, 48),
        seed=0,
    )
    return root


def _train_cmd(out_dir, resume=False):
    cmd = [sys.executable, os.path.join(REPO_ROOT, "train_net.py"), "--config-file", TINY_CONFIG]
    if resume:
        cmd.append("--resume")
    return cmd + TRAIN_OPTS + ["OUTPUT_DIR", str(out_dir)]


def _env(datasets_root):
    env = dict(
        os.environ, DETECTRON2_DATASETS=str(datasets_root), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1"
    )
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    return env


def _last_checkpoint(out_dir):
    tag = out_dir / "last_checkpoint"
    return tag.read_text().strip() if tag.exists() else None


def _expected_lrs(num_iters):
    """LR after k scheduler steps, k = 0..num_iters (logged at iteration k by a run that never stopped)."""
    cfg = get_cfg()
    add_selsa_config(cfg)
    cfg.merge_from_file(TINY_CONFIG)
    cfg.merge_from_list(TRAIN_OPTS)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.SOLVER.BASE_LR)
    sched = build_lr_scheduler(cfg, opt)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(num_iters):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def test_kill_and_resume(synthetic_root, tmp_path):
    out_dir = tmp_path / "out"
    env = _env(synthetic_root)
    proc = subprocess.Popen(
        _train_cmd(out_dir),
        cwd=str(tmp_path),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    try:
        # last_checkpoint is written after the .pth is complete: kill right after the first one.
        while _last_checkpoint(out_dir) is None:
            assert proc.poll() is None, (
                f"training exited early:\n{proc.stderr.read().decode()[-3000:]}"
            )
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert not (out_dir / "model_final.pth").exists(), "training finished before it was killed"
    last = _last_checkpoint(out_dir)
    killed_at = int(last[len("model_") : -len(".pth")])
    assert killed_at % CHECKPOINT_PERIOD == CHECKPOINT_PERIOD - 1 and killed_at < MAX_ITER - 1
    before = torch.load(out_dir / last, map_location="cpu")
    assert before["iteration"] == killed_at

    # A kill while the *next* checkpoint was being written leaves a truncated file that
    # last_checkpoint does not name yet: resuming must not touch it.
    partial = out_dir / f"model_{killed_at + CHECKPOINT_PERIOD:07d}.pth"
    partial.write_bytes(b"PK\x03\x04 truncated")

    res = subprocess.run(
        _train_cmd(out_dir, resume=True),
        cwd=str(tmp_path),
        env=env,
        capture_output=True,
        timeout=300,
    )
    log = (out_dir / "log.txt").read_text()
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    assert f"Starting training from iteration {killed_at + 1}" in log
    assert f"Loading from {out_dir / last}" in log or f"from {out_dir / last}" in log

    final = torch.load(out_dir / "model_final.pth", map_location="cpu")
    assert final["iteration"] == MAX_ITER - 1
    assert final["trainer"]["hooks"]["LRScheduler"]["last_epoch"] == MAX_ITER
    state = final["trainer"]["_trainer"]["optimizer"]["state"]
    assert state and all("momentum_buffer" in s for s in state.values())
    # the resumed run overwrote the truncated checkpoint with a complete one
    redone = torch.load(partial, map_location="cpu")
    assert redone["iteration"] == killed_at + CHECKPOINT_PERIOD
    # the weights moved on from the checkpoint resumed from
    assert any(not torch.equal(before["model"][k], final["model"][k]) for k in final["model"])

    # The LR follows the original schedule, not one restarted at the resume point.
    lrs = _expected_lrs(MAX_ITER)
    restarted_lr = lrs[MAX_ITER - 1 - (killed_at + 1)]
    metrics = [
        json.loads(line)
        for line in (out_dir / "metrics.json").read_text().splitlines()
        if line.strip()
    ]
    logged = {m["iteration"]: m["lr"] for m in metrics if "lr" in m}
    assert max(logged) == MAX_ITER - 1
    assert logged[MAX_ITER - 1] == pytest.approx(lrs[MAX_ITER - 1], rel=1e-6)
    assert restarted_lr != pytest.approx(lrs[MAX_ITER - 1], rel=1e-3)
    for group in final["trainer"]["_trainer"]["optimizer"]["param_groups"]:
        # SGD's lr at save time: after the scheduler's MAX_ITER steps (base LR x multiplier)
        multiplier = lrs[MAX_ITER] / 0.02  # BASE_LR in TRAIN_OPTS
        assert group["lr"] == pytest.approx(group["initial_lr"] * multiplier, rel=1e-6)
    assert (
        min(logged) > killed_at
    )  # nothing before the kill was flushed (PeriodicWriter: every 20 its)


# ---------------------------------------------------------------------------- non-finite losses
@pytest.fixture
def train_cfg(synthetic_root, tmp_path):
    """A frozen tiny training config on uniquely named registrations of the synthetic data."""
    name = f"selsa_robust_train_{uuid.uuid4().hex[:8]}"
    raw = str(synthetic_root / "synthetic_vid")
    register_vid_dataset(
        name, raw_root=raw, split="train", classes_file=os.path.join(raw, "classes.txt")
    )
    cfg = get_cfg()
    add_selsa_config(cfg)
    cfg.merge_from_file(TINY_CONFIG)
    cfg.merge_from_list(
        TRAIN_OPTS + ["DATASETS.TRAIN", f"('{name}',)", "OUTPUT_DIR", str(tmp_path / "out")]
    )
    yield cfg
    unregister_vid_dataset(name)


def _assert_stopped_cleanly(trainer, out_dir, stopped_at):
    assert trainer.iter == stopped_at
    assert not os.path.exists(os.path.join(out_dir, "model_final.pth"))
    for name, p in trainer.model.named_parameters():
        assert torch.isfinite(p).all(), f"{name} was updated with a non-finite step"


def test_nan_loss_stops_training(train_cfg):
    """A NaN loss at iteration 2 stops training before the optimizer step, naming the iteration."""
    train_cfg.freeze()
    trainer = SelsaTrainer(train_cfg)
    calls = []

    def poison(module, inputs, losses):
        calls.append(1)
        if len(calls) == 3:
            return dict(losses, loss_cls=losses["loss_cls"] * float("nan"))
        return losses

    trainer.model.register_forward_hook(poison)
    trainer.resume_or_load(resume=False)
    with pytest.raises(FloatingPointError, match=r"Loss became infinite or NaN at iteration=2"):
        trainer.train()
    assert len(calls) == 3  # never silently continued
    _assert_stopped_cleanly(trainer, train_cfg.OUTPUT_DIR, stopped_at=2)


def test_diverging_lr_stops_training(train_cfg):
    """A real divergence (huge LR, no warm-up, no clipping) stops with a FloatingPointError."""
    train_cfg.merge_from_list(
        [
            "SOLVER.BASE_LR",
            "1e12",
            "SOLVER.WARMUP_ITERS",
            "0",
            "SOLVER.CLIP_GRADIENTS.ENABLED",
            "False",
        ]
    )
    train_cfg.freeze()
    trainer = SelsaTrainer(train_cfg)
    trainer.resume_or_load(resume=False)
    # Detectron2 stops either on the loss check or, if the RPN sees non-finite boxes first, in
    # find_top_rpn_proposals; both are FloatingPointErrors with a clear message.
    with pytest.raises(
        FloatingPointError, match=r"Loss became infinite or NaN|Training has diverged"
    ):
        trainer.train()
    assert trainer.iter < MAX_ITER - 1
    assert not os.path.exists(os.path.join(train_cfg.OUTPUT_DIR, "model_final.pth"))


# ---------------------------------------------------------------------------- long video
LONG_VIDEO = 2000
SAMPLE_AT = 500


class LazyFrames:
    """A Sequence of small BGR frames made on demand, so the input video costs no memory."""

    def __init__(self, n, height=32, width=48):
        self.n, self.h, self.w = n, height, width
        self.background = (
            np.random.RandomState(0).randint(0, 80, (height, width, 3)).astype(np.uint8)
        )

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        img = self.background.copy()
        x = (2 * i) % (self.w - 16)
        img[8:24, x : x + 16] = (40, 200, 90)
        return img


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(scope="module")
def long_video_predictor(tmp_path_factory):
    cfg = tiny_selsa_cfg(
        MODEL__RPN__POST_NMS_TOPK_TEST=20,
        MODEL__RPN__PRE_NMS_TOPK_TEST=100,
        INPUT__MIN_SIZE_TEST=32,
        INPUT__MAX_SIZE_TEST=64,
        MODEL__ROI_HEADS__SCORE_THRESH_TEST=0.0,
        TEST__DETECTIONS_PER_IMAGE=5,
        INPUT__VIDEO__TEST_NUM_REFS=14,
        INPUT__VIDEO__TEST_FRAME_STRIDE=2,
    )
    torch.manual_seed(0)
    from detectron2.modeling import build_model

    weights = str(tmp_path_factory.mktemp("long_video") / "w.pth")
    DetectionCheckpointer(build_model(cfg).eval(), save_dir=os.path.dirname(weights)).save("w")
    cfg.MODEL.WEIGHTS = weights
    return VideoPredictor(cfg)


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_long_video_bounded_memory(long_video_predictor, mode):
    predictor = long_video_predictor
    engine = predictor.engine
    sampler = predictor.reference_sampler(mode)
    bound = sampler.max_cached_frames()
    engine.reset_stats()
    cache_sizes, rss = [], {}
    run = predictor._run

    def observed_run(inp, *args):
        out = run(inp, *args)
        cache_sizes.append(engine.cache_size)
        if len(cache_sizes) in (SAMPLE_AT, LONG_VIDEO):
            rss[len(cache_sizes)] = _rss_bytes()
        return out

    predictor._run = observed_run
    try:
        frames = LazyFrames(LONG_VIDEO)
        if mode == "offline":
            results = predictor.predict_video(frames, mode="offline")
            assert len(results) == LONG_VIDEO
            del results
        else:  # a stream of unknown length: results are consumed as they come
            count = sum(1 for _ in predictor.stream(iter(frames[i] for i in range(LONG_VIDEO))))
            assert count == LONG_VIDEO
    finally:
        del predictor._run
    assert engine.frames_computed == LONG_VIDEO  # every frame computed once
    assert 1 <= engine.peak_cache_size <= bound, (engine.peak_cache_size, bound, sampler)
    assert max(cache_sizes) <= bound
    # The cache reaches its steady size early and stays there (not growing with the video).
    assert max(cache_sizes[SAMPLE_AT:]) <= max(cache_sizes[:SAMPLE_AT])
    # A per-frame leak of the cached features alone (~20 proposals x 64 floats x 5 tensors) would
    # add ~40 MB over 1,500 frames; allocator noise stays far below the bound.
    growth = rss[LONG_VIDEO] - rss[SAMPLE_AT]
    assert growth < 16 * 2**20, (
        f"RSS grew by {growth / 2**20:.1f} MiB between frame {SAMPLE_AT} and {LONG_VIDEO}"
    )
