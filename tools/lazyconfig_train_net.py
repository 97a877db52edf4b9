#!/usr/bin/env python
"""Train and evaluate SELSA from a LazyConfig python file (configs/lazy/), as Detectron2's
tools/lazyconfig_train_net.py does for its own models.

    python tools/lazyconfig_train_net.py --config-file configs/lazy/selsa_R_50_FPN_7e_imagenetvid.py --num-gpus 8
    python tools/lazyconfig_train_net.py --config-file ... --eval-only train.init_checkpoint=/path/to/model.pth
    python tools/lazyconfig_train_net.py --config-file ... --resume   # continue from train.output_dir

The config has Detectron2's LazyConfig fields: ``model``, ``dataloader.{train,test,evaluator}``,
``optimizer`` (``params.model`` is set here), ``lr_multiplier`` and ``train`` (Detectron2's
common/train.py keys, plus ``seed`` and ``allow_missing_weights``). Overrides are ``key=value``
(``train.max_iter=1000``). What differs from Detectron2's script is what train_net.py does for the
YAML configs: the CPU when CUDA is missing (also for multi-process DDP), weights files that cannot
be used named in one line, ``--eval-only`` refusing weights that leave parameters uninitialised
(``train.allow_missing_weights``), AMP gradients unscaled before clipping, the evaluation's
metrics plus the model's time per frame written to ``<evaluator output_dir>/results.json``, and
the output folder's guards (selsa_d2/run_guard.py): locked for the run's life, a finished model
never replaced by training from scratch unless ``train.overwrite_finished_model=True``, and
``--eval-only`` saving its config as ``config_eval.yaml``.
"""

from detectron2.engine import default_argument_parser, launch

from selsa_d2.engine import USER_ERRORS, finish_distributed
from selsa_d2.engine.lazy_launch import lazy_train_or_evaluate


def main(args):
    try:
        results = lazy_train_or_evaluate(args)
    except USER_ERRORS as e:  # one line naming the cause, no traceback
        raise SystemExit(f"lazyconfig_train_net.py: error: {e}") from None
    finish_distributed()
    return results


def invoke_main():
    args = default_argument_parser().parse_args()
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    invoke_main()
