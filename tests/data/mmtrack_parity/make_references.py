"""Record mmtracking 0.14.0's own SELSA R-50-DC5 training (one step, and K optimizer steps with
its EpochBasedRunner + OptimizerHook + LrUpdaterHook) as compact references for
tests/test_mmtrack_training_parity.py. See README.md beside this file.

Runs in the mmtracking venv of ../../../../shared/reference/mmtracking_run/README.md (not the
project's), with that folder on PYTHONPATH for ops_shim, mmtrack_weights and make_frames:

    PYTHONPATH=/work/shared/reference/mmtracking_run mmt/bin/python \
        tests/data/mmtrack_parity/make_references.py tests/data/mmtrack_parity

Writes inputs.npz (frames, settings, input sets) and, per input set and dtype,
<set>_float64.npz / <set>_float32.npz.
"""

import argparse
import json
import logging
import math
import os
import os.path as osp
import tempfile
from collections import OrderedDict

import numpy as np

# mmtrack 0.14 / mmdet 2.28 still use np.int / np.float in a few places
for _a, _t in (("int", int), ("float", float), ("bool", bool)):
    if not hasattr(np, _a):
        setattr(np, _a, _t)

import ops_shim  # noqa: E402  (from PYTHONPATH: shared/reference/mmtracking_run)
import torch  # noqa: E402

ops_shim.install()
import make_frames  # noqa: E402
import mmcv  # noqa: E402
import mmtrack  # noqa: E402
import mmtrack_weights  # noqa: E402
from mmcv import Config  # noqa: E402
from mmcv.runner import EpochBasedRunner, Hook, build_optimizer  # noqa: E402
from mmtrack.models import build_model  # noqa: E402

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
BIG = 100000  # sampler num that takes every candidate (no random choice)

# Shared by both sides; the test reads them from inputs.npz.
SETTINGS = dict(
    weights_seed=7,
    noise_seed=3,
    scale=0.4,  # make_frames' 320x480 clip, area-resampled to 128x192 (test time)
    quantize=8,  # grey levels quantised to multiples of 8 (+4): a small, compressible file
    rpn_train_max_per_img=64,  # train_cfg.rpn_proposal.max_per_img (recipe 600)
    rpn_test_max_per_img=32,  # test_cfg.rpn.max_per_img: reference proposals (recipe 300)
    # K optimizer steps: one iteration per epoch, so that mmcv's epoch-based step policy drops
    # the LR after `lr_step` iterations; warm-up crossed after `warmup_iters`.
    num_steps=10,
    base_lr=0.01,
    momentum=0.9,
    weight_decay=1e-4,
    warmup_iters=4,
    warmup_ratio=1.0 / 3,
    lr_step=6,
    grad_clip=35.0,
)
# make_frames' objects: (kind, cx0, cy0, vx, vy, half width, half height)
OBJECTS = [
    ("ellipse", 110.0, 120.0, 14.0, 4.0, 55.0, 38.0),
    ("rect", 330.0, 90.0, -10.0, 8.0, 60.0, 45.0),
    ("ellipse", 260.0, 240.0, 6.0, -9.0, 80.0, 30.0),
    ("rect", 400.0, 250.0, -16.0, -3.0, 28.0, 40.0),
    ("ellipse", 60.0, 260.0, 9.0, -5.0, 22.0, 22.0),
]
# Full gradients / K-step parameter changes stored for these (every k-th element, <= 1024)
FULL_KEYS = [
    "detector.backbone.layer2.0.bn1.weight",
    "detector.backbone.layer4.2.bn3.bias",
    "detector.neck.convs.0.conv.bias",
    "detector.rpn_head.rpn_cls.weight",
    "detector.rpn_head.rpn_reg.bias",
    "detector.roi_head.bbox_head.shared_fcs.1.bias",
    "detector.roi_head.bbox_head.aggregator.0.fc.bias",
    "detector.roi_head.bbox_head.fc_cls.weight",
    "detector.roi_head.bbox_head.fc_reg.weight",
]
MAX_STORED = 1024


def gt_boxes(t, objects, scale, size):
    """Analytic extents (centre +- half axes) of make_frames' objects at frame t, scaled."""
    h, w = size
    out = []
    for i in objects:
        _, cx0, cy0, vx, vy, a, b = OBJECTS[i]
        cx, cy = cx0 + vx * t, cy0 + vy * t
        box = np.array([cx - a, cy - b, cx + a, cy + b]) * scale
        out.append(np.clip(box, 0, [w, h, w, h]).tolist())
    return out


def make_clip():
    """make_frames' clip x 0.4 (exact area resampling: 2x pixel repeat, then 5x5 means)."""
    assert SETTINGS["scale"] == 0.4
    f = make_frames.make_frames(SETTINGS["noise_seed"]).astype(np.float64)
    q = SETTINGS["quantize"]
    f = f.repeat(2, axis=1).repeat(2, axis=2)
    t, h, w, c = f.shape
    f = f.reshape(t, h // 5, 5, w // 5, 5, c).mean(axis=(2, 4))
    return (np.floor(f / q) * q + q // 2).clip(0, 255).astype(np.uint8)


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def overlap_pair(proposals, size):
    """Two gts B, A (in that order) around one training proposal P: IoU(P, B) = 0.64,
    IoU(P, A) ~ 0.58, P the best proposal of both by a margin: mmdet's low-quality step gives P
    to A (the later gt), a plain max-IoU matcher to B."""
    h, w = size
    for p in proposals:
        x1, y1, x2, y2 = p
        pw, ph, cx, cy = x2 - x1, y2 - y1, (x1 + x2) / 2, (y1 + y2) / 2
        b = [cx - 0.625 * pw, cy - 0.625 * ph, cx + 0.625 * pw, cy + 0.625 * ph]
        d = 0.266 * pw
        a = [x1 + d, y1, x2 + d, y2]
        if min(b[0], b[1], a[0], a[1]) < 0 or max(b[2], a[2]) > w or max(b[3], a[3]) > h:
            continue
        if pw < 16 or ph < 16:
            continue
        ious_b = sorted((iou(q, b) for q in proposals), reverse=True)
        ious_a = sorted((iou(q, a) for q in proposals), reverse=True)
        if iou(p, b) == ious_b[0] and iou(p, a) == ious_a[0]:
            if ious_b[0] - ious_b[1] > 0.02 and ious_a[0] - ious_a[1] > 0.02:
                return b, a, p
    raise RuntimeError("no proposal suits the overlap construction")


def build(double, rpn_num):
    cfg = Config.fromfile(
        osp.join(
            osp.dirname(mmtrack.__file__),
            ".mim",
            "configs",
            "vid",
            "selsa",
            "selsa_faster_rcnn_r50_dc5_1x_imagenetvid.py",
        )
    )
    det = cfg.model.detector
    det.backbone.init_cfg = None
    det.train_cfg.rpn.sampler.num = rpn_num
    det.train_cfg.rcnn.sampler.num = BIG
    det.train_cfg.rpn_proposal.max_per_img = SETTINGS["rpn_train_max_per_img"]
    det.test_cfg.rpn.max_per_img = SETTINGS["rpn_test_max_per_img"]
    model = build_model(cfg.model)
    keys = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    model.load_state_dict(mmtrack_weights.make_state_dict(keys, seed=SETTINGS["weights_seed"]))
    if double:
        to_double(model)
    model.train()
    bn_training = [
        n
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training
    ]
    assert not bn_training, bn_training
    return model, cfg, keys


def to_double(model):
    """As shared/reference/mmtracking_run/gen_train_step.py --double: the model in float64 and
    mmdet's float32 casts (bbox2delta, BCE target, anchors) removed."""
    import types

    import mmdet.core.bbox.coder.delta_xywh_bbox_coder as dxc
    import mmdet.models.losses.cross_entropy_loss as cel
    import torch.nn.functional as F

    model.double()

    def bbox2delta64(proposals, gt, means=(0.0, 0.0, 0.0, 0.0), stds=(1.0, 1.0, 1.0, 1.0)):
        px = (proposals[..., 0] + proposals[..., 2]) * 0.5
        py = (proposals[..., 1] + proposals[..., 3]) * 0.5
        pw = proposals[..., 2] - proposals[..., 0]
        ph = proposals[..., 3] - proposals[..., 1]
        gx = (gt[..., 0] + gt[..., 2]) * 0.5
        gy = (gt[..., 1] + gt[..., 3]) * 0.5
        gw = gt[..., 2] - gt[..., 0]
        gh = gt[..., 3] - gt[..., 1]
        deltas = torch.stack(
            [(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], dim=-1
        )
        return deltas.sub_(deltas.new_tensor(means).unsqueeze(0)).div_(
            deltas.new_tensor(stds).unsqueeze(0)
        )

    dxc.bbox2delta = bbox2delta64
    cel.F = types.SimpleNamespace(**{n: getattr(F, n) for n in dir(F) if not n.startswith("__")})
    cel.F.binary_cross_entropy_with_logits = lambda input, target, *a, **k: (
        F.binary_cross_entropy_with_logits(input, target.to(input.dtype), *a, **k)
    )
    pg = model.detector.rpn_head.prior_generator
    pg.scales, pg.ratios = pg.scales.double(), pg.ratios.double()
    pg.base_anchors = pg.gen_base_anchors()
    orig_grid_priors = pg.grid_priors
    pg.grid_priors = lambda featmap_sizes, dtype=None, device="cuda": orig_grid_priors(
        featmap_sizes, dtype=torch.float64, device=device
    )


def meta(t, h, w):
    return dict(
        filename=f"synthetic/{t:06d}.JPEG",
        ori_filename=f"{t:06d}.JPEG",
        ori_shape=(h, w, 3),
        img_shape=(h, w, 3),
        pad_shape=(h, w, 3),
        scale_factor=np.array([1, 1, 1, 1], np.float32),
        flip=False,
        flip_direction=None,
        img_norm_cfg=dict(mean=np.float32(MEAN), std=np.float32(STD), to_rgb=True),
        frame_id=t,
        is_video_data=True,
    )


def make_data(frames, inp, double):
    t, h, w, _ = frames.shape
    dtype = torch.float64 if double else torch.float32
    if double:  # SeqNormalize's arithmetic in float64, with the exact constants
        imgs = (frames.astype(np.float64) - np.float64(MEAN)) / np.float64(STD)
        imgs = torch.from_numpy(imgs.transpose(0, 3, 1, 2).copy())
    else:
        imgs = torch.from_numpy(
            np.stack(
                [
                    mmcv.imnormalize(
                        np.ascontiguousarray(f[:, :, ::-1]),
                        np.float32(MEAN),
                        np.float32(STD),
                        to_rgb=True,
                    ).transpose(2, 0, 1)
                    for f in frames
                ]
            )
        )
    key, refs = inp["key_frame"], inp["ref_frames"]
    ref_b = [[j] + inp["gt_bboxes"][0] for j in range(len(refs))]  # unused by SELSA
    return dict(
        img=imgs[key : key + 1],
        img_metas=[meta(key, h, w)],
        gt_bboxes=[torch.tensor(inp["gt_bboxes"], dtype=dtype)],
        gt_labels=[torch.tensor(inp["gt_labels"], dtype=torch.int64)],
        ref_img=imgs[refs][None],
        ref_img_metas=[[meta(r, h, w) for r in refs]],
        ref_gt_bboxes=[torch.tensor(ref_b, dtype=dtype)],
        ref_gt_labels=[torch.tensor([[j, 0] for j in range(len(refs))], dtype=dtype)],
    )


def subsample(t):
    flat = t.detach().reshape(-1)
    step = max(1, math.ceil(flat.numel() / MAX_STORED))
    return flat[::step].double().numpy().copy(), step


def one_step(frames, inp, double, full):
    """forward_train + backward as mmcv's runner; what gen_train_step.py records, compactly."""
    model, cfg, keys = build(double, inp["rpn_sampler_num"])
    det = model.detector
    cap = {}
    orig_get_targets = det.rpn_head.get_targets
    orig_sample = det.roi_head.bbox_sampler.sample
    orig_rpn_fwd_train = det.rpn_head.forward_train

    def rpn_fwd_train(x, *a, **k):
        losses, plist = orig_rpn_fwd_train(x, *a, **k)
        cap["proposals_key"] = plist[0].detach().clone()
        return losses, plist

    def get_targets(*a, **k):
        res = orig_get_targets(*a, **k)
        cap["rpn_num_pos"], cap["rpn_num_neg"] = int(res[4]), int(res[5])
        return res

    def sample(assign_result, bboxes, gt_bboxes, gt_labels=None, **k):
        res = orig_sample(assign_result, bboxes, gt_bboxes, gt_labels, **k)
        cap["rcnn_num_pos"], cap["rcnn_num_neg"] = len(res.pos_inds), len(res.neg_inds)
        cap["rcnn_pos_per_gt"] = np.bincount(
            res.pos_assigned_gt_inds.numpy(), minlength=len(gt_bboxes)
        )
        return res

    det.rpn_head.forward_train = rpn_fwd_train
    det.rpn_head.get_targets = get_targets
    det.roi_head.bbox_sampler.sample = sample
    model.zero_grad()
    outputs = model.train_step(make_data(frames, inp, double), None)
    outputs["loss"].backward()
    log_vars = outputs["log_vars"]
    params = OrderedDict(model.named_parameters())
    names = [n for n, p in params.items() if p.grad is not None]
    out = OrderedDict()
    out["grad_names"] = np.array(names)
    out["grad_norm"] = np.array([float(params[n].grad.double().norm()) for n in names])
    out["total_grad_norm"] = np.float64(
        torch.stack([params[n].grad.double().norm() for n in names]).norm()
    )
    for k in ("loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "acc", "loss"):
        out["loss/" + k] = np.float64(float(log_vars[k]))
    for k in ("rpn_num_pos", "rpn_num_neg", "rcnn_num_pos", "rcnn_num_neg", "rcnn_pos_per_gt"):
        out[k] = np.asarray(cap[k], np.int64)
    out["num_proposals_key"] = np.int64(len(cap["proposals_key"]))
    if full:
        for k in FULL_KEYS:
            out["grad/" + k], out["grad_step/" + k] = subsample(params[k].grad)
    print(
        f"  one step: loss {float(log_vars['loss']):.6f}, RPN {cap['rpn_num_pos']} pos "
        f"{cap['rpn_num_neg']} neg, R-CNN {cap['rcnn_num_pos']} pos (per gt "
        f"{cap['rcnn_pos_per_gt'].tolist()}) {cap['rcnn_num_neg']} neg, "
        f"grad norm {float(out['total_grad_norm']):.4f}, {len(names)} parameters with grad"
    )
    return out, cap["proposals_key"][:, :4].double().numpy(), keys


class Recorder(Hook):
    """Per iteration: LR (after LrUpdaterHook), losses and the pre-clip grad norm."""

    def __init__(self):
        self.lr, self.losses, self.grad_norm = [], [], []

    def before_train_iter(self, runner):
        self.lr.append(runner.optimizer.param_groups[0]["lr"])

    def after_train_iter(self, runner):
        lv = runner.outputs["log_vars"]
        self.losses.append([float(lv[k]) for k in ("loss_rpn_cls", "loss_rpn_bbox", "loss_cls")])
        self.losses[-1] += [float(lv["loss_bbox"]), float(lv["loss"])]
        self.grad_norm.append(runner.log_buffer.val_history["grad_norm"][-1])


def k_steps(frames, inp, double, full):
    """SETTINGS['num_steps'] iterations of mmcv's EpochBasedRunner with the SELSA recipe's
    optimizer and hooks (SGD, OptimizerHook grad_clip, step LR with linear warm-up)."""
    s = SETTINGS
    model, cfg, _ = build(double, inp["rpn_sampler_num"])
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = build_optimizer(
        model,
        dict(type="SGD", lr=s["base_lr"], momentum=s["momentum"], weight_decay=s["weight_decay"]),
    )
    assert cfg.optimizer == dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=0.0001)
    assert cfg.optimizer_config.grad_clip == dict(max_norm=35, norm_type=2)
    with tempfile.TemporaryDirectory() as work_dir:
        runner = EpochBasedRunner(
            model,
            optimizer=optimizer,
            work_dir=work_dir,
            logger=logging.getLogger("mmtrack_parity"),
            max_epochs=s["num_steps"],
        )
        runner.register_training_hooks(
            lr_config=dict(
                policy="step",
                warmup="linear",
                warmup_iters=s["warmup_iters"],
                warmup_ratio=s["warmup_ratio"],
                step=[s["lr_step"]],
            ),
            optimizer_config=dict(grad_clip=dict(max_norm=s["grad_clip"], norm_type=2)),
        )
        rec = Recorder()
        runner.register_hook(rec, priority="LOWEST")
        data = make_data(frames, inp, double)
        runner.run([[data]], [("train", 1)])
    out = OrderedDict()
    params = OrderedDict(model.named_parameters())
    names = [n for n, p in params.items() if p.requires_grad]
    out["k_names"] = np.array(names)
    out["k_lr"] = np.array(rec.lr)
    out["k_losses"] = np.array(rec.losses)
    out["k_grad_norm"] = np.array(rec.grad_norm)
    out["k_delta_norm"] = np.array(
        [float((params[n].detach() - start[n]).double().norm()) for n in names]
    )
    out["k_param_norm"] = np.array([float(params[n].detach().double().norm()) for n in names])
    if full:
        for k in FULL_KEYS:
            out["delta/" + k], out["delta_step/" + k] = subsample(params[k].detach() - start[k])
    print(
        f"  {s['num_steps']} steps: lr {np.round(rec.lr, 6).tolist()}, grad norms "
        f"{np.round(rec.grad_norm, 2).tolist()}, losses {np.round(out['k_losses'][:, -1], 4)}"
    )
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out_dir, exist_ok=True)
    frames = make_clip()
    t, h, w, _ = frames.shape
    scale = SETTINGS["scale"]
    plain = dict(
        key_frame=2,
        ref_frames=[0, 4],
        gt_bboxes=gt_boxes(2, [1, 3, 4], scale, (h, w)),
        gt_labels=[17, 3, 8],
        rpn_sampler_num=BIG,
    )
    sets = OrderedDict(plain=plain)
    # few_anchors: the recipe's RPN sampler (256) with fewer labelled anchors than that (at
    # 128x192 only 97 anchors lie inside the image): mmdet divides by the sampled count.
    sets["few_anchors"] = dict(
        key_frame=4,
        ref_frames=[2, 0],
        gt_bboxes=gt_boxes(4, [0, 1, 2, 3], scale, (h, w)),
        gt_labels=[5, 17, 22, 3],
        rpn_sampler_num=256,
    )
    for inp in sets.values():
        assert {inp["key_frame"], *inp["ref_frames"]} <= {0, 2, 4}, (
            "inputs.npz keeps frames 0, 2, 4"
        )
    plain_proposals = None  # the plain set's float64 training proposals (first dtype)
    for name in ("plain", "overlap", "few_anchors"):
        if name == "overlap":
            # built on the plain set's float64 training proposals (they do not depend on gt)
            b, a, p = overlap_pair(plain_proposals.tolist(), (h, w))
            sets["overlap"] = dict(plain)
            sets["overlap"]["gt_bboxes"] = plain["gt_bboxes"] + [b, a]
            sets["overlap"]["gt_labels"] = plain["gt_labels"] + [12, 20]
            sets["overlap"]["proposal_p"] = p
            print(
                f"overlap: P {np.round(p, 2)}, IoU(P, B) {iou(p, b):.3f}, IoU(P, A) {iou(p, a):.3f}"
            )
        inp = sets[name]
        for dtype in args.dtypes:
            double = dtype == "float64"
            print(f"{name} {dtype}")
            out, proposals, keys = one_step(frames, inp, double, full=double)
            if name == "plain" and double:
                plain_proposals = proposals
            if name == "plain":  # K optimizer steps on the plain set only
                out.update(k_steps(frames, inp, double, full=double))
            out["dtype"] = np.array(dtype)
            np.savez_compressed(osp.join(args.out_dir, f"{name}_{dtype}.npz"), **out)
    versions = dict(
        torch=torch.__version__,
        mmcv=mmcv.__version__,
        mmdet=__import__("mmdet").__version__,
        mmtrack=mmtrack.__version__,
        numpy=np.__version__,
        threads=args.threads,
    )
    fp = mmtrack_weights.fingerprint(
        mmtrack_weights.make_state_dict(keys, seed=SETTINGS["weights_seed"])
    )
    np.savez_compressed(
        osp.join(args.out_dir, "inputs.npz"),
        frames=frames[[0, 2, 4]],  # frames 0, 2, 4 of the clip: the only ones the sets use
        frame_ids=np.array([0, 2, 4]),
        settings=np.array(json.dumps(SETTINGS)),
        input_sets=np.array(json.dumps(sets)),
        versions=np.array(json.dumps(versions)),
        mmtrack_keys=np.array(json.dumps(keys)),
        weights_fingerprint=np.array([fp[k] for k, _ in keys], np.float64),
    )
    print("versions:", versions)


if __name__ == "__main__":
    main()
