"""train_net.py end to end with FPN: a single-frame Faster R-CNN-FPN, continued as SELSA-FPN
(only the aggregators new, reported as such) and evaluated with the VID metrics."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from selsa_d2 import synthetic
from selsa_d2.comparison import run_demo, steps

REPO = Path(__file__).resolve().parents[1]
SELSA_FPN_CFG = "configs/synthetic/selsa_fpn_tiny.yaml"
FASTER_RCNN_FPN_CFG = "configs/synthetic/faster_rcnn_fpn_tiny.yaml"
# the tiny synthetic FPN models, narrower and on smaller images (CI's 2 cores)
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
    "SOLVER.WARMUP_ITERS",
    "1",
    "SOLVER.STEPS",
    "()",
    "SOLVER.MAX_ITER",
    "3",
    "SOLVER.CHECKPOINT_PERIOD",
    "100",
    "DATALOADER.NUM_WORKERS",
    "0",
    "MODEL.FPN.OUT_CHANNELS",
    "32",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "64",
    "TEST.DETECTIONS_PER_IMAGE",
    "20",
]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("d2_datasets")
    synthetic.generate(
        root / "synthetic_vid", num_train_videos=3, num_val_videos=2, frames=8, seed=3
    )
    return root


def _train_net(data_root, config, out_dir, *opts):
    env = dict(
        os.environ, DETECTRON2_DATASETS=str(data_root), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1"
    )
    cmd = [sys.executable, "train_net.py", "--config-file", config, "OUTPUT_DIR", str(out_dir)]
    cmd += TINY + [str(o) for o in opts]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    return proc


def test_single_frame_fpn_continued_as_selsa_fpn(data_root, tmp_path):
    single = tmp_path / "faster_rcnn_fpn"
    _train_net(data_root, FASTER_RCNN_FPN_CFG, single, "DATASETS.TEST", "()")
    assert (single / "model_final.pth").exists()

    selsa = tmp_path / "selsa_fpn"
    # training ends with Detectron2's evaluation of DATASETS.TEST (the VID evaluator)
    _train_net(data_root, SELSA_FPN_CFG, selsa, "MODEL.WEIGHTS", single / "model_final.pth")
    log = (selsa / "log.txt").read_text()
    assert "left at their initial values: the SELSA aggregators (16 tensors" in log
    assert "other parameters" not in log
    assert "Zero-initialised the output fc of 2 aggregators" in log
    with open(selsa / "inference" / "results.json") as f:
        results = json.load(f)
    assert {"mAP", "mAP_degraded", "mAP_clean"} <= set(results["vid"])
    assert results["timing"]["frames"] == 2 * 8  # every validation frame through the model once


def test_run_demo_fpn_option_picks_the_fpn_configs():
    assert run_demo.comparison_from_args(run_demo.parse_args([])).configs == (
        steps.SINGLE_FRAME_CONFIG,
        steps.SELSA_CONFIG,
    )
    configs = run_demo.comparison_from_args(run_demo.parse_args(["--fpn"])).configs
    assert configs == (FASTER_RCNN_FPN_CFG, SELSA_FPN_CFG)
