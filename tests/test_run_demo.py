"""The demo's comparison (tools/run_demo.py over selsa_d2.comparison): tables, gains, the study,
the arguments."""

import json
import os

from repo_scripts import run_script

from selsa_d2.comparison import dataset as comparison_dataset
from selsa_d2.comparison import gain_study, report, run_demo, steps


def test_format_table_rows_columns_and_missing_values():
    results = {
        "faster_rcnn": {
            "vid": {
                "mAP": 50.08,
                "mAP_degraded": 39.4,
                "mAP_clean": 57.7,
                "mAP_slow": 64.5,
                "mAP_medium": 52.6,
                "mAP_fast": 47.7,
            },
            "bbox": {"AP50": 50.04},
            "timing": {"ms_per_frame": 15.61},
        },
        "selsa": {
            "vid": {"mAP": 59.2, "mAP_slow": None},
            "bbox": {"AP50": 59.1},
            "timing": {"ms_per_frame": 18.0},
        },
    }
    lines = report.format_table(results).splitlines()
    assert len(lines) == 4
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == [
        "model",
        "vid/mAP",
        "mAP degraded",
        "mAP clean",
        "slow",
        "medium",
        "fast",
        "bbox/AP50",
        "ms/frame",
    ]
    baseline = [c.strip() for c in lines[2].strip("|").split("|")]
    selsa = [c.strip() for c in lines[3].strip("|").split("|")]
    assert baseline == [
        "Faster R-CNN (single frame)",
        "50.1",
        "39.4",
        "57.7",
        "64.5",
        "52.6",
        "47.7",
        "50.0",
        "15.6",
    ]
    assert selsa == ["SELSA", "59.2", "-", "-", "-", "-", "-", "59.1", "18.0"]
    assert len({len(line) for line in lines}) == 1  # columns aligned


# ------------------------------------------------------------------------------ gains and the study
def _fake_results(sf, selsa, key_only):
    """results.json-like dicts from (overall, degraded, clean) triples."""
    as_vid = lambda t: {"vid": dict(zip(("mAP", "mAP_degraded", "mAP_clean"), t))}  # noqa: E731
    return {
        "faster_rcnn": as_vid(sf),
        "selsa": as_vid(selsa),
        "selsa_key_frame_only": as_vid(key_only),
    }


def test_gains_and_gain_table():
    summary = report.summarize(_fake_results((50, 40, 60), (58, 50, 64), (55, 44, 63)))
    assert summary["gain_from_references"] == {"overall": 3, "degraded": 6, "clean": 1}
    assert summary["selsa_vs_single_frame"] == {"overall": 8, "degraded": 10, "clean": 4}
    lines = report.format_gains(summary).splitlines()
    assert [c.strip() for c in lines[2].strip("|").split("|")] == [
        "gain from references (SELSA - key frame only)",
        "+3.0",
        "+6.0",
        "+1.0",
    ]
    assert [c.strip() for c in lines[3].strip("|").split("|")][1:] == ["+8.0", "+10.0", "+4.0"]
    missing = report.summarize({"selsa": {"vid": {"mAP": 1.0}}})
    assert missing["gain_from_references"]["overall"] is None


def test_count_classes_and_dataset_link(tmp_path):
    data = tmp_path / "my_videos"
    data.mkdir()
    import pytest

    with pytest.raises(FileNotFoundError, match="classes.txt"):
        comparison_dataset.count_classes(data)
    (data / "classes.txt").write_text("n01 cat\nn02 dog\n\nn03 cow\n")
    assert comparison_dataset.count_classes(data) == 3
    root = comparison_dataset.datasets_root_for(data, tmp_path / "work")
    assert (root / "synthetic_vid").resolve() == data.resolve()
    assert comparison_dataset.datasets_root_for(data, tmp_path / "work") == root  # idempotent
    named = tmp_path / "x" / "synthetic_vid"
    named.mkdir(parents=True)
    assert comparison_dataset.datasets_root_for(named, tmp_path / "work2") == named.parent


def test_schedule_scales_with_iterations():
    opts = dict(zip(*[iter(steps.schedule_opts(400))] * 2))
    assert opts["SOLVER.MAX_ITER"] == 400 and opts["SOLVER.STEPS"] == "(300, 368)"
    assert opts["SOLVER.WARMUP_ITERS"] == 40


def test_study_bookkeeping_aggregates_and_resumes(tmp_path):
    triples = {  # (variant, seed) -> (single frame, SELSA, SELSA key frame only), each (overall, degraded, clean)
        ("a", 0): ((50, 40, 60), (58, 50, 64), (55, 44, 63)),
        ("a", 1): ((52, 42, 61), (54, 44, 62), (55, 45, 61)),  # references hurt here
        ("b", 0): ((30, 20, 40), (36, 30, 40), (32, 24, 39)),
        ("b", 1): ((31, 21, 41), (35, 27, 42), (33, 24, 40)),
    }
    calls, generated = [], []

    def fake_run(c):
        variant, seed = c.out_dir.parent.name, c.seed
        calls.append((variant, seed))
        assert c.dataset_dir == tmp_path / "data" / variant / "synthetic_vid"
        assert c.log == c.out_dir / "train_net.log"
        return report.summarize(_fake_results(*triples[(variant, seed)]), c)

    kwargs = dict(
        budget=steps.Budget(8, 4), run_one=fake_run, generate=lambda d, v: generated.append(v)
    )
    study = gain_study.run_study(tmp_path / "out", tmp_path / "data", ["a", "b"], [0, 1], **kwargs)
    assert calls == [("a", 0), ("a", 1), ("b", 0), ("b", 1)] and generated == ["a", "b"]
    gain = study["a"]["metrics"]["gain from references: overall"]
    assert (gain["mean"], gain["min"], gain["max"], gain["n"]) == (1.0, -1.0, 3.0, 2)
    assert study["b"]["metrics"]["SELSA: degraded"]["values"] == {"0": 30, "1": 27}
    assert study["a"]["criteria"]["gain_from_references_positive"] == {"passed": 1, "runs": 2}
    assert study["b"]["criteria"]["gain_larger_on_degraded"] == {"passed": 2, "runs": 2}
    assert study["a"]["criteria"]["selsa_ahead_of_single_frame"] == {"passed": 2, "runs": 2}
    saved = json.loads((tmp_path / "out" / "study.json").read_text())
    assert saved["variants"]["a"]["metrics"]["SELSA: vid/mAP"]["max"] == 58
    assert saved["budget"] == {"shared_iters": 8, "continue_iters": 4}
    assert (
        json.loads((tmp_path / "out" / "b" / "seed1" / "summary.json").read_text())["run"]["seed"]
        == 1
    )
    table = (tmp_path / "out" / "study.md").read_text()
    assert "gain from references: overall | +1.0 | -1.0 | +3.0" in table.replace("  ", " ").replace(
        "  ", " "
    )
    # a second call reuses every finished run and only re-aggregates; a missing run is redone
    (tmp_path / "out" / "b" / "seed0" / "summary.json").unlink()
    calls.clear()
    again = gain_study.run_study(tmp_path / "out", tmp_path / "data", ["a", "b"], [0, 1], **kwargs)
    assert calls == [("b", 0)]
    assert again["a"]["metrics"] == study["a"]["metrics"]


def test_study_table_signs_only_differences():
    summary = report.summarize(_fake_results((50, 40, 60), (58, 50, 64), (55, 44, 63)))
    table = gain_study.format_study(gain_study.aggregate({"v": {0: summary}}))
    rows = {
        line.split("|")[1].strip(): line.split("|")[2].strip()
        for line in table.splitlines()
        if line.startswith("| ")
    }
    assert rows["SELSA: vid/mAP"] == "58.0" and rows["single frame: clean"] == "60.0"
    assert (
        rows["gain from references: degraded"] == "+6.0"
        and rows["SELSA - single frame: overall"] == "+8.0"
    )


def test_schedule_of_a_few_iterations_stays_valid():
    for iters, expected in ((4, "(3,)"), (2, "(1,)"), (1, "()"), (13, "(9, 11)")):
        assert dict(zip(*[iter(steps.schedule_opts(iters))] * 2))["SOLVER.STEPS"] == expected


# ------------------------------------------------------------------------------ a COCO-VID json pair
def test_coco_vid_pair_arguments_registration_and_summary(tmp_path, monkeypatch, capsys):
    """--train-json/--val-json/--image-root: argument checks, the options every train_net.py step
    gets (merged as train_net.py merges them, they register the pair and load it), summary.json."""
    import pytest
    from detectron2.config import get_cfg
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from fixtures_ilsvrc import make_ilsvrc_fixture

    from selsa_d2.config import add_selsa_config
    from selsa_d2.data import register_datasets_from_config, unregister_vid_dataset

    root = make_ilsvrc_fixture(str(tmp_path / "ILSVRC"))
    ann = tmp_path / "ann"
    assert (
        run_script(
            "datasets/prepare_imagenet_vid.py", "--root", root, "--out", ann, "--no-progress"
        ).returncode
        == 0
    )
    pair = [
        "--train-json",
        str(ann / "imagenet_vid_train.json"),
        "--val-json",
        str(ann / "imagenet_vid_val.json"),
        "--image-root",
        str(tmp_path / "ILSVRC" / "Data" / "VID"),
    ]
    out = ["--out", str(tmp_path / "out"), "--no-render"]

    for argv, message in (
        (pair[:2], "missing: --val-json, --image-root"),
        (["--dataset-root", root] + pair, "--dataset-root and --train-json / --val-json"),
    ):
        with pytest.raises(SystemExit):
            run_demo.parse_args(argv)
        assert message in capsys.readouterr().err

    c = run_demo.comparison_from_args(run_demo.parse_args(pair + out + ["SOLVER.BASE_LR", "0.01"]))
    assert c.dataset_dir is None and c.coco_vid.val_json == ann / "imagenet_vid_val.json"
    assert c.env().get("DETECTRON2_DATASETS") == os.environ.get("DETECTRON2_DATASETS")  # no link
    opts = [str(o) for o in c.common_opts()]
    assert opts[opts.index("MODEL.ROI_HEADS.NUM_CLASSES") + 1] == "30" and opts[-2:] == [
        "SOLVER.BASE_LR",
        "0.01",
    ]
    cfg = add_selsa_config(get_cfg())  # as train_net.py builds every step's config
    cfg.merge_from_file(str(steps.REPO / steps.SELSA_CONFIG))
    cfg.merge_from_list(opts)
    assert cfg.DATASETS.TRAIN == (comparison_dataset.JSON_TRAIN_NAME,) and cfg.DATASETS.TEST == (
        comparison_dataset.JSON_VAL_NAME,
    )
    try:
        assert register_datasets_from_config(cfg) == [
            comparison_dataset.JSON_TRAIN_NAME,
            comparison_dataset.JSON_VAL_NAME,
        ]
        assert len(DatasetCatalog.get(comparison_dataset.JSON_VAL_NAME)) == 3
        assert MetadataCatalog.get(comparison_dataset.JSON_TRAIN_NAME).image_root == str(
            tmp_path / "ILSVRC" / "Data" / "VID"
        )
    finally:
        for name in (comparison_dataset.JSON_TRAIN_NAME, comparison_dataset.JSON_VAL_NAME):
            unregister_vid_dataset(name)

    # main without training: the comparison it runs, and what summary.json records
    ran = []

    def fake_run(c, progress):
        ran.append(c)
        return report.summarize(_fake_results((50, 40, 60), (58, 50, 64), (55, 44, 63)), c)

    monkeypatch.setattr(run_demo, "run_comparison", fake_run)
    assert run_demo.main(pair + out) == 0
    assert ran[0].coco_vid == c.coco_vid and ran[0].budget == steps.Budget()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["run"]["dataset"] == {
        "train_json": str(ann / "imagenet_vid_train.json"),
        "val_json": str(ann / "imagenet_vid_val.json"),
        "image_root": str(tmp_path / "ILSVRC" / "Data" / "VID"),
    }
    assert "Results on demo_coco_vid_val" in capsys.readouterr().out

    # bad pairs stop before any step, naming the file
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"images": [], "categories": [], "annotations": []}))
    other = tmp_path / "other.json"
    other.write_text(
        json.dumps({"images": [], "categories": [{"id": 1, "name": "cat"}], "annotations": []})
    )
    for swap, message in (
        (str(tmp_path / "nope.json"), r"--val-json .*nope.json does not exist"),
        (str(empty), r"empty.json has no categories"),
        (str(other), r"imagenet_vid_train.json and .*other.json have different categories"),
    ):
        with pytest.raises(SystemExit, match=message):
            run_demo.main(pair[:3] + [swap] + pair[4:] + out)
    with pytest.raises(SystemExit, match="--image-root .*nowhere is not a directory"):
        run_demo.main(pair[:5] + [str(tmp_path / "nowhere")] + out)
    assert len(ran) == 1


def test_scripts_run_as_users_run_them():
    """tools/run_demo.py and tools/gain_study.py as commands (thin mains over
    selsa_d2.comparison): --help describes the job, a bad budget is a one-line usage error."""
    for script, job in (
        ("tools/run_demo.py", "single-frame Faster R-CNN vs SELSA"),
        ("tools/gain_study.py", "Seed x dataset-variant study"),
    ):
        proc = run_script(script, "--help")
        assert proc.returncode == 0 and job in proc.stdout, proc.stderr[-2000:]
        proc = run_script(script, "--shared-iters", "0")
        assert proc.returncode == 2
        assert "--shared-iters must be at least 1 (got 0)" in proc.stderr.splitlines()[-1]


def test_rendering_reads_the_dataset_the_steps_used(tmp_path):
    """``--dataset-root``: the in-process rendering registers the synthetic configs' names under
    the root the steps' train_net.py runs used (the linked folder), replacing a registration made
    at import under another $DETECTRON2_DATASETS."""
    from detectron2.data import DatasetCatalog

    from selsa_d2 import synthetic
    from selsa_d2.comparison.dataset import datasets_root_for, register_synthetic_dataset

    users = tmp_path / "my_vid"
    synthetic.generate(users, num_train_videos=1, num_val_videos=1, frames=3, size=(64, 48))
    root = datasets_root_for(users, tmp_path / "out")
    try:
        register_synthetic_dataset(root)
        files = [d["file_name"] for d in DatasetCatalog.get("synthetic_vid_val")]
        assert len(files) == 3
        assert all(os.path.realpath(f).startswith(str(users.resolve())) for f in files)
    finally:  # back to this process's default root, as the package registered it
        register_synthetic_dataset(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")))
