"""mmtracking's COCO-VID json: reader (json -> dataset dicts) and writer (dataset dicts -> json).

Format (as written by mmtracking's ``imagenet2coco_vid.py`` / ``imagenet2coco_det.py``)::

    categories:  [{id (1-based), name, encode_name (WordNet id; may be absent or null)}]
    videos:      [{id, name (dir relative to the image root), vid_train_frames: [frame ids]}]
    images:      [{id, file_name (relative to the image root), height, width,
                   frame_id (0-based), video_id, is_vid_train_frame}]
    annotations: [{id, video_id, image_id, category_id, instance_id, bbox [x, y, w, h], area,
                   iscrowd, occluded, generated}]

DET files (``imagenet_det_30plus1cls.json``) have no ``videos`` and no ``video_id``/``frame_id``
per image: each image is read as a one-frame video whose ``video_id`` is the image id, and
instance ids default to the annotation's position among the image's kept annotations. Their
extra "other_categeries" class is not one of the 30 VID classes, so its objects are skipped.

Extra field of our own: ``images[i]["degradations"]`` (list of str; only written when non-empty).
"""

import json
import logging
import os
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Sequence

from detectron2.structures import BoxMode
from detectron2.utils.file_io import PathManager

from ..file_io import AtomicPathManager
from .reader_utils import (
    ClassMatcher,
    ReadStats,
    local_abspath,
    read_flag,
    read_string_list,
    sanitize_box,
)

logger = logging.getLogger(__name__)

__all__ = [
    "load_coco_vid_json",
    "load_coco_vid_frames",
    "read_coco_vid_categories",
    "frames_to_coco_vid",
    "write_coco_vid_json",
]


def _load_json(json_file: str) -> dict:
    if not PathManager.exists(json_file):
        raise FileNotFoundError(f"COCO-VID annotation file {json_file} does not exist")
    with PathManager.open(json_file, "rb") as f:
        raw = f.read()
    try:
        data = json.loads(raw.decode("utf-8-sig"))  # a byte-order mark is dropped
    except UnicodeDecodeError as e:
        raise ValueError(
            f"Cannot parse COCO-VID json {json_file}: not UTF-8 (byte offset {e.start})"
        ) from None
    except json.JSONDecodeError as e:
        raise ValueError(f"Cannot parse COCO-VID json {json_file}: {e}") from None
    if not isinstance(data, dict) or "images" not in data or "categories" not in data:
        raise ValueError(f"{json_file} is not a COCO-VID file: it needs 'images' and 'categories'")
    for key in ("images", "categories", "annotations", "videos"):
        entries = data.get(key, [])
        if not isinstance(entries, list):
            raise ValueError(f"{json_file}: '{key}' must be a list, got {type(entries).__name__}")
        bad = next((i for i, e in enumerate(entries) if not isinstance(e, dict)), None)
        if bad is not None:
            raise ValueError(
                f"{json_file}: {key}[{bad}] must be an object, got {entries[bad]!r:.80}"
            )
    _check_categories(data["categories"], json_file)
    ids = [img["id"] for img in data["images"] if "id" in img]
    counts = Counter(repr(i) for i in ids)  # repr: ids of any json type, hashable or not
    dup = next((i for i in ids if counts[repr(i)] > 1), None)
    if dup is not None:
        raise ValueError(
            f"{json_file}: image id {dup!r} appears {counts[repr(dup)]} times (image ids must be unique; "
            "annotations are matched to images by id)"
        )
    return data


def _check_categories(categories: list[dict], json_file: str) -> None:
    for i, c in enumerate(categories):
        missing = [k for k in ("id", "name") if k not in c]
        if missing:
            raise ValueError(
                f"{json_file}: categories[{i}] ({c!r:.80}) has no {' / '.join(missing)}"
            )
        if not isinstance(c["id"], int) or isinstance(c["id"], bool):
            raise ValueError(f"{json_file}: categories[{i}] has a non-integer id {c['id']!r}")
    ids = [c["id"] for c in categories]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"{json_file}: category id {dup} appears more than once")


def _categories(data: dict) -> tuple[list[str], list[str]]:
    cats = sorted(data["categories"], key=lambda c: c["id"])
    return [str(c["name"]) for c in cats], [str(c.get("encode_name") or c["name"]) for c in cats]


def read_coco_vid_categories(json_file: str) -> tuple[list[str], list[str]]:
    """``(names, ids)`` of a json's categories ordered by category id (ids: ``encode_name`` or name)."""
    return _categories(_load_json(json_file))


def read_coco_vid_category_ids(
    json_file: str, class_names: Sequence[str], wnids: Sequence[str]
) -> dict[int, int] | None:
    """``{json category id: contiguous class index}`` for the classes ``(class_names, wnids)``
    (matched as :func:`load_coco_vid_frames` does), or None unless every class has exactly one
    category: Detectron2's ``thing_dataset_id_to_contiguous_id``, so that outputs carry the json's
    own (possibly non-contiguous) ids."""
    cat_map = _category_map(_load_json(json_file), class_names, wnids)
    mapping = {int(k): v for k, v in cat_map.items() if v is not None}
    if sorted(mapping.values()) != list(range(len(class_names))):
        return None
    return mapping


def _instance_id(ann: dict, default: int, where: str) -> int:
    """``ann["instance_id"]`` as an int (a whole number, also written as 3.0 or "3"), else ``default``."""
    value = ann.get("instance_id", default)
    if isinstance(value, bool):
        value = None
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int):
        raise ValueError(f"{where}: instance_id must be an integer, got {ann.get('instance_id')!r}")
    return value


def _category_map(data: dict, names: Sequence[str], ids: Sequence[str]) -> dict[int, int | None]:
    matcher = ClassMatcher(names, ids)
    out = {}
    for c in data["categories"]:
        idx = matcher(str(c["encode_name"])) if c.get("encode_name") else None
        out[c["id"]] = idx if idx is not None else matcher(str(c["name"]))
    return out


def _image_size(img: dict, json_file: str) -> tuple[int, int]:
    """``(width, height)`` of a json image entry, checked (the file and image id named on error)."""
    missing = [k for k in ("file_name", "width", "height") if k not in img]
    if missing:
        raise ValueError(f"{json_file}: image {img['id']} has no {missing}")
    try:
        w, h = int(img["width"]), int(img["height"])
    except (TypeError, ValueError):
        raise ValueError(
            f"{json_file}: image {img['id']} needs numeric width and height, got {img['width']!r} x {img['height']!r}"
        ) from None
    if w <= 0 or h <= 0:
        raise ValueError(f"{json_file}: image {img['id']} has size {w}x{h}, which is not positive")
    return w, h


def load_coco_vid_frames(
    json_file: str,
    image_root: str,
    *,
    class_names: Sequence[str] | None = None,
    wnids: Sequence[str] | None = None,
    dataset_name: str = "",
) -> tuple[list[dict], list[tuple[int, int]]]:
    """Read every image of a COCO-VID json.

    Args:
        image_root: directory the images' ``file_name`` are relative to.
        class_names, wnids: the dataset's classes in order. Categories are matched by
            ``encode_name`` against ``wnids``, else by ``name``; annotations of other categories are
            skipped (counted and logged). Both None: the json's categories in id order.

    Returns:
        ``(frames, flagged)``: frame dicts video by video in frame order (videos in the order of
        ``videos``, else of first appearance), and the ``(video_id, frame_id)`` of images with
        ``is_vid_train_frame`` true.
    """
    data = _load_json(json_file)
    if class_names is None and wnids is None:
        class_names, wnids = _categories(data)
    elif class_names is None or wnids is None:
        class_names = list(class_names if class_names is not None else wnids)
        wnids = list(wnids if wnids is not None else class_names)
    cat_map = _category_map(data, class_names, wnids)
    image_root = local_abspath(image_root)

    as_video = any("video_id" in img for img in data["images"])
    video_names = {
        v["id"]: os.path.basename(str(v.get("name", v["id"])).rstrip("/"))
        for v in data.get("videos", [])
    }
    order = OrderedDict((vid, []) for vid in video_names)
    for img in data["images"]:
        if "id" not in img:
            raise ValueError(f"{json_file}: image {img.get('file_name')!r} has no 'id'")
        if as_video and ("video_id" not in img or "frame_id" not in img):
            raise ValueError(
                f"{json_file}: image {img.get('id')} has no video_id/frame_id while others have"
            )
        order.setdefault(img["video_id"] if as_video else img["id"], []).append(img)

    anns_by_image = defaultdict(list)
    for ann in data.get("annotations", []):
        anns_by_image[ann.get("image_id")].append(ann)
    image_ids = {img.get("id") for img in data["images"]}
    orphans = {i: len(a) for i, a in anns_by_image.items() if i not in image_ids}
    if orphans:
        logger.warning(
            "%s: skipped %d annotations of images not in the file (image_id e.g. %s)",
            json_file,
            sum(orphans.values()),
            sorted(orphans, key=str)[:5],
        )

    stats = ReadStats()
    frames: list[dict] = []
    flagged: list[tuple[int, int]] = []
    for video_id, imgs in order.items():
        if not imgs:
            logger.warning("%s: video %s has no images; ignored", json_file, video_id)
            continue
        imgs = sorted(imgs, key=lambda im: im.get("frame_id", 0))
        fids = [im.get("frame_id", 0) for im in imgs]
        if fids != list(range(len(imgs))):
            raise ValueError(
                f"{json_file}: video {video_id} has frame ids {fids[:10]}{'...' if len(fids) > 10 else ''}, "
                f"expected 0..{len(imgs) - 1}"
            )
        for img in imgs:
            w, h = _image_size(img, json_file)
            annotations = []
            for ann in anns_by_image.get(img["id"], []):
                cat = ann.get("category_id")
                cls = cat_map.get(cat)
                if cls is None:
                    stats.unknown_class[str(cat)] += 1
                    continue
                where = f"{json_file} (image {img['id']}, annotation {ann.get('id')})"
                bb = ann.get("bbox")
                try:
                    raw = [bb[0], bb[1], float(bb[0]) + float(bb[2]), float(bb[1]) + float(bb[3])]
                except (TypeError, ValueError, IndexError):
                    raw = bb
                box = sanitize_box(raw, w, h, where, stats)
                if box is None:
                    continue
                annotations.append(
                    {
                        "bbox": box,
                        "bbox_mode": BoxMode.XYXY_ABS,
                        "category_id": cls,
                        "instance_id": _instance_id(ann, len(annotations), where),
                        "occluded": read_flag(ann.get("occluded"), False, "occluded", where),
                        "generated": read_flag(ann.get("generated"), False, "generated", where),
                        "iscrowd": int(read_flag(ann.get("iscrowd"), False, "iscrowd", where)),
                    }
                )
            if not annotations:
                stats.empty_frames += 1
            fid = img.get("frame_id", 0)
            frames.append(
                {
                    "file_name": os.path.join(image_root, img["file_name"]),
                    "height": h,
                    "width": w,
                    "image_id": img["id"],
                    "video_id": video_id,
                    "frame_id": fid,
                    "video_length": len(imgs),
                    "video_name": video_names.get(video_id)
                    or (
                        str(video_id)
                        if as_video
                        else "det/" + os.path.splitext(img["file_name"])[0]
                    ),
                    "dataset_name": dataset_name,
                    "annotations": annotations,
                    "degradations": read_string_list(
                        img.get("degradations"), "degradations", f"{json_file} (image {img['id']})"
                    ),
                }
            )
            flag = img.get("is_vid_train_frame")
            if read_flag(flag, False, "is_vid_train_frame", f"{json_file} (image {img['id']})"):
                flagged.append((video_id, fid))
    stats.log(dataset_name or json_file, len(class_names))
    logger.info(
        "Read %d videos, %d images (%d flagged is_vid_train_frame) from %s",
        len(order),
        len(frames),
        len(flagged),
        json_file,
    )
    return frames, flagged


def load_coco_vid_json(
    json_file: str,
    image_root: str,
    *,
    class_names: Sequence[str] | None = None,
    wnids: Sequence[str] | None = None,
    dataset_name: str = "",
    key_frames_only: bool = True,
) -> list[dict]:
    """Key frames of a COCO-VID json: images with ``is_vid_train_frame`` true when
    ``key_frames_only`` and any image is flagged; otherwise every image."""
    frames, flagged = load_coco_vid_frames(
        json_file, image_root, class_names=class_names, wnids=wnids, dataset_name=dataset_name
    )
    return select_key_frames(frames, flagged if key_frames_only else None, json_file)


def select_key_frames(
    frames: list[dict], keys: list[tuple[int, int]] | None, source: str
) -> list[dict]:
    """Frames named by ``keys`` (None: all). An empty ``keys`` (a file that flags no
    ``is_vid_train_frame``, like mmtracking's val json) also means all, with a log line."""
    if keys is None:
        return frames
    if not keys:
        logger.info(
            "%s flags no key frames (is_vid_train_frame); using every frame as a key frame", source
        )
        return frames
    keyset = set(keys)
    return [f for f in frames if (f["video_id"], f["frame_id"]) in keyset]


def _num(v: float):
    return int(v) if float(v).is_integer() else float(v)


def frames_to_coco_vid(
    frames: Sequence[dict],
    *,
    class_names: Sequence[str],
    wnids: Sequence[str],
    image_root: str,
    key_frames: Sequence[tuple[int, int]] | None = None,
    as_video: bool = True,
) -> dict:
    """Build a COCO-VID dict from frame dicts (all frames of each video, grouped by video).

    Args:
        image_root: ``file_name`` is written relative to it (every frame must lie under it).
        key_frames: ``(video_id, frame_id)`` written with ``is_vid_train_frame: true``; None: none
            (mmtracking's val json flags no frame).
        as_video: False writes a DET-style file (no ``videos``, no per-image video fields).
    """
    image_root = local_abspath(image_root)
    keyset = set(key_frames or [])
    out = {
        "categories": [
            {"id": i + 1, "name": n, "encode_name": w}
            for i, (n, w) in enumerate(zip(class_names, wnids))
        ],
        "videos": [],
        "images": [],
        "annotations": [],
    }
    videos: OrderedDict[int, dict] = OrderedDict()
    for f in frames:
        rel = os.path.relpath(f["file_name"], image_root)
        if rel.startswith(".."):
            raise ValueError(f"Frame {f['file_name']} is not under the image root {image_root}")
        is_key = (f["video_id"], f["frame_id"]) in keyset
        img = {"file_name": rel, "height": f["height"], "width": f["width"], "id": f["image_id"]}
        if as_video:
            img.update(frame_id=f["frame_id"], video_id=f["video_id"])
            if f["video_id"] not in videos:
                videos[f["video_id"]] = {
                    "id": f["video_id"],
                    "name": os.path.dirname(rel),
                    "vid_train_frames": [],
                }
            if is_key:
                videos[f["video_id"]]["vid_train_frames"].append(f["frame_id"])
        img["is_vid_train_frame"] = is_key
        if f.get("degradations"):
            img["degradations"] = list(f["degradations"])
        out["images"].append(img)
        for a in f["annotations"]:
            if a.get("bbox_mode", BoxMode.XYXY_ABS) != BoxMode.XYXY_ABS:
                raise ValueError(
                    f"{f['file_name']}: only XYXY_ABS boxes can be written, got {a['bbox_mode']}"
                )
            x1, y1, x2, y2 = a["bbox"]
            w, h = x2 - x1, y2 - y1
            ann = {"id": len(out["annotations"]) + 1}
            if as_video:
                ann["video_id"] = f["video_id"]
            ann.update(image_id=f["image_id"], category_id=a["category_id"] + 1)
            if as_video:
                ann["instance_id"] = a["instance_id"]
            ann.update(
                bbox=[_num(x1), _num(y1), _num(w), _num(h)],
                area=_num(w * h),
                iscrowd=int(a.get("iscrowd", 0)),
            )
            if as_video:
                ann.update(
                    occluded=bool(a.get("occluded", False)),
                    generated=bool(a.get("generated", False)),
                )
            out["annotations"].append(ann)
    if as_video:
        out["videos"] = list(videos.values())
    else:
        del out["videos"]
    return out


def write_coco_vid_json(frames: Sequence[dict], json_file: str, **kwargs) -> dict:
    """Write :func:`frames_to_coco_vid` ``(frames, **kwargs)`` to ``json_file``; returns the dict."""
    data = frames_to_coco_vid(frames, **kwargs)
    PathManager.mkdirs(
        os.path.dirname(os.path.abspath(json_file))
        if "://" not in json_file
        else os.path.dirname(json_file)
    )
    with AtomicPathManager().open(json_file, "w") as f:  # never a half-written json
        json.dump(data, f)
    logger.info(
        "Wrote %d images, %d annotations to %s",
        len(data["images"]),
        len(data["annotations"]),
        json_file,
    )
    return data
