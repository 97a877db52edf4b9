"""The benchmark scripts run end to end on the tiny model and report ratios against the baseline
of the same run (structure and arithmetic; timings themselves are not asserted)."""

import json

import pytest
from repo_scripts import run_script
from tiny_model import torch_threads

from selsa_d2 import cpu_allocator
from selsa_d2.benchmarking import amp_check, inference_report, seq_nms, training
from selsa_d2.benchmarking import inference as bench_inference


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with torch_threads(1):
        yield


def _ratio_matches(ratio, ms, base_ms, step):
    """``ratio`` (from unrounded times, rounded to 4 places) against times rounded to ``step`` ms."""
    expected = ms / base_ms
    tolerance = expected * (step / 2 / ms + step / 2 / base_ms) + 1e-3
    return abs(ratio - expected) <= tolerance


def _check_ratio(row, baseline_ms, key, step=0.1):
    assert row[key] > 0
    assert _ratio_matches(row["ratio_vs_baseline"], row[key], baseline_ms, step), (row, baseline_ms)


def test_bench_inference_tiny(tmp_path):
    out = tmp_path / "inf.json"
    result = bench_inference.main(
        [
            "--tiny",
            "--frames",
            "4",
            "--refs",
            "1",
            "3",
            "--key-refs",
            "2",
            "--mem-frames",
            "4",
            "8",
            "--repeat",
            "2",
            "--recompute-frames",
            "2",
            "--e2e-frames",
            "3",
            "--json",
            str(out),
        ]
    )
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    assert {
        "benchmark",
        "date",
        "hardware",
        "settings",
        "baseline",
        "variants",
        "ref_sweep",
        "memory",
        "target",
    } <= set(data)
    hw = data["hardware"]
    assert hw["device"] == "cpu" and hw["torch_threads"] == 1 and hw["torch"] and hw["cpu"]

    base = data["baseline"]
    assert (
        base["name"] == "faster_rcnn"
        and base["ratio_vs_baseline"] == 1.0
        and base["frames_timed"] == 4
    )
    assert len(base["pass_ms_per_frame"]) == 2
    assert base["fps"] == pytest.approx(1000.0 / base["ms_per_frame"], rel=1e-2)
    variants = {v["name"]: v for v in data["variants"]}
    assert set(variants) == {"selsa_cached", "selsa_mmtracking", "selsa_full_recompute"}
    for row in list(variants.values()) + data["ref_sweep"]:
        _check_ratio(row, base["ms_per_frame"], "ms_per_frame")
        assert _ratio_matches(
            row["ratio_vs_baseline_median_based"],
            row["ms_per_frame_median_based"],
            base["ms_per_frame_median_based"],
            step=0.01,
        ), row
        assert len(row["pass_ms_per_frame"]) == 2
        assert row["ms_per_frame"] == pytest.approx(
            sorted(row["pass_ms_per_frame"])[0] / 2 + sorted(row["pass_ms_per_frame"])[1] / 2,
            abs=0.02,
        )

    cached, mmtracking = variants["selsa_cached"], variants["selsa_mmtracking"]
    full = variants["selsa_full_recompute"]
    assert (
        cached["refs"] == 2 and cached["frames_timed"] == 4 and cached["frames_computed"] == 4
    )  # once per frame
    assert not cached["extrapolated"] and mmtracking["extrapolated"] and full["extrapolated"]
    # backbone passes: mmtracking caches the references' (frames 0 and 3), not the key frame's
    assert mmtracking["frames_timed"] == 2 and mmtracking["frames_computed"] == 3
    # full recompute: every frame of the reference set {0, 3} + key, per key frame
    assert full["frames_timed"] == 2 and full["frames_computed"] == 2 + 3
    assert data["target"]["cached_ratio"] == cached["ratio_vs_baseline"]
    assert data["target"]["met"] == (cached["ratio_vs_baseline"] <= inference_report.TARGET_RATIO)
    assert data["target"]["cached_ratio_median_based"] == cached["ratio_vs_baseline_median_based"]
    # CPU memory from the separate untimed pass (malloc's bytes in use), for every main variant
    assert all(row["peak_call_mem_mb"] > 0 for row in [base, cached, mmtracking, full])
    assert hw["cpu_malloc"] == ("retain" if cpu_allocator.is_glibc() else "default")

    assert [r["refs"] for r in data["ref_sweep"]] == [1, 3]
    assert [r["peak_cache_frames"] for r in data["ref_sweep"]] == [2, 4]

    mem = data["memory"]
    assert [m["frames"] for m in mem] == [4, 8]
    for m in mem:
        assert m["frames_computed"] == m["frames"]
        assert 0 < m["peak_cache_frames"] <= m["cache_frames_bound"] == 3
        assert m["peak_cache_mb"] >= 0
    # bounded by the references, not the video length
    assert mem[0]["peak_cache_frames"] == mem[1]["peak_cache_frames"]
    assert data["mean_proposals_per_frame"] > 0

    e2e = data["end_to_end"]
    assert e2e["frames"] == 3 and e2e["default_predictor_ms_per_frame"] > 0
    assert _ratio_matches(
        e2e["ratio"],
        e2e["video_predictor_ms_per_frame"],
        e2e["default_predictor_ms_per_frame"],
        0.01,
    )
    assert data["target"]["end_to_end_ratio"] == e2e["ratio"]
    runs = e2e["runs_ms_per_frame"]
    assert len(e2e["ratio_per_repeat"]) == 1
    assert e2e["ratio_per_repeat"][0] == pytest.approx(
        runs["VideoPredictor.predict_video"][0] / runs["DefaultPredictor"][0], abs=1e-3
    )

    troi = data[
        "troi"
    ]  # Temporal RoI Align's per-key-frame cost: 20 RoIs x (2 refs + the key) maps of 4x6
    assert (troi["rois"], troi["maps"], troi["map_size"], troi["channels"]) == (20, 3, [4, 6], 32)
    assert troi["search_ms"] > 0 and troi["aggregate_ms"] > 0 and len(troi["search_ms_passes"]) == 2
    assert troi["search_gmacs"] == round(20 * 49 * 3 * 24 * 32 / 1e9, 3)


def test_bench_inference_troi_only(tmp_path, capsys):
    out = tmp_path / "troi.json"
    data = bench_inference.main(["--tiny", "--troi-only", "--troi-repeat", "1", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(data))
    assert data["benchmark"] == "inference_troi" and "baseline" not in data
    assert data["troi"]["maps"] == 3 and len(data["troi"]["aggregate_ms_passes"]) == 1
    assert "search (most similar RoI align)" in capsys.readouterr().out


def test_bench_train_tiny(tmp_path):
    out = tmp_path / "train.json"
    result = training.main(["--tiny", "--iters", "2", "--warmup", "0", "--json", str(out)])
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    assert data["benchmark"] == "train" and data["hardware"]["torch_threads"] == 1
    base = data["baseline"]
    assert (
        base["name"] == "faster_rcnn"
        and base["ratio_vs_baseline"] == 1.0
        and base["images_per_iter"] == 1
    )
    (selsa,) = data["variants"]
    assert selsa["name"] == "selsa_2refs" and selsa["refs"] == 2 and selsa["images_per_iter"] == 3
    for row in (base, selsa):
        assert len(row["iter_ms"]) == 2
        assert row["last_loss"] > 0
    _check_ratio(selsa, base["ms_per_iter"], "ms_per_iter")
    # measured in an extra untimed iteration each: 3 images need more than 1
    assert 0 < base["peak_iter_mem_mb"] < selsa["peak_iter_mem_mb"]


def test_presets_fill_only_unset_options():
    args = bench_inference.parse_args(["--quick", "--frames", "20"])
    assert args.frames == 20 and args.height == bench_inference.PRESETS["quick"]["height"]
    args = bench_inference.parse_args([])
    assert (args.height, args.width, args.frames, args.key_refs) == (600, 1000, 30, 14)
    assert args.refs == [1, 2, 4, 8, 14, 30] and args.mem_frames == [30, 90]
    assert training.parse_args([]).height == 600
    with pytest.raises(SystemExit):
        bench_inference.parse_args(["--tiny", "--quick"])


def test_check_amp_matching_and_tiny_run():
    import torch
    from detectron2.structures import Boxes, Instances

    a = Instances((50, 50))
    a.pred_boxes = Boxes(torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]]))
    a.scores = torch.tensor([0.9, 0.5])
    a.pred_classes = torch.tensor([1, 2])
    assert amp_check.match_detections(a, a, top=2, iou=0.9, score_tol=0.0)["matched"] == 1.0
    b = Instances((50, 50))
    b.pred_boxes = Boxes(torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]]))
    b.scores = torch.tensor([0.89, 0.5])
    b.pred_classes = torch.tensor([1, 3])  # second: other class
    m = amp_check.match_detections(a, b, top=2, iou=0.9, score_tol=0.02)
    assert m["matched"] == 0.5 and abs(m["max_score_diff"] - 0.01) < 1e-6
    assert amp_check.match_detections(a, b, top=2, iou=0.9, score_tol=0.001)["matched"] == 0.0
    # the script end to end on the tiny model (CPU bfloat16 autocast)
    result = amp_check.main(
        ["--tiny", "--frames", "2", "--refs", "2", "--top", "20", "--min-matched", "0.0"]
    )
    assert len(result["per_frame"]) == 2 and result["passed"]
    assert all(f["compared"] > 0 for f in result["per_frame"])


def test_mmtracking_policy_detects_like_the_cached_engine():
    """The engine's mmtracking policy (the benchmark's selsa_mmtracking) recomputes per key frame
    what the cached engine holds: same detections, more backbone passes than frames only by the
    references computed ahead."""
    import torch
    from tiny_model import build_tiny_model, results_close

    from selsa_d2.data.sampling import TestReferenceSampler as RefSampler
    from selsa_d2.modeling import VideoInferenceEngine
    from selsa_d2.testing import synthetic_video, video_inputs

    frames = synthetic_video(6, 64, 96, seed=3)
    sampler = RefSampler("offline", "adaptive_stride", num_refs=3)
    model = build_tiny_model(seed=0)
    model.video_engine.ref_sampler = sampler
    inputs = video_inputs(frames, sampler)
    policy = VideoInferenceEngine(model, sampler, cache="feature_maps")
    with torch.no_grad():
        want = [o["instances"] for o in model.inference(inputs)]
        got = [policy.process([d])[0]["instances"] for d in inputs]
    for t, (a, b) in enumerate(zip(got, want)):
        assert results_close(a, b, atol=1e-4) is None, f"frame {t}: {results_close(a, b)}"
    # one backbone pass per key frame plus the two references supplied ahead with frame 0 (2 and 5)
    assert policy.frames_computed == len(frames) + 2


def test_bench_seq_nms_small(tmp_path, capsys):
    """The Seq-NMS benchmark: both implementations agree, the JSON has the reported figures."""
    out = tmp_path / "seq_nms.json"
    result = seq_nms.main(
        [
            "--frames",
            "12",
            "--ref-frames",
            "6",
            "--boxes",
            "40",
            "--classes",
            "3",
            "--json",
            str(out),
        ]
    )
    assert result["outputs_equal_on_subset"] is True
    data = json.loads(out.read_text())
    assert data["subset_frames"] == 6 and data["vectorised_cpu_seconds"] > 0
    assert data["ratio_loop_over_vectorised"] == pytest.approx(
        data["subset_loop_cpu_seconds"] / data["subset_vectorised_cpu_seconds"]
    )
    assert "loop (FGFA transliteration)" in capsys.readouterr().out


def test_benchmark_scripts_run_as_users_run_them():
    """The scripts in benchmarks/ are thin mains over selsa_d2.benchmarking: each starts and
    describes its benchmark (the runs themselves are tested in-process above)."""
    for script, words in (
        ("benchmarks/bench_inference.py", "Per-frame video inference time and memory"),
        ("benchmarks/bench_train.py", "Training iteration time and peak memory"),
        ("benchmarks/check_amp.py", "match float32"),
        ("benchmarks/bench_seq_nms.py", "Seq-NMS speed"),
    ):
        proc = run_script(script, "--help")
        assert proc.returncode == 0 and words in " ".join(proc.stdout.split()), proc.stderr[-2000:]
