"""Tests for the synthetic generator (selsa_d2.synthetic, datasets/make_synthetic_vid.py): layout, determinism, annotations, lists, degradations, re-runs."""

import hashlib
import json
import logging
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest

import selsa_d2.synthetic as msv
from selsa_d2.synthetic import catalog, ilsvrc_writer, plan, render

_SCRIPT = Path(__file__).resolve().parents[1] / "datasets" / "make_synthetic_vid.py"


def _cli(argv) -> subprocess.CompletedProcess:
    """Run the command line (datasets/make_synthetic_vid.py) in a subprocess."""
    return subprocess.run(
        [sys.executable, str(_SCRIPT), *argv], capture_output=True, text=True, check=False
    )


SMALL = dict(
    num_train_videos=3, num_val_videos=2, frames=8, size=(96, 64), seed=3, degraded_fraction=0.4
)
ALL_CLASSES = [c.name for c in msv.CLASS_CATALOG]


def _video_dirs(root: Path, split: str, n: int):
    return [msv.video_relpath(split, i) for i in range(n)]


def _all_files(root: Path):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _digest(root: Path):
    return {rel: hashlib.sha256((root / rel).read_bytes()).hexdigest() for rel in _all_files(root)}


def _parse(xml_path: Path):
    root = ET.parse(xml_path).getroot()
    size = root.find("size")
    objs = []
    for o in root.findall("object"):
        b = o.find("bndbox")
        objs.append(
            {
                "trackid": int(o.find("trackid").text),
                "name": o.find("name").text,
                "box": tuple(int(b.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")),
                "occluded": int(o.find("occluded").text),
                "generated": int(o.find("generated").text),
            }
        )
    degr_el = root.find("degradations")
    degr = [d for d in (degr_el.text or "").split(",") if d]
    return {
        "folder": root.find("folder").text,
        "filename": root.find("filename").text,
        "width": int(size.find("width").text),
        "height": int(size.find("height").text),
        "objects": objs,
        "degradations": degr,
        "has_degradations_element": degr_el is not None,
    }


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn") / "synthetic_vid"
    return msv.generate(out, classes=ALL_CLASSES, **SMALL)


def test_layout_is_exactly_raw_ilsvrc(small_dataset):
    root = small_dataset
    n_train, n_val, frames = SMALL["num_train_videos"], SMALL["num_val_videos"], SMALL["frames"]
    expected = set()
    for split, n in (("train", n_train), ("val", n_val)):
        for rel in _video_dirs(root, split, n):
            for f in range(frames):
                expected.add(f"Data/VID/{rel}/{f:06d}.JPEG")
                expected.add(f"Annotations/VID/{rel}/{f:06d}.xml")
    expected |= {
        "Lists/VID_train_15frames.txt",
        "Lists/VID_val_videos.txt",
        "classes.txt",
        "synthetic_args.json",
    }
    assert set(_all_files(root)) == expected
    assert (
        msv.video_relpath("train", 0) == "train/ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000"
    )
    assert msv.video_relpath("val", 7) == "val/ILSVRC2015_val_00000007"
    lines = (root / "classes.txt").read_text().splitlines()
    assert lines == [f"{c.wnid} {c.name}" for c in msv.CLASS_CATALOG]
    assert all(line.split()[0].startswith("syn") and len(line.split()) == 2 for line in lines)
    for rel in _video_dirs(root, "train", n_train)[:1]:
        img = cv2.imread(str(root / "Data/VID" / rel / "000000.JPEG"))
        assert img.shape == (64, 96, 3)


def test_same_seed_identical_bytes_different_seed_differs(tmp_path, small_dataset):
    a = msv.generate(tmp_path / "a", classes=ALL_CLASSES, **SMALL)
    assert _digest(a) == _digest(small_dataset)
    b = msv.generate(tmp_path / "b", classes=ALL_CLASSES, **dict(SMALL, seed=SMALL["seed"] + 1))
    da, db = _digest(a), _digest(b)
    jpegs = [k for k in da if k.endswith(".JPEG")]
    assert sum(da[k] != db[k] for k in jpegs) == len(jpegs)
    # Val videos do not depend on how many train videos there are.
    c = msv.generate(tmp_path / "c", classes=ALL_CLASSES, **dict(SMALL, num_train_videos=1))
    dc = _digest(c)
    val_keys = [k for k in da if "/val/" in k]
    assert val_keys and all(dc[k] == da[k] for k in val_keys)


def test_annotations_parse_and_are_consistent(small_dataset):
    root = small_dataset
    wnids = {line.split()[0] for line in (root / "classes.txt").read_text().splitlines()}
    frames, p = SMALL["frames"], SMALL["degraded_fraction"]
    total_deg = total = 0
    for split, n in (("train", SMALL["num_train_videos"]), ("val", SMALL["num_val_videos"])):
        for rel in _video_dirs(root, split, n):
            track_class = {}
            n_objects = 0
            degraded_flags = []
            for f in range(frames):
                ann = _parse(root / "Annotations/VID" / rel / f"{f:06d}.xml")
                assert ann["folder"] == rel.split("/", 1)[1]
                assert ann["filename"] == f"{f:06d}"
                assert (ann["width"], ann["height"]) == SMALL["size"]
                assert ann["has_degradations_element"]
                assert set(ann["degradations"]) <= set(msv.DEGRADATION_NAMES)
                ids = [o["trackid"] for o in ann["objects"]]
                assert len(ids) == len(set(ids)), "track ids must be distinct within a frame"
                for o in ann["objects"]:
                    x0, y0, x1, y1 = o["box"]
                    assert 0 <= x0 < x1 <= ann["width"] - 1 and 0 <= y0 < y1 <= ann["height"] - 1, o
                    assert x1 - x0 + 1 >= render.MIN_BOX_SIDE and y1 - y0 + 1 >= render.MIN_BOX_SIDE
                    assert o["name"] in wnids
                    assert o["trackid"] in (0, 1, 2)
                    assert o["generated"] == 0 and o["occluded"] in (0, 1)
                    # A track keeps its class for the whole video.
                    assert track_class.setdefault(o["trackid"], o["name"]) == o["name"]
                n_objects += len(ann["objects"])
                degraded_flags.append(bool(ann["degradations"]))
            assert n_objects > 0, f"{rel} has no annotated objects"
            assert sum(degraded_flags) == int(round(p * frames))
            total_deg += sum(degraded_flags)
            total += frames
    assert abs(total_deg / total - p) <= 0.1


def test_degradation_records_over_a_larger_draw():
    """Over many videos: the requested fraction, contiguous stretches, and the recorded kinds."""
    classes = msv.resolve_classes(ALL_CLASSES)
    fractions, stretch_lengths, kinds_seen, occl_flags = [], [], set(), []
    for i in range(40):
        rs = np.random.RandomState([11, 0, i])
        spec = msv.make_video_spec(rs, 96, 64, 30, len(classes), classes, 0.4)
        flags = np.zeros(30, bool)
        for s in spec.stretches:
            assert not flags[s.start : s.stop].any()
            flags[s.start : s.stop] = True
            stretch_lengths.append(s.stop - s.start)
            kinds_seen |= set(s.kinds)
            # Every stretch erases texture (a blur) and hue (desaturation).
            assert {"motion_blur", "defocus"} & set(s.kinds) and "desaturate" in s.kinds
        fractions.append(flags.mean())
        if any("occlusion" in s.kinds for s in spec.stretches):
            for _, anns, degr in msv.render_video(spec, classes, degrade=False):
                if "occlusion" in degr:
                    occl_flags += [a["occluded"] for a in anns]
    assert np.allclose(fractions, 0.4)
    assert max(stretch_lengths) <= 8 and min(stretch_lengths) >= 2
    assert kinds_seen == set(msv.DEGRADATION_NAMES)
    assert occl_flags and np.mean(occl_flags) > 0.8


def test_list_files_match_frames_on_disk(small_dataset, tmp_path):
    root = small_dataset
    frames = SMALL["frames"]
    train = [
        line.split(" ") for line in (root / "Lists/VID_train_15frames.txt").read_text().splitlines()
    ]
    by_video = {}
    for video, one, idx, num in train:
        assert one == "1" and int(num) == frames
        assert (root / "Data/VID" / video / f"{int(idx):06d}.JPEG").is_file()
        assert (root / "Annotations/VID" / video / f"{int(idx):06d}.xml").is_file()
        by_video.setdefault(video, []).append(int(idx))
    assert sorted(by_video) == _video_dirs(root, "train", SMALL["num_train_videos"])
    # Fewer frames than 15: every frame is listed once.
    assert all(v == list(range(frames)) for v in by_video.values())
    val = [line.split(" ") for line in (root / "Lists/VID_val_videos.txt").read_text().splitlines()]
    assert [v[0] for v in val] == _video_dirs(root, "val", SMALL["num_val_videos"])
    assert [int(v[1]) for v in val] == [1 + i * frames for i in range(len(val))]
    assert all(v[2] == "0" and int(v[3]) == frames for v in val)
    for v in val:
        assert len(list((root / "Data/VID" / v[0]).glob("*.JPEG"))) == frames

    # Longer videos: 15 key frames spread evenly, as in ILSVRC (300 frames -> 10, 30, ..., 290).
    assert msv.key_frame_indices(300) == list(range(10, 300, 20))
    out = msv.generate(
        tmp_path / "long", num_train_videos=1, num_val_videos=0, frames=40, size=(64, 48), seed=0
    )
    lines = (out / "Lists/VID_train_15frames.txt").read_text().splitlines()
    idx = [int(line.split()[2]) for line in lines]
    assert len(idx) == 15 and idx == sorted(set(idx)) and idx[0] >= 0 and idx[-1] < 40
    assert np.diff(idx).max() - np.diff(idx).min() <= 1
    assert (out / "Lists/VID_val_videos.txt").read_text() == ""


def _luma(img):
    return img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def _hf_energy(img, box):
    x0, y0, x1, y1 = box
    lap = cv2.Laplacian(_luma(img), cv2.CV_64F)
    return float(np.abs(lap[y0 + 1 : y1, x0 + 1 : x1]).mean())


def _chroma(img, box):
    x0, y0, x1, y1 = box
    # Chroma of the box's mean colour: per-pixel noise averages out, hue does not.
    mean = img[y0 : y1 + 1, x0 : x1 + 1].reshape(-1, 3).astype(np.float64).mean(0)
    return float(mean.max() - mean.min())


def test_degraded_frames_lose_texture_and_colour():
    """Inside each object's box, degraded frames have far less fine detail and no hue vs the clean render."""
    classes = msv.resolve_classes(ALL_CLASSES)
    hf_ratio, chroma_deg, chroma_clean, n_checked = [], [], [], 0
    for i in range(6):
        rs = np.random.RandomState([5, 1, i])
        spec = msv.make_video_spec(rs, 160, 120, 16, len(classes), classes, 0.5)
        degraded = list(msv.render_video(spec, classes, degrade=True))
        clean = list(msv.render_video(spec, classes, degrade=False))
        for (img_d, anns_d, degr), (img_c, anns_c, degr_c) in zip(degraded, clean):
            assert anns_d == anns_c and degr == degr_c
            if not degr:
                # Clean frames are rendered identically either way (same noise stream).
                assert np.array_equal(img_d, img_c)
                continue
            for a in anns_d:
                x0, y0, x1, y1 = a["box"]
                if a["occluded"] or x1 - x0 < 12 or y1 - y0 < 12:
                    continue
                hf_ratio.append(
                    _hf_energy(img_d, a["box"]) / max(_hf_energy(img_c, a["box"]), 1e-6)
                )
                chroma_deg.append(_chroma(img_d, a["box"]))
                chroma_clean.append(_chroma(img_c, a["box"]))
                n_checked += 1
    assert n_checked >= 10
    # Noise adds some Laplacian energy back, so compare medians with a margin rather than each box.
    assert np.median(hf_ratio) < 0.6, np.median(hf_ratio)
    assert max(chroma_deg) < 3.0 and np.mean(chroma_clean) > 20.0, (
        max(chroma_deg),
        np.mean(chroma_clean),
    )


def test_written_degraded_frames_are_blurrier_than_clean_render(small_dataset):
    """The same check on the JPEGs on disk, against a clean re-render of the same video."""
    classes = msv.resolve_classes(ALL_CLASSES)
    root = small_dataset
    ratios = []
    for split, n in (("train", SMALL["num_train_videos"]), ("val", SMALL["num_val_videos"])):
        for i in range(n):
            rs = np.random.RandomState([SMALL["seed"], {"train": 0, "val": 1}[split], i])
            spec = msv.make_video_spec(
                rs,
                *SMALL["size"],
                SMALL["frames"],
                len(classes),
                classes,
                SMALL["degraded_fraction"],
                first_class=i,
            )
            rel = msv.video_relpath(split, i)
            for f, (img_c, anns, degr) in enumerate(msv.render_video(spec, classes, degrade=False)):
                on_disk = _parse(root / "Annotations/VID" / rel / f"{f:06d}.xml")
                assert on_disk["degradations"] == degr
                assert [o["box"] for o in on_disk["objects"]] == [a["box"] for a in anns]
                if not degr:
                    continue
                img_d = cv2.cvtColor(
                    cv2.imread(str(root / "Data/VID" / rel / f"{f:06d}.JPEG")), cv2.COLOR_BGR2RGB
                )
                for a in anns:
                    if not a["occluded"]:
                        ratios.append(
                            _hf_energy(img_d, a["box"]) / max(_hf_energy(img_c, a["box"]), 1e-6)
                        )
    assert ratios and np.median(ratios) < 0.7


def test_pairs_differ_only_in_texture_or_equal_luma_hue():
    by_name = {c.name: c for c in msv.CLASS_CATALOG}
    pairs = [
        ("disc_stripes", "disc_dots"),
        ("square_red", "square_blue"),
        ("triangle_green", "triangle_purple"),
    ]
    for a, b in pairs:
        ca, cb = by_name[a], by_name[b]
        assert ca.shape == cb.shape
        assert (ca.texture != cb.texture) != (ca.palette != cb.palette)
    # Colour pairs have equal luma, so desaturation maps both members to the same grey.
    for a, b in (("red", "blue"), ("green", "purple")):
        assert catalog._PALETTES[a][1:] == catalog._PALETTES[b][1:]
        ca = catalog._colour_with_luma(catalog._PALETTES[a][0], catalog._PALETTES[a][1])
        cb = catalog._colour_with_luma(catalog._PALETTES[b][0], catalog._PALETTES[b][1])
        assert abs(ca @ catalog._LUMA - cb @ catalog._LUMA) < 1e-6 and np.abs(ca - cb).max() > 100
    # Per-instance colour jitter never leaves the valid range for any class.
    rs = np.random.RandomState(0)
    for c in msv.CLASS_CATALOG:
        for _ in range(300):
            fg, bg = plan._class_colours(rs, c)
            assert fg.min() >= 0 and fg.max() <= 255 and bg.min() >= 0 and bg.max() <= 255


def test_idempotent_rerun_skips_and_force_regenerates(tmp_path, caplog):
    out = tmp_path / "syn"
    args = dict(SMALL, num_train_videos=2, num_val_videos=1, frames=4)
    msv.generate(out, **args)
    stored = json.loads((out / "synthetic_args.json").read_text())
    assert stored["seed"] == args["seed"] and stored["classes"] == list(msv.DEFAULT_CLASSES)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    with caplog.at_level(logging.INFO, logger="selsa_d2.synthetic"):
        msv.generate(out, **args)
    assert "skipping" in caplog.text
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == mtimes

    marker = out / "Data/VID" / msv.video_relpath("train", 0) / "000000.JPEG"
    marker.write_bytes(b"stale")
    msv.generate(out, **args, force=True)
    assert marker.read_bytes()[:2] == b"\xff\xd8"

    # An incomplete dataset (a frame missing) is regenerated without --force.
    (out / "Data/VID" / msv.video_relpath("val", 0) / "000003.JPEG").unlink()
    msv.generate(out, **args)
    assert (out / "Data/VID" / msv.video_relpath("val", 0) / "000003.JPEG").is_file()

    # Different arguments regenerate and leave nothing of the old dataset behind.
    msv.generate(out, **dict(args, num_train_videos=1))
    assert not (out / "Data/VID" / msv.video_relpath("train", 1)).exists()
    assert json.loads((out / "synthetic_args.json").read_text())["num_train_videos"] == 1


def test_refuses_to_overwrite_foreign_directory(tmp_path):
    foreign = tmp_path / "ILSVRC2015"
    (foreign / "Data").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="ILSVRC2015"):
        msv.generate(
            foreign, **dict(SMALL, num_train_videos=1, num_val_videos=0, frames=2), force=True
        )
    assert (foreign / "Data").is_dir()


def test_bad_arguments_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown synthetic classes.*'cat'"):
        msv.generate(tmp_path / "x", classes=["disc_dots", "cat"])
    with pytest.raises(ValueError, match="degraded-fraction"):
        msv.generate(tmp_path / "x", degraded_fraction=1.5)
    with pytest.raises(ValueError, match="frames"):
        msv.generate(tmp_path / "x", frames=0)
    bad_size = _cli(["--out", str(tmp_path / "x"), "--size", "big"])
    assert bad_size.returncode == 2 and "--size must look like 224x160" in bad_size.stderr


def test_cli_writes_dataset(tmp_path):
    out = tmp_path / "cli"
    rc = _cli(
        [
            "--out",
            str(out),
            "--num-train-videos",
            "1",
            "--num-val-videos",
            "1",
            "--frames",
            "3",
            "--size",
            "80x48",
            "--seed",
            "7",
            "--classes",
            "square_red",
            "square_blue",
            "--degraded-fraction",
            "0.34",
        ]
    )
    assert rc.returncode == 0, rc.stderr
    assert (out / "classes.txt").read_text() == "syn0003 square_red\nsyn0004 square_blue\n"
    ann = _parse(out / "Annotations/VID" / msv.video_relpath("val", 0) / "000000.xml")
    assert (ann["width"], ann["height"]) == (80, 48)
    degraded = [
        bool(
            _parse(out / "Annotations/VID" / msv.video_relpath("val", 0) / f"{f:06d}.xml")[
                "degradations"
            ]
        )
        for f in range(3)
    ]
    assert sum(degraded) == 1


def test_texture_variant_isolated_blur_and_per_object_colours(tmp_path):
    kw = dict(
        msv.VARIANTS["texture"], num_train_videos=2, num_val_videos=1, frames=10, size=(64, 64)
    )
    out = msv.generate(tmp_path / "tex", **kw)
    args = json.loads((out / ilsvrc_writer.ARGS_FILE).read_text())
    assert args["colour_mode"] == "per_object" and args["degradation_layout"] == "isolated"
    assert args["degradation_kinds"] == "blur" and args["blur_scale"] == 1.5
    assert (out / "classes.txt").read_text().split()[1::2] == [
        "disc_stripes",
        "disc_dots",
        "disc_checker",
        "disc_rings",
    ]
    classes = msv.resolve_classes(kw["classes"])
    assert {c.shape for c in classes} == {"disc"} and len({c.texture for c in classes}) == 4
    colours, fractions = set(), []
    for i in range(30):
        rs = np.random.RandomState([5, 0, i])
        spec = msv.make_video_spec(
            rs,
            64,
            64,
            20,
            4,
            classes,
            0.4,
            colour_mode="per_object",
            degradation_layout="isolated",
            degradation_kinds="blur",
            blur_scale=1.5,
        )
        assert all(s.stop == s.start + 1 for s in spec.stretches)  # single frames
        assert all(
            s.kinds in (("motion_blur",), ("defocus",)) and s.params["blur_scale"] == 1.5
            for s in spec.stretches
        )
        fractions.append(len(spec.stretches) / 20)
        colours |= {(o.class_index, tuple(np.round(o.fg))) for o in spec.objects}
    assert np.allclose(fractions, 0.4)
    per_class = [len({c for k, c in colours if k == ci}) for ci in range(4)]
    assert min(per_class) >= 3  # every class appears in several colours
    # degraded frames of a written video are recorded as blur only
    degr = {d for p in (out / "Annotations").rglob("*.xml") for d in _parse(p)["degradations"]}
    assert degr and degr <= {"motion_blur", "defocus"}


def test_demo_variant_records_only_the_original_arguments(tmp_path):
    out = msv.generate(
        tmp_path / "demo",
        **dict(msv.VARIANTS["demo"], num_train_videos=1, num_val_videos=1, frames=4, size=(48, 48)),
    )
    args = json.loads((out / ilsvrc_writer.ARGS_FILE).read_text())
    assert not {"colour_mode", "degradation_layout", "degradation_kinds", "blur_scale"} & set(args)


def test_variant_option_errors(tmp_path):
    for bad in (
        dict(colour_mode="rainbow"),
        dict(degradation_layout="x"),
        dict(degradation_kinds="y"),
        dict(blur_scale=0.0),
    ):
        with pytest.raises(ValueError, match="must be"):
            msv.generate(tmp_path / "bad", num_train_videos=1, num_val_videos=0, frames=2, **bad)


def test_cli_variant_with_override(tmp_path):
    out = tmp_path / "cli_tex"
    assert (
        _cli(
            [
                "--out",
                str(out),
                "--variant",
                "texture",
                "--num-train-videos",
                "1",
                "--num-val-videos",
                "1",
                "--frames",
                "3",
                "--size",
                "48x48",
            ]
        ).returncode
        == 0
    )
    args = json.loads((out / ilsvrc_writer.ARGS_FILE).read_text())
    assert (
        args["num_train_videos"] == 1
        and args["width"] == 48
        and args["colour_mode"] == "per_object"
    )
