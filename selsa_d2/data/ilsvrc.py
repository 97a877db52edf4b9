"""Readers for the raw ILSVRC2015 VID and DET layouts (and custom datasets laid out the same way).

VID layout under ``root``::

    Data/VID/<split>/<video>/%06d.JPEG          frames, numbered from 0
    Annotations/VID/<split>/<video>/%06d.xml    one XML per frame (may have no <object>)
    Lists/VID_train_15frames.txt                "train/<...>/<video> 1 <frame no> <num frames>"
    Lists/VID_val_videos.txt                    "val/<video> <idx> <start> <num frames>"

DET layout: ``Lists/DET_train_30classes.txt`` ("train/<path> <n>"), images
``Data/DET/<path>.JPEG``, XML ``Annotations/DET/<path>.xml``. Every DET image becomes a one-frame
video (``frame_id`` 0, ``video_length`` 1).

Frame numbers in ``VID_train_15frames.txt`` are read as 0-based, as by the list's authors (FGFA
reads ``'%06d' % frame_no``; the numbers are the segment centres ``int((i + 0.5) * n / 15)``, e.g.
10, 30, ..., 290 for 300 frames). mmtracking's converter
(``tools/convert_datasets/ilsvrc/imagenet2coco_vid.py``, ``parse_train_list``) subtracts 1,
flagging the frame before; pass ``list_frame_base=1`` to reproduce that. The official list names
frame 0 on 144 lines; mmtracking turns those into frame -1, which no image carries, so they flag
nothing (57,690 flagged key frames instead of 57,834). With ``list_frame_base=1`` such lines are
skipped, counted and logged, for the same result.

``DET_train_30classes.txt`` names some images more than once (378 paths on 402 extra lines of
53,639). FGFA, MEGA and mmtracking (``imagenet2coco_det.py`` writes one image per line) keep every
line as its own sample, so a repeated image is sampled more often; :func:`load_ilsvrc_det` does the
same and logs the count.

Readers return frames in the dataset-dict format of ``selsa_d2/data`` (see the package docs).
Errors name the offending file (and list line); documented skips are counted and logged once
per dataset.
"""

import copy
import logging
import os
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Sequence

from detectron2.structures import BoxMode
from detectron2.utils.file_io import PathManager

from .reader_utils import (
    ClassMatcher,
    ReadStats,
    local_abspath,
    read_flag,
    read_text_lines,
    sanitize_box,
)

logger = logging.getLogger(__name__)

VID_TRAIN_LIST = "Lists/VID_train_15frames.txt"
VID_VAL_LIST = "Lists/VID_val_videos.txt"
DET_TRAIN_LIST = "Lists/DET_train_30classes.txt"

__all__ = [
    "parse_ilsvrc_xml",
    "parse_vid_list",
    "parse_det_list",
    "load_ilsvrc_vid",
    "load_ilsvrc_vid_frames",
    "load_ilsvrc_det",
    "default_list_file",
]


def default_list_file(split: str, layout: str = "vid") -> str:
    """The list file (relative to the ILSVRC root) used for ``split`` of ``layout``."""
    if layout == "det":
        return DET_TRAIN_LIST
    return VID_TRAIN_LIST if split == "train" else VID_VAL_LIST


def _text(elem, tag: str) -> str | None:
    t = elem.findtext(tag)
    return None if t is None else t.strip()


def parse_ilsvrc_xml(
    xml_file: str, matcher: ClassMatcher, stats: ReadStats, *, with_track: bool = True
) -> dict:
    """Parse one ILSVRC annotation XML.

    Args:
        xml_file: path of the XML.
        matcher: maps ``<name>`` (WordNet id or class name) to a 0-based class index.
        stats: skip counters of the dataset being read.
        with_track: VID XML (``trackid``/``occluded``/``generated`` per object). For DET XML
            the instance id is the object's position among the kept objects.

    Returns:
        ``{"width", "height", "annotations", "degradations"}``.

    Raises:
        FileNotFoundError: the XML is missing. ValueError: it cannot be parsed or has no valid
        ``<size>``.
    """
    try:
        with PathManager.open(xml_file, "rb") as f:
            root = ET.parse(f).getroot()
    except FileNotFoundError:
        raise FileNotFoundError(f"Annotation file {xml_file} does not exist") from None
    except ET.ParseError as e:
        raise ValueError(f"Cannot parse annotation XML {xml_file}: {e}") from None
    size = root.find("size")
    if size is None:
        raise ValueError(f"Annotation XML {xml_file} has no <size> element")
    try:
        width, height = int(float(_text(size, "width"))), int(float(_text(size, "height")))
    except (TypeError, ValueError):
        raise ValueError(
            f"Annotation XML {xml_file}: <size> needs numeric <width> and <height>, got "
            f"{_text(size, 'width')!r} x {_text(size, 'height')!r}"
        ) from None
    if width <= 0 or height <= 0:
        raise ValueError(f"Annotation XML {xml_file}: image size {width}x{height} is not positive")

    annotations = []
    for obj in root.findall("object"):
        label = _text(obj, "name")
        cls = matcher(label)
        if cls is None:
            stats.unknown_class[label] += 1
            continue
        bnd = obj.find("bndbox")
        raw = None if bnd is None else [_text(bnd, k) for k in ("xmin", "ymin", "xmax", "ymax")]
        box = sanitize_box(raw, width, height, xml_file, stats)
        if box is None:
            continue
        if with_track:
            try:
                instance_id = int(_text(obj, "trackid"))
            except (TypeError, ValueError):
                logger.warning(
                    "%s: skipping object without an integer <trackid> (%r)",
                    xml_file,
                    _text(obj, "trackid"),
                )
                stats.malformed += 1
                continue
        else:
            instance_id = len(annotations)
        annotations.append(
            {
                "bbox": box,
                "bbox_mode": BoxMode.XYXY_ABS,
                "category_id": cls,
                "instance_id": instance_id,
                "occluded": read_flag(_text(obj, "occluded"), False, "<occluded>", xml_file),
                "generated": read_flag(_text(obj, "generated"), False, "<generated>", xml_file),
                "iscrowd": 0,
            }
        )
    if not annotations:
        stats.empty_frames += 1
    deg = _text(root, "degradations")
    degradations = [d.strip() for d in deg.split(",") if d.strip()] if deg else []
    return {
        "width": width,
        "height": height,
        "annotations": annotations,
        "degradations": degradations,
    }


def parse_vid_list(
    list_file: str, key_frames_listed: bool, list_frame_base: int = 0
) -> "OrderedDict[str, dict]":
    """Parse a VID list file.

    Args:
        key_frames_listed: True for ``VID_train_15frames.txt``-style lists (one line per key
            frame: ``<video> <any> <frame no> <num frames>``, frame numbers counted from
            ``list_frame_base``); False for ``VID_val_videos.txt``-style lists (one line per
            video, every frame is a key frame; the frame base is not used).
        list_frame_base: the number of a video's first frame in the list: 0 (default, as FGFA
            reads the official lists) or 1 (as mmtracking's converter). With 1, lines naming
            frame 0 are skipped (mmtracking maps them to frame -1, which flags no frame); their
            count is logged. Other numbers outside the video are an error.

    Returns:
        ``{video_rel: {"num_frames", "key_frames" (0-based ids, or None: all), "line"}}`` in file
        order; ``line`` is ``"<list file>:<lineno>"`` of the video's first line. A video whose
        every line was skipped is kept, with no key frame.
    """
    if not PathManager.exists(list_file):
        raise FileNotFoundError(f"List file {list_file} does not exist")
    if list_frame_base not in (0, 1):
        raise ValueError(f"list_frame_base must be 0 or 1, got {list_frame_base!r}")
    videos: OrderedDict[str, dict] = OrderedDict()
    frame_zero_lines = []
    for lineno, line in read_text_lines(list_file):
        parts = line.split()
        if not parts:
            continue
        where = f"{list_file}:{lineno}"
        if len(parts) < 4:
            raise ValueError(
                f"{where}: expected '<video> <n> <frame> <num frames>', got {line.strip()!r}"
            )
        try:
            frame_no, num_frames = int(parts[2]), int(parts[-1])
        except ValueError:
            raise ValueError(
                f"{where}: non-integer frame number / frame count in {line.strip()!r}"
            ) from None
        if num_frames <= 0:
            raise ValueError(f"{where}: video {parts[0]} has frame count {num_frames}")
        video = parts[0].strip("/")
        info = videos.get(video)
        if info is None:
            info = videos[video] = {
                "num_frames": num_frames,
                "key_frames": [] if key_frames_listed else None,
                "line": where,
            }
        elif info["num_frames"] != num_frames:
            raise ValueError(
                f"{where}: video {video} has {num_frames} frames here but {info['num_frames']} at {info['line']}"
            )
        elif not key_frames_listed:
            raise ValueError(f"{where}: video {video} is listed twice (first at {info['line']})")
        if key_frames_listed:
            b = list_frame_base
            if b == 1 and frame_no == 0:
                frame_zero_lines.append(lineno)
                continue
            if not b <= frame_no < num_frames + b:
                raise ValueError(
                    f"{where}: frame number {frame_no} outside {b}..{num_frames - 1 + b} ({b}-based numbers)"
                )
            if frame_no - b not in info["key_frames"]:
                info["key_frames"].append(frame_no - b)
    if not videos:
        raise ValueError(f"List file {list_file} lists no videos")
    if frame_zero_lines:
        logger.warning(
            "%s: skipped %d lines naming frame 0, which a 1-based list (list_frame_base=1) cannot hold; "
            "mmtracking's converter maps them to frame -1 and flags no frame for them (lines %s%s)",
            list_file,
            len(frame_zero_lines),
            frame_zero_lines[:5],
            "..." if len(frame_zero_lines) > 5 else "",
        )
    return videos


def _check_video_dir(directory: str, ext: str, num_frames: int, where: str, video: str) -> None:
    if not PathManager.isdir(directory):
        raise FileNotFoundError(f"{where}: video {video}: directory {directory} does not exist")
    present = {n for n in PathManager.ls(directory) if n.endswith(ext)}
    expected = {f"{i:06d}{ext}" for i in range(num_frames)}
    if present != expected:
        missing = sorted(expected - present)
        extra = sorted(present - expected)
        raise ValueError(
            f"{where}: video {video} has {num_frames} frames in the list but {directory} holds {len(present)} "
            f"'*{ext}' files (missing: {missing[:5]}{'...' if len(missing) > 5 else ''}; "
            f"unexpected: {extra[:5]}{'...' if len(extra) > 5 else ''})"
        )


def load_ilsvrc_vid_frames(
    root: str,
    split: str,
    class_names: Sequence[str],
    wnids: Sequence[str],
    *,
    list_file: str | None = None,
    key_frames_listed: bool | None = None,
    list_frame_base: int = 0,
    dataset_name: str = "",
    progress: bool = False,
) -> tuple[list[dict], list[tuple[int, int]]]:
    """Read every frame of the videos named by a VID list.

    Args:
        root: ILSVRC root (holding ``Data/``, ``Annotations/``, ``Lists/``).
        split: ``"train"`` or ``"val"`` (any name works for custom data; only the default list
            file and list format depend on it).
        class_names, wnids: the dataset's classes in order; objects with another label are skipped.
        list_file: list path (absolute, or relative to ``root``); default by split.
        key_frames_listed: list format (see :func:`parse_vid_list`); default ``split == "train"``.
        list_frame_base: see :func:`parse_vid_list`.

    Returns:
        ``(frames, key_frames)``: all frame dicts (video by video, in frame order; 1-based
        ``image_id``/``video_id`` in list order) and the ``(video_id, frame_id)`` of the key frames.
    """
    root = local_abspath(root)
    list_file = os.path.join(root, list_file or default_list_file(split))
    if key_frames_listed is None:
        key_frames_listed = split == "train"
    videos = parse_vid_list(list_file, key_frames_listed, list_frame_base)
    matcher, stats = ClassMatcher(class_names, wnids), ReadStats()
    frames: list[dict] = []
    keys: list[tuple[int, int]] = []
    items = list(videos.items())
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc=f"{dataset_name or split} videos", unit="video")
    for video_id, (video, info) in enumerate(items, 1):
        n = info["num_frames"]
        img_dir = os.path.join(root, "Data", "VID", video)
        ann_dir = os.path.join(root, "Annotations", "VID", video)
        _check_video_dir(img_dir, ".JPEG", n, info["line"], video)
        _check_video_dir(ann_dir, ".xml", n, info["line"], video)
        for frame_id in range(n):
            ann = parse_ilsvrc_xml(os.path.join(ann_dir, f"{frame_id:06d}.xml"), matcher, stats)
            frames.append(
                {
                    "file_name": os.path.join(img_dir, f"{frame_id:06d}.JPEG"),
                    "height": ann["height"],
                    "width": ann["width"],
                    "image_id": len(frames) + 1,
                    "video_id": video_id,
                    "frame_id": frame_id,
                    "video_length": n,
                    "video_name": os.path.basename(video),
                    "dataset_name": dataset_name,
                    "annotations": ann["annotations"],
                    "degradations": ann["degradations"],
                }
            )
        key_ids = range(n) if info["key_frames"] is None else sorted(info["key_frames"])
        keys.extend((video_id, k) for k in key_ids)
    stats.log(dataset_name or list_file, len(wnids))
    logger.info(
        "Read %d videos, %d frames (%d key frames) from %s",
        len(videos),
        len(frames),
        len(keys),
        list_file,
    )
    return frames, keys


def load_ilsvrc_vid(
    root: str,
    split: str,
    class_names: Sequence[str],
    wnids: Sequence[str],
    *,
    list_file: str | None = None,
    key_frames_only: bool = True,
    dataset_name: str = "",
) -> list[dict]:
    """Key frames (or all frames) of a raw VID split; see :func:`load_ilsvrc_vid_frames`."""
    frames, keys = load_ilsvrc_vid_frames(
        root, split, class_names, wnids, list_file=list_file, dataset_name=dataset_name
    )
    if not key_frames_only:
        return frames
    keyset = set(keys)
    return [f for f in frames if (f["video_id"], f["frame_id"]) in keyset]


def parse_det_list(list_file: str) -> list[tuple[str, str]]:
    """Parse a DET list (``"train/<path> <n>"`` lines; a ``.JPEG`` suffix is dropped).

    Returns:
        ``[(path, "<list file>:<lineno>")]``, one entry per non-blank line in file order; a path
        listed more than once appears once per line (repeats are logged).
    """
    if not PathManager.exists(list_file):
        raise FileNotFoundError(f"List file {list_file} does not exist")
    items: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for lineno, line in read_text_lines(list_file):
        parts = line.split()
        if not parts:
            continue
        rel = parts[0].strip("/")
        if rel.endswith(".JPEG"):
            rel = rel[: -len(".JPEG")]
        seen[rel] = seen.get(rel, 0) + 1
        items.append((rel, f"{list_file}:{lineno}"))
    repeats = len(items) - len(seen)
    if repeats:
        logger.info(
            "%s: %d lines repeat an image listed before (%d images listed more than once); each line is "
            "kept as its own sample, as FGFA and mmtracking do",
            list_file,
            repeats,
            sum(n > 1 for n in seen.values()),
        )
    return items


def load_ilsvrc_det(
    root: str,
    class_names: Sequence[str],
    wnids: Sequence[str],
    *,
    list_file: str | None = None,
    dataset_name: str = "",
    progress: bool = False,
) -> list[dict]:
    """Read the DET images of a list (``"train/<path> <n>"`` lines), each as a one-frame video.

    ``image_id`` and ``video_id`` are both the 1-based position in the list (blank lines not
    counted); ``video_name`` is ``"det/<path>"``. A path listed more than once gives one frame per
    line (same file, own ids), as FGFA, MEGA and mmtracking's ``imagenet2coco_det.py``, so it is
    sampled more often; the number of repeats is logged. Objects of other classes are skipped
    (counted and logged).
    """
    root = local_abspath(root)
    list_file = os.path.join(root, list_file or DET_TRAIN_LIST)
    items = parse_det_list(list_file)
    matcher, stats = ClassMatcher(class_names, wnids), ReadStats()
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc=f"{dataset_name or 'DET'} images", unit="img")
    frames = []
    parsed: dict[str, dict] = {}  # a repeated image is read (and its skips counted) once
    for i, (rel, where) in enumerate(items, 1):
        image = os.path.join(root, "Data", "DET", rel + ".JPEG")
        if rel in parsed:
            ann = copy.deepcopy(parsed[rel])
        else:
            if not PathManager.exists(image):
                raise FileNotFoundError(f"{where}: image {image} does not exist")
            ann = parsed[rel] = parse_ilsvrc_xml(
                os.path.join(root, "Annotations", "DET", rel + ".xml"),
                matcher,
                stats,
                with_track=False,
            )
        frames.append(
            {
                "file_name": image,
                "height": ann["height"],
                "width": ann["width"],
                "image_id": i,
                "video_id": i,
                "frame_id": 0,
                "video_length": 1,
                "video_name": "det/" + rel,
                "dataset_name": dataset_name,
                "annotations": ann["annotations"],
                "degradations": ann["degradations"],
            }
        )
    if not frames:
        raise ValueError(f"List file {list_file} lists no images")
    stats.log(dataset_name or list_file, len(wnids))
    logger.info(
        "Read %d DET samples (%d distinct images) from %s", len(frames), len(parsed), list_file
    )
    return frames
