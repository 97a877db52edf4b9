"""Rendering a planned video (:class:`~selsa_d2.synthetic.plan.VideoSpec`) into frames, boxes and
the degradations of every frame."""

import math
from collections.abc import Sequence

import cv2
import numpy as np

from .catalog import _LUMA, ClassDef
from .plan import ObjectTrack, Stretch, VideoSpec

MIN_BOX_SIDE = 4  # px; an object with a smaller visible side is not annotated in that frame


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
