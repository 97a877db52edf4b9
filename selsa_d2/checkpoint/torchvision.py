"""Convert a torchvision-layout ResNet / ResNeXt state dict to Detectron2's ImageNet-pretrained layout.

Input keys (torchvision ``resnet*`` / ``resnext*``, also mmcv's ``open-mmlab://resnext101_64x4d``):
``conv1.weight``, ``bn1.*``, ``layer{1-4}.{i}.conv{1-3}.weight``, ``layer{1-4}.{i}.bn{1-3}.*``,
``layer{1-4}.{i}.downsample.{0,1}.*``, ``fc.*``.
Output keys (what ``detectron2.modeling.build_resnet_backbone`` holds): ``stem.conv1.weight``,
``stem.conv1.norm.*``, ``res{2-5}.{i}.conv{1-3}[.norm].*``, ``res{2-5}.{i}.shortcut[.norm].*``.
``fc.*`` and ``num_batches_tracked`` are dropped. The result is written like Detectron2's own
``tools/convert-torchvision-to-d2.py`` (pickle of numpy arrays, ``matching_heuristics: True``), so
``DetectionCheckpointer`` matches the names by suffix into ``backbone.bottom_up.*`` of any model.

The weights are pytorch-style: use them with ``MODEL.RESNETS.STRIDE_IN_1X1 False``,
``INPUT.FORMAT "RGB"``, ``MODEL.PIXEL_MEAN [123.675, 116.28, 103.53]``,
``MODEL.PIXEL_STD [58.395, 57.12, 57.375]``.
"""

import logging
import pickle
import re
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
import torch
from detectron2.utils.file_io import PathManager

from ..file_io import AtomicPathManager, check_output_file
from .loading import read_checkpoint_file

logger = logging.getLogger(__name__)

__all__ = ["convert_torchvision_state_dict", "convert_torchvision_checkpoint"]

_BN = r"(weight|bias|running_mean|running_var)"
_RULES = [
    (r"conv1\.weight", "stem.conv1.weight", "stem"),
    (r"bn1\." + _BN, r"stem.conv1.norm.\1", "stem"),
    (r"layer([1-4])\.(\d+)\.conv(\d)\.weight", r"res{L}.\2.conv\3.weight", "res"),
    (r"layer([1-4])\.(\d+)\.bn(\d)\." + _BN, r"res{L}.\2.conv\3.norm.\4", "res"),
    (r"layer([1-4])\.(\d+)\.downsample\.0\.weight", r"res{L}.\2.shortcut.weight", "res"),
    (r"layer([1-4])\.(\d+)\.downsample\.1\." + _BN, r"res{L}.\2.shortcut.norm.\3", "res"),
]
_RULES = [(re.compile(p + "$"), r, g) for p, r, g in _RULES]


def convert_torchvision_state_dict(
    sd: Mapping[str, torch.Tensor],
) -> tuple["OrderedDict[str, np.ndarray]", dict[str, int]]:
    """torchvision ResNet state dict -> (Detectron2 backbone state dict of numpy arrays, summary).

    Raises KeyError naming the first key that is neither mapped nor a dropped ``fc.*`` /
    ``num_batches_tracked`` entry, and when ``conv1.weight`` (the stem) is absent.
    """
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    summary: dict[str, int] = OrderedDict()
    for k, v in sd.items():
        if k.endswith("num_batches_tracked") or k.startswith("fc."):
            group = "dropped " + ("num_batches_tracked" if k.endswith("tracked") else "fc")
            summary[group] = summary.get(group, 0) + 1
            continue
        for pat, rep, group in _RULES:
            m = pat.match(k)
            if m:
                if "{L}" in rep:
                    stage = int(m.group(1)) + 1
                    rep, group = rep.replace("{L}", str(stage)), f"res{stage}"
                out[m.expand(rep)] = v.detach().cpu().numpy()
                summary[group] = summary.get(group, 0) + 1
                break
        else:
            raise KeyError(f"Unexpected key '{k}' in the torchvision ResNet state dict")
    if "stem.conv1.weight" not in out:
        raise KeyError("No 'conv1.weight' in the state dict: not a torchvision ResNet")
    return out, summary


def convert_torchvision_checkpoint(in_path: str, out_path: str) -> dict[str, int]:
    """Read a torchvision ``.pth`` (bare state dict, or under "state_dict"/"model"), write a d2 ``.pkl``."""
    if not PathManager.exists(in_path):
        raise FileNotFoundError(f"torchvision checkpoint not found: {in_path}")
    check_output_file(out_path, [("the input checkpoint", in_path)])
    # a folder, an empty or truncated file: one-line WeightsError (a ValueError) naming it
    obj = read_checkpoint_file(in_path, "torchvision checkpoint")
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise ValueError(f"{in_path}: not a state dict (got {type(obj).__name__})")
    try:
        model, summary = convert_torchvision_state_dict(obj)
    except KeyError as e:
        raise KeyError(f"{in_path}: {e.args[0]}") from None
    res = {"model": model, "__author__": "torchvision", "matching_heuristics": True}
    with AtomicPathManager().open(out_path, "wb") as f:  # no half-written file on an error
        pickle.dump(res, f)
    logger.info(
        "Converted %s -> %s: %s",
        in_path,
        out_path,
        ", ".join(f"{k}: {v}" for k, v in summary.items()),
    )
    return summary
