"""The DC5 recipe's optimizer and schedule (configs/Base-SELSA-DC5.yaml, mmtracking's 7 epochs)
as LazyConfig ``optimizer``, ``lr_multiplier`` and ``train`` (Detectron2's common/train.py keys,
read by tools/lazyconfig_train_net.py)."""

from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from detectron2.solver.build import get_default_optimizer_params
from fvcore.common.param_scheduler import MultiStepParamScheduler

from selsa_d2.solver import FullModelClippedSGD

# 8 GPUs x 1 key frame, lr 0.01; weight decay on every parameter, norms included (mmdet);
# the global gradient norm clipped to 35 (mmdet grad_clip).
optimizer = L(FullModelClippedSGD)(
    params=L(get_default_optimizer_params)(
        # params.model is set to the model before instantiating (lazyconfig_train_net.py)
        base_lr="${..lr}",
        weight_decay_norm=1e-4,
    ),
    lr=0.01,
    momentum=0.9,
    weight_decay=1e-4,
    foreach=True,
    max_norm=35.0,
    norm_type=2.0,
)

# 7 epochs of 13,935 iterations, LR x0.1 after epochs 2 and 5; linear warm-up from 1/3 over 500
# iterations (Base-SELSA-DC5.yaml explains the epoch length)
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(
        values=[1.0, 0.1, 0.01], milestones=[27870, 69675], num_updates="${train.max_iter}"
    ),
    warmup_length=500 / 97545,
    warmup_method="linear",
    warmup_factor=1.0 / 3,
)

train = dict(
    output_dir="./output",
    init_checkpoint="",
    max_iter=97545,
    amp=dict(enabled=False),
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False, fp16_compression=False),
    checkpointer=dict(period=5000, max_to_keep=100),
    eval_period=0,  # 0: evaluate once, after training
    log_period=20,
    device="cuda",
    seed=-1,  # as SEED: < 0 draws a random seed
    # --eval-only: weights that leave parameters uninitialised are an error unless True
    # (TEST.ALLOW_MISSING_WEIGHTS)
    allow_missing_weights=False,
)
