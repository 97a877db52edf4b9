"""The synthetic classes (shape, texture, palette), their colours, and the named dataset variants."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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
