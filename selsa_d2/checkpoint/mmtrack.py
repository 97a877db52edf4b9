"""Convert an mmtracking SELSA or SELSA + Temporal RoI Align checkpoint (mmtrack 0.x / mmdet 2.x)
to this project's model.

The mapping is exact (no name-matching heuristics): every tensor of the mmtracking
``state_dict`` is either mapped to one of our parameters/buffers or, for BN
``num_batches_tracked`` counters only, dropped. Anything else is an error naming the key.

Layout differences handled here:

- BN layers become ``<conv>.norm.{weight,bias,running_mean,running_var}``, what Detectron2's
  ``FrozenBatchNorm2d`` and ``FrozenStatsBatchNorm2d`` (``MODEL.RESNETS.NORM FrozenStatsBN``) hold;
  ``num_batches_tracked`` is dropped.
- RPN anchors: mmdet's ``AnchorGenerator`` (``scale_major=True``) orders the A = R*S anchors of a
  location ratio-major (``index = ratio_idx * S + scale_idx``), Detectron2's
  ``DefaultAnchorGenerator`` size-major (``index = size_idx * R + ratio_idx``). The channels of
  ``rpn_cls`` (one sigmoid logit per anchor) and the 4-channel groups of ``rpn_reg`` are permuted
  accordingly. Within a location both use ``[anchor, (dx, dy, dw, dh)]``.
- Temporal RoI Align checkpoints (``configs/vid/temporal_roi_align/``) add
  ``roi_head.bbox_roi_extractor.embed_network.conv`` (-> ``roi_heads.temporal_roi_align.embed_network``),
  a third shared FC and a third aggregator; the number of shared FCs is read off the checkpoint.
- ``fc_cls`` [K+1, C] has background last, ``fc_reg`` [4K, C] is class-major
  ``[cls0 dx dy dw dh, cls1 ...]``: both already Detectron2's ``FastRCNNOutputLayers`` layout.
"""

import logging
import re
from collections import OrderedDict
from collections.abc import Mapping

import torch

from ..file_io import AtomicPathManager, check_output_file
from .loading import read_checkpoint_file

logger = logging.getLogger(__name__)

__all__ = [
    "ResNetArch",
    "infer_mmtrack_arch",
    "expected_mmtrack_shapes",
    "mmdet_to_d2_anchor_permutation",
    "convert_mmtrack_state_dict",
    "check_arch_against_cfg",
    "mmtrack_inference_mismatches",
    "load_mmtrack_state_dict",
    "convert_mmtrack_checkpoint",
]

_PREFIX = "detector."
# ResNet depth -> number of bottleneck blocks in layer1..layer4
_BLOCKS_PER_DEPTH = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
_BN_FIELDS = ("weight", "bias", "running_mean", "running_var")
_AGG_FCS = ("fc_embed", "ref_fc_embed", "ref_fc", "fc")
# The Temporal RoI Align embed network (mmtrack TemporalRoIAlign.embed_network, an mmcv ConvModule).
_TROI_EMBED = _PREFIX + "roi_head.bbox_roi_extractor.embed_network.conv."
# mmtracking SELSA's RPN anchors: scales (4, 8, 16, 32) x base size 16 = sizes 64..512, 3 ratios.
DEFAULT_NUM_ANCHOR_SIZES = 4
DEFAULT_NUM_ANCHOR_RATIOS = 3


class ResNetArch(dict):
    """Architecture read off an mmtracking state dict (a dict with attribute access).

    Keys: depth, num_groups, width_per_group, stem_out_channels, res2_out_channels,
    neck_channels, fc_dim, pooler_resolution, num_classes, num_anchors, num_shared_fcs,
    num_aggregators, temporal_roi_align (the checkpoint has a TRoI embed network).
    """

    __getattr__ = dict.__getitem__


def _shape(sd, key):
    if key not in sd:
        raise KeyError(f"mmtracking state_dict lacks '{key}' (needed to infer the architecture)")
    return tuple(sd[key].shape)


def infer_mmtrack_arch(sd: Mapping[str, torch.Tensor]) -> ResNetArch:
    """Read the ResNet depth / groups and head sizes off the key names and shapes.

    Depth from the number of blocks per layer; groups and width per group from
    ``layer1.0.conv2.weight`` ([bottleneck, bottleneck / groups, 3, 3]).
    """
    p = _PREFIX + "backbone."
    blocks = []
    for layer in range(1, 5):
        idx = {
            int(m.group(1))
            for k in sd
            for m in [re.match(re.escape(f"{p}layer{layer}.") + r"(\d+)\.", k)]
            if m
        }
        blocks.append(len(idx))
    depth = {v: k for k, v in _BLOCKS_PER_DEPTH.items()}.get(tuple(blocks))
    if depth is None:
        raise ValueError(
            "Cannot infer the ResNet depth: last blocks "
            + ", ".join(f"'backbone.layer{i + 1}.{n - 1}'" for i, n in enumerate(blocks))
            + f" (blocks per layer {blocks}) match none of "
            + str({k: list(v) for k, v in _BLOCKS_PER_DEPTH.items()})
        )
    if p + "layer1.0.conv3.weight" not in sd:
        raise ValueError("Only bottleneck ResNets are supported (no 'layer1.0.conv3.weight')")
    bottleneck, in_per_group = _shape(sd, p + "layer1.0.conv2.weight")[:2]
    num_groups = bottleneck // in_per_group
    stem = _shape(sd, p + "conv1.weight")[0]
    neck_channels = _shape(sd, _PREFIX + "neck.convs.0.conv.weight")[0]
    fc_dim, fc_in = _shape(sd, _PREFIX + "roi_head.bbox_head.shared_fcs.0.weight")
    res = int(round((fc_in / neck_channels) ** 0.5))
    if res * res * neck_channels != fc_in:
        raise ValueError(
            f"shared_fcs.0.weight input size {fc_in} is not neck_channels ({neck_channels}) x R^2"
        )
    num_aggregators = _count_indexed(sd, _PREFIX + "roi_head.bbox_head.aggregator.")
    num_shared_fcs = _count_indexed(sd, _PREFIX + "roi_head.bbox_head.shared_fcs.")
    return ResNetArch(
        depth=depth,
        num_groups=num_groups,
        width_per_group=bottleneck // num_groups,
        stem_out_channels=stem,
        res2_out_channels=_shape(sd, p + "layer1.0.conv3.weight")[0],
        neck_channels=neck_channels,
        fc_dim=fc_dim,
        pooler_resolution=res,
        num_classes=_shape(sd, _PREFIX + "roi_head.bbox_head.fc_cls.weight")[0] - 1,
        num_anchors=_shape(sd, _PREFIX + "rpn_head.rpn_cls.weight")[0],
        num_shared_fcs=num_shared_fcs,
        num_aggregators=num_aggregators,
        temporal_roi_align=any(k.startswith(_TROI_EMBED) for k in sd),
    )


def _count_indexed(sd: Mapping[str, torch.Tensor], prefix: str) -> int:
    """Number of distinct ``<prefix><i>.`` indices among the keys."""
    return len({m.group(1) for k in sd for m in [re.match(re.escape(prefix) + r"(\d+)\.", k)] if m})


def expected_mmtrack_shapes(arch: ResNetArch) -> "OrderedDict[str, tuple[int, ...]]":
    """Every key (with shape) an mmtracking SELSA (or SELSA + TRoI) state dict of ``arch`` holds."""
    out = OrderedDict()
    p = _PREFIX + "backbone."

    def conv_bn(conv, bn, cout, cin, k):
        out[conv + ".weight"] = (cout, cin, k, k)
        for f in _BN_FIELDS:
            out[f"{bn}.{f}"] = (cout,)
        out[bn + ".num_batches_tracked"] = ()

    conv_bn(p + "conv1", p + "bn1", arch.stem_out_channels, 3, 7)
    in_ch = arch.stem_out_channels
    bottleneck = arch.num_groups * arch.width_per_group
    out_ch = arch.res2_out_channels
    for layer, n in enumerate(_BLOCKS_PER_DEPTH[arch.depth], start=1):
        for i in range(n):
            b = f"{p}layer{layer}.{i}."
            conv_bn(b + "conv1", b + "bn1", bottleneck, in_ch, 1)
            conv_bn(b + "conv2", b + "bn2", bottleneck, bottleneck // arch.num_groups, 3)
            conv_bn(b + "conv3", b + "bn3", out_ch, bottleneck, 1)
            if i == 0:
                conv_bn(b + "downsample.0", b + "downsample.1", out_ch, in_ch, 1)
            in_ch = out_ch
        bottleneck *= 2
        out_ch *= 2
    c, a = arch.neck_channels, arch.num_anchors
    out[_PREFIX + "neck.convs.0.conv.weight"] = (c, in_ch, 3, 3)
    out[_PREFIX + "neck.convs.0.conv.bias"] = (c,)
    for name, cout, k in (("rpn_conv", c, 3), ("rpn_cls", a, 1), ("rpn_reg", 4 * a, 1)):
        out[f"{_PREFIX}rpn_head.{name}.weight"] = (cout, c, k, k)
        out[f"{_PREFIX}rpn_head.{name}.bias"] = (cout,)
    h = _PREFIX + "roi_head.bbox_head."
    d = arch.fc_dim
    if arch.temporal_roi_align:
        out[_TROI_EMBED + "weight"] = (c, c, 3, 3)
        out[_TROI_EMBED + "bias"] = (c,)
    fcs = [("shared_fcs.0", d, c * arch.pooler_resolution**2)]
    fcs += [(f"shared_fcs.{i}", d, d) for i in range(1, arch.num_shared_fcs)]
    fcs += [(f"aggregator.{j}.{n}", d, d) for j in range(arch.num_aggregators) for n in _AGG_FCS]
    fcs += [("fc_cls", arch.num_classes + 1, d), ("fc_reg", 4 * arch.num_classes, d)]
    for name, cout, cin in fcs:
        out[h + name + ".weight"] = (cout, cin)
        out[h + name + ".bias"] = (cout,)
    return out


def mmdet_to_d2_anchor_permutation(num_sizes: int, num_ratios: int) -> list[int]:
    """``perm[j]`` = mmdet anchor index of Detectron2 anchor ``j`` (same location).

    Detectron2: ``j = size_idx * R + ratio_idx``; mmdet (scale_major): ``i = ratio_idx * S + size_idx``.
    """
    return [r * num_sizes + s for s in range(num_sizes) for r in range(num_ratios)]


# (regex on the key without "detector.", replacement template, summary group)
_RULES = [
    (r"backbone\.conv1\.weight", "backbone.bottom_up.stem.conv1.weight", "stem"),
    (r"backbone\.bn1\.(\w+)", r"backbone.bottom_up.stem.conv1.norm.\1", "stem"),
    (
        r"backbone\.layer(\d)\.(\d+)\.conv(\d)\.weight",
        "backbone.bottom_up.res{L}.\\2.conv\\3.weight",
        "res",
    ),
    (
        r"backbone\.layer(\d)\.(\d+)\.bn(\d)\.(\w+)",
        "backbone.bottom_up.res{L}.\\2.conv\\3.norm.\\4",
        "res",
    ),
    (
        r"backbone\.layer(\d)\.(\d+)\.downsample\.0\.weight",
        "backbone.bottom_up.res{L}.\\2.shortcut.weight",
        "res",
    ),
    (
        r"backbone\.layer(\d)\.(\d+)\.downsample\.1\.(\w+)",
        "backbone.bottom_up.res{L}.\\2.shortcut.norm.\\3",
        "res",
    ),
    (r"neck\.convs\.0\.conv\.(weight|bias)", r"backbone.neck.\1", "neck"),
    (r"rpn_head\.rpn_conv\.(weight|bias)", r"proposal_generator.rpn_head.conv.\1", "rpn"),
    (
        r"rpn_head\.rpn_cls\.(weight|bias)",
        r"proposal_generator.rpn_head.objectness_logits.\1",
        "rpn",
    ),
    (r"rpn_head\.rpn_reg\.(weight|bias)", r"proposal_generator.rpn_head.anchor_deltas.\1", "rpn"),
    (
        r"roi_head\.bbox_head\.shared_fcs\.(\d+)\.(weight|bias)",
        "roi_heads.box_head.fc{I}.\\2",
        "box_head",
    ),
    (
        r"roi_head\.bbox_roi_extractor\.embed_network\.conv\.(weight|bias)",
        r"roi_heads.temporal_roi_align.embed_network.\1",
        "temporal_roi_align",
    ),
    (
        r"roi_head\.bbox_head\.aggregator\.(\d+)\.(fc_embed|ref_fc_embed|ref_fc|fc)\.(weight|bias)",
        r"roi_heads.box_head.aggregators.\1.\2.\3",
        "aggregators",
    ),
    (
        r"roi_head\.bbox_head\.fc_cls\.(weight|bias)",
        r"roi_heads.box_predictor.cls_score.\1",
        "box_predictor",
    ),
    (
        r"roi_head\.bbox_head\.fc_reg\.(weight|bias)",
        r"roi_heads.box_predictor.bbox_pred.\1",
        "box_predictor",
    ),
]
_RULES = [(re.compile(pat + r"$"), rep, group) for pat, rep, group in _RULES]


def _map_key(key: str) -> tuple[str | None, str]:
    """mmtracking key -> (our key or None for dropped, summary group). Raises on unknown keys."""
    if key.endswith(".num_batches_tracked"):
        return None, "dropped num_batches_tracked"
    if key.startswith(_PREFIX):
        rest = key[len(_PREFIX) :]
        for pat, rep, group in _RULES:
            m = pat.match(rest)
            if m:
                if "{L}" in rep:
                    group = f"res{int(m.group(1)) + 1}"
                    rep = rep.replace("{L}", str(int(m.group(1)) + 1))
                if "{I}" in rep:  # mmdet shared_fcs.<i> -> Detectron2 fc<i+1>
                    rep = rep.replace("{I}", str(int(m.group(1)) + 1))
                return m.expand(rep), group
    raise KeyError(f"Unexpected key '{key}' in the mmtracking state_dict: no mapping for it")


def convert_mmtrack_state_dict(
    sd: Mapping[str, torch.Tensor],
    num_anchor_sizes: int = DEFAULT_NUM_ANCHOR_SIZES,
    num_anchor_ratios: int = DEFAULT_NUM_ANCHOR_RATIOS,
) -> tuple["OrderedDict[str, torch.Tensor]", dict[str, int], ResNetArch]:
    """Convert an mmtracking SELSA or SELSA + Temporal RoI Align ``state_dict`` to ours.

    Args:
        sd: the ``state_dict`` of an mmtracking SELSA checkpoint (keys ``detector.*``).
        num_anchor_sizes, num_anchor_ratios: S and R of the RPN anchors (mmtracking: 4 and 3).

    Returns:
        (new state dict, {summary group: number of tensors}, architecture)

    Raises:
        KeyError / ValueError naming the offending key when a key is unexpected, missing or
        has the wrong shape.
    """
    arch = infer_mmtrack_arch(sd)
    if arch.num_anchors != num_anchor_sizes * num_anchor_ratios:
        raise ValueError(
            f"rpn_head.rpn_cls has {arch.num_anchors} anchors per location, expected "
            f"{num_anchor_sizes} sizes x {num_anchor_ratios} ratios"
        )
    if arch.num_aggregators != arch.num_shared_fcs:
        raise ValueError(
            f"roi_head.bbox_head has {arch.num_shared_fcs} shared_fcs but {arch.num_aggregators} aggregators "
            "(SelsaBBoxHead: one after each shared FC)"
        )
    expected = expected_mmtrack_shapes(arch)
    for k in sd:
        _map_key(k)  # unexpected keys first: a clearer error than a shape mismatch
    missing = [k for k in expected if k not in sd]
    if missing:
        raise KeyError(
            f"{len(missing)} key(s) missing from the mmtracking state_dict "
            f"(inferred {arch.depth}-layer, {arch.num_groups} groups), first: '{missing[0]}'"
        )
    extra = [k for k in sd if k not in expected]
    if extra:
        raise KeyError(f"Unexpected key '{extra[0]}' in the mmtracking state_dict")
    for k, shape in expected.items():
        if tuple(sd[k].shape) != shape:
            raise ValueError(
                f"Key '{k}' has shape {list(sd[k].shape)}, expected {list(shape)} for the "
                f"architecture inferred from the checkpoint ({dict(arch)})"
            )

    perm = torch.as_tensor(mmdet_to_d2_anchor_permutation(num_anchor_sizes, num_anchor_ratios))
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    summary: dict[str, int] = OrderedDict()
    for k, v in sd.items():
        new_k, group = _map_key(k)
        summary[group] = summary.get(group, 0) + 1
        if new_k is None:
            continue
        v = v.detach().cpu()
        if k.startswith(_PREFIX + "rpn_head.rpn_cls."):
            v = v[perm]
        elif k.startswith(_PREFIX + "rpn_head.rpn_reg."):
            v = v.reshape(arch.num_anchors, 4, *v.shape[1:])[perm].reshape(v.shape)
        if new_k in out:
            raise KeyError(f"Two mmtracking keys map to '{new_k}' (second: '{k}')")
        out[new_k] = v.clone().contiguous()
    return out, summary, arch


def check_arch_against_cfg(arch: ResNetArch, cfg) -> None:
    """Raise ValueError listing every config value that contradicts the checkpoint's shapes."""
    m = cfg.MODEL
    checks = [
        ("MODEL.RESNETS.DEPTH", m.RESNETS.DEPTH, arch.depth),
        ("MODEL.RESNETS.NUM_GROUPS", m.RESNETS.NUM_GROUPS, arch.num_groups),
        ("MODEL.RESNETS.WIDTH_PER_GROUP", m.RESNETS.WIDTH_PER_GROUP, arch.width_per_group),
        ("MODEL.RESNETS.STEM_OUT_CHANNELS", m.RESNETS.STEM_OUT_CHANNELS, arch.stem_out_channels),
        ("MODEL.RESNETS.RES2_OUT_CHANNELS", m.RESNETS.RES2_OUT_CHANNELS, arch.res2_out_channels),
        ("MODEL.SELSA.NECK_CHANNELS", m.SELSA.NECK_CHANNELS, arch.neck_channels),
        ("MODEL.ROI_BOX_HEAD.FC_DIM", m.ROI_BOX_HEAD.FC_DIM, arch.fc_dim),
        ("MODEL.ROI_BOX_HEAD.NUM_FC", m.ROI_BOX_HEAD.NUM_FC, arch.num_shared_fcs),
        (
            "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION",
            m.ROI_BOX_HEAD.POOLER_RESOLUTION,
            arch.pooler_resolution,
        ),
        ("MODEL.ROI_HEADS.NUM_CLASSES", m.ROI_HEADS.NUM_CLASSES, arch.num_classes),
        ("MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", m.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG, False),
        # the pytorch-style ResNet: stride in the 3x3 conv
        ("MODEL.RESNETS.STRIDE_IN_1X1", m.RESNETS.STRIDE_IN_1X1, False),
        ("MODEL.BACKBONE.NAME", m.BACKBONE.NAME, "build_selsa_dc5_backbone"),
    ]
    sizes, ratios = m.ANCHOR_GENERATOR.SIZES, m.ANCHOR_GENERATOR.ASPECT_RATIOS
    if len(sizes) != 1 or len(ratios) != 1:
        checks.append(
            ("MODEL.ANCHOR_GENERATOR.SIZES/ASPECT_RATIOS levels", (len(sizes), len(ratios)), (1, 1))
        )
    else:
        checks.append(
            (
                "number of anchors (SIZES x ASPECT_RATIOS)",
                len(sizes[0]) * len(ratios[0]),
                arch.num_anchors,
            )
        )
    troi_heads = m.ROI_HEADS.NAME == "SelsaTRoIROIHeads"
    embed = troi_heads and m.SELSA.TROI.NUM_TEMPORAL_ATTENTION_BLOCKS > 0
    if arch.temporal_roi_align:
        checks.append(("MODEL.ROI_HEADS.NAME", m.ROI_HEADS.NAME, "SelsaTRoIROIHeads"))
        if troi_heads:
            checks.append(
                ("MODEL.SELSA.TROI.NUM_TEMPORAL_ATTENTION_BLOCKS > 0 (embed network)", embed, True)
            )
    elif embed:
        checks.append(
            (
                "Temporal RoI Align embed network (SelsaTRoIROIHeads, attention blocks > 0)",
                True,
                False,
            )
        )
    bad = [
        f"{name} = {got!r}, checkpoint needs {want!r}" for name, got, want in checks if got != want
    ]
    if bad:
        raise ValueError("Config does not match the mmtracking checkpoint:\n  " + "\n  ".join(bad))


# MODEL.RESNETS.NORM values whose inference is mmdet's BN in eval mode
_INFERENCE_NORM = {"FrozenBN": "FrozenBN", "FrozenStatsBN": "FrozenBN"}

# Config values under which our model reproduces mmtracking SELSA inference (mmtrack 0.14 /
# mmdet 2.28 test_cfg and test pipeline). Differences are warnings: they change outputs, but
# are legitimate choices when not aiming at mmtracking's numbers.
_MMTRACK_INFERENCE = [
    (
        "MODEL.ANCHOR_GENERATOR.SIZES",
        lambda c: c.MODEL.ANCHOR_GENERATOR.SIZES,
        [[64, 128, 256, 512]],
    ),
    (
        "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS",
        lambda c: c.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS,
        [[0.5, 1.0, 2.0]],
    ),
    ("MODEL.ANCHOR_GENERATOR.OFFSET", lambda c: c.MODEL.ANCHOR_GENERATOR.OFFSET, 0.0),
    ("MODEL.RESNETS.RES5_DILATION", lambda c: c.MODEL.RESNETS.RES5_DILATION, 2),
    # FrozenStatsBN (mmdet norm_eval, trained affine) computes what FrozenBN computes
    (
        "MODEL.RESNETS.NORM",
        lambda c: _INFERENCE_NORM.get(c.MODEL.RESNETS.NORM, c.MODEL.RESNETS.NORM),
        "FrozenBN",
    ),
    (
        "MODEL.RPN.BBOX_REG_WEIGHTS",
        lambda c: list(c.MODEL.RPN.BBOX_REG_WEIGHTS),
        [1.0, 1.0, 1.0, 1.0],
    ),
    ("MODEL.RPN.PRE_NMS_TOPK_TEST", lambda c: c.MODEL.RPN.PRE_NMS_TOPK_TEST, 6000),
    ("MODEL.RPN.POST_NMS_TOPK_TEST", lambda c: c.MODEL.RPN.POST_NMS_TOPK_TEST, 300),
    ("MODEL.RPN.NMS_THRESH", lambda c: c.MODEL.RPN.NMS_THRESH, 0.7),
    ("MODEL.ROI_BOX_HEAD.POOLER_TYPE", lambda c: c.MODEL.ROI_BOX_HEAD.POOLER_TYPE, "ROIAlignV2"),
    (
        "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO",
        lambda c: c.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO,
        2,
    ),
    (
        "MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS",
        lambda c: list(c.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS),
        [5.0, 5.0, 5.0, 5.0],
    ),
    ("MODEL.ROI_HEADS.SCORE_THRESH_TEST", lambda c: c.MODEL.ROI_HEADS.SCORE_THRESH_TEST, 1e-4),
    ("MODEL.ROI_HEADS.NMS_THRESH_TEST", lambda c: c.MODEL.ROI_HEADS.NMS_THRESH_TEST, 0.5),
    ("TEST.DETECTIONS_PER_IMAGE", lambda c: c.TEST.DETECTIONS_PER_IMAGE, 100),
    ("INPUT.FORMAT", lambda c: c.INPUT.FORMAT, "RGB"),
    ("MODEL.PIXEL_MEAN", lambda c: list(c.MODEL.PIXEL_MEAN), [123.675, 116.28, 103.53]),
    ("MODEL.PIXEL_STD", lambda c: list(c.MODEL.PIXEL_STD), [58.395, 57.12, 57.375]),
    ("INPUT.MIN_SIZE_TEST", lambda c: c.INPUT.MIN_SIZE_TEST, 600),
    ("INPUT.MAX_SIZE_TEST", lambda c: c.INPUT.MAX_SIZE_TEST, 1000),
    ("MODEL.SELSA.NUM_ATTENTION_BLOCKS", lambda c: c.MODEL.SELSA.NUM_ATTENTION_BLOCKS, 16),
    ("INPUT.VIDEO.TEST_NUM_REFS", lambda c: c.INPUT.VIDEO.TEST_NUM_REFS, 14),
    (
        "MODEL.SELSA.INFERENCE.KEY_FRAME_AS_REF",
        lambda c: c.MODEL.SELSA.INFERENCE.KEY_FRAME_AS_REF,
        True,
    ),
]


# Additionally for SELSA + Temporal RoI Align configs (configs/vid/temporal_roi_align/).
_MMTRACK_TROI_INFERENCE = [
    ("MODEL.SELSA.TROI.NAME", lambda c: c.MODEL.SELSA.TROI.NAME, "TemporalRoIAlign"),
    (
        "MODEL.SELSA.TROI.NUM_MOST_SIMILAR_POINTS",
        lambda c: c.MODEL.SELSA.TROI.NUM_MOST_SIMILAR_POINTS,
        2,
    ),
    (
        "MODEL.SELSA.TROI.NUM_TEMPORAL_ATTENTION_BLOCKS",
        lambda c: c.MODEL.SELSA.TROI.NUM_TEMPORAL_ATTENTION_BLOCKS,
        4,
    ),
    ("MODEL.ROI_BOX_HEAD.NUM_FC", lambda c: c.MODEL.ROI_BOX_HEAD.NUM_FC, 3),
]


def mmtrack_inference_mismatches(cfg) -> list[str]:
    """Config values that make inference differ from mmtracking's SELSA (or, for
    ``SelsaTRoIROIHeads`` configs, SELSA + Temporal RoI Align) test settings."""
    out = []
    rules = list(_MMTRACK_INFERENCE)
    if cfg.MODEL.ROI_HEADS.NAME == "SelsaTRoIROIHeads":
        rules += _MMTRACK_TROI_INFERENCE
    for name, get, want in rules:
        try:
            got = get(cfg)
        except (AttributeError, KeyError):
            out.append(f"{name} is not in the config (mmtracking: {want!r})")
            continue
        same = abs(float(got) - float(want)) < 1e-9 if isinstance(want, float) else got == want
        if not same:
            out.append(f"{name} = {got!r} (mmtracking: {want!r})")
    return out


def load_mmtrack_state_dict(path: str) -> tuple["OrderedDict[str, torch.Tensor]", dict]:
    """Read an mmtracking checkpoint; returns (state_dict, meta). Accepts a bare state dict too.

    An unusable file (missing, a directory, not a checkpoint) is a ``WeightsError`` (ValueError)."""
    ckpt = read_checkpoint_file(path, "mmtracking checkpoint")
    if not isinstance(ckpt, Mapping):
        raise ValueError(f"{path}: not a checkpoint dict (got {type(ckpt).__name__})")
    sd = ckpt.get("state_dict", ckpt)
    if not any(isinstance(k, str) and k.startswith(_PREFIX) for k in sd):
        raise ValueError(
            f"{path}: no 'detector.*' keys; expected an mmtracking SELSA checkpoint "
            f"(top-level keys: {sorted(ckpt)[:10]})"
        )
    return sd, dict(ckpt.get("meta") or {})


def _check_output_path(in_path: str, out_path: str) -> None:
    check_output_file(out_path, [("the input checkpoint", in_path)])


def convert_mmtrack_checkpoint(in_path: str, out_path: str, cfg=None) -> dict[str, int]:
    """Convert ``in_path`` (mmtracking .pth) and ``torch.save`` a Detectron2 checkpoint to ``out_path``.

    With ``cfg`` the architecture is checked against it (ValueError on a contradiction) and
    settings that make inference differ from mmtracking's are logged as warnings.
    Returns the per-group summary. ``out_path`` must not be ``in_path`` and its folder must exist
    (ValueError, checked before anything is read).
    """
    _check_output_path(in_path, out_path)
    sd, meta = load_mmtrack_state_dict(in_path)
    sizes, ratios = DEFAULT_NUM_ANCHOR_SIZES, DEFAULT_NUM_ANCHOR_RATIOS
    if cfg is not None and len(cfg.MODEL.ANCHOR_GENERATOR.SIZES) == 1:
        sizes = len(cfg.MODEL.ANCHOR_GENERATOR.SIZES[0])
        ratios = len(cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS[0])
    new_sd, summary, arch = convert_mmtrack_state_dict(sd, sizes, ratios)
    if cfg is not None:
        check_arch_against_cfg(arch, cfg)
        for msg in mmtrack_inference_mismatches(cfg):
            logger.warning("Differs from mmtracking's inference: %s", msg)
    out = {"model": new_sd, "__author__": "mmtracking", "matching_heuristics": False}
    classes = meta.get("CLASSES")
    if classes is not None:
        out["mmtrack_classes"] = list(classes)
        logger.info("Checkpoint classes (model output order): %s", list(classes))
    with AtomicPathManager().open(out_path, "wb") as f:  # no half-written file on an error
        torch.save(out, f)
    logger.info(
        "Converted %s (R-%d, %dx%dd, %d classes) -> %s: %s",
        in_path,
        arch.depth,
        arch.num_groups,
        arch.width_per_group,
        arch.num_classes,
        out_path,
        ", ".join(f"{k}: {v}" for k, v in summary.items()),
    )
    return summary
