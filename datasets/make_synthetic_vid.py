#!/usr/bin/env python
"""Generate a small synthetic video object detection dataset in the raw ILSVRC2015 VID layout.

The content is built so that temporal aggregation matters. Classes come in pairs that share a shape
and differ only in fine texture (disc with stripes vs dots) or only in hue at equal luminance
(red vs blue checkered square, green vs purple striped triangle). On contiguous stretches of frames
(``--degraded-fraction`` of each video) the frames are degraded: every object is blurred (defocus,
or motion blur along its direction of motion) with a kernel scaled to erase its own texture, the
frame is fully desaturated, and optionally low-contrast, noisy and with bars occluding the objects.
A degraded frame still shows *where* each object is and its shape (a dark rim common to all classes
survives the blur) but not which member of its pair it is; the clean frames of the same video show
it clearly. Objects move along smooth tracks (slow / medium / fast modes), change scale and rotate,
and may leave the frame partly; the background is a multi-hue clutter under a slow camera pan.

Layout written under ``--out`` (exactly the raw ILSVRC2015 VID layout, plus ``classes.txt``)::

    Data/VID/train/ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000/000000.JPEG
    Data/VID/val/ILSVRC2015_val_00000000/000000.JPEG
    Annotations/VID/{train/ILSVRC2015_VID_train_0000/ILSVRC2015_train_XXXXXXXX,val/...}/000000.xml
    Lists/VID_train_15frames.txt   "train/<chunk>/<video> 1 <frame index, 0-based> <num frames>"
                                   (15 frames per video at the centres of equal segments, all
                                   frames if the video is shorter; the real list's convention)
    Lists/VID_val_videos.txt       "val/<video> <1-based global index of its first frame> 0 <num frames>"
    classes.txt                    "<class id> <name>" (ids are WordNet-like: syn0001 ...)
    synthetic_args.json            the arguments; written last, marks the dataset complete

Each XML is an ILSVRC annotation plus one ``<degradations>`` element under ``<annotation>`` holding a
comma list of the degradations applied to that frame (empty for clean frames), from
``motion_blur, defocus, occlusion, desaturate, low_contrast, noise``. An object hidden
behind an occluding bar or covered by another object (>= 25% of its visible area) has
``<occluded>1</occluded>``. Boxes are integer pixel coordinates clipped to the image
(``0 <= xmin < xmax <= width - 1``); objects partly outside the frame keep their track id, objects
fully outside (or with less than 4 visible pixels a side) are not annotated in that frame.

Fully deterministic: the same arguments give byte-identical files (every video draws from its own
``numpy.random.RandomState([seed, split, index])``, so val videos do not depend on the number of
train videos). Re-running with the same arguments on a complete dataset does nothing; ``--force``
regenerates.

Usage::

    python datasets/make_synthetic_vid.py --out datasets/synthetic_vid \
        --num-train-videos 24 --num-val-videos 8 --frames 30 --size 224x160 --seed 0

Python API: ``generate(out_dir, num_train_videos=..., ...) -> Path`` (load this file with importlib;
``datasets/`` is deliberately not a package).
"""

import argparse
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger("make_synthetic_vid")

FORMAT_VERSION = 1
JPEG_QUALITY = 90
MIN_BOX_SIDE = 4  # px; an object with a smaller visible side is not annotated in that frame
KEY_FRAMES_PER_VIDEO = 15
VIDEOS_PER_TRAIN_CHUNK = 1000  # as in ILSVRC2015: ILSVRC2015_VID_train_0000 .. _0003
ARGS_FILE = "synthetic_args.json"
INCOMPLETE_MARKER = ".synthetic_incomplete"

DEGRADATION_NAMES = ("motion_blur", "defocus", "occlusion", "desaturate", "low_contrast", "noise")


@dataclass(frozen=True)
class ClassDef:
    wnid: str
    name: str
    shape: str  # disc | square | triangle
    texture: str  # stripes | dots | checker
    palette: str  # key of _PALETTES


# Pairs share a shape and differ only in texture (same colours, same 50% fill, so blur maps both to
# the same mean) or only in hue at equal luminance (so desaturation maps both to the same grey).
# Texture pairs use stripes vs dots, whose fundamentals (period P along the axes) the blur removes;
# checker is only used within a colour pair, as its diagonal component (period P/sqrt2) survives
# the defocus a little.
CLASS_CATALOG: tuple[ClassDef, ...] = (
    ClassDef("syn0001", "disc_stripes", "disc", "stripes", "amber"),
    ClassDef("syn0002", "disc_dots", "disc", "dots", "amber"),
    ClassDef("syn0003", "square_red", "square", "checker", "red"),
    ClassDef("syn0004", "square_blue", "square", "checker", "blue"),
    ClassDef("syn0005", "triangle_green", "triangle", "stripes", "green"),
    ClassDef("syn0006", "triangle_purple", "triangle", "stripes", "purple"),
    # More discs differing only in texture (the "texture" variant: four classes on one shape).
    ClassDef("syn0007", "disc_checker", "disc", "checker", "amber"),
    ClassDef("syn0008", "disc_rings", "disc", "rings", "amber"),
)
DEFAULT_CLASSES = ("disc_stripes", "disc_dots", "square_red", "square_blue")

# palette -> (foreground colour direction (RGB, 0..1), foreground luma, background colour (RGB), background luma)
_PALETTES: dict[
    str, tuple[tuple[float, float, float], float, tuple[float, float, float], float]
] = {
    "amber": ((1.0, 0.75, 0.15), 150.0, (0.45, 0.25, 0.15), 45.0),
    "red": ((1.0, 0.12, 0.12), 64.0, (1.0, 1.0, 1.0), 215.0),
    "blue": ((0.15, 0.35, 1.0), 64.0, (1.0, 1.0, 1.0), 215.0),
    "green": ((0.15, 0.85, 0.15), 64.0, (1.0, 1.0, 1.0), 215.0),
    "purple": ((0.8, 0.15, 0.9), 64.0, (1.0, 1.0, 1.0), 215.0),
}
_LUMA = np.array([0.299, 0.587, 0.114])

COLOUR_MODES = ("class", "per_object")
DEGRADATION_LAYOUTS = ("stretches", "isolated")
DEGRADATION_KINDS = ("mixed", "blur")

# Named dataset variants: keyword arguments of generate() (``--variant``).
VARIANTS: dict[str, dict] = {
    # `make demo`: texture pairs and equal-luma hue pairs, degraded in stretches (the defaults).
    "demo": dict(num_train_videos=24, num_val_videos=8, frames=30, size=(224, 160)),
    # Held out from every choice of the training regime: four classes on one shape (disc) told
    # apart by texture only, a random colour pair per object (colour says nothing about the
    # class), a strong blur alone on 40 % of the frames picked at random (isolated frames, not
    # stretches), smaller frames, shorter videos.
    "texture": dict(
        num_train_videos=30,
        num_val_videos=10,
        frames=24,
        size=(128, 128),
        classes=("disc_stripes", "disc_dots", "disc_checker", "disc_rings"),
        colour_mode="per_object",
        degradation_layout="isolated",
        degradation_kinds="blur",
        blur_scale=1.5,
    ),
}


def _colour_with_luma(direction: Sequence[float], luma: float) -> np.ndarray:
    """An RGB colour (float, 0..255) of the given hue direction whose Rec.601 luma is ``luma``."""
    d = np.asarray(direction, dtype=np.float64)
    c = d * (luma / float(_LUMA @ d))
    if c.max() > 255.0:
        raise ValueError(f"colour {direction} cannot reach luma {luma}")
    return c


# --------------------------------------------------------------------------------------------- spec
@dataclass
class ObjectTrack:
    """One object's appearance and its per-frame geometry (arrays of length num_frames)."""

    class_index: int
    track_id: int
    fg: np.ndarray  # RGB float (3,)
    bg: np.ndarray  # RGB float (3,)
    cx: np.ndarray
    cy: np.ndarray
    radius: np.ndarray  # half size in px
    angle: np.ndarray  # radians
    phase: tuple[float, float]  # texture phase offsets (fraction of a period)


@dataclass
class Stretch:
    start: int
    stop: int  # exclusive
    kinds: tuple[str, ...]
    params: dict[str, float] = field(default_factory=dict)


@dataclass
class VideoSpec:
    width: int
    height: int
    num_frames: int
    background: np.ndarray  # RGB float32 canvas, larger than the frame (camera pan)
    pan_x: np.ndarray  # int per frame: crop offset into the canvas
    pan_y: np.ndarray
    objects: list[ObjectTrack]
    stretches: list[Stretch]
    noise_seed: int


def _smooth_noise(
    rs: np.random.RandomState, h: int, w: int, cell: int, channels: int
) -> np.ndarray:
    small = rs.rand(max(2, h // cell + 2), max(2, w // cell + 2), channels).astype(np.float32)
    up = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return up.reshape(h, w, channels)


def _make_background(rs: np.random.RandomState, h: int, w: int) -> np.ndarray:
    """Cluttered, multi-hue background: colour blotches, mid-frequency grain and small clutter."""
    scale = min(h, w)
    base = _smooth_noise(rs, h, w, max(8, scale // 5), 3)
    # Mid-luma blotches of any hue: objects (dark rim, see _render_object) stay findable after
    # degradation, but no colour separates objects from background.
    palette = rs.uniform(75, 205, size=(2, 3)).astype(np.float32)
    img = palette[0] + (palette[1] - palette[0]) * base
    img += (_smooth_noise(rs, h, w, max(3, scale // 40), 3) - 0.5) * 40.0
    img = np.ascontiguousarray(np.clip(img, 0, 255))
    # Small clutter (lines, blobs, short bars) in any hue, smaller than the smallest object.
    n = int(rs.randint(18, 30) * (h * w) / (200.0 * 280.0))
    for _ in range(n):
        colour = tuple(float(c) for c in rs.uniform(0, 255, size=3))
        kind = rs.randint(3)
        x, y = int(rs.randint(w)), int(rs.randint(h))
        s = int(rs.randint(2, max(3, scale // 16)))
        if kind == 0:
            ang = rs.uniform(0, np.pi)
            ln = rs.uniform(scale / 20, scale / 7)
            p2 = (int(x + ln * np.cos(ang)), int(y + ln * np.sin(ang)))
            cv2.line(img, (x, y), p2, colour, int(rs.randint(1, 3)), cv2.LINE_AA)
        elif kind == 1:
            cv2.circle(img, (x, y), s, colour, -1, cv2.LINE_AA)
        else:
            cv2.rectangle(img, (x, y), (x + s, y + int(rs.randint(1, 3)) * s), colour, -1)
    return img


def _class_colours(rs: np.random.RandomState, cls: ClassDef) -> tuple[np.ndarray, np.ndarray]:
    fg_dir, fg_luma, bg_dir, bg_luma = _PALETTES[cls.palette]
    # The same jitter distribution for every class of a pair: luma shifts and a small hue wobble.
    fg_dir = np.clip(np.asarray(fg_dir) + rs.uniform(-0.06, 0.06, size=3), 0.02, 1.0)
    bg_dir = np.clip(np.asarray(bg_dir) + rs.uniform(-0.06, 0.06, size=3), 0.02, 1.0)
    fg = _colour_with_luma(fg_dir, fg_luma + rs.uniform(-12, 12))
    bg = _colour_with_luma(bg_dir, bg_luma + rs.uniform(-12, 12))
    return np.clip(fg, 0, 255), np.clip(bg, 0, 255)


def _object_colours(rs: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """colour_mode "per_object": a random foreground/background pair of any hue, >= 60 luma apart."""
    fg_luma = rs.uniform(60, 200)
    bg_luma = fg_luma + rs.choice([-1.0, 1.0]) * rs.uniform(60, 100)
    if not 30 <= bg_luma <= 230:
        bg_luma = fg_luma - (bg_luma - fg_luma)
    fg_dir, bg_dir = rs.uniform(0.05, 1.0, size=3), rs.uniform(0.05, 1.0, size=3)
    fg = _colour_with_luma(fg_dir / fg_dir.max(), 1.0) * fg_luma
    bg = _colour_with_luma(bg_dir / bg_dir.max(), 1.0) * float(np.clip(bg_luma, 30, 230))
    return np.clip(fg, 0, 255), np.clip(bg, 0, 255)


def _plan_isolated(
    rs: np.random.RandomState, num_frames: int, fraction: float
) -> list[tuple[int, int]]:
    """round(fraction * num_frames) single degraded frames picked at random (degradation_layout "isolated")."""
    n_deg = min(int(round(fraction * num_frames)), num_frames)
    picks = (
        sorted(int(f) for f in rs.choice(num_frames, size=n_deg, replace=False)) if n_deg else []
    )
    return [(f, f + 1) for f in picks]


def _split_sizes(rs: np.random.RandomState, total: int, parts: int, minimum: int) -> list[int]:
    """Random composition of ``total`` into ``parts`` integers, each >= minimum."""
    free = total - parts * minimum
    cuts = np.sort(rs.randint(0, free + 1, size=parts - 1)) if parts > 1 else np.zeros(0, int)
    edges = np.concatenate([[0], cuts, [free]])
    return [int(d) + minimum for d in np.diff(edges)]


def _plan_stretches(
    rs: np.random.RandomState, num_frames: int, fraction: float
) -> list[tuple[int, int]]:
    """Contiguous degraded stretches covering round(fraction * num_frames) frames, separated by clean ones."""
    n_deg = int(round(fraction * num_frames))
    n_deg = min(n_deg, num_frames - 1) if fraction < 1.0 else num_frames
    if n_deg <= 0:
        return []
    n_clean = num_frames - n_deg
    # Stretches of about 3-7 frames, so training references within +-9 frames usually reach a clean one.
    parts = max(1, int(math.ceil(n_deg / 7.0)) + int(rs.randint(0, 2)))
    parts = max(1, min(parts, n_deg // 2 if n_deg >= 2 else 1, n_clean if n_clean > 0 else 1))
    if n_clean == 0:
        return [(0, num_frames)]
    # Near-equal stretch lengths (the remainder spread at random) so no stretch is much longer than ~7.
    deg = [n_deg // parts + (1 if i < n_deg % parts else 0) for i in rs.permutation(parts)]
    # parts - 1 interior gaps of >= 1 clean frame, plus two (possibly empty) outer gaps.
    interior = parts - 1
    gaps = _split_sizes(rs, n_clean - interior, parts + 1, 0)
    for i in range(1, parts):
        gaps[i] += 1
    out, t = [], 0
    for i in range(parts):
        t += gaps[i]
        out.append((t, t + deg[i]))
        t += deg[i]
    return out


def _choose_degradations(
    rs: np.random.RandomState, degradation_kinds: str = "mixed"
) -> tuple[str, ...]:
    if degradation_kinds == "blur":
        return ("motion_blur",) if rs.rand() < 0.5 else ("defocus",)
    # Blur erases texture, desaturation erases hue: together they make every pair ambiguous.
    kinds = ["motion_blur" if rs.rand() < 0.5 else "defocus", "desaturate"]
    if rs.rand() < 0.3:
        kinds.append("occlusion")
    if rs.rand() < 0.4:
        kinds.append("low_contrast")
    if rs.rand() < 0.5:
        kinds.append("noise")
    return tuple(k for k in DEGRADATION_NAMES if k in kinds)


def make_video_spec(
    rs: np.random.RandomState,
    width: int,
    height: int,
    num_frames: int,
    num_classes: int,
    classes: Sequence[ClassDef],
    degraded_fraction: float,
    first_class: int | None = None,
    colour_mode: str = "class",
    degradation_layout: str = "stretches",
    degradation_kinds: str = "mixed",
    blur_scale: float = 1.0,
) -> VideoSpec:
    """Draw everything random about one video (tracks, colours, background, degraded stretches).

    ``first_class``: class index of the first object (the generator cycles it over the videos so the
    classes stay balanced in small datasets); None draws it at random like the others.
    ``colour_mode``, ``degradation_layout``, ``degradation_kinds``, ``blur_scale``: see :func:`generate`.
    """
    scale = min(width, height)
    pan_amp = int(round(0.08 * scale))
    canvas = _make_background(rs, height + 2 * pan_amp, width + 2 * pan_amp)
    t = np.arange(num_frames, dtype=np.float64)
    # Slow camera pan: a smooth random walk of the crop window.
    pan_phase = rs.uniform(0, 2 * np.pi, size=2)
    pan_freq = rs.uniform(0.02, 0.08, size=2)
    pan_x = np.round(
        pan_amp * (1 + np.sin(pan_phase[0] + 2 * np.pi * pan_freq[0] * t) * 0.9)
    ).astype(int)
    pan_y = np.round(
        pan_amp * (1 + np.sin(pan_phase[1] + 2 * np.pi * pan_freq[1] * t) * 0.9)
    ).astype(int)

    n_obj = int(rs.choice([1, 2, 3], p=[0.35, 0.4, 0.25]))
    objects = []
    for k in range(n_obj):
        ci = int(rs.randint(num_classes))
        if k == 0 and first_class is not None:
            ci = int(first_class) % num_classes
        fg, bg = _class_colours(rs, classes[ci]) if colour_mode == "class" else _object_colours(rs)
        r0 = rs.uniform(0.09, 0.2) * scale
        diameter = 2 * r0
        # Motion modes roughly matching the FGFA slow / medium / fast split (motion IoU over +-10
        # frames > 0.9, 0.7-0.9, < 0.7): (speed as a fraction of the diameter per frame, log-scale
        # change over the video, scale wobble, path curvature in diameters, rotation deg/frame).
        mode = rs.choice(3, p=[0.35, 0.35, 0.3])
        speed_f, growth_max, wob_max, curve_max, rot_max = [
            (rs.uniform(0.0, 0.002), 0.06, 0.01, 0.01, 0.3),
            (rs.uniform(0.006, 0.014), 0.25, 0.05, 0.1, 1.5),
            (rs.uniform(0.025, 0.08), 0.4, 0.12, 0.3, 3.0),
        ][mode]
        growth = rs.uniform(-growth_max, growth_max)
        wob_a, wob_f, wob_p = (
            rs.uniform(0, wob_max),
            rs.uniform(0.03, 0.1),
            rs.uniform(0, 2 * np.pi),
        )
        radius = (
            r0
            * np.exp(growth * (t / max(1, num_frames - 1) - 0.5))
            * (1 + wob_a * np.sin(wob_p + 2 * np.pi * wob_f * t))
        )
        speed = speed_f * diameter
        heading = rs.uniform(0, 2 * np.pi)
        mid = np.array([rs.uniform(0.15, 0.85) * width, rs.uniform(0.15, 0.85) * height])
        curve_a, curve_f, curve_p = (
            rs.uniform(0, curve_max) * diameter,
            rs.uniform(0.02, 0.06),
            rs.uniform(0, 2 * np.pi, size=2),
        )
        tc = t - (num_frames - 1) / 2.0
        cx = (
            mid[0]
            + speed * np.cos(heading) * tc
            + curve_a * np.sin(curve_p[0] + 2 * np.pi * curve_f * t)
        )
        cy = (
            mid[1]
            + speed * np.sin(heading) * tc
            + curve_a * np.sin(curve_p[1] + 2 * np.pi * curve_f * t)
        )
        angle = rs.uniform(0, 2 * np.pi) + np.deg2rad(rs.uniform(-rot_max, rot_max)) * t
        objects.append(
            ObjectTrack(ci, k, fg, bg, cx, cy, radius, angle, tuple(rs.uniform(0, 1, size=2)))
        )

    stretches = []
    plan = _plan_stretches if degradation_layout == "stretches" else _plan_isolated
    for start, stop in plan(rs, num_frames, degraded_fraction):
        kinds = _choose_degradations(rs, degradation_kinds)
        params = {
            "blur_angle": float(rs.uniform(0, np.pi)),
            "contrast": float(rs.uniform(0.5, 0.65)),
            "noise_sigma": float(rs.uniform(8, 14)),
            "occlusion_frac": float(rs.uniform(0.3, 0.45)),
            "occlusion_vertical": float(rs.randint(2)),
            "occlusion_pos": float(rs.uniform(0.2, 0.8)),
        }
        if blur_scale != 1.0:
            params["blur_scale"] = float(blur_scale)
        stretches.append(Stretch(start, stop, kinds, params))
    return VideoSpec(
        width,
        height,
        num_frames,
        canvas,
        pan_x,
        pan_y,
        objects,
        stretches,
        int(rs.randint(2**31 - 1)),
    )


# ---------------------------------------------------------------------------------------- rendering
def _texture_period(radius: float) -> float:
    """Texture period in px: 4 cycles across the diameter, so the pattern scales with the object."""
    return radius / 2.0


def _object_layer(
    obj: ObjectTrack, cls: ClassDef, f: int, margin: int
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The object at frame ``f`` as an unclipped layer: ``(colour [h,w,3], alpha [h,w], x0, y0)``.

    The layer covers the object plus ``margin`` px on each side (room for blur); (x0, y0) is its
    top-left corner in frame coordinates and may lie outside the frame.
    """
    cx, cy, r, a = obj.cx[f], obj.cy[f], obj.radius[f], obj.angle[f]
    x0, x1 = int(math.floor(cx - 1.5 * r)) - margin, int(math.ceil(cx + 1.5 * r)) + 1 + margin
    y0, y1 = int(math.floor(cy - 1.5 * r)) - margin, int(math.ceil(cy + 1.5 * r)) + 1 + margin
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = xs + 0.5 - cx, ys + 0.5 - cy
    ca, sa = math.cos(a), math.sin(a)
    u, v = ca * dx + sa * dy, -sa * dx + ca * dy  # object-local coordinates in px
    if cls.shape == "disc":
        sd = np.sqrt(u * u + v * v) - r
    elif cls.shape == "square":
        sd = np.maximum(np.abs(u), np.abs(v)) - 0.85 * r
    elif cls.shape == "triangle":
        # Equilateral triangle with circumradius 1.15 r: signed distance = max over the three edges.
        sd = None
        for k in range(3):
            th = 2 * np.pi * k / 3 + np.pi / 2
            e = u * math.cos(th) + v * math.sin(th) - 0.575 * r
            sd = e if sd is None else np.maximum(sd, e)
    else:
        raise ValueError(f"unknown shape {cls.shape!r}")
    alpha = np.clip(0.5 - sd, 0.0, 1.0)
    period = _texture_period(r)
    pu, pv = u / period + obj.phase[0], v / period + obj.phase[1]
    sharp = period / 2.0  # about a one-pixel transition between texture regions
    if cls.texture == "stripes":
        t = np.clip(0.5 + sharp * np.sin(2 * np.pi * pu) / np.pi, 0, 1)
    elif cls.texture == "checker":
        t = np.clip(0.5 + sharp * np.sin(2 * np.pi * pu) * np.sin(2 * np.pi * pv) / np.pi, 0, 1)
    elif cls.texture == "rings":
        t = np.clip(
            0.5
            + sharp * np.sin(2 * np.pi * (np.sqrt(u * u + v * v) / period + obj.phase[0])) / np.pi,
            0,
            1,
        )
    elif cls.texture == "dots":
        du, dv = pu - np.floor(pu) - 0.5, pv - np.floor(pv) - 0.5
        rad = math.sqrt(0.5 / math.pi)  # dot area = half the cell, the same mean as stripes
        t = np.clip(0.5 + (rad - np.sqrt(du * du + dv * dv)) * period, 0, 1)
    else:
        raise ValueError(f"unknown texture {cls.texture!r}")
    colour = obj.bg + (obj.fg - obj.bg) * t[..., None]
    # A dark rim (same for every class) keeps the silhouette visible after blur and desaturation,
    # so a degraded object stays localisable while its class-discriminative texture/hue is gone.
    rim = np.clip(sd + 0.18 * r + 0.5, 0, 1)[..., None] * 0.85
    return (colour * (1 - rim)).astype(np.float32), alpha, x0, y0


def _clip_region(x0: int, y0: int, lw: int, lh: int, w: int, h: int):
    """Frame region (x0c, y0c, x1c, y1c) and layer slices of a layer at (x0, y0), or None if outside."""
    x0c, y0c, x1c, y1c = max(x0, 0), max(y0, 0), min(x0 + lw, w), min(y0 + lh, h)
    if x0c >= x1c or y0c >= y1c:
        return None
    return (x0c, y0c, x1c, y1c), (slice(y0c - y0, y1c - y0), slice(x0c - x0, x1c - x0))


def _disc_kernel(radius: float) -> np.ndarray:
    r = max(1.0, radius)
    n = int(math.ceil(r)) * 2 + 1
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2.0
    k = np.clip(r + 0.5 - np.sqrt(xx * xx + yy * yy), 0, 1).astype(np.float32)
    return k / k.sum()


def _line_kernel(length: float, angle: float) -> np.ndarray:
    n = max(3, int(math.ceil(length)) | 1)
    k = np.zeros((n, n), np.float32)
    c = (n - 1) / 2.0
    d = (length - 1) / 2.0
    p1 = (int(round(c - d * math.cos(angle))), int(round(c - d * math.sin(angle))))
    p2 = (int(round(c + d * math.cos(angle))), int(round(c + d * math.sin(angle))))
    cv2.line(k, p1, p2, 1.0, 1, cv2.LINE_AA)
    return k / k.sum()


def _blur(
    img: np.ndarray,
    kinds: Sequence[str],
    period: float,
    angle: float,
    border: int = cv2.BORDER_CONSTANT,
) -> np.ndarray:
    """Blur tuned to erase a texture of the given period (px) while keeping the silhouette.

    Defocus: a disc of radius 0.6 period (near the first zero of its frequency response at 1/period).
    Motion: a line of 1.2 periods (zero response across it) plus a Gaussian of sigma 0.4 period, which
    leaves ~4% of a texture running along the motion direction.
    """
    if "defocus" in kinds:
        img = cv2.filter2D(img, -1, _disc_kernel(0.6 * period), borderType=border)
    if "motion_blur" in kinds:
        img = cv2.filter2D(img, -1, _line_kernel(1.2 * period, angle), borderType=border)
        img = cv2.GaussianBlur(img, (0, 0), 0.4 * period, borderType=border)
    return img


def render_video(spec: VideoSpec, classes: Sequence[ClassDef], degrade: bool = True):
    """Yield ``(frame RGB uint8 [H,W,3], annotations, degradations)`` for every frame of the video.

    ``annotations``: list of dicts (track_id, class_index, box (xmin, ymin, xmax, ymax) ints, occluded).
    Boxes and occlusion come from the un-degraded geometry. Blur is applied per object (each object's
    layer is blurred with a kernel scaled to its own texture period, motion blur along its own
    direction of motion) and, milder, to the background; desaturation, low contrast and noise apply to
    the whole frame. With ``degrade=False`` the same video is rendered clean (the recorded
    degradations are still returned), which the tests use to compare degraded frames with clean ones.
    """
    h, w, F = spec.height, spec.width, spec.num_frames
    scale = min(h, w)
    noise_rs = np.random.RandomState(spec.noise_seed)
    stretch_of = {}
    for s in spec.stretches:
        for f in range(s.start, s.stop):
            stretch_of[f] = s
    for f in range(F):
        stretch = stretch_of.get(f)
        kinds = stretch.kinds if stretch is not None else ()
        blur_kinds = [k for k in kinds if k in ("defocus", "motion_blur")] if degrade else []
        px, py = int(spec.pan_x[f]), int(spec.pan_y[f])
        img = spec.background[py : py + h, px : px + w].copy()
        if blur_kinds:
            img = _blur(
                img, blur_kinds, 0.05 * scale, stretch.params["blur_angle"], cv2.BORDER_REFLECT
            )
        drawn = []  # (obj, sharp alpha clipped to the frame, frame region)
        for obj in spec.objects:
            r = obj.radius[f]
            blur_scale = stretch.params.get("blur_scale", 1.0) if blur_kinds else 1.0
            margin = int(math.ceil(1.2 * blur_scale * _texture_period(r))) + 2 if blur_kinds else 0
            colour, alpha, x0, y0 = _object_layer(obj, classes[obj.class_index], f, margin)
            clip = _clip_region(x0, y0, alpha.shape[1], alpha.shape[0], w, h)
            if clip is None:
                continue
            (x0c, y0c, x1c, y1c), sl = clip
            sharp_alpha = alpha[sl]
            if blur_kinds:
                g = max(1, min(f + 1, F - 1)) if F > 1 else 0
                vx, vy = obj.cx[g] - obj.cx[g - 1], obj.cy[g] - obj.cy[g - 1]
                angle = (
                    math.atan2(vy, vx) if abs(vx) + abs(vy) > 0.2 else stretch.params["blur_angle"]
                )
                # Blur premultiplied colour and alpha together: the smear mixes with the background.
                blur_period = _texture_period(r) * stretch.params.get("blur_scale", 1.0)
                pre = _blur(colour * alpha[..., None], blur_kinds, blur_period, angle)
                alpha = _blur(alpha, blur_kinds, blur_period, angle)
                region = img[y0c:y1c, x0c:x1c]
                region *= 1.0 - alpha[sl][..., None]
                region += pre[sl]
            else:
                region = img[y0c:y1c, x0c:x1c]
                region += (colour[sl] - region) * sharp_alpha[..., None]
            if sharp_alpha.max() > 0:
                drawn.append((obj, sharp_alpha, (x0c, y0c, x1c, y1c)))
        occluders = _occluders(stretch, drawn, f) if "occlusion" in kinds else []
        anns = _annotations(drawn, occluders)
        if degrade and stretch is not None:
            img = _degrade_frame(img, spec, stretch, occluders, f, noise_rs)
        else:
            # Mild sensor noise; the same draws as in _degrade_frame so clean and degraded renders align.
            img = img + 3.0 * noise_rs.standard_normal(img.shape).astype(np.float32)
        yield np.clip(img + 0.5, 0, 255).astype(np.uint8), anns, list(kinds)


def _occluders(stretch: Stretch, drawn, f: int) -> list[tuple[float, float, float, float]]:
    """One bar per visible object, covering 30-45% of its width or height (x0, y0, x1, y1 floats)."""
    p = stretch.params
    bars = []
    for obj, _, _ in drawn:
        r, cx, cy = obj.radius[f], obj.cx[f], obj.cy[f]
        thick = 2 * r * p["occlusion_frac"]
        start = -r + (2 * r - thick) * p["occlusion_pos"]
        if p["occlusion_vertical"] > 0.5:
            bars.append((cx + start, cy - 1.6 * r, cx + start + thick, cy + 1.6 * r))
        else:
            bars.append((cx - 1.6 * r, cy + start, cx + 1.6 * r, cy + start + thick))
    return bars


def _annotations(drawn, occluders) -> list[dict]:
    anns = []
    for i, (obj, alpha, (x0, y0, x1, y1)) in enumerate(drawn):
        mask = alpha > 0.5
        area = int(mask.sum())
        if area == 0:
            continue
        ys, xs = np.nonzero(mask)
        box = (int(xs.min()) + x0, int(ys.min()) + y0, int(xs.max()) + x0, int(ys.max()) + y0)
        if box[2] - box[0] + 1 < MIN_BOX_SIDE or box[3] - box[1] + 1 < MIN_BOX_SIDE:
            continue
        # Objects drawn later cover earlier ones; so do occluding bars.
        hidden = np.zeros_like(mask)
        for _, alpha2, (a0, b0, a1, b1) in drawn[i + 1 :]:
            ox0, oy0, ox1, oy1 = max(x0, a0), max(y0, b0), min(x1, a1), min(y1, b1)
            if ox0 < ox1 and oy0 < oy1:
                hidden[oy0 - y0 : oy1 - y0, ox0 - x0 : ox1 - x0] |= (
                    alpha2[oy0 - b0 : oy1 - b0, ox0 - a0 : ox1 - a0] > 0.5
                )
        bar_hit = False
        for bx0, by0, bx1, by1 in occluders:
            ix0, iy0 = max(int(round(bx0)), x0), max(int(round(by0)), y0)
            ix1, iy1 = min(int(round(bx1)), x1), min(int(round(by1)), y1)
            if ix0 < ix1 and iy0 < iy1:
                before = int((hidden & mask).sum())
                hidden[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = True
                bar_hit |= int((hidden & mask).sum()) > before
        occ_frac = float((hidden & mask).sum()) / area
        anns.append(
            {
                "track_id": obj.track_id,
                "class_index": obj.class_index,
                "box": box,
                "occluded": bool(bar_hit or occ_frac >= 0.25),
            }
        )
    return anns


def _degrade_frame(
    img, spec: VideoSpec, stretch: Stretch, occluders, f: int, noise_rs
) -> np.ndarray:
    """Frame-level degradations (after per-object blur): occluding bars, desaturation, contrast, noise."""
    p, kinds = stretch.params, stretch.kinds
    px, py = int(spec.pan_x[f]), int(spec.pan_y[f])
    for bx0, by0, bx1, by1 in occluders:
        x0, y0 = max(0, int(round(bx0))), max(0, int(round(by0)))
        x1, y1 = min(spec.width, int(round(bx1))), min(spec.height, int(round(by1)))
        if x0 < x1 and y0 < y1:
            # A bar in the local background colour (a pole or branch in front of the object).
            img[y0:y1, x0:x1] = (
                spec.background[py + y0 : py + y1, px + x0 : px + x1].reshape(-1, 3).mean(0)
            )
    if "desaturate" in kinds:
        img = np.repeat((img @ _LUMA.astype(np.float32))[..., None], 3, axis=2)
    if "low_contrast" in kinds:
        m = img.mean()
        img = m + (img - m) * p["contrast"]
    sigma = p["noise_sigma"] if "noise" in kinds else 3.0
    return img + sigma * noise_rs.standard_normal(img.shape).astype(np.float32)


# ------------------------------------------------------------------------------------------- output
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


def resolve_classes(names: Sequence[str] | None) -> list[ClassDef]:
    names = list(DEFAULT_CLASSES if not names else names)
    by_name = {c.name: c for c in CLASS_CATALOG}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(
            f"unknown synthetic classes {unknown}; available: {[c.name for c in CLASS_CATALOG]}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate class names in {names}")
    return [by_name[n] for n in names]


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


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 224x160 (got {text!r})") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="output root (raw ILSVRC2015 VID layout)")
    parser.add_argument(
        "--variant",
        choices=sorted(VARIANTS),
        default=None,
        help="start from a named variant (VARIANTS); the options below override it",
    )
    parser.add_argument("--num-train-videos", type=int, help="default 24")
    parser.add_argument("--num-val-videos", type=int, help="default 8")
    parser.add_argument("--frames", type=int, help="frames per video (default 30)")
    parser.add_argument("--size", type=_parse_size, help="WIDTHxHEIGHT (default 224x160)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--classes",
        nargs="+",
        default=None,
        help=f"class names (default: {' '.join(DEFAULT_CLASSES)}; available: {' '.join(c.name for c in CLASS_CATALOG)})",
    )
    parser.add_argument(
        "--degraded-fraction",
        type=float,
        help="fraction of degraded frames per video (default 0.4)",
    )
    parser.add_argument("--colour-mode", choices=COLOUR_MODES, help="default: class")
    parser.add_argument(
        "--degradation-layout", choices=DEGRADATION_LAYOUTS, help="default: stretches"
    )
    parser.add_argument("--degradation-kinds", choices=DEGRADATION_KINDS, help="default: mixed")
    parser.add_argument("--blur-scale", type=float, help="object blur kernel scale (default 1.0)")
    parser.add_argument(
        "--force", action="store_true", help="regenerate even if an identical dataset exists"
    )
    a = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s] %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    kwargs = dict(VARIANTS[a.variant]) if a.variant else {}
    for key in (
        "num_train_videos",
        "num_val_videos",
        "frames",
        "size",
        "classes",
        "degraded_fraction",
        "colour_mode",
        "degradation_layout",
        "degradation_kinds",
        "blur_scale",
    ):
        if getattr(a, key) is not None:
            kwargs[key] = getattr(a, key)
    try:
        generate(a.out, seed=a.seed, force=a.force, **kwargs)
    except (ValueError, FileExistsError, NotADirectoryError) as e:
        parser.exit(2, f"error: {e}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
