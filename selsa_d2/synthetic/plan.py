"""Planning one synthetic video: everything random about it (tracks, colours, background, degraded
stretches) drawn from one ``numpy.random.RandomState`` into a :class:`VideoSpec`."""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from .catalog import _PALETTES, DEGRADATION_NAMES, ClassDef, _colour_with_luma


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
