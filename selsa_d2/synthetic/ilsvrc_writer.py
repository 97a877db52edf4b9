"""Writing a synthetic dataset in the raw ILSVRC2015 VID layout (see ``datasets/make_synthetic_vid.py``
for the layout): JPEG frames, XML annotations, the frame lists, ``classes.txt`` and the arguments
file that marks a complete dataset."""

import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from .catalog import COLOUR_MODES, DEGRADATION_KINDS, DEGRADATION_LAYOUTS, resolve_classes
from .plan import VideoSpec, make_video_spec
from .render import render_video

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
JPEG_QUALITY = 90
KEY_FRAMES_PER_VIDEO = 15
VIDEOS_PER_TRAIN_CHUNK = 1000  # as in ILSVRC2015: ILSVRC2015_VID_train_0000 .. _0003
ARGS_FILE = "synthetic_args.json"
INCOMPLETE_MARKER = ".synthetic_incomplete"


def _xml(folder: str, frame: int, width: int, height: int, anns, classes, degradations) -> str:
    lines = [
        "<annotation>",
        f"\t<folder>{folder}</folder>",
        f"\t<filename>{frame:06d}</filename>",
        "\t<source>",
        "\t\t<database>ILSVRC_2015</database>",
        "\t</source>",
        "\t<size>",
        f"\t\t<width>{width}</width>",
        f"\t\t<height>{height}</height>",
        "\t</size>",
    ]
    for a in anns:
        x0, y0, x1, y1 = a["box"]
        lines += [
            "\t<object>",
            f"\t\t<trackid>{a['track_id']}</trackid>",
            f"\t\t<name>{classes[a['class_index']].wnid}</name>",
            "\t\t<bndbox>",
            f"\t\t\t<xmax>{x1}</xmax>",
            f"\t\t\t<xmin>{x0}</xmin>",
            f"\t\t\t<ymax>{y1}</ymax>",
            f"\t\t\t<ymin>{y0}</ymin>",
            "\t\t</bndbox>",
            f"\t\t<occluded>{int(a['occluded'])}</occluded>",
            "\t\t<generated>0</generated>",
            "\t</object>",
        ]
    lines.append(f"\t<degradations>{','.join(degradations)}</degradations>")
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def key_frame_indices(num_frames: int, k: int = KEY_FRAMES_PER_VIDEO) -> list[int]:
    """0-based indices of the listed training frames: the centres of k equal segments (ILSVRC style)."""
    k = min(k, num_frames)
    return [int((i + 0.5) * num_frames / k) for i in range(k)]


def video_relpath(split: str, index: int) -> str:
    """Path of a video below ``Data/VID`` (and ``Annotations/VID``), as in ILSVRC2015."""
    if split == "train":
        chunk = index // VIDEOS_PER_TRAIN_CHUNK
        return f"train/ILSVRC2015_VID_train_{chunk:04d}/ILSVRC2015_train_{index:08d}"
    return f"val/ILSVRC2015_val_{index:08d}"


def _split_code(split: str) -> int:
    return {"train": 0, "val": 1}[split]


def _write_video(out: Path, split: str, index: int, spec: VideoSpec, classes) -> None:
    rel = video_relpath(split, index)
    img_dir = out / "Data" / "VID" / rel
    ann_dir = out / "Annotations" / "VID" / rel
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    folder = rel.split("/", 1)[1]
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    for f, (frame, anns, degr) in enumerate(render_video(spec, classes)):
        path = img_dir / f"{f:06d}.JPEG"
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise OSError(f"could not encode JPEG for {path}")
        path.write_bytes(buf.tobytes())
        (ann_dir / f"{f:06d}.xml").write_text(
            _xml(folder, f, spec.width, spec.height, anns, classes, degr)
        )


def _expected_args(
    num_train_videos,
    num_val_videos,
    frames,
    width,
    height,
    seed,
    classes,
    degraded_fraction,
    **options,
):
    """The arguments stored in ARGS_FILE; the variant options only when they differ from the defaults
    (so a dataset generated before they existed is still recognised)."""
    defaults = dict(
        colour_mode="class",
        degradation_layout="stretches",
        degradation_kinds="mixed",
        blur_scale=1.0,
    )
    extra = {k: v for k, v in options.items() if v != defaults[k]}
    return {
        **extra,
        "format_version": FORMAT_VERSION,
        "num_train_videos": int(num_train_videos),
        "num_val_videos": int(num_val_videos),
        "frames": int(frames),
        "width": int(width),
        "height": int(height),
        "seed": int(seed),
        "classes": [c.name for c in classes],
        "degraded_fraction": float(degraded_fraction),
        "jpeg_quality": JPEG_QUALITY,
    }


def is_complete(out_dir, args: dict) -> bool:
    """True when ``out_dir`` holds a finished dataset generated with exactly ``args``."""
    out = Path(out_dir)
    try:
        stored = json.loads((out / ARGS_FILE).read_text())
    except (OSError, ValueError):
        return False
    if stored != args or (out / INCOMPLETE_MARKER).exists():
        return False
    for split, n in (("train", args["num_train_videos"]), ("val", args["num_val_videos"])):
        for i in range(n):
            rel = video_relpath(split, i)
            for sub, ext in (("Data", ".JPEG"), ("Annotations", ".xml")):
                d = out / sub / "VID" / rel
                if (
                    not d.is_dir()
                    or sum(1 for p in os.listdir(d) if p.endswith(ext)) != args["frames"]
                ):
                    return False
    return all(
        (out / p).is_file()
        for p in ("Lists/VID_train_15frames.txt", "Lists/VID_val_videos.txt", "classes.txt")
    )


def _clear(out: Path) -> None:
    """Remove what a previous run wrote, refusing to touch a directory this script did not create."""
    if not out.exists():
        return
    if not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a directory")
    ours = (out / ARGS_FILE).exists() or (out / INCOMPLETE_MARKER).exists()
    if not ours and any(out.iterdir()):
        raise FileExistsError(
            f"{out} is not empty and was not written by make_synthetic_vid.py (no {ARGS_FILE}); "
            f"refusing to overwrite it. Choose another --out or empty it."
        )
    for p in ("Data", "Annotations", "Lists"):
        shutil.rmtree(out / p, ignore_errors=True)
    for p in ("classes.txt", ARGS_FILE):
        if (out / p).exists():
            (out / p).unlink()


def generate(
    out_dir,
    num_train_videos: int = 24,
    num_val_videos: int = 8,
    frames: int = 30,
    size: tuple[int, int] = (224, 160),
    seed: int = 0,
    classes: Sequence[str] | None = None,
    degraded_fraction: float = 0.4,
    force: bool = False,
    colour_mode: str = "class",
    degradation_layout: str = "stretches",
    degradation_kinds: str = "mixed",
    blur_scale: float = 1.0,
) -> Path:
    """Write the dataset to ``out_dir`` (skipped when an identical complete one is there); return its path.

    ``size`` is (width, height). ``classes``: names from ``CLASS_CATALOG`` (default ``DEFAULT_CLASSES``).
    ``colour_mode``: "class" (each class its palette) or "per_object" (a random colour pair per
    object, so only shape and texture tell classes apart). ``degradation_layout``: "stretches"
    (contiguous degraded stretches) or "isolated" (single frames picked at random).
    ``degradation_kinds``: "mixed" (blur + desaturation, sometimes occlusion, low contrast, noise)
    or "blur" (defocus or motion blur only). ``blur_scale`` multiplies the object blur kernels
    (1.0 just erases the texture). ``VARIANTS`` names useful combinations.
    """
    out = Path(out_dir)
    width, height = int(size[0]), int(size[1])
    if num_train_videos < 0 or num_val_videos < 0 or num_train_videos + num_val_videos == 0:
        raise ValueError(
            f"need at least one video (got {num_train_videos} train, {num_val_videos} val)"
        )
    if frames < 1:
        raise ValueError(f"--frames must be >= 1 (got {frames})")
    if width < 32 or height < 32:
        raise ValueError(f"--size must be at least 32x32 (got {width}x{height})")
    if not 0.0 <= degraded_fraction <= 1.0:
        raise ValueError(f"--degraded-fraction must be in [0, 1] (got {degraded_fraction})")
    for name, value, allowed in (
        ("colour_mode", colour_mode, COLOUR_MODES),
        ("degradation_layout", degradation_layout, DEGRADATION_LAYOUTS),
        ("degradation_kinds", degradation_kinds, DEGRADATION_KINDS),
    ):
        if value not in allowed:
            raise ValueError(f"--{name.replace('_', '-')} must be one of {allowed} (got {value!r})")
    if not blur_scale > 0:
        raise ValueError(f"--blur-scale must be > 0 (got {blur_scale})")
    class_defs = resolve_classes(classes)
    options = dict(
        colour_mode=colour_mode,
        degradation_layout=degradation_layout,
        degradation_kinds=degradation_kinds,
        blur_scale=float(blur_scale),
    )
    args = _expected_args(
        num_train_videos,
        num_val_videos,
        frames,
        width,
        height,
        seed,
        class_defs,
        degraded_fraction,
        **options,
    )
    if not force and is_complete(out, args):
        logger.info(
            "Synthetic dataset already complete at %s (same arguments); skipping. Use --force to regenerate.",
            out,
        )
        return out
    _clear(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / INCOMPLETE_MARKER).write_text(json.dumps(args))
    t0 = time.perf_counter()
    train_lines, val_lines = [], []
    global_index = 1
    for split, n in (("train", num_train_videos), ("val", num_val_videos)):
        for i in range(n):
            rs = np.random.RandomState([int(seed) & 0xFFFFFFFF, _split_code(split), i])
            spec = make_video_spec(
                rs,
                width,
                height,
                frames,
                len(class_defs),
                class_defs,
                degraded_fraction,
                first_class=i,
                **options,
            )
            _write_video(out, split, i, spec, class_defs)
            rel = video_relpath(split, i)
            if split == "train":
                train_lines += [f"{rel} 1 {k} {frames}" for k in key_frame_indices(frames)]
            else:
                val_lines.append(f"{rel} {global_index} 0 {frames}")
                global_index += frames
        logger.info("%s: %d videos x %d frames written", split, n, frames)
    (out / "Lists").mkdir(exist_ok=True)
    (out / "Lists" / "VID_train_15frames.txt").write_text(
        "".join(line + "\n" for line in train_lines)
    )
    (out / "Lists" / "VID_val_videos.txt").write_text("".join(line + "\n" for line in val_lines))
    (out / "classes.txt").write_text("".join(f"{c.wnid} {c.name}\n" for c in class_defs))
    (out / ARGS_FILE).write_text(json.dumps(args, indent=2, sort_keys=True) + "\n")
    (out / INCOMPLETE_MARKER).unlink()
    logger.info("Synthetic VID dataset written to %s in %.1fs", out, time.perf_counter() - t0)
    return out
