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

Python API: ``selsa_d2.synthetic.generate(out_dir, num_train_videos=..., ...) -> Path``; this
script is its command line.
"""

import argparse
import logging
import sys

from selsa_d2.synthetic import CLASS_CATALOG, DEFAULT_CLASSES, VARIANTS, generate
from selsa_d2.synthetic.catalog import COLOUR_MODES, DEGRADATION_KINDS, DEGRADATION_LAYOUTS


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
