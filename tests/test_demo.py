"""demo/demo.py on a short synthetic clip with a tiny randomly initialised SELSA model."""

import collections.abc
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from tiny_model import build_tiny_model, tiny_selsa_cfg

from selsa_d2 import video_demo
from selsa_d2.video_demo import loop as demo_loop
from selsa_d2.video_io import VideoFileFrames

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "demo", "demo.py")
H, W, N = 96, 128, 8
NUM_CLASSES = 4


def _frame(i, h=H, w=W):
    img = np.full((h, w, 3), 60, np.uint8)
    x = 10 + 8 * i
    cv2.rectangle(img, (x, 30), (x + 40, 70), (30, 200, 240), -1)
    return img


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """(config yaml, random weights .pth) of a tiny SELSA model with NUM_CLASSES classes."""
    from detectron2.checkpoint import DetectionCheckpointer

    d = tmp_path_factory.mktemp("tiny_model")
    cfg = tiny_selsa_cfg(num_classes=NUM_CLASSES)
    cfg.DATASETS.TEST = ()  # no dataset metadata: labels are class ids unless a test adds one
    DetectionCheckpointer(build_tiny_model(cfg, seed=0), save_dir=str(d)).save("random")
    yaml_path = d / "tiny.yaml"
    yaml_path.write_text(cfg.dump())
    return str(yaml_path), str(d / "random.pth")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("clip")
    path = str(d / "clip.mp4")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 5, (W, H))
    for i in range(N):
        writer.write(_frame(i))
    writer.release()
    return path


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("frames") / "my_frames"
    d.mkdir()
    for i in range(N):  # names that sort wrongly as plain strings: 1, 10, 2, ...
        cv2.imwrite(str(d / f"f{i + 1}.png"), _frame(i))
    return str(d)


def _args(model_files, *extra, mode="offline"):
    cfg, weights = model_files
    return [
        "--config-file",
        cfg,
        *extra,
        "--confidence-threshold",
        "0.0",
        "--mode",
        mode,
        "--opts",
        "MODEL.WEIGHTS",
        weights,
        "TEST.DETECTIONS_PER_IMAGE",
        "5",  # fewer labels to draw
        "INPUT.MIN_SIZE_TEST",
        "64",
    ]


def _video_info(path):
    cap = cv2.VideoCapture(path)
    assert cap.isOpened(), path
    n, shapes = 0, set()
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n += 1
        shapes.add(frame.shape)
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return n, shapes, fps


def _check_json(path, num_frames, class_names=None):
    with open(path) as f:
        records = json.load(f)
    assert [r["frame"] for r in records] == list(range(num_frames))
    for r in records:
        assert isinstance(r["detections"], list)
        for d in r["detections"]:
            x1, y1, x2, y2 = d["bbox"]
            assert 0 <= x1 <= x2 <= r["width"] and 0 <= y1 <= y2 <= r["height"]
            assert 0.0 <= d["score"] <= 1.0
            assert 0 <= d["category_id"] < NUM_CLASSES
            names = class_names or [str(i) for i in range(NUM_CLASSES)]  # no metadata: class ids
            assert d["category"] == names[d["category_id"]]
    return records


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_video_file(model_files, clip, tmp_path, mode):
    out = tmp_path / "out.mp4"
    assert (
        video_demo.main(_args(model_files, "--video-input", clip, "--output", str(out), mode=mode))
        == 0
    )
    n, shapes, fps = _video_info(str(out))
    assert n == N and shapes == {(H, W, 3)}
    assert fps == pytest.approx(5.0)  # the input's frame rate
    records = _check_json(str(tmp_path / "out.json"), N)
    # threshold 0 with random weights: the model keeps detections on every frame
    assert all(len(r["detections"]) > 0 for r in records)


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_frames_dir_output_dir(model_files, frames_dir, tmp_path, mode):
    out_dir = tmp_path / "results"
    out_dir.mkdir()
    video_demo.main(_args(model_files, "--input", frames_dir, "--output", str(out_dir), mode=mode))
    n, shapes, fps = _video_info(str(out_dir / "my_frames.mp4"))
    assert n == N and shapes == {(H, W, 3)} and fps == pytest.approx(10.0)
    records = _check_json(str(out_dir / "my_frames.json"), N)
    # natural order: f1, f2, ..., f8
    assert [os.path.basename(r["file_name"]) for r in records] == [
        f"f{i + 1}.png" for i in range(N)
    ]


def test_json_option(model_files, clip, tmp_path):
    """--json puts the detections elsewhere (its folder is created)."""
    video_demo.main(
        _args(
            model_files,
            "--video-input",
            clip,
            "--output",
            str(tmp_path / "a.mp4"),
            "--json",
            str(tmp_path / "det" / "a.json"),
        )
    )
    assert os.path.isfile(tmp_path / "det" / "a.json")


def test_glob_and_trailing_opts(model_files, frames_dir, tmp_path):
    cfg, weights = model_files
    out = tmp_path / "g.mp4"
    video_demo.main(
        [
            "--config-file",
            cfg,
            "--input",
            os.path.join(frames_dir, "f[1-3].png"),
            "--output",
            str(out),
            "MODEL.WEIGHTS",
            weights,
        ]
    )
    assert _video_info(str(out))[0] == 3
    _check_json(str(tmp_path / "g.json"), 3)


def test_size_change_resized_to_first_frame(model_files, tmp_path):
    d = tmp_path / "mixed"
    d.mkdir()
    for i in range(4):
        h, w = (H, W) if i < 2 else (2 * H, 2 * W)  # frames 2, 3 twice as large
        cv2.imwrite(str(d / f"{i:03d}.jpg"), _frame(i, h, w))
    for mode in ("offline", "online"):
        out = tmp_path / f"mixed_{mode}.mp4"
        video_demo.main(_args(model_files, "--input", str(d), "--output", str(out), mode=mode))
        n, shapes, _ = _video_info(str(out))
        assert n == 4 and shapes == {(H, W, 3)}
        records = _check_json(str(tmp_path / f"mixed_{mode}.json"), 4)
        assert [(r["height"], r["width"]) for r in records] == [(H, W)] * 2 + [(2 * H, 2 * W)] * 2
        assert [r.get("resized", False) for r in records] == [False, False, True, True]
        # boxes of the resized frames are given in the stored frame's coordinates
        assert max(d["bbox"][2] for r in records[2:] for d in r["detections"]) > W


def test_bad_inputs(model_files, tmp_path):
    def error_of(*argv):
        with pytest.raises(SystemExit) as e:
            video_demo.main(_args(model_files, *argv, "--output", str(tmp_path / "o.mp4")))
        assert e.value.code not in (0, None)
        return str(e.value.code)

    missing = str(tmp_path / "nope.mp4")
    assert "video not found" in error_of("--video-input", missing) and missing in error_of(
        "--video-input", missing
    )

    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 100)
    msg = error_of("--video-input", str(garbage))
    assert str(garbage) in msg and ("cannot open video" in msg or "no readable frames" in msg)

    empty = tmp_path / "empty.mp4"
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"mp4v"), 10, (W, H))
    writer.release()  # a video with zero frames
    msg = error_of("--video-input", str(empty))
    assert str(empty) in msg and ("cannot open video" in msg or "no readable frames" in msg)

    (tmp_path / "empty_dir").mkdir()
    assert "no image files" in error_of("--input", str(tmp_path / "empty_dir"))
    assert "no frames found" in error_of("--input", str(tmp_path / "none_*.jpg"))
    one = tmp_path / "one.png"
    cv2.imwrite(str(one), _frame(0))
    with pytest.raises(SystemExit, match="give a video file name"):
        video_demo.main(
            _args(model_files, "--input", str(one), "--output", str(tmp_path / "noext"))
        )
    # nothing was started, so nothing was written
    assert not os.path.exists(tmp_path / "o.mp4") and not os.path.exists(tmp_path / "o.json")


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_unreadable_frame_midway_finalises_outputs(model_files, tmp_path, mode):
    d = tmp_path / "broken"
    d.mkdir()
    for i in range(5):
        cv2.imwrite(str(d / f"{i:03d}.jpg"), _frame(i))
    (d / "003.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "broken.mp4"
    with pytest.raises(SystemExit) as e:
        video_demo.main(_args(model_files, "--input", str(d), "--output", str(out), mode=mode))
    assert str(d / "003.jpg") in str(e.value.code)
    if mode == "offline":  # the error comes before the first frame is done: nothing was started
        assert not os.path.exists(out) and not os.path.exists(tmp_path / "broken.json")
        return
    # online: the frames done before the error are in both outputs, and the video is playable
    with open(tmp_path / "broken.json") as f:
        records = json.load(f)
    assert [r["frame"] for r in records] == [0, 1, 2]
    assert _video_info(str(out))[0] == 3


def test_cli_subprocess(model_files, clip, tmp_path):
    out_dir = tmp_path / "cli_out"
    proc = subprocess.run(
        [
            sys.executable,
            DEMO,
            *_args(
                model_files, "--video-input", clip, "--output", str(out_dir) + "/", mode="online"
            ),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert _video_info(str(out_dir / "clip.mp4"))[0] == N
    _check_json(str(out_dir / "clip.json"), N)
    assert "frame/s" in proc.stderr  # tqdm progress bar with frames per second

    bad = subprocess.run(
        [
            sys.executable,
            DEMO,
            *_args(model_files, "--video-input", str(tmp_path / "x.avi"), "--output", str(out_dir)),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert bad.returncode != 0 and "video not found" in bad.stderr and "x.avi" in bad.stderr


def test_class_names_from_dataset_metadata(model_files, clip, tmp_path):
    from detectron2.data import MetadataCatalog

    names = ["cat", "dog", "car", "bus"]
    MetadataCatalog.get("selsa_demo_test_names").thing_classes = names
    out = tmp_path / "named.mp4"
    video_demo.main(
        _args(model_files, "--video-input", clip, "--output", str(out), mode="online")
        + ["DATASETS.TEST", "('selsa_demo_test_names',)"]
    )
    records = _check_json(str(tmp_path / "named.json"), N, class_names=names)
    assert {d["category"] for r in records for d in r["detections"]} <= set(names)


def test_video_frames_lazy_random_access(clip):
    """Offline mode's frame sequence: exact frames in any access order, a bounded cache."""
    src = VideoFileFrames(clip, cache_size=2)
    assert isinstance(src, collections.abc.Sequence)  # VideoPredictor would list() anything else
    sequential = list(src)
    assert len(src) == N == len(sequential)
    for i in [5, 2, 7, 0, 3, 3, 6, 1]:  # forward skips and backward jumps
        np.testing.assert_array_equal(src[i], sequential[i])
        assert len(src._cache) <= 2
    with pytest.raises(IndexError):
        src[N]
    src.close()


# ------------------------------------------------------------------ issue 13: no lost input, no silent wrong result
def _refused(model_files, *argv, match, mode="offline"):
    with pytest.raises(SystemExit) as e:
        video_demo.main(_args(model_files, *argv, mode=mode))
    assert e.value.code not in (0, None) and match in str(e.value.code), e.value.code
    return str(e.value.code)


def _snapshot(paths):
    return {p: open(p, "rb").read() for p in paths}


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_output_overwriting_the_input_video_is_refused(
    model_files, clip, tmp_path, mode, monkeypatch
):
    before = _snapshot([clip])
    clip_dir = os.path.dirname(clip)
    _refused(
        model_files, "--video-input", clip, "--output", clip, match="is an input file", mode=mode
    )
    _refused(
        model_files,
        "--video-input",
        clip,
        "--output",
        clip_dir,
        match="is an input file",
        mode=mode,
    )
    monkeypatch.chdir(clip_dir)  # the issue's `--output .`
    _refused(
        model_files, "--video-input", clip, "--output", ".", match="is an input file", mode=mode
    )
    # through a symbolic link, and the JSON onto the input
    os.symlink(clip, tmp_path / "link.mp4")
    _refused(
        model_files,
        "--video-input",
        clip,
        "--output",
        str(tmp_path / "link.mp4"),
        match="is an input file",
    )
    _refused(
        model_files,
        "--video-input",
        clip,
        "--output",
        str(tmp_path / "o.mp4"),
        "--json",
        clip,
        match="ending in .json",
    )
    assert _snapshot([clip]) == before
    assert not os.path.exists(tmp_path / "o.mp4")


def test_output_inside_the_input_frames_is_refused(model_files, frames_dir, tmp_path):
    frames = sorted(os.path.join(frames_dir, f) for f in os.listdir(frames_dir))
    before = _snapshot(frames)
    first = os.path.join(frames_dir, "f1.png")
    _refused(
        model_files,
        "--input",
        frames_dir,
        "--output",
        first,
        match="give a video file name ending in",
    )
    _refused(
        model_files,
        "--input",
        frames_dir,
        "--output",
        os.path.join(frames_dir, "vis.mp4"),
        match="inside the input frames folder",
    )
    _refused(
        model_files,
        "--input",
        frames_dir,
        "--output",
        frames_dir + "/",
        match="inside the input frames folder",
    )
    # a list of frames: the JSON may not replace one of them
    _refused(
        model_files,
        "--input",
        *frames[:3],
        "--output",
        str(tmp_path / "v.mp4"),
        "--json",
        frames[0],
        match="ending in .json",
    )
    renamed = tmp_path / "frame.json"
    cv2.imwrite(str(tmp_path / "a.png"), _frame(0))
    os.rename(tmp_path / "a.png", renamed)  # an image named .json, given as input
    _refused(
        model_files,
        "--input",
        str(renamed),
        "--output",
        str(tmp_path / "frame.mp4"),
        match="is an input file",
    )
    assert _snapshot(frames) == before and sorted(os.listdir(frames_dir)) == sorted(
        os.path.basename(f) for f in frames
    )


@pytest.mark.parametrize("name", ["vis.png", "vis.jpg", "vis.gif", "vis.webm", "vis.json"])
def test_output_needs_a_video_container_the_writer_supports(model_files, clip, tmp_path, name):
    _refused(
        model_files,
        "--video-input",
        clip,
        "--output",
        str(tmp_path / name),
        match="give a video file name",
    )
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("ext", video_demo.VIDEO_CONTAINERS)
def test_every_accepted_container_is_a_readable_video(model_files, clip, tmp_path, ext):
    out = tmp_path / f"out{ext}"
    video_demo.main(_args(model_files, "--video-input", clip, "--output", str(out), mode="online"))
    assert _video_info(str(out))[0] == N


def test_json_equal_to_the_output_video_is_refused(model_files, clip, tmp_path):
    out = tmp_path / "s.mp4"
    out.write_bytes(b"previous result")
    _refused(
        model_files,
        "--video-input",
        clip,
        "--output",
        str(out),
        "--json",
        str(out),
        match="ending in .json",
    )
    hard = tmp_path / "s.json"
    os.link(out, hard)  # the same file under a .json name
    _refused(
        model_files,
        "--video-input",
        clip,
        "--output",
        str(out),
        "--json",
        str(hard),
        match="same file",
    )
    assert out.read_bytes() == b"previous result"


@pytest.mark.parametrize("which", ["output", "json"])
def test_unwritable_outputs_fail_before_inference(model_files, clip, tmp_path, monkeypatch, which):
    """`/proc/x.mp4` used to fail only after all offline inference (and `--json /proc/x.json`
    after the video was written): now before the model is even built."""

    def no_model(*args, **kwargs):
        raise AssertionError("the model was built although an output cannot be written")

    monkeypatch.setattr(demo_loop, "VideoPredictor", no_model)
    argv = (
        ["--output", "/proc/x.mp4"]
        if which == "output"
        else ["--output", str(tmp_path / "v.mp4"), "--json", "/proc/x.json"]
    )
    msg = _refused(model_files, "--video-input", clip, *argv, match="cannot write into /proc")
    assert "/proc/x" in msg
    assert not os.path.exists(tmp_path / "v.mp4")
    (tmp_path / "dir.json").mkdir()
    _refused(
        model_files,
        "--video-input",
        clip,
        "--output",
        str(tmp_path / "v.mp4"),
        "--json",
        str(tmp_path / "dir.json"),
        match="is a directory",
    )


@pytest.mark.parametrize("value", ["2", "-0.1", "nan", "inf"])
def test_confidence_threshold_outside_0_1_is_refused(model_files, clip, tmp_path, value, capsys):
    argv = _args(model_files, "--video-input", clip, "--output", str(tmp_path / "o.mp4"))
    argv[argv.index("--confidence-threshold") + 1] = value
    with pytest.raises(SystemExit) as e:
        video_demo.main(argv)
    assert e.value.code == 2
    assert f"must be a number in [0, 1], got {value}" in capsys.readouterr().err


def test_sigterm_in_online_mode_finalises_the_outputs(model_files, clip, tmp_path, monkeypatch):
    """SIGTERM (e.g. `timeout`, a job scheduler) after 3 frames: a playable video of those frames
    and their JSON, exit status 143; the handler is removed afterwards."""
    import signal

    frames_seen = []
    original_draw = demo_loop.draw

    def draw_then_terminate(frame, instances, metadata):
        frames_seen.append(1)
        if len(frames_seen) == 4:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while frame 3 is drawn
        return original_draw(frame, instances, metadata)

    monkeypatch.setattr(demo_loop, "draw", draw_then_terminate)
    out = tmp_path / "t.mp4"
    before = signal.getsignal(signal.SIGTERM)
    assert (
        video_demo.main(
            _args(model_files, "--video-input", clip, "--output", str(out), mode="online")
        )
        == 143
    )
    assert signal.getsignal(signal.SIGTERM) == before
    n, shapes, _ = _video_info(str(out))
    records = _check_json(str(tmp_path / "t.json"), n)
    assert n == 3 and len(records) == 3 and shapes == {(H, W, 3)}


def test_sigterm_during_offline_inference_stops_at_the_next_frame(
    model_files, clip, tmp_path, monkeypatch
):
    """SIGTERM while the offline pass runs the model: inference stops after that frame (not at
    the end of the video), nothing was drawn yet so nothing is written, exit status 143."""
    import signal

    forwards = []

    class SignalledPredictor(demo_loop.VideoPredictor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)

            def terminate_on_frame_2(module, inputs, outputs):
                forwards.append(1)
                if len(forwards) == 2:
                    os.kill(os.getpid(), signal.SIGTERM)

            self.model.register_forward_hook(terminate_on_frame_2)

    monkeypatch.setattr(demo_loop, "VideoPredictor", SignalledPredictor)
    out = tmp_path / "o.mp4"
    before = signal.getsignal(signal.SIGTERM)
    argv = _args(model_files, "--video-input", clip, "--output", str(out), mode="offline")
    assert video_demo.main(argv) == 143
    assert signal.getsignal(signal.SIGTERM) == before
    assert len(forwards) == 2 < N
    assert not out.exists() and not (tmp_path / "o.json").exists()


def test_sigterm_subprocess(model_files, tmp_path):
    """The same with a real signal from outside, once the progress bar shows 2 frames done."""
    import re
    import signal
    import time

    d = tmp_path / "long"
    d.mkdir()
    for i in range(200):
        cv2.imwrite(str(d / f"{i:04d}.png"), _frame(i % N))
    out, log = tmp_path / "long.mp4", tmp_path / "stderr.txt"
    with open(log, "w") as err_file:
        proc = subprocess.Popen(
            [
                sys.executable,
                DEMO,
                *_args(model_files, "--input", str(d), "--output", str(out), mode="online"),
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=err_file,
            text=True,
        )
        try:
            deadline = time.time() + 240
            while time.time() < deadline and proc.poll() is None:
                done = re.findall(
                    r"\b(\d+)/200 \[", log.read_text()
                )  # tqdm's "n/total [elapsed..."
                if done and int(done[-1]) >= 2:
                    break
                time.sleep(0.1)
            assert proc.poll() is None, log.read_text()[-3000:]
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    err = log.read_text()
    assert proc.returncode == 143, err[-3000:]
    assert "stopped by SIGTERM" in err
    n = _video_info(str(out))[0]
    assert 2 <= n < 200
    assert len(_check_json(str(tmp_path / "long.json"), n)) == n


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_gpu_falls_back_to_cpu(model_files, clip, tmp_path, caplog):
    import logging

    logging.getLogger("selsa_d2").addHandler(caplog.handler)
    try:
        out = tmp_path / "cpu.mp4"
        argv = _args(model_files, "--video-input", clip, "--output", str(out), mode="online") + [
            "MODEL.DEVICE",
            "cuda",
        ]
        assert video_demo.main(argv) == 0
    finally:
        logging.getLogger("selsa_d2").removeHandler(caplog.handler)
    assert "CUDA is not available: running on the CPU" in caplog.text
    assert _video_info(str(out))[0] == N


def _truncated_video(tmp_path, frames=20):
    """An AVI (decodable up to where it was cut) of random frames, cut in half: the container
    still says `frames` frames."""
    path = tmp_path / "cut.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (W, H))
    rng = np.random.RandomState(0)
    for _ in range(frames):
        writer.write(rng.randint(0, 255, (H, W, 3)).astype(np.uint8))
    writer.release()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return str(path)


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_truncated_video_warns_with_the_counts(model_files, tmp_path, caplog, mode):
    import logging
    import re

    path = _truncated_video(tmp_path)
    logging.getLogger("selsa_d2").addHandler(caplog.handler)
    try:
        video_demo.main(
            _args(
                model_files, "--video-input", path, "--output", str(tmp_path / "o.mp4"), mode=mode
            )
        )
    finally:
        logging.getLogger("selsa_d2").removeHandler(caplog.handler)
    found = re.search(r"decoding ended after (\d+) frames; the file says 20", caplog.text)
    assert found and path in caplog.text, caplog.text[-2000:]
    n = int(found.group(1))
    assert 0 < n < 20 and _video_info(str(tmp_path / "o.mp4"))[0] == n
    assert caplog.text.count("decoding ended after") == 1


@pytest.mark.parametrize(
    "weights, message",
    [
        ("nope.pth", "file not found"),
        ("random.pth", "not a readable checkpoint"),
        ("dir", "is a directory"),
        ("pickle.pkl", "not a model checkpoint"),
        ("", "MODEL.WEIGHTS is empty"),
    ],
)
def test_unusable_weights_one_line(model_files, clip, tmp_path, weights, message):
    import pickle

    (tmp_path / "random.pth").write_bytes(np.random.RandomState(1).bytes(2048))
    (tmp_path / "dir").mkdir()
    with open(tmp_path / "pickle.pkl", "wb") as f:
        pickle.dump(["not", "weights"], f)
    path = str(tmp_path / weights) if weights else ""
    argv = _args(model_files, "--video-input", clip, "--output", str(tmp_path / "o.mp4"))
    argv[argv.index("MODEL.WEIGHTS") + 1] = path
    with pytest.raises(SystemExit) as e:
        video_demo.main(argv)
    msg = str(e.value.code)
    assert msg.startswith("demo.py: error: ") and message in msg and path in msg and "\n" not in msg
    assert not os.path.exists(tmp_path / "o.mp4")


def test_partial_weights_refused_unless_allowed(model_files, clip, tmp_path):
    """A 3-class checkpoint in the 4-class model: the classifier would be random."""
    from detectron2.checkpoint import DetectionCheckpointer

    DetectionCheckpointer(
        build_tiny_model(tiny_selsa_cfg(num_classes=3)), save_dir=str(tmp_path)
    ).save("three")
    argv = _args(
        model_files, "--video-input", clip, "--output", str(tmp_path / "o.mp4"), mode="online"
    )
    argv[argv.index("MODEL.WEIGHTS") + 1] = str(tmp_path / "three.pth")
    with pytest.raises(SystemExit, match="roi_heads.box_predictor.cls_score"):
        video_demo.main(argv)
    assert video_demo.main(argv + ["TEST.ALLOW_MISSING_WEIGHTS", "True"]) == 0
    assert _video_info(str(tmp_path / "o.mp4"))[0] == N
