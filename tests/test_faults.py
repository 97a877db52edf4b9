"""Faults and bad inputs, second probe: one test per numbered case of the probe, plus members of
the same classes.

Fault cases reproduce the state a real kill leaves (a 0-byte or truncated file, a stale lock, a
config set aside) instead of racing a SIGKILL. ``train_net.py`` runs as a subprocess where the
entry point's behaviour is the point (one-line errors, locks, what lands in OUTPUT_DIR); the
mechanisms themselves are tested in-process.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from repo_scripts import run_script
from tiny_model import build_tiny_model, tiny_selsa_cfg, torch_threads

from selsa_d2 import video_demo
from selsa_d2.checkpoint.integrity import checkpoint_problem, newest_complete_checkpoint
from selsa_d2.checkpoint.loading import WeightsCheckpointer, WeightsError, load_inference_weights
from selsa_d2.comparison import gain_study, report, run_demo, steps
from selsa_d2.data import register_vid_dataset
from selsa_d2.data.datasets import unregister_vid_dataset
from selsa_d2.data.ilsvrc_conversion import convert_ilsvrc_to_coco_vid
from selsa_d2.file_io import (
    OutputError,
    atomic_directory,
    atomic_open,
    check_not_an_input,
)
from selsa_d2.run_guard import (
    LOCK_NAME,
    ConfigError,
    OutputDirLock,
    RunError,
    check_num_classes,
    evaluation_config_name,
    release_output_dirs,
    restore_training_config,
    validate_config,
)
from selsa_d2.synthetic import generate
from selsa_d2.video_io import ImageFrames
from selsa_d2.visualization import build_metadata

REPO = Path(__file__).resolve().parents[1]
BASELINE_CFG = "configs/synthetic/faster_rcnn_tiny.yaml"
MAX_ITER, PERIOD = 4, 2  # MAX_ITER a multiple of CHECKPOINT_PERIOD, as in `make demo`
TINY = [
    "SOLVER.MAX_ITER",
    str(MAX_ITER),
    "SOLVER.CHECKPOINT_PERIOD",
    str(PERIOD),
    "SOLVER.IMS_PER_BATCH",
    "2",
    "SOLVER.WARMUP_ITERS",
    "1",
    "SOLVER.STEPS",
    "()",
    "INPUT.MIN_SIZE_TRAIN",
    "(64,)",
    "INPUT.MAX_SIZE_TRAIN",
    "96",
    "INPUT.MIN_SIZE_TEST",
    "64",
    "INPUT.MAX_SIZE_TEST",
    "96",
    "DATALOADER.NUM_WORKERS",
    "0",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "32",
    "TEST.DETECTIONS_PER_IMAGE",
    "10",
    "DATASETS.TEST",
    "()",
]


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("d2_datasets")
    generate(root / "synthetic_vid", num_train_videos=2, num_val_videos=1, frames=6, size=(64, 48))
    return root


def _train_net(data_root, out_dir, *args, config=BASELINE_CFG, check=True):
    env = dict(os.environ, DETECTRON2_DATASETS=str(data_root), OMP_NUM_THREADS="1")
    # flags (--resume, --eval-only) first: argparse takes everything after the options as opts
    cmd = [sys.executable, "train_net.py", "--config-file", config]
    flags = [a for a in args if a.startswith("--")]
    opts = [a for a in args if not a.startswith("--")]
    cmd += flags + TINY + opts + ["OUTPUT_DIR", str(out_dir)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture
def train_net_in_process(tmp_path):
    """What ``train_net.py`` runs (:func:`selsa_d2.engine.train_or_evaluate`), in this process,
    for errors raised before anything runs: returns the message ``train_net.py`` prints after
    ``train_net.py: error: ``, asserted to be one line. Trains on a 4-class json dataset (the
    synthetic one's class count; this process's builtin datasets point elsewhere)."""
    from detectron2.engine import default_argument_parser

    from selsa_d2.engine import USER_ERRORS, train_or_evaluate

    ann = _coco_vid_json(tmp_path / "inproc.json", cat_ids=(1, 2, 3, 4))
    dataset = ["DATASETS.COCO_VID", f"(('fault_inproc', '{ann}', '{tmp_path}'),)"]
    dataset += ["DATASETS.TRAIN", "('fault_inproc',)"]

    def run(out_dir, *args, config=BASELINE_CFG):
        flags = [a for a in args if a.startswith("--")]
        opts = [a for a in args if not a.startswith("--")]
        argv = ["--config-file", config, *flags, *TINY, *dataset, *opts]
        argv += ["OUTPUT_DIR", str(out_dir)]
        try:
            with pytest.raises(USER_ERRORS) as info:
                train_or_evaluate(default_argument_parser().parse_args(argv))
        finally:
            release_output_dirs()  # a real run holds its lock until the process ends
        message = "train_net.py: error: " + str(info.value)
        assert "\n" not in message, message
        return message

    yield run
    unregister_vid_dataset("fault_inproc")


def _one_line_error(proc) -> str:
    """The single error line of a failed entry point (and no traceback)."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, proc.stderr[-4000:]
    return lines[0]


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory):
    """A finished tiny single-frame run: model_0000001, model_0000003, model_final."""
    out = tmp_path_factory.mktemp("trained")
    _train_net(data_root, out)
    return out


def _copy_run(trained, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(trained, out, ignore=shutil.ignore_patterns(LOCK_NAME))
    return out


# ---------------------------------------------------------------------------- 1. kill during model_final
def test_1_resume_at_max_iter_completes_a_final_model_cut_short(data_root, trained, tmp_path):
    out = _copy_run(trained, tmp_path)
    last = f"model_{MAX_ITER - 1:07d}.pth"
    # what a SIGKILL while model_final.pth was written (non-atomically) left
    (out / "model_final.pth").write_bytes(b"")
    (out / "last_checkpoint").write_text(last)
    proc = _train_net(data_root, out, "--resume")
    assert "model_final.pth is empty" in (out / "log.txt").read_text(), proc.stderr[-2000:]
    final = torch.load(out / "model_final.pth", map_location="cpu")
    periodic = torch.load(out / last, map_location="cpu")
    assert final["iteration"] == MAX_ITER - 1
    assert all(torch.equal(final["model"][k], periodic["model"][k]) for k in periodic["model"])
    assert checkpoint_problem(str(out / "model_final.pth")) is None
    # deleting the broken file instead: the same path (checkpoint_problem "does not exist")
    assert checkpoint_problem(str(out / "deleted.pth")) == "does not exist"


def test_1_checkpoint_and_last_checkpoint_writes_are_atomic(tmp_path):
    model = torch.nn.Linear(3, 2)
    ckpt = WeightsCheckpointer(model, str(tmp_path))
    ckpt.save("model_final", iteration=3)
    before = (tmp_path / "model_final.pth").read_bytes()
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    # a write that dies half-way (here: an unpicklable entry after the tensors)
    with pytest.raises(Exception):  # noqa: B017  (pickle's error type varies)
        ckpt.save("model_final", iteration=4, broken=lambda: None)
    assert (tmp_path / "model_final.pth").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_final.pth"]
    with pytest.raises(RuntimeError), atomic_open(str(tmp_path / "last_checkpoint")) as f:
        f.write("model_9")
        raise RuntimeError("killed")
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"


def test_13_empty_or_broken_last_checkpoint_names_the_cause_and_the_newest_complete(tmp_path):
    model = torch.nn.Linear(3, 2)
    ckpt = WeightsCheckpointer(model, str(tmp_path))
    ckpt.save("model_0000001", iteration=1)
    (tmp_path / "model_0000003.pth").write_bytes(b"PK\x03\x04 truncated")
    assert newest_complete_checkpoint(str(tmp_path)) == str(tmp_path / "model_0000001.pth")
    (tmp_path / "last_checkpoint").write_text("")
    with pytest.raises(WeightsError, match="last_checkpoint is empty") as info:
        ckpt.resume_or_load("", resume=True)
    assert "model_0000001.pth" in str(info.value) and "is a directory" not in str(info.value)
    (tmp_path / "last_checkpoint").write_text("model_0000003.pth")
    with pytest.raises(WeightsError, match="model_0000003.pth, which is truncated") as info:
        ckpt.resume_or_load("", resume=True)
    assert "newest complete checkpoint is " + str(tmp_path / "model_0000001.pth") in str(info.value)


# ---------------------------------------------------------------------------- 2. run_demo step reuse
@pytest.fixture
def demo(tmp_path, monkeypatch, data_root):
    """run_demo's steps with train_net.py replaced by a fake that writes what it would (and
    counts the calls)."""
    calls = []

    def fake_run(cmd, env, log=None):
        cmd = [str(c) for c in cmd]
        if "tools/rescore_detections.py" in cmd:  # the "+ Seq-NMS" rows: scores saved detections
            out = Path(cmd[cmd.index("--output-dir") + 1])
            out.mkdir(parents=True, exist_ok=True)
            calls.append(("rescore", out.name))
            detections = Path(cmd[cmd.index("--detections") + 1]).read_text()
            metrics = {"vid": {"detections": detections}, "bbox": {}}
            (out / "vid_metrics.json").write_text(json.dumps(metrics))
            return
        out = Path(cmd[cmd.index("OUTPUT_DIR") + 1])
        out.mkdir(parents=True, exist_ok=True)
        calls.append(("eval" if "--eval-only" in cmd else "train", out.name))
        seed = cmd[cmd.index("SEED") + 1]
        if "--eval-only" in cmd:
            (out / "inference").mkdir(exist_ok=True)
            (out / "inference" / "results.json").write_text(json.dumps({"vid": {"seed": seed}}))
            # the detections depend on the weights evaluated
            weights = torch.load(cmd[cmd.index("MODEL.WEIGHTS") + 1])["model"]["w"].item()
            (out / "inference" / "vid_detections.json").write_text(json.dumps([weights]))
        else:
            torch.save({"model": {"w": torch.tensor(float(seed))}}, out / "model_final.pth")
            (out / "last_checkpoint").write_text("model_final.pth")

    monkeypatch.setattr(steps, "run_command", fake_run)

    def comparison(seed=0, opts=()):
        return steps.Comparison(
            tmp_path / "out",
            data_root / "synthetic_vid",
            steps.Budget(4, 2),
            seed=seed,
            opts=list(opts),
        )

    return comparison, calls


def test_2_run_demo_reuses_only_complete_steps_of_the_same_inputs(demo, tmp_path):
    comparison, calls = demo
    summary = steps.run_comparison(comparison(seed=0), progress=lambda t: None)
    # 3 trainings, 3 evaluations, 2 re-scorings with Seq-NMS
    assert len(calls) == 8 and summary["run"]["seed"] == 0
    calls.clear()
    steps.run_comparison(comparison(seed=0), progress=lambda t: None)
    assert calls == []  # everything reused
    # a final model cut short by a kill is not reused: the step runs again (train_net resumes)
    (tmp_path / "out" / "selsa" / "model_final.pth").write_bytes(b"")
    steps.run_comparison(comparison(seed=0), progress=lambda t: None)
    assert ("train", "selsa") in calls
    # another seed / other options into the same --out: refused, naming what differs
    for kwargs, what in ((dict(seed=1), "SEED"), (dict(opts=["SOLVER.BASE_LR", "0.5"]), "opts")):
        with pytest.raises(steps.StepError, match="made with other inputs") as info:
            steps.run_comparison(comparison(**kwargs), progress=lambda t: None)
        assert "shared_start" in str(info.value) and "delete the folder" in str(info.value)
        assert what in str(info.value) or "opts" in str(info.value)
    # the hint leads somewhere: deleting the folders retrains, and the summary is the new run's
    for key in ("shared_start", "faster_rcnn", "selsa", "selsa_key_frame_only"):
        shutil.rmtree(tmp_path / "out" / key)
    summary = steps.run_comparison(comparison(seed=1), progress=lambda t: None)
    assert summary["run"]["seed"] == 1
    assert summary["models"]["selsa"]["vid"]["seed"] == "1"


def test_2_evaluation_redone_when_its_model_was_retrained(demo, tmp_path):
    comparison, calls = demo
    steps.run_comparison(comparison(), progress=lambda t: None)
    calls.clear()
    # one model retrained (other weights, same inputs otherwise): its evaluations are redone,
    # and the continuation that starts from it is refused as stale
    torch.save({"model": {"w": torch.tensor(9.0)}}, tmp_path / "out" / "selsa" / "model_final.pth")
    steps.run_comparison(comparison(), progress=lambda t: None)
    # ... and so is the Seq-NMS re-scoring of its detections
    assert sorted(calls) == [("eval", "selsa"), ("eval", "selsa_key_frame_only")] + [
        ("rescore", key) for key, source, _ in steps.SEQ_NMS_ROWS if source == "selsa"
    ]
    torch.save(
        {"model": {"w": torch.tensor(7.0)}}, tmp_path / "out" / "shared_start" / "model_final.pth"
    )
    with pytest.raises(steps.StepError, match="faster_rcnn holds a training step made with"):
        steps.run_comparison(comparison(), progress=lambda t: None)


def test_13_run_demo_arguments_are_one_line_errors(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for argv, message in (
        (["--shared-iters", "0"], "--shared-iters must be at least 1"),
        (["--continue-iters", "-3"], "--continue-iters must be at least 1"),
        (["--out", str(a_file)], "is a file, not a folder"),
    ):
        with pytest.raises(SystemExit):
            run_demo.parse_args(argv)
        assert message in capsys.readouterr().err


# ---------------------------------------------------------------------------- 3. one run per OUTPUT_DIR
def test_3_second_run_into_a_locked_output_dir_is_refused(data_root, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with OutputDirLock(str(out)):  # a run holding the folder
        with pytest.raises(RunError, match="in use by another run"):
            OutputDirLock(str(out)).acquire()
        line = _one_line_error(_train_net(data_root, out, check=False))
        assert "in use by another run (pid" in line
    assert not (out / "config.yaml").exists() and not (out / "log.txt").exists()
    # a lock file left by a killed run is not a lock: flock went with the process
    assert (out / LOCK_NAME).exists()
    OutputDirLock(str(out)).acquire().release()


# ---------------------------------------------------------------------------- 4. finished model
def test_4_training_from_scratch_over_a_finished_model_is_refused(
    trained, tmp_path, train_net_in_process
):
    out = _copy_run(trained, tmp_path)
    before = (out / "model_final.pth").read_bytes()
    line = train_net_in_process(out)
    assert f"{out / 'model_final.pth'} is a finished model" in line
    assert "OVERWRITE_FINISHED_MODEL" in line
    # --resume with nothing to resume from would start from 0 as well
    (out / "last_checkpoint").unlink()
    line = train_net_in_process(out, "--resume")
    assert "no last_checkpoint" in line
    assert (out / "model_final.pth").read_bytes() == before


# ---------------------------------------------------------------------------- 5. eval config name
def test_5_evaluation_into_the_training_dir_keeps_its_config(data_root, trained, tmp_path):
    out = _copy_run(trained, tmp_path)
    training_config = (out / "config.yaml").read_text()
    _train_net(
        data_root,
        out,
        "--eval-only",
        "MODEL.WEIGHTS",
        str(out / "model_final.pth"),
        "DATASETS.TEST",
        "('synthetic_vid_val',)",
        "TEST.DETECTIONS_PER_IMAGE",
        "7",
    )
    assert (out / "config.yaml").read_text() == training_config
    assert "DETECTIONS_PER_IMAGE: 7" in (out / "config_eval.yaml").read_text()
    assert (out / "inference" / "results.json").exists()


def test_5_eval_config_set_aside_by_a_kill_is_put_back(tmp_path):
    (tmp_path / "config.yaml").write_text("training")
    with evaluation_config_name(str(tmp_path)):
        (tmp_path / "config.yaml").write_text("evaluation")  # what default_setup writes
        assert (tmp_path / ".config.yaml.training").read_text() == "training"
    assert (tmp_path / "config.yaml").read_text() == "training"
    assert (tmp_path / "config_eval.yaml").read_text() == "evaluation"
    # a kill between the two renames
    os.replace(tmp_path / "config.yaml", tmp_path / ".config.yaml.training")
    (tmp_path / "config.yaml").write_text("evaluation")
    restore_training_config(str(tmp_path))
    assert (tmp_path / "config.yaml").read_text() == "training"


# ---------------------------------------------------------------------------- 6. outputs vs inputs
def _coco_vid_json(path: Path, cat_ids=(1, 2), with_annotations=True, frames=3, **image_fields):
    images = [
        {"id": i + 1, "file_name": f"v/{i:06d}.jpg", "width": 64, "height": 48, "video_id": 1}
        | {"frame_id": i}
        | image_fields
        for i in range(frames)
    ]
    anns = []
    if with_annotations:
        for i in range(frames):
            for k, c in enumerate(cat_ids):
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": i + 1,
                        "video_id": 1,
                        "category_id": c,
                        "instance_id": k,
                        "bbox": [4 + 10 * k, 4, 8, 8],
                        "area": 64,
                    }
                )
    data = {
        "videos": [{"id": 1, "name": "v"}],
        "images": images,
        "annotations": anns,
        "categories": [{"id": c, "name": f"class{c}"} for c in cat_ids],
    }
    path.write_text(json.dumps(data))
    return path


def test_6_demo_output_equal_to_an_input_of_the_run_is_refused(tmp_path, monkeypatch):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        cv2.imwrite(str(frames / f"{i:06d}.jpg"), np.full((48, 64, 3), 90, np.uint8))
    ann = _coco_vid_json(tmp_path / "ann.json")
    before = ann.read_bytes()
    os.symlink(ann, tmp_path / "alias.json")
    monkeypatch.chdir(tmp_path)
    dataset = f"(('fault6_ds', '{ann}', '{tmp_path}'),)"
    for given in (str(ann), "./ann.json", str(tmp_path / "alias.json")):
        argv = ["--config-file", str(REPO / "configs/synthetic/selsa_tiny.yaml")]
        argv += ["--input", str(frames), "--output", str(tmp_path / "o.mp4"), "--json", given]
        argv += ["--opts", "DATASETS.COCO_VID", dataset, "MODEL.DEVICE", "cpu"]
        with pytest.raises(SystemExit) as info:
            video_demo.main(argv)
        assert "the DATASETS.COCO_VID[0] json" in str(info.value) and given in str(info.value)
    assert ann.read_bytes() == before and not (tmp_path / "o.mp4").exists()


def test_6_output_inside_an_input_folder_and_same_inode_are_refused(tmp_path):
    (tmp_path / "frames").mkdir()
    src = tmp_path / "in.json"
    src.write_text("{}")
    os.link(src, tmp_path / "hard.json")
    with pytest.raises(OutputError, match="lies inside the frames folder"):
        check_not_an_input(
            str(tmp_path / "frames" / "x.json"), [("the frames folder", str(tmp_path / "frames"))]
        )
    with pytest.raises(OutputError, match="is the input"):
        check_not_an_input(str(tmp_path / "hard.json"), [("the input", str(src))])
    check_not_an_input(str(tmp_path / "other.json"), [("the input", str(src))])


# ---------------------------------------------------------------------------- 7 / 8. evaluator
@pytest.fixture
def json_dataset(tmp_path):
    names = []

    def register(name, **kwargs):
        path = _coco_vid_json(tmp_path / f"{name}.json", **kwargs)
        unregister_vid_dataset(name)
        register_vid_dataset(name, json_file=str(path), image_root=str(tmp_path))
        names.append(name)
        return path

    yield register
    for name in names:
        unregister_vid_dataset(name)


def _predictions(dataset, classes):
    return [
        {
            "image_id": d["image_id"],
            "video_id": d["video_id"],
            "frame_id": d["frame_id"],
            "boxes": np.array([[4 + 10 * k, 4, 12 + 10 * k, 12] for k in classes], np.float32),
            "scores": np.full(len(classes), 0.9, np.float32),
            "classes": np.array(classes, np.int64),
        }
        for d in DatasetCatalog.get(dataset)
    ]


def test_7_unlabelled_split_writes_detections_and_says_no_metrics(json_dataset, tmp_path, caplog):
    from selsa_d2.evaluation import VIDEvaluator

    json_dataset("fault7_unlabelled", with_annotations=False)
    ev = VIDEvaluator("fault7_unlabelled", str(tmp_path / "inf"), distributed=False)
    with caplog.at_level(logging.WARNING):
        results = ev.evaluate_predictions(_predictions("fault7_unlabelled", [0, 1]))
    assert results == {}
    assert "no annotated objects, so no metrics can be computed" in caplog.text
    dets = json.loads((tmp_path / "inf" / "vid_detections.json").read_text())
    assert len(dets) == 6 and {d["category_id"] for d in dets} == {1, 2}


def test_8_output_category_ids_are_the_datasets_ids(json_dataset, tmp_path):
    from selsa_d2.evaluation import VIDEvaluator

    json_dataset("fault8_ids", cat_ids=(3, 7, 11, 20))
    md = MetadataCatalog.get("fault8_ids")
    assert md.thing_dataset_id_to_contiguous_id == {3: 0, 7: 1, 11: 2, 20: 3}
    ev = VIDEvaluator("fault8_ids", str(tmp_path / "inf"), distributed=False)
    results = ev.evaluate_predictions(_predictions("fault8_ids", [0, 1, 2, 3]))
    dets = json.loads((tmp_path / "inf" / "vid_detections.json").read_text())
    assert {d["category_id"] for d in dets} == {3, 7, 11, 20}
    metrics = json.loads((tmp_path / "inf" / "vid_metrics.json").read_text())
    assert [c["id"] for c in metrics["categories"]] == [3, 7, 11, 20]
    assert results["bbox"]["AP50"] == pytest.approx(100.0)  # the gt's ids match the detections'
    # demo.py's JSON too
    cfg = tiny_selsa_cfg(num_classes=4, DATASETS__TEST=("fault8_ids",))
    assert build_metadata(cfg).category_ids == [3, 7, 11, 20]


# ---------------------------------------------------------------------------- 9. NUM_CLASSES
def test_9_num_classes_not_matching_the_dataset_is_refused_before_training(
    json_dataset, tmp_path, train_net_in_process
):
    json_dataset("fault9_four", cat_ids=(1, 2, 3, 4))
    for n in (2, 3, 5):
        with pytest.raises(RunError, match=f"NUM_CLASSES is {n} but dataset 'fault9_four' has 4"):
            check_num_classes(tiny_selsa_cfg(num_classes=n), ["fault9_four"])
    check_num_classes(tiny_selsa_cfg(num_classes=4), ["fault9_four"])
    # train_net.py: one line, before anything is written
    out = tmp_path / "out"
    opts = ["DATASETS.TRAIN", "('fault9_four',)", "MODEL.ROI_HEADS.NUM_CLASSES", "3"]
    line = train_net_in_process(out, *opts)
    assert "set MODEL.ROI_HEADS.NUM_CLASSES 4" in line
    assert not out.exists()  # refused before anything was written


# ---------------------------------------------------------------------------- 10. unused weights
def test_10_selsa_checkpoint_in_the_single_frame_config_is_refused(tmp_path):
    with torch_threads(1):
        selsa = build_tiny_model(tiny_selsa_cfg(num_classes=3))
        single = build_tiny_model(
            tiny_selsa_cfg(
                num_classes=3,
                MODEL__ROI_HEADS__NAME="StandardROIHeads",
                MODEL__ROI_BOX_HEAD__NAME="FastRCNNConvFCHead",
            )
        )
    path = tmp_path / "selsa.pth"
    torch.save({"model": selsa.state_dict()}, path)
    with pytest.raises(WeightsError, match="not parameters of this model") as info:
        load_inference_weights(single, str(path))
    assert "aggregators" in str(info.value) and "TEST.ALLOW_UNUSED_WEIGHTS" in str(info.value)
    load_inference_weights(single, str(path), allow_unused=True)
    w = "roi_heads.box_predictor.cls_score.weight"
    assert torch.equal(single.state_dict()[w], selsa.state_dict()[w])


def test_13_resuming_with_another_architecture_is_one_line(tmp_path):
    with torch_threads(1):
        selsa = build_tiny_model(tiny_selsa_cfg(num_classes=3))
        single = build_tiny_model(
            tiny_selsa_cfg(
                num_classes=3,
                MODEL__ROI_HEADS__NAME="StandardROIHeads",
                MODEL__ROI_BOX_HEAD__NAME="FastRCNNConvFCHead",
            )
        )
    WeightsCheckpointer(selsa, str(tmp_path)).save("model_0000001", iteration=1)
    with pytest.raises(WeightsError, match="is a checkpoint of another model"):
        WeightsCheckpointer(single, str(tmp_path)).resume_or_load("", resume=True)


# ---------------------------------------------------------------------------- 11. 16-bit frames
@pytest.mark.parametrize("channels", [1, 3])
def test_11_16_bit_png_frames_are_scaled_to_8_bit(tmp_path, channels):
    from selsa_d2.data.image_io import read_frame

    ramp = (np.arange(48 * 64).reshape(48, 64) * 21).astype(np.uint16)  # 0 .. 64491
    img = ramp if channels == 1 else np.stack([ramp, ramp // 2, ramp // 4], -1)
    path = tmp_path / "f.png"
    cv2.imwrite(str(path), img)
    out = read_frame(str(path), format="BGR")
    assert out.dtype == np.uint8 and out.shape == (48, 64, 3)
    expect = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.float64) / 257
    expect = expect[..., None] if channels == 1 else expect
    assert np.abs(out.astype(np.float64) - expect).max() <= 1.01
    assert out.mean() < 200  # not the white frame a clipping conversion gives
    frame = ImageFrames([str(path)])[0]
    assert np.array_equal(frame, out)


# ---------------------------------------------------------------------------- 12. meaningless values
@pytest.mark.parametrize(
    "key, value, message",
    [
        ("TEST.VID.MOTION_IOU_RANGE", -3, "TEST.VID.MOTION_IOU_RANGE must be an integer >= 0"),
        ("INPUT.VIDEO.TEST_NUM_REFS", -1, "INPUT.VIDEO.TEST_NUM_REFS must be an integer >= 0"),
        ("INPUT.VIDEO.TEST_FRAME_STRIDE", 0, "TEST_FRAME_STRIDE must be an integer >= 1"),
        ("INPUT.VIDEO.TEST_MODE", "realtime", "TEST_MODE must be one of 'offline', 'online'"),
        ("MODEL.SELSA.TROI.CHUNK_SIZE", 0, "CHUNK_SIZE must be an integer >= 1"),
        ("DATASETS.TRAIN_SAMPLING_WEIGHTS", (1.0, -1.0), "non-negative numbers"),
        ("SOLVER.MAX_ITER", 0, "SOLVER.MAX_ITER must be an integer >= 1"),
        ("SOLVER.IMS_PER_BATCH", 0, "SOLVER.IMS_PER_BATCH must be an integer >= 1"),
        ("SOLVER.CHECKPOINT_PERIOD", 0, "SOLVER.CHECKPOINT_PERIOD must be an integer >= 1"),
        ("MODEL.SELSA.NUM_ATTENTION_BLOCKS", 5, "must be a multiple of"),
    ],
)
def test_12_config_values_are_validated_naming_the_key(key, value, message):
    cfg = tiny_selsa_cfg()
    node = cfg
    *parents, leaf = key.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        validate_config(cfg)


def test_12_string_booleans_in_config_are_refused_and_in_annotations_read_right(
    json_dataset, tmp_path
):
    cfg = tiny_selsa_cfg()
    cfg.MODEL.SELSA.INFERENCE.KEY_FRAME_ONLY = "false"  # e.g. set from code or a merged dict
    with pytest.raises(ConfigError, match="KEY_FRAME_ONLY must be a boolean"):
        validate_config(cfg)
    # is_vid_train_frame "false" was truthy: every frame became a key frame
    json_dataset("fault12_flags", is_vid_train_frame="false", frames=3)
    assert len(DatasetCatalog.get("fault12_flags")) == 3  # none flagged: all are key frames
    from selsa_d2.data.coco_vid import load_coco_vid_frames

    path = _coco_vid_json(tmp_path / "f.json", frames=3, is_vid_train_frame="false")
    assert load_coco_vid_frames(str(path), str(tmp_path))[1] == []
    for field, bad in (("is_vid_train_frame", "no"), ("degradations", "blur")):
        path = _coco_vid_json(tmp_path / "g.json", frames=2, **{field: bad})
        with pytest.raises(ValueError, match=f"{path}.*{field} must be"):
            load_coco_vid_frames(str(path), str(tmp_path))


def test_12_evaluator_refuses_a_negative_motion_range(json_dataset):
    from selsa_d2.evaluation import VIDEvaluator

    json_dataset("fault12_range")
    with pytest.raises(ValueError, match="must be >= 0"):
        VIDEvaluator("fault12_range", None, distributed=False, motion_iou_range=-1)


# ---------------------------------------------------------------------------- 13. one-line errors
@pytest.mark.parametrize(
    "case", ["output_dir_file", "unknown_key", "mistyped_value", "max_iter_0", "period_0"]
)
def test_13_train_net_user_errors_are_one_line(tmp_path, case, train_net_in_process):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    out, opts, message = tmp_path / "out", [], ""
    if case == "output_dir_file":
        out, message = a_file, f"OUTPUT_DIR {a_file} is a file"
    elif case == "unknown_key":
        opts, message = (
            ["MODEL.SELSA.NUM_ATENTION_BLOCKS", "4"],
            "did you mean MODEL.SELSA.NUM_ATTENTION_BLOCKS?",
        )
    elif case == "mistyped_value":
        opts, message = ["MODEL.SELSA.INFERENCE.KEY_FRAME_ONLY", "nope"], "Type mismatch"
    elif case == "max_iter_0":
        opts, message = ["SOLVER.MAX_ITER", "0"], "SOLVER.MAX_ITER must be an integer >= 1"
    else:
        opts, message = ["SOLVER.CHECKPOINT_PERIOD", "0"], "CHECKPOINT_PERIOD must be"
    line = train_net_in_process(out, *opts)
    assert message in line, line


def test_13_convert_torchvision_folder_or_truncated_input_is_one_line(tmp_path):
    tool = "tools/convert_torchvision_to_d2.py"
    torch.save({"conv1.weight": torch.zeros(2)}, tmp_path / "ok.pth")
    (tmp_path / "trunc.pth").write_bytes((tmp_path / "ok.pth").read_bytes()[:100])
    (tmp_path / "folder.pth").mkdir()
    for name, message in (("folder.pth", "is a directory"), ("trunc.pth", "not a readable")):
        proc = run_script(tool, tmp_path / name, tmp_path / "out.pkl")
        err = proc.stderr
        assert proc.returncode == 1 and "Conversion failed" in err and message in err
        assert "Traceback" not in err
    proc = run_script(tool, tmp_path / "ok.pth", tmp_path / "ok.pth")
    assert proc.returncode == 1 and "is the input checkpoint" in proc.stderr
    assert not (tmp_path / "out.pkl").exists()


def test_13_prepare_imagenet_vid_error_leaves_no_half_written_output(tmp_path):
    from fixtures_ilsvrc import make_ilsvrc_fixture

    root = Path(make_ilsvrc_fixture(str(tmp_path / "ILSVRC")))
    xml = sorted((root / "Annotations" / "VID" / "val").rglob("*.xml"))[-1]
    xml.write_text("<annotation><size><width>x</width></size></annotation>")
    out = tmp_path / "ann"
    with pytest.raises(ValueError, match=str(xml)):
        convert_ilsvrc_to_coco_vid(str(root), str(out), progress=False)
    assert not out.exists()  # train was converted before val failed: nothing is left
    proc = run_script("datasets/prepare_imagenet_vid.py", "--root", root, "--out", out)
    assert proc.returncode == 2 and str(xml) in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_13_atomic_directory_leaves_nothing_on_error(tmp_path):
    with pytest.raises(RuntimeError), atomic_directory(str(tmp_path / "out")) as d:
        Path(d, "half.json").write_text("{")
        raise RuntimeError("conversion failed")
    assert os.listdir(tmp_path) == []
    with atomic_directory(str(tmp_path / "out")) as d:
        Path(d, "done.json").write_text("{}")
    assert os.listdir(tmp_path / "out") == ["done.json"]


def test_2_gain_study_reuses_a_run_only_for_the_same_inputs(tmp_path):
    calls = []

    def fake_run(c):
        calls.append((c.seed, c.budget.shared_iters, tuple(c.opts)))
        return report.summarize({}, c)

    def study(budget, opts=()):
        return gain_study.run_study(
            tmp_path / "out",
            tmp_path / "data",
            ["a"],
            [0],
            budget=budget,
            opts=opts,
            run_one=fake_run,
            generate=lambda d, v: None,
        )

    study(steps.Budget(8, 4))
    study(steps.Budget(8, 4))
    assert calls == [(0, 8, ())]  # same inputs: reused
    study(steps.Budget(16, 4))  # another budget: the old summary is not reported as this one
    study(steps.Budget(16, 4), opts=["SOLVER.BASE_LR", "0.5"])
    assert calls[1:] == [(0, 16, ()), (0, 16, ("SOLVER.BASE_LR", "0.5"))]
    summary = json.loads((tmp_path / "out" / "a" / "seed0" / "summary.json").read_text())
    assert summary["run"]["shared_iters"] == 16
