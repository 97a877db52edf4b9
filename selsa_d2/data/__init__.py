"""Video data: dataset readers and registration, frame index, reference sampling, mapper, loaders.

Importing this package registers the builtin datasets (lazily; see ``datasets.py``).
"""

from .classes import IMAGENET_VID_CLASSES, IMAGENET_VID_WNIDS, read_classes_file
from .coco_vid import (
    frames_to_coco_vid,
    load_coco_vid_frames,
    load_coco_vid_json,
    read_coco_vid_categories,
    write_coco_vid_json,
)
from .datasets import (
    BUILTIN_VID_DATASETS,
    register_all_builtin,
    register_datasets_from_config,
    register_vid_dataset,
    unregister_vid_dataset,
)
from .frame_index import (
    VideoFrameIndex,
    get_frame_index,
    register_frame_index,
    unregister_frame_index,
)
from .ilsvrc import load_ilsvrc_det, load_ilsvrc_vid, load_ilsvrc_vid_frames, parse_ilsvrc_xml
from .sampling import TestReferenceSampler, sample_train_refs

register_all_builtin()

# --- mapper and loaders ---
from .build import build_video_test_loader, build_video_train_loader  # noqa: E402
from .video_mapper import VideoDatasetMapper  # noqa: E402
