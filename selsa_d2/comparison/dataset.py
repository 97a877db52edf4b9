"""The comparison's dataset: the raw ILSVRC VID layout with a ``classes.txt`` (the synthetic one,
or the user's ``--dataset-root``) or a COCO-VID json pair (``--train-json`` / ``--val-json`` /
``--image-root``), and how every step is pointed at it."""

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..data import read_coco_vid_categories
from ..data.datasets import register_all_builtin, unregister_vid_dataset

# The dataset names the synthetic configs use; train_net.py registers them under
# $DETECTRON2_DATASETS/synthetic_vid (selsa_d2/data/datasets.py).
DATASET_DIRNAME = "synthetic_vid"

# The names a COCO-VID json pair is registered under (DATASETS.COCO_VID) in every step.
JSON_TRAIN_NAME, JSON_VAL_NAME = "demo_coco_vid_train", "demo_coco_vid_val"


def count_classes(dataset_dir: Path) -> int:
    """Number of classes in ``<dataset_dir>/classes.txt`` (the file the raw layout registers)."""
    classes_file = dataset_dir / "classes.txt"
    if not classes_file.is_file():
        raise FileNotFoundError(
            f"{classes_file} does not exist: --dataset-root needs the raw ILSVRC VID layout with a classes.txt "
            "('<class id> <name>' per line; see datasets/README.md)"
        )
    ids = [line.split()[0] for line in classes_file.read_text().splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"{classes_file} lists no classes")
    return len(ids)


def register_synthetic_dataset(datasets_root: Path) -> None:
    """Register the synthetic configs' dataset names (``synthetic_vid_train`` / ``_val``) in this
    process under ``datasets_root`` (a ``$DETECTRON2_DATASETS``), as the steps' ``train_net.py``
    registers them, replacing a registration under another root."""
    for split in ("train", "val"):
        unregister_vid_dataset(f"{DATASET_DIRNAME}_{split}")
    register_all_builtin(str(datasets_root))


def datasets_root_for(dataset_dir: Path, work_dir: Path) -> Path:
    """A ``$DETECTRON2_DATASETS`` under which ``synthetic_vid`` is ``dataset_dir``.

    The configs' dataset names (``synthetic_vid_train`` / ``_val``) are registered by train_net.py
    at ``$DETECTRON2_DATASETS/synthetic_vid``; any other directory is linked there, so a user's
    dataset takes exactly the demo's code path.
    """
    dataset_dir = dataset_dir.resolve()
    if dataset_dir.name == DATASET_DIRNAME:
        return dataset_dir.parent
    root = work_dir / "datasets"
    link = root / DATASET_DIRNAME
    root.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and Path(os.readlink(link)) != dataset_dir:
        link.unlink()
    if not link.exists():
        link.symlink_to(dataset_dir, target_is_directory=True)
    return root


@dataclass
class CocoVidPair:
    """A COCO-VID json pair (mmtracking's format): the training and the validation split, images
    under one root. Every step registers it through ``DATASETS.COCO_VID`` (as
    ``JSON_TRAIN_NAME`` / ``JSON_VAL_NAME``) and trains / evaluates on it."""

    train_json: Path
    val_json: Path
    image_root: Path
    _num_classes: int | None = field(default=None, init=False, repr=False, compare=False)

    def num_classes(self) -> int:
        """The json's category count, checked once: both files exist and have the same categories,
        the image root is a directory. Errors name the file."""
        if self._num_classes is None:
            if not self.image_root.is_dir():
                raise FileNotFoundError(f"--image-root {self.image_root} is not a directory")
            classes = {}
            for flag, path in (("--train-json", self.train_json), ("--val-json", self.val_json)):
                if not path.is_file():
                    raise FileNotFoundError(f"{flag} {path} does not exist")
                classes[flag] = read_coco_vid_categories(str(path))
                if not classes[flag][0]:
                    raise ValueError(
                        f"{path} has no categories: the demo takes the class count from them"
                    )
            if classes["--train-json"] != classes["--val-json"]:
                raise ValueError(
                    f"{self.train_json} and {self.val_json} have different categories "
                    f"({classes['--train-json'][0]} vs {classes['--val-json'][0]}): the model's class indices "
                    "follow the training json's, so the validation json needs the same categories in the same order"
                )
            self._num_classes = len(classes["--train-json"][0])
        return self._num_classes

    def opts(self) -> list[str]:
        """Config options that register the pair and train / evaluate on it."""
        triples = (
            (JSON_TRAIN_NAME, str(self.train_json), str(self.image_root)),
            (JSON_VAL_NAME, str(self.val_json), str(self.image_root)),
        )
        return [
            "DATASETS.COCO_VID",
            repr(triples),
            "DATASETS.TRAIN",
            repr((JSON_TRAIN_NAME,)),
            "DATASETS.TEST",
            repr((JSON_VAL_NAME,)),
        ]
