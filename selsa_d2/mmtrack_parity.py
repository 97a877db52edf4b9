"""selsa-d2's training on the inputs of an mmtracking training reference, and the comparison.

The references (``tests/data/mmtrack_parity``, made by its ``make_references.py`` with
mmtracking 0.14.0 itself) record one training step (losses, sample counts, gradients) and K
optimizer steps (learning rates, losses, gradient norms, parameter changes) of mmtracking's SELSA
R-50-DC5 from deterministic weights. This module rebuilds the same weights, converts them with
:mod:`selsa_d2.checkpoint.mmtrack`, runs the project's model, optimizer (:mod:`selsa_d2.solver`)
and learning-rate schedule (Detectron2's ``SimpleTrainer`` with its ``LRScheduler`` hook) on the
same inputs and reports relative differences per loss, parameter group and step. Used by
``tests/test_mmtrack_training_parity.py`` and ``tools/mmtrack_parity_table.py``.

Float64: mmdet's float32 casts are removed on the reference side (see ``make_references.py``);
here :func:`float64_boxes` removes Detectron2's (``Boxes`` and ``Box2BoxTransform.apply_deltas``
cast to float32), and the anchors are computed in float64.
"""

import contextlib
import itertools
import json
import math
import os
from collections import OrderedDict
from unittest import mock

import numpy as np
import torch
from detectron2.engine import HookBase, SimpleTrainer, hooks
from detectron2.modeling import build_model
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.proposal_generator import proposal_utils
from detectron2.solver import build_lr_scheduler
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from torchvision.ops import boxes as box_ops

from .checkpoint.mmtrack import convert_mmtrack_state_dict, mmdet_to_d2_anchor_permutation
from .solver import build_selsa_optimizer

__all__ = [
    "mmtrack_random_state_dict",
    "weights_fingerprint",
    "ParityReference",
    "parity_config",
    "build_parity_model",
    "training_inputs",
    "float64_boxes",
    "training_step",
    "optimizer_steps",
    "PARAMETER_GROUPS",
    "parameter_group",
    "relative_difference",
    "LOSS_NAMES",
]

# Detectron2 loss name -> mmdet's
LOSS_NAMES = OrderedDict(
    loss_rpn_cls="loss_rpn_cls",
    loss_rpn_loc="loss_rpn_bbox",
    loss_cls="loss_cls",
    loss_box_reg="loss_bbox",
)

# ---------------------------------------------------------------------- weights
_FINAL_LAYER_TAGS = ("fc_cls", "fc_reg", "rpn_cls", "rpn_reg")


def mmtrack_random_state_dict(
    keys_shapes, seed: int, residual_scale: float = 0.2
) -> "OrderedDict[str, torch.Tensor]":
    """Deterministic weights for an mmtrack state-dict key list, by the rules of
    ``shared/reference/mmtracking_run/mmtrack_weights.py`` (all draws from one CPU generator, in
    key order, float32): counters 0; running mean 0.1 randn; running var 0.5 + rand; BN weight
    1 + 0.1 randn and bias 0.1 randn (both x ``residual_scale`` in every ``.bn3``); conv / linear
    weight He-normal, except the final predictors (0.01 randn); other biases 0.01 randn."""
    keys_shapes = [(k, list(s)) for k, s in keys_shapes]
    bn_prefixes = {k.rsplit(".", 1)[0] for k, _ in keys_shapes if k.endswith(".running_mean")}
    g = torch.Generator().manual_seed(seed)
    out = OrderedDict()
    for key, shape in keys_shapes:
        prefix, name = key.rsplit(".", 1)
        is_bn = prefix in bn_prefixes
        if name == "num_batches_tracked":
            t = torch.zeros(shape, dtype=torch.int64)
        elif name == "running_mean":
            t = 0.1 * torch.randn(shape, generator=g)
        elif name == "running_var":
            t = 0.5 + torch.rand(shape, generator=g)
        elif is_bn and name in ("weight", "bias"):
            t = torch.randn(shape, generator=g)
            t = 1.0 + 0.1 * t if name == "weight" else 0.1 * t
            if prefix.endswith(".bn3"):
                t = t * residual_scale
        elif name == "weight" and len(shape) >= 2:
            t = torch.randn(shape, generator=g)
            if any(tag in key for tag in _FINAL_LAYER_TAGS):
                t = 0.01 * t
            else:
                t = t * math.sqrt(2.0 / math.prod(shape[1:]))
        elif name == "bias":
            t = 0.01 * torch.randn(shape, generator=g)
        else:
            raise ValueError(f"no fill rule for {key} {shape}")
        out[key] = t
    return out


def weights_fingerprint(sd) -> np.ndarray:
    """Per key [sum, sum of squares, first element] in float64 (mmtrack_weights.fingerprint)."""
    rows = []
    for v in sd.values():
        d = v.detach().double().reshape(-1)
        rows.append([float(d.sum()), float((d * d).sum()), float(d[0]) if d.numel() else 0.0])
    return np.array(rows, np.float64)


# ---------------------------------------------------------------------- references
class ParityReference:
    """A folder written by ``tests/data/mmtrack_parity/make_references.py``."""

    def __init__(self, folder: str):
        path = os.path.join(folder, "inputs.npz")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no mmtracking parity reference there")
        with np.load(path) as z:
            # clip frame id -> uint8 [H, W, 3] RGB
            self.frames = dict(zip(z["frame_ids"].tolist(), z["frames"]))
            self.settings = json.loads(str(z["settings"]))
            self.input_sets = json.loads(str(z["input_sets"]))
            self.versions = json.loads(str(z["versions"]))
            self.mmtrack_keys = [(k, s) for k, s in json.loads(str(z["mmtrack_keys"]))]
            self.weights_fingerprint = z["weights_fingerprint"]
        self.folder = folder
        self._converted = None

    def load(self, input_set: str, dtype: str) -> dict:
        path = os.path.join(self.folder, f"{input_set}_{dtype}.npz")
        with np.load(path) as z:
            return {k: z[k] for k in z.files}

    def mmtrack_state_dict(self) -> "OrderedDict[str, torch.Tensor]":
        return mmtrack_random_state_dict(self.mmtrack_keys, self.settings["weights_seed"])

    def converted_state_dict(self) -> tuple["OrderedDict[str, torch.Tensor]", dict]:
        """(the weights converted for selsa-d2, {our name: mmtrack name}); made once, after
        checking the regenerated weights against the reference's fingerprint."""
        if self._converted is None:
            sd = self.mmtrack_state_dict()
            if not np.allclose(weights_fingerprint(sd), self.weights_fingerprint, rtol=1e-6):
                raise ValueError(
                    f"{self.folder}: the regenerated weights differ from the reference's"
                )
            converted, _, _ = convert_mmtrack_state_dict(sd)
            mm_names = [k for k in sd if not k.endswith(".num_batches_tracked")]
            self._converted = converted, dict(zip(converted, mm_names))
        return self._converted


def parity_config(cfg, reference: ParityReference, input_set: str):
    """The recipe config ``cfg`` (e.g. ``configs/selsa_R_50_DC5_7e_imagenetvid.yaml``) with the
    reference's shared settings: proposal counts, samplers that take every candidate (the
    R-CNN's always, the RPN's where the input set says so) and the K-step schedule. Returns a
    new, frozen config."""
    s, inp = reference.settings, reference.input_sets[input_set]
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = s["rpn_train_max_per_img"]
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = s["rpn_test_max_per_img"]
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = inp["rpn_sampler_num"]
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 100000
    cfg.SOLVER.BASE_LR = s["base_lr"]
    cfg.SOLVER.MOMENTUM = s["momentum"]
    cfg.SOLVER.WEIGHT_DECAY = s["weight_decay"]
    cfg.SOLVER.WEIGHT_DECAY_NORM = s["weight_decay"]
    cfg.SOLVER.WARMUP_ITERS = s["warmup_iters"]
    cfg.SOLVER.WARMUP_FACTOR = s["warmup_ratio"]
    cfg.SOLVER.STEPS = (s["lr_step"],)
    cfg.SOLVER.MAX_ITER = s["num_steps"]
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = s["grad_clip"]
    cfg.freeze()
    return cfg


def _float64_cell_anchors(anchor_generator, sizes, aspect_ratios) -> None:
    """Recompute Detectron2's cell anchors in float64 (they are made in float32)."""
    if len(aspect_ratios) == 1:
        aspect_ratios = aspect_ratios * len(sizes)
    with _default_dtype(torch.float64):
        for buf, size, ratio in zip(anchor_generator.cell_anchors, sizes, aspect_ratios):
            buf.copy_(anchor_generator.generate_cell_anchors(size, ratio))


@contextlib.contextmanager
def _default_dtype(dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _with_mmdet_rcnn_avg_factor(losses_fn):
    """``FastRCNNOutputLayers.losses`` divided as mmdet's ``BBoxHead.loss``: by the number N of
    sampled RoIs plus float32 eps (``weight_reduce_loss``), where Detectron2 divides by N."""

    def losses(predictions, proposals):
        out = losses_fn(predictions, proposals)
        n = sum(len(p) for p in proposals)
        scale = n / (n + float(torch.finfo(torch.float32).eps))
        return {k: v * scale if k in ("loss_cls", "loss_box_reg") else v for k, v in out.items()}

    return losses


def build_parity_model(
    cfg, reference: ParityReference, dtype: str, rcnn_loss_eps: bool = False
) -> tuple[torch.nn.Module, dict]:
    """The model of ``cfg`` with the reference's weights (converted), in ``dtype``, train mode.
    Returns (model, {Detectron2 parameter name: mmtrack name}).

    ``rcnn_loss_eps``: also add mmdet's float32 eps to the R-CNN losses' divisor (a relative
    eps / N ~ 2e-9 that the model does not reproduce), for comparisons over many steps."""
    converted, names = reference.converted_state_dict()
    model = build_model(cfg)
    incompatible = model.load_state_dict(converted, strict=False)
    missing = set(incompatible.missing_keys) - {"pixel_mean", "pixel_std"}
    if missing or incompatible.unexpected_keys:
        raise ValueError(f"weights do not fit: {sorted(missing)} {incompatible.unexpected_keys}")
    if dtype == "float64":
        model.double()
        # the normalisation constants from the config's decimals, not from float32 buffers
        for name in ("pixel_mean", "pixel_std"):
            value = getattr(cfg.MODEL, name.upper())
            getattr(model, name).copy_(torch.tensor(value, dtype=torch.float64).view(-1, 1, 1))
        _float64_cell_anchors(
            model.proposal_generator.anchor_generator,
            cfg.MODEL.ANCHOR_GENERATOR.SIZES,
            cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS,
        )
    if rcnn_loss_eps:
        predictor = model.roi_heads.box_predictor
        predictor.losses = _with_mmdet_rcnn_avg_factor(predictor.losses)
    model.train()
    return model, names


def training_inputs(reference: ParityReference, input_set: str, dtype: str) -> list[dict]:
    """One key frame with its references, as ``SelsaRCNN`` takes them in training."""
    inp = reference.input_sets[input_set]

    def frame(t):
        image = torch.from_numpy(reference.frames[t]).permute(2, 0, 1).contiguous()
        return {"image": image, "height": image.shape[1], "width": image.shape[2], "frame_id": t}

    key = frame(inp["key_frame"])
    h, w = key["height"], key["width"]
    boxes = torch.tensor(inp["gt_bboxes"], dtype=getattr(torch, dtype))
    key["instances"] = Instances(
        (h, w), gt_boxes=Boxes(boxes), gt_classes=torch.tensor(inp["gt_labels"])
    )
    key["ref_frames"] = [frame(t) for t in inp["ref_frames"]]
    return [key]


def _boxes_init_keep_float(self, tensor):
    if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
        tensor = torch.as_tensor(tensor, dtype=torch.float32)
    self.tensor = tensor.reshape(-1, 4)


def _apply_deltas_in_input_dtype(self, deltas, boxes):
    # Box2BoxTransform.apply_deltas without its float32 cast ("fp32 for decoding precision")
    boxes = boxes.to(deltas.dtype)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    wx, wy, ww, wh = self.weights
    dx, dy = deltas[:, 0::4] / wx, deltas[:, 1::4] / wy
    dw = torch.clamp(deltas[:, 2::4] / ww, max=self.scale_clamp)
    dh = torch.clamp(deltas[:, 3::4] / wh, max=self.scale_clamp)
    pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
    pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
    pred_w = torch.exp(dw) * widths[:, None]
    pred_h = torch.exp(dh) * heights[:, None]
    pred = torch.stack(
        (
            pred_ctr_x - 0.5 * pred_w,
            pred_ctr_y - 0.5 * pred_h,
            pred_ctr_x + 0.5 * pred_w,
            pred_ctr_y + 0.5 * pred_h,
        ),
        dim=-1,
    )
    return pred.reshape(deltas.shape)


def _batched_nms_float32(boxes, scores, idxs, iou_threshold):
    # Detectron2 casts the boxes to float32 only; mmcv's NMS (and the reference's shim) both
    return box_ops.batched_nms(boxes.float(), scores.float(), idxs, iou_threshold)


_bce_with_logits = torch.nn.functional.binary_cross_entropy_with_logits


def _bce_with_logits_target_as_input(input, target, *args, **kwargs):
    # Detectron2's RPN passes a float32 target; with a float64 input torch returns float32
    return _bce_with_logits(input, target.to(input.dtype), *args, **kwargs)


@contextlib.contextmanager
def float64_boxes():
    """Within: Detectron2's ``Boxes`` keep a floating dtype, ``Box2BoxTransform`` decodes in
    the deltas' dtype and the RPN's objectness loss is computed in the logits' dtype (all three
    are float32 otherwise), so that a float64 model computes its anchors, proposals, targets
    and losses in float64 as the float64 reference does; the RPN's NMS decides in float32 as
    mmcv's does."""
    with (
        mock.patch.object(Boxes, "__init__", _boxes_init_keep_float),
        mock.patch.object(Box2BoxTransform, "apply_deltas", _apply_deltas_in_input_dtype),
        mock.patch.object(proposal_utils, "batched_nms", _batched_nms_float32),
        mock.patch.object(
            torch.nn.functional,
            "binary_cross_entropy_with_logits",
            _bce_with_logits_target_as_input,
        ),
    ):
        yield


def _to_mmdet_layout(mm_name: str, t: torch.Tensor) -> torch.Tensor:
    """A tensor of our layout back in mmdet's (RPN outputs: anchors ratio-major)."""
    if ".rpn_cls." not in mm_name and ".rpn_reg." not in mm_name:
        return t
    perm = torch.as_tensor(mmdet_to_d2_anchor_permutation(4, 3))
    a = len(perm)
    v = t.reshape(a, -1) if ".rpn_cls." in mm_name else t.reshape(a, 4, -1)
    out = torch.empty_like(v)
    out[perm] = v
    return out.reshape(t.shape)


def _positives_per_gt(proposals: list[Instances], targets: list[Instances], num_classes: int):
    """Sampled R-CNN positives per gt of the (single) key image, from the matched gt boxes."""
    (p,), (gt,) = proposals, targets
    pos = p.gt_classes < num_classes
    matched = p.gt_boxes.tensor[pos]
    same = (matched[:, None, :] == gt.gt_boxes.tensor[None, :, :]).all(-1)  # [P, G]
    return np.bincount(same.to(torch.int64).argmax(1).numpy(), minlength=len(gt))


def training_step(model, names: dict, inputs: list[dict]) -> dict:
    """One forward + backward (as ``SimpleTrainer.run_step``). Returns losses (mmdet names),
    counts and {mmtrack name: gradient} in mmdet's layout."""
    roi_heads = model.roi_heads
    captured = {}
    label_and_sample = roi_heads.label_and_sample_proposals

    def capture(proposals, targets):
        out = label_and_sample(proposals, targets)
        captured["pos_per_gt"] = _positives_per_gt(out, targets, roi_heads.num_classes)
        return out

    roi_heads.label_and_sample_proposals = capture
    try:
        with EventStorage(0) as storage:
            model.zero_grad(set_to_none=True)
            loss_dict = model(inputs)
            sum(loss_dict.values()).backward()
            latest = {k: v[0] for k, v in storage.latest().items()}
    finally:
        del roi_heads.label_and_sample_proposals
    grads = OrderedDict(
        (names[n], _to_mmdet_layout(names[n], p.grad.detach()))
        for n, p in model.named_parameters()
        if p.grad is not None
    )
    return dict(
        losses={LOSS_NAMES[k]: float(v) for k, v in loss_dict.items()},
        rpn_num_pos=int(latest["rpn/num_pos_anchors"]),
        rpn_num_neg=int(latest["rpn/num_neg_anchors"]),
        rcnn_num_pos=int(latest["roi_head/num_fg_samples"]),
        rcnn_num_neg=int(latest["roi_head/num_bg_samples"]),
        rcnn_pos_per_gt=captured["pos_per_gt"],
        grads=grads,
    )


class _StepRecorder(HookBase):
    """Per iteration: the LR used, the global gradient norm before clipping, the losses."""

    def __init__(self):
        self.lr, self.grad_norm, self.losses = [], [], []
        self.first_grads = None  # {parameter name: gradient} of the first step, before clipping

    def before_step(self):
        self.lr.append(self.trainer.optimizer.param_groups[0]["lr"])

    def after_backward(self):
        named = [
            (n, p.grad) for n, p in self.trainer.model.named_parameters() if p.grad is not None
        ]
        self.grad_norm.append(float(torch.stack([g.norm() for _, g in named]).norm()))
        if self.first_grads is None:
            self.first_grads = {n: g.detach().clone() for n, g in named}

    def after_step(self):
        latest = {k: v[0] for k, v in self.trainer.storage.latest().items()}
        row = [latest[k] for k in LOSS_NAMES]
        self.losses.append(row + [sum(row)])


def optimizer_steps(cfg, model, names: dict, inputs: list[dict]) -> dict:
    """``SOLVER.MAX_ITER`` iterations of Detectron2's ``SimpleTrainer`` on the same batch, with
    :func:`build_selsa_optimizer` and the ``LRScheduler`` hook of Detectron2's
    ``build_lr_scheduler``, as ``train_net.py`` trains. Returns per-step LR, pre-clip gradient
    norm and losses [K, 5] (mmdet order + total), {mmtrack name: parameter change} and the
    first step's losses and gradients (as :func:`training_step`'s ``losses`` / ``grads``)."""
    start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    optimizer = build_selsa_optimizer(cfg, model)
    trainer = SimpleTrainer(model, itertools.repeat(inputs), optimizer)
    recorder = _StepRecorder()
    trainer.register_hooks(
        [hooks.LRScheduler(optimizer, build_lr_scheduler(cfg, optimizer)), recorder]
    )
    trainer.train(0, cfg.SOLVER.MAX_ITER)
    params = dict(model.named_parameters())
    deltas = OrderedDict(
        (names[n], _to_mmdet_layout(names[n], params[n].detach() - p0)) for n, p0 in start.items()
    )
    first_grads = OrderedDict(
        (names[n], _to_mmdet_layout(names[n], g)) for n, g in recorder.first_grads.items()
    )
    return dict(
        lr=np.array(recorder.lr),
        grad_norm=np.array(recorder.grad_norm),
        losses=np.array(recorder.losses),
        deltas=deltas,
        first_step=dict(
            losses=dict(zip(LOSS_NAMES.values(), recorder.losses[0][:-1])), grads=first_grads
        ),
    )


# ---------------------------------------------------------------------- comparison
# Report groups of mmtrack parameter names, first match wins.
PARAMETER_GROUPS = [
    ("backbone stem + res2 (frozen)", ("backbone.conv1", "backbone.bn1", "backbone.layer1.")),
    ("backbone res3 BN affine", ("backbone.layer2.",), True),
    ("backbone res3 conv", ("backbone.layer2.",)),
    ("backbone res4 BN affine", ("backbone.layer3.",), True),
    ("backbone res4 conv", ("backbone.layer3.",)),
    ("backbone res5 BN affine", ("backbone.layer4.",), True),
    ("backbone res5 conv", ("backbone.layer4.",)),
    ("neck", ("neck.",)),
    ("rpn head", ("rpn_head.",)),
    ("box head shared fcs", ("bbox_head.shared_fcs.",)),
    ("aggregators", ("bbox_head.aggregator.",)),
    ("fc_cls / fc_reg", ("bbox_head.fc_cls.", "bbox_head.fc_reg.")),
]


def _is_bn(mm_name: str) -> bool:
    module = mm_name.rsplit(".", 1)[0]
    return ".bn" in module or module.endswith("downsample.1")


def parameter_group(mm_name: str) -> str:
    for group in PARAMETER_GROUPS:
        title, prefixes = group[0], group[1]
        bn_only = len(group) > 2
        if any(p in mm_name for p in prefixes) and (not bn_only or _is_bn(mm_name)):
            return title
    raise KeyError(f"no parameter group for {mm_name}")


def relative_difference(ours, ref) -> float:
    """||ours - ref|| / ||ref|| (scalars: |ours - ref| / |ref|), in float64."""
    a = np.asarray(ours, np.float64)
    b = np.asarray(ref, np.float64)
    return float(np.linalg.norm((a - b).ravel()) / max(np.linalg.norm(b.ravel()), 1e-300))


# Norms below this fraction of the global norm are rounding noise of a zero: the attention's
# key-embedding biases (``ref_fc_embed.bias``) add one constant per key row to its similarities,
# which the softmax ignores, so their true gradient is 0 and both sides compute ~1e-17.
NOISE_FLOOR = 1e-9


def _norm_difference(ours: float, ref: float, total: float) -> float:
    """|ours - ref| / ref, with ref floored at NOISE_FLOOR x the global norm ``total``."""
    return abs(ours - ref) / max(abs(ref), NOISE_FLOOR * total)


def compare_step(ours: dict, ref: dict) -> "OrderedDict[str, float]":
    """Relative differences of one training step: each loss, the total, per parameter group the
    largest over its parameters of the gradient norm's, the global gradient norm, and each
    stored full gradient (``grad/<name>``, every k-th element). Raises if the sets of
    parameters with a gradient differ."""
    out = OrderedDict()
    for name in LOSS_NAMES.values():
        out[f"loss {name}"] = relative_difference(ours["losses"][name], ref["loss/" + name])
    out["loss total"] = relative_difference(sum(ours["losses"].values()), ref["loss/loss"])
    ref_names = [str(n) for n in ref["grad_names"]]
    if set(ref_names) != set(ours["grads"]):
        raise ValueError(
            "parameters with a gradient differ: only mmtrack "
            f"{sorted(set(ref_names) - set(ours['grads']))}, only ours "
            f"{sorted(set(ours['grads']) - set(ref_names))}"
        )
    norms = {n: float(g.double().norm()) for n, g in ours["grads"].items()}
    total = math.sqrt(sum(v * v for v in norms.values()))
    for n, ref_norm in zip(ref_names, ref["grad_norm"]):
        key = f"grad {parameter_group(n)}"
        out[key] = max(out.get(key, 0.0), _norm_difference(norms[n], ref_norm, total))
    out["grad global norm"] = relative_difference(total, ref["total_grad_norm"])
    for k in ref:
        if k.startswith("grad/"):
            name = k[len("grad/") :]
            step = int(ref["grad_step/" + name])
            g = ours["grads"][name].reshape(-1)[::step].double().numpy()
            out[f"full grad {name}"] = relative_difference(g, ref[k])
    return out


def compare_steps(ours: dict, ref: dict) -> "OrderedDict[str, float]":
    """Relative differences of the K optimizer steps: per-step LR, losses and pre-clip gradient
    norm (largest over the steps), per parameter group the largest over its parameters of the
    change's norm (p_K - p_0), and each stored full change (``delta/<name>``)."""
    out = OrderedDict()
    out["steps lr"] = max(map(relative_difference, ours["lr"], ref["k_lr"]))
    out["steps losses"] = max(map(relative_difference, ours["losses"], ref["k_losses"]))
    out["steps grad norm"] = max(map(relative_difference, ours["grad_norm"], ref["k_grad_norm"]))
    ref_names = [str(n) for n in ref["k_names"]]
    if set(ref_names) != set(ours["deltas"]):
        raise ValueError(
            "trained parameters differ: only mmtrack "
            f"{sorted(set(ref_names) - set(ours['deltas']))}, only ours "
            f"{sorted(set(ours['deltas']) - set(ref_names))}"
        )
    total = float(np.linalg.norm(ref["k_delta_norm"]))
    for n, ref_norm in zip(ref_names, ref["k_delta_norm"]):
        key = f"change {parameter_group(n)}"
        ours_norm = float(ours["deltas"][n].double().norm())
        out[key] = max(out.get(key, 0.0), _norm_difference(ours_norm, ref_norm, total))
    for k in ref:
        if k.startswith("delta/"):
            name = k[len("delta/") :]
            step = int(ref["delta_step/" + name])
            d = ours["deltas"][name].reshape(-1)[::step].double().numpy()
            out[f"full change {name}"] = relative_difference(d, ref[k])
    return out
