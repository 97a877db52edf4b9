#!/usr/bin/env python
"""Train and evaluate SELSA (or the single-frame baseline) with Detectron2's DefaultTrainer.

    python train_net.py --config-file configs/selsa_R_50_DC5_7e_imagenetvid.yaml --num-gpus 8
    python train_net.py --config-file ... --eval-only MODEL.WEIGHTS /path/to/model.pth
    python train_net.py --config-file ... --resume            # continue from OUTPUT_DIR/last_checkpoint

--eval-only needs MODEL.WEIGHTS that initialise every parameter of the model (TEST.ALLOW_MISSING_WEIGHTS
True allows random ones) and whose tensors are all parameters of it (TEST.ALLOW_UNUSED_WEIGHTS);
training loads partial weights as Detectron2 does (fine-tuning). A weights file that cannot be used
stops with one line naming it.

Before anything is written (selsa_d2/run_guard.py): the config is validated, OUTPUT_DIR is locked
for the life of the run (a second run into it is refused), and training from scratch into a folder
holding a finished model_final.pth is refused unless OVERWRITE_FINISHED_MODEL True. Checkpoints are
written atomically; --eval-only saves its config as config_eval.yaml (config.yaml stays the
training's). User errors end with one line: ``train_net.py: error: <cause>``.

The trainer is ``selsa_d2.engine.SelsaTrainer`` and each process runs
``selsa_d2.engine.train_or_evaluate``; this script parses the command line and launches them.
"""

from detectron2.engine import default_argument_parser, launch

from selsa_d2.engine import USER_ERRORS, finish_distributed, train_or_evaluate


def main(args):
    try:
        results = train_or_evaluate(args)
    except USER_ERRORS as e:  # one line naming the cause, no traceback
        raise SystemExit(f"train_net.py: error: {e}") from None
    finish_distributed()
    return results


def invoke_main():
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
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
