"""A tiny hand-written dataset in the raw ILSVRC2015 layout, with the quirks readers must handle.

``make_ilsvrc_fixture(root)`` writes it and returns nothing; the tests assert against the values
written here (see the constants). Classes are the 30 ImageNet VID WordNet ids.
"""

import os

import cv2
import numpy as np

W, H = 64, 48
AIRPLANE, BEAR, CAR, DOG, ZEBRA = "n02691156", "n02131653", "n02958343", "n02084071", "n02391049"
UNKNOWN = "n99999999"

TRAIN_A = "train/ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000"
TRAIN_B = "train/ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000001"
VAL_A = "val/ILSVRC2015_val_00000000"
DET_1 = "train/ILSVRC2014_train_0000/ILSVRC2014_train_00000001"
DET_2 = "train/ILSVRC2013_train/n02691156/n02691156_1"


def obj(name, box, trackid: int | None = None, occluded=0, generated=0) -> dict:
    return dict(name=name, box=box, trackid=trackid, occluded=occluded, generated=generated)


# video -> per-frame list of objects (plus optional degradations)
VID_FRAMES: dict[str, list[dict]] = {
    TRAIN_A: [
        {
            "objects": [
                obj(AIRPLANE, (2, 3, 20, 30), 0),
                obj(ZEBRA, (30, 10, 60, 40), 5, occluded=1),
            ]
        },
        {"objects": []},  # a frame with no objects
        {"objects": [obj(AIRPLANE, (4, 5, 22, 32), 0, generated=1), obj(UNKNOWN, (1, 1, 9, 9), 1)]},
        {
            "objects": [obj(ZEBRA, (50, 20, 70, 47), 5)],
            "degradations": "blur,noise",
        },  # partly outside
    ],
    TRAIN_B: [{"objects": []}, {"objects": []}],  # a video with no annotated objects
    VAL_A: [
        {"objects": [obj(BEAR, (10, 10, 30, 30), 2)]},
        {"objects": [obj(BEAR, (11, 10, 31, 30), 2)], "degradations": ""},
        {
            "objects": [obj(BEAR, (12, 10, 32, 30), 2), obj(CAR, (70, 50, 90, 60), 3)]
        },  # car fully outside
    ],
}
TRAIN_LIST = [f"{TRAIN_A} 1 1 4", f"{TRAIN_A} 1 3 4", f"{TRAIN_B} 1 0 2"]  # 0-based frame numbers
VAL_LIST = [f"{VAL_A} 1 0 3"]

DET_OBJECTS = {
    DET_1: [obj(DOG, (5, 6, 25, 26)), obj(UNKNOWN, (1, 1, 5, 5)), obj(CAR, (30, 8, 60, 40))],
    DET_2: [obj(AIRPLANE, (0, 0, 64, 48))],
}
DET_LIST = [f"{DET_1} 1", f"{DET_2} 2"]


def xml_text(objects, *, width=W, height=H, degradations=None, with_track=True, size=True) -> str:
    parts = ["<annotation>", "\t<folder>x</folder>", "\t<filename>x</filename>"]
    if size:
        parts.append(f"\t<size><width>{width}</width><height>{height}</height></size>")
    for o in objects:
        b = o["box"]
        parts.append("\t<object>")
        if with_track and o.get("trackid") is not None:
            parts.append(f"\t\t<trackid>{o['trackid']}</trackid>")
        parts.append(f"\t\t<name>{o['name']}</name>")
        parts.append(
            f"\t\t<bndbox><xmax>{b[2]}</xmax><xmin>{b[0]}</xmin><ymax>{b[3]}</ymax><ymin>{b[1]}</ymin></bndbox>"
        )
        if with_track:
            parts.append(
                f"\t\t<occluded>{o['occluded']}</occluded><generated>{o['generated']}</generated>"
            )
        parts.append("\t</object>")
    if degradations is not None:
        parts.append(f"\t<degradations>{degradations}</degradations>")
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def write_jpeg(path: str, seed: int, width=W, height=H) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img = np.random.RandomState(seed).randint(0, 255, (height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(path, img)


def write_text(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def make_ilsvrc_fixture(root: str) -> str:
    seed = 0
    for video, frames in VID_FRAMES.items():
        for i, fr in enumerate(frames):
            write_jpeg(os.path.join(root, "Data", "VID", video, f"{i:06d}.JPEG"), seed)
            seed += 1
            write_text(
                os.path.join(root, "Annotations", "VID", video, f"{i:06d}.xml"),
                xml_text(fr["objects"], degradations=fr.get("degradations")),
            )
    for rel, objects in DET_OBJECTS.items():
        write_jpeg(os.path.join(root, "Data", "DET", rel + ".JPEG"), seed)
        seed += 1
        write_text(
            os.path.join(root, "Annotations", "DET", rel + ".xml"),
            xml_text(objects, with_track=False),
        )
    write_text(os.path.join(root, "Lists", "VID_train_15frames.txt"), "\n".join(TRAIN_LIST) + "\n")
    write_text(os.path.join(root, "Lists", "VID_val_videos.txt"), "\n".join(VAL_LIST) + "\n")
    write_text(os.path.join(root, "Lists", "DET_train_30classes.txt"), "\n".join(DET_LIST) + "\n")
    return root
