"""Dataset registration: ``register_vid_dataset`` and the builtin datasets.

Registering a dataset registers three lazy things under its name:

- ``DatasetCatalog``: the key frames (VID train: the listed frames; val: all; DET: all images).
- the frame index (``selsa_d2.data.frame_index``): every frame of every video, for references.
- ``MetadataCatalog``: ``thing_classes``, ``wnids``, ``evaluator_type = "vid"``, and
  ``json_file``/``image_root`` or ``root``.

Nothing is read at registration: the annotation files are parsed once per process when the
key frames or the frame index are first asked for (both share that one read), and class lists
that come from a file (``classes.txt``, json categories) are read when the metadata's
``thing_classes``/``wnids`` are first used. A dataset whose files are missing therefore stays
registered and raises ``FileNotFoundError`` naming the expected path when it is used.
"""

import copy
import logging
import os
from collections.abc import Callable, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.utils.file_io import PathManager

from .classes import IMAGENET_VID_CLASSES, IMAGENET_VID_WNIDS, check_class_list, read_classes_file
from .coco_vid import (
    load_coco_vid_frames,
    read_coco_vid_categories,
    read_coco_vid_category_ids,
    select_key_frames,
)
from .frame_index import get_frame_index, register_frame_index, unregister_frame_index
from .ilsvrc import default_list_file, load_ilsvrc_det, load_ilsvrc_vid_frames
from .reader_utils import local_abspath

logger = logging.getLogger(__name__)

__all__ = [
    "register_vid_dataset",
    "unregister_vid_dataset",
    "register_datasets_from_config",
    "register_all_builtin",
    "BUILTIN_VID_DATASETS",
]

_CLASS_SOURCES: dict[str, Callable[[], tuple[list[str], list[str]]]] = {}
# json datasets: name -> reads {json category id: contiguous index} (None: no such mapping)
_ID_MAP_SOURCES: dict[str, Callable[[], dict[int, int] | None]] = {}
ID_MAP_KEY = "thing_dataset_id_to_contiguous_id"


class _ClassSpec:
    """A dataset's class list, resolved on first use and cached."""

    def __init__(self, resolve: Callable[[], tuple[Sequence[str], Sequence[str]]]):
        self._resolve = resolve
        self._value: tuple[list[str], list[str]] | None = None

    def __call__(self) -> tuple[list[str], list[str]]:
        if self._value is None:
            names, ids = self._resolve()
            names, ids = list(names), list(ids)
            check_class_list(names, ids)
            self._value = (names, ids)
        return self._value


class VidMetadata(Metadata):
    """Metadata whose ``thing_classes``/``wnids`` are read from the dataset's files on first access."""

    def __getattr__(self, key):
        if key == ID_MAP_KEY and key not in self.__dict__:
            source = _ID_MAP_SOURCES.get(self.__dict__.get("name"))
            mapping = source() if source is not None else None
            if mapping is not None:
                self.__dict__[key] = mapping
                return mapping
        if key in ("thing_classes", "wnids"):
            source = _CLASS_SOURCES.get(self.__dict__.get("name"))
            if source is not None:
                names, ids = source()
                # Not setattr: Metadata.__setattr__ reads the old value, which would recurse here.
                self.__dict__.setdefault("thing_classes", names)
                self.__dict__.setdefault("wnids", ids)
                return self.__dict__[key]
        return super().__getattr__(key)

    def as_dict(self):
        self.get("thing_classes")  # resolve lazy classes so they are part of the dict
        return super().as_dict()


class _VidSource:
    """Reads a dataset once per process; serves the frame index and the key frames from that read."""

    def __init__(
        self,
        name: str,
        read: Callable[[], tuple[list[dict], list[tuple[int, int]] | None]],
        source: str,
    ):
        self.name, self._read, self._source = name, read, source
        self._keys: list[tuple[int, int]] | None = None

    def all_frames(self) -> list[dict]:
        frames, keys = self._read()
        self._keys = [
            (f["video_id"], f["frame_id"]) for f in select_key_frames(frames, keys, self._source)
        ]
        return frames

    def key_frames(self) -> list[dict]:
        index = get_frame_index(self.name)  # reads the dataset unless this process already did
        if self._keys is None:  # the index was built some other way; read again for the keys
            self.all_frames()
        # Copies, so that mappers editing a key frame dict cannot change the shared frame index.
        return [copy.deepcopy(index.frame(v, f)) for v, f in self._keys]


def _resolve_classes(
    class_names, wnids, classes_file, json_file
) -> tuple[_ClassSpec, tuple[list[str], list[str]] | None]:
    if class_names is not None or wnids is not None:
        names = list(class_names if class_names is not None else wnids)
        ids = list(wnids if wnids is not None else class_names)
        check_class_list(names, ids)
        return _ClassSpec(lambda: (names, ids)), (names, ids)
    if classes_file is not None:
        return _ClassSpec(lambda: read_classes_file(classes_file)), None
    if json_file is not None:
        return _ClassSpec(lambda: read_coco_vid_categories(json_file)), None
    return _ClassSpec(lambda: (IMAGENET_VID_CLASSES, IMAGENET_VID_WNIDS)), (
        IMAGENET_VID_CLASSES,
        IMAGENET_VID_WNIDS,
    )


def _cached(fn):
    """``fn`` called once, its result kept."""
    box = []

    def call():
        if not box:
            box.append(fn())
        return box[0]

    return call


def _require_file(dataset: str, what: str, path: str, hint: str) -> None:
    """Raise a FileNotFoundError naming the dataset, the missing file and how to make it."""
    if not PathManager.exists(path):
        raise FileNotFoundError(f"Dataset {dataset!r}: {what} {path} does not exist ({hint})")


def register_vid_dataset(
    name: str,
    *,
    image_root: str | None = None,
    json_file: str | None = None,
    raw_root: str | None = None,
    split: str | None = None,
    list_file: str | None = None,
    class_names: Sequence[str] | None = None,
    wnids: Sequence[str] | None = None,
    classes_file: str | None = None,
    key_frames_only: bool = True,
    layout: str = "vid",
) -> None:
    """Register a video dataset (lazily; nothing is read here).

    Either ``json_file`` (mmtracking COCO-VID json, images relative to ``image_root``) or
    ``raw_root`` (an ILSVRC-style root with ``Data/``, ``Annotations/``, ``Lists/``).

    Args:
        name: the dataset name for ``DatasetCatalog``/``MetadataCatalog``/the frame index.
        image_root: json only: directory the json's ``file_name`` are relative to. Raw: ignored
            (``<raw_root>/Data/VID`` or ``Data/DET``).
        split: raw VID: ``"train"`` (list names key frames) or ``"val"`` (list names videos;
            all frames are key frames). Picks the default list file.
        list_file: raw: the list file, absolute or relative to ``raw_root`` (default:
            ``Lists/VID_train_15frames.txt``, ``Lists/VID_val_videos.txt`` or
            ``Lists/DET_train_30classes.txt``).
        class_names, wnids: the classes in order (either or both). If neither is given:
            ``classes_file`` if given; else json: the json's categories; raw:
            ``<raw_root>/classes.txt`` if it exists when first used, else the 30 VID classes.
        classes_file: a ``"<id> <name>"`` per line class file.
        key_frames_only: False makes every frame a key frame (e.g. to train on all VID frames).
            For a json, key frames are the ``is_vid_train_frame`` images (all images when none is
            flagged, as in mmtracking's val json).
        layout: ``"vid"`` or ``"det"`` (raw only; DET images become one-frame videos).
    """
    if (json_file is None) == (raw_root is None):
        raise ValueError(
            f"register_vid_dataset({name!r}): give exactly one of json_file and raw_root"
        )
    if layout not in ("vid", "det"):
        raise ValueError(
            f"register_vid_dataset({name!r}): layout must be 'vid' or 'det', got {layout!r}"
        )
    if json_file is not None and image_root is None:
        raise ValueError(f"register_vid_dataset({name!r}): a json dataset needs image_root")

    if raw_root is not None and class_names is None and wnids is None and classes_file is None:
        default_file = os.path.join(raw_root, "classes.txt")

        def _raw_default():
            if PathManager.exists(default_file):
                return read_classes_file(default_file)
            return IMAGENET_VID_CLASSES, IMAGENET_VID_WNIDS

        classes = _ClassSpec(_raw_default)
    else:
        classes, _ = _resolve_classes(class_names, wnids, classes_file, json_file)

    if json_file is not None:
        meta = {"json_file": json_file, "image_root": image_root}

        def read():
            _require_file(
                name,
                "annotation file",
                json_file,
                "convert the raw ILSVRC data with datasets/prepare_imagenet_vid.py; see datasets/README.md",
            )
            names, ids = classes()
            frames, flagged = load_coco_vid_frames(
                json_file, image_root, class_names=names, wnids=ids, dataset_name=name
            )
            return frames, (flagged if key_frames_only else None)

        source = json_file

        def id_map():
            if not PathManager.exists(json_file):
                return None
            names, ids = classes()
            return read_coco_vid_category_ids(json_file, names, ids)

        _ID_MAP_SOURCES[name] = _cached(id_map)
    else:
        _ID_MAP_SOURCES.pop(name, None)
        split = split or ("train" if layout == "det" else None)
        if split is None:
            raise ValueError(
                f"register_vid_dataset({name!r}): a raw VID dataset needs split ('train' or 'val')"
            )
        list_path = os.path.join(raw_root, list_file or default_list_file(split, layout))
        meta = {
            "root": raw_root,
            "image_root": os.path.join(raw_root, "Data", layout.upper()),
            "list_file": list_path,
        }

        def read():
            _require_file(
                name,
                "list file",
                list_path,
                f"expected the raw ILSVRC layout under {raw_root}; see datasets/README.md",
            )
            names, ids = classes()
            lst = local_abspath(list_path)
            if layout == "det":
                return load_ilsvrc_det(raw_root, names, ids, list_file=lst, dataset_name=name), None
            frames, keys = load_ilsvrc_vid_frames(
                raw_root, split, names, ids, list_file=lst, dataset_name=name
            )
            return frames, (keys if key_frames_only else None)

        source = list_path

    src = _VidSource(name, read, source)
    DatasetCatalog.register(name, src.key_frames)
    register_frame_index(name, src.all_frames)
    _CLASS_SOURCES[name] = classes
    existing = MetadataCatalog.get(name) if name in MetadataCatalog.list() else None
    md = VidMetadata(name=name)
    if existing is not None:
        md.set(**{k: v for k, v in existing.as_dict().items() if k != "name"})
        MetadataCatalog.remove(name)
    MetadataCatalog[name] = md  # lazily-resolved classes need our Metadata subclass
    md.set(evaluator_type="vid", **meta)


def unregister_vid_dataset(name: str) -> None:
    """Undo :func:`register_vid_dataset` (for tests and re-registration)."""
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    if name in MetadataCatalog.list():
        MetadataCatalog.remove(name)
    unregister_frame_index(name)
    _CLASS_SOURCES.pop(name, None)
    _ID_MAP_SOURCES.pop(name, None)


def register_datasets_from_config(cfg) -> list[str]:
    """Register the COCO-VID datasets of ``cfg.DATASETS.COCO_VID`` (``(name, json_file, image_root)``
    triples; see ``add_selsa_config``) with :func:`register_vid_dataset`; returns their names.

    Called by train_net.py and the video loaders, so a config can name its own json datasets in
    ``DATASETS.TRAIN`` / ``TEST``. Idempotent: a name already registered with the same json and
    image root is left alone; one registered with other files is an error (pick another name).
    """
    names = []
    for i, entry in enumerate(cfg.DATASETS.get("COCO_VID", ())):
        if not (
            isinstance(entry, (list, tuple))
            and len(entry) == 3
            and all(isinstance(x, str) and x for x in entry)
        ):
            raise ValueError(
                f"DATASETS.COCO_VID[{i}] must be a (name, json_file, image_root) triple of non-empty strings, "
                f"got {entry!r}"
            )
        name, json_file, image_root = entry
        if name in DatasetCatalog.list():
            md = MetadataCatalog.get(name)
            registered = (md.get("json_file", None), md.get("image_root", None))
            if registered != (json_file, image_root):
                raise ValueError(
                    f"DATASETS.COCO_VID[{i}]: dataset {name!r} is already registered with other files "
                    f"(json_file={registered[0]!r}, image_root={registered[1]!r}); give this json another name"
                )
        else:
            register_vid_dataset(name, json_file=json_file, image_root=image_root)
        names.append(name)
    return names


def _datasets_root() -> str:
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


# name -> registration kwargs relative to $DETECTRON2_DATASETS (see datasets/README.md).
BUILTIN_VID_DATASETS = {
    "imagenet_vid_train_15frames": dict(
        json_file="ILSVRC2015/annotations/imagenet_vid_train.json", image_root="ILSVRC2015/Data/VID"
    ),
    "imagenet_vid_val": dict(
        json_file="ILSVRC2015/annotations/imagenet_vid_val.json", image_root="ILSVRC2015/Data/VID"
    ),
    "imagenet_det_train_30cls": dict(
        json_file="ILSVRC2015/annotations/imagenet_det_30plus1cls.json",
        image_root="ILSVRC2015/Data/DET",
    ),
    "synthetic_vid_train": dict(
        raw_root="synthetic_vid", split="train", classes_file="synthetic_vid/classes.txt"
    ),
    "synthetic_vid_val": dict(
        raw_root="synthetic_vid", split="val", classes_file="synthetic_vid/classes.txt"
    ),
}


def register_all_builtin(root: str | None = None) -> None:
    """Register the builtin datasets under ``root`` (default ``$DETECTRON2_DATASETS`` or ``datasets``).

    ImageNet datasets use the 30 VID classes; synthetic ones the ``classes.txt`` of their root.
    Names already registered (e.g. by the user) are left alone.
    """
    root = root if root is not None else _datasets_root()
    for name, kw in BUILTIN_VID_DATASETS.items():
        if name in DatasetCatalog.list():
            continue
        kw = {
            k: (
                os.path.join(root, v)
                if k in ("json_file", "image_root", "raw_root", "classes_file")
                else v
            )
            for k, v in kw.items()
        }
        if name.startswith("imagenet_"):
            kw.update(class_names=IMAGENET_VID_CLASSES, wnids=IMAGENET_VID_WNIDS)
        register_vid_dataset(name, **kw)
