"""Class lists: the 30 ImageNet VID classes and user class files.

A class list is a pair ``(names, ids)`` of equal-length lists: readable names (Detectron2's
``thing_classes``) and the ids written in the annotation files (WordNet ids for ImageNet). The
position in the list is the contiguous 0-based ``category_id`` of the dataset dicts.
"""

from detectron2.utils.file_io import PathManager

from .reader_utils import read_text_lines

# (WordNet id, name) in the standard ImageNet VID order (category ids 0..29; 1..30 in COCO-VID json).
_VID_CLASSES = (
    ("n02691156", "airplane"),
    ("n02419796", "antelope"),
    ("n02131653", "bear"),
    ("n02834778", "bicycle"),
    ("n01503061", "bird"),
    ("n02924116", "bus"),
    ("n02958343", "car"),
    ("n02402425", "cattle"),
    ("n02084071", "dog"),
    ("n02121808", "domestic_cat"),
    ("n02503517", "elephant"),
    ("n02118333", "fox"),
    ("n02510455", "giant_panda"),
    ("n02342885", "hamster"),
    ("n02374451", "horse"),
    ("n02129165", "lion"),
    ("n01674464", "lizard"),
    ("n02484322", "monkey"),
    ("n03790512", "motorcycle"),
    ("n02324045", "rabbit"),
    ("n02509815", "red_panda"),
    ("n02411705", "sheep"),
    ("n01726692", "snake"),
    ("n02355227", "squirrel"),
    ("n02129604", "tiger"),
    ("n04468005", "train"),
    ("n01662784", "turtle"),
    ("n04530566", "watercraft"),
    ("n02062744", "whale"),
    ("n02391049", "zebra"),
)

IMAGENET_VID_WNIDS: list[str] = [w for w, _ in _VID_CLASSES]
IMAGENET_VID_CLASSES: list[str] = [n for _, n in _VID_CLASSES]


def read_classes_file(path: str) -> tuple[list[str], list[str]]:
    """Read a class file: one ``<id> <name>`` per line (a line with only ``<id>`` uses it as name).

    Blank lines and lines starting with ``#`` are ignored. The file is UTF-8 (a byte-order mark is
    dropped; other encodings are an error naming the line).

    Returns:
        ``(names, ids)`` in file order.
    """
    if not PathManager.exists(path):
        raise FileNotFoundError(f"Class file {path} does not exist")
    names, ids = [], []
    for lineno, line in read_text_lines(path):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        cid = parts[0]
        name = parts[1].strip() if len(parts) > 1 else cid
        if cid in ids:
            raise ValueError(f"{path}:{lineno}: class id {cid!r} appears twice")
        ids.append(cid)
        names.append(name)
    if not ids:
        raise ValueError(f"Class file {path} lists no classes")
    return names, ids


def check_class_list(names: list[str], ids: list[str]) -> None:
    if len(names) != len(ids):
        raise ValueError(f"{len(names)} class names but {len(ids)} class ids: {names} / {ids}")
    if not ids:
        raise ValueError("Empty class list")
    if len(set(ids)) != len(ids):
        raise ValueError(f"Duplicate class ids in {ids}")
