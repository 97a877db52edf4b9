"""A synthetic video object detection dataset in the raw ILSVRC2015 VID layout.

One module per job: :mod:`.catalog` (classes, palettes, named variants), :mod:`.plan` (what is
random about one video), :mod:`.render` (frames, boxes and degradations of a planned video),
:mod:`.ilsvrc_writer` (the files on disk). ``datasets/make_synthetic_vid.py`` is the command line.
"""

from .catalog import CLASS_CATALOG, DEFAULT_CLASSES, DEGRADATION_NAMES, VARIANTS, resolve_classes
from .ilsvrc_writer import generate, is_complete, key_frame_indices, video_relpath
from .plan import VideoSpec, make_video_spec
from .render import render_video

__all__ = [
    "CLASS_CATALOG",
    "DEFAULT_CLASSES",
    "DEGRADATION_NAMES",
    "VARIANTS",
    "VideoSpec",
    "generate",
    "is_complete",
    "key_frame_indices",
    "make_video_spec",
    "render_video",
    "resolve_classes",
    "video_relpath",
]
