"""What ``train_net.py`` runs in each process: set up the run (:func:`setup_training_run`), then
train or evaluate (:func:`train_or_evaluate`).

Before anything is written (:mod:`selsa_d2.run_guard`): the config is validated, OUTPUT_DIR is
locked for the life of the run (a second run into it is refused), and training from scratch into
a folder holding a finished ``model_final.pth`` is refused unless ``OVERWRITE_FINISHED_MODEL
True``. ``--eval-only`` saves its config as ``config_eval.yaml`` (``config.yaml`` stays the
training's). The user errors (:data:`USER_ERRORS`) name their cause in one line.
"""

import argparse

import detectron2.utils.comm as comm
from detectron2.engine import default_setup
from detectron2.evaluation import verify_results
from detectron2.utils.logger import setup_logger

from ..checkpoint.loading import WeightsError, load_inference_weights
from ..cpu_allocator import retain_freed_cpu_memory_from_config
from ..file_io import OutputError
from ..run_guard import (
    RunError,
    check_num_classes,
    evaluation_config_name,
    guard_output_dir,
    validate_config,
)
from .defaults import setup_selsa_cfg
from .trainer import SelsaTrainer

# A weights file that cannot be used, a config or OUTPUT_DIR the run refuses, an output it cannot
# write: each names its cause in one line (train_net.py prints it, without a traceback).
USER_ERRORS = (WeightsError, RunError, OutputError)


def setup_training_run(args: argparse.Namespace):
    """The frozen config of a ``train_net.py`` run (``args`` from Detectron2's
    ``default_argument_parser``), checked, with OUTPUT_DIR guarded and logging set up."""
    # validated (one-line ConfigError naming the key), DATASETS.COCO_VID registered too
    cfg = setup_selsa_cfg(args.config_file, args.opts)
    validate_config(cfg, training=not args.eval_only, world_size=comm.get_world_size())
    # before anything is written: a wrong class count would train the last classes as background
    check_num_classes(
        cfg, ([] if args.eval_only else list(cfg.DATASETS.TRAIN)) + list(cfg.DATASETS.TEST)
    )
    if comm.is_main_process():
        guard_output_dir(
            cfg.OUTPUT_DIR,
            eval_only=args.eval_only,
            resume=args.resume,
            overwrite=cfg.OVERWRITE_FINISHED_MODEL,
            how_to_overwrite="set OVERWRITE_FINISHED_MODEL True",
        )
    if args.eval_only and comm.is_main_process():
        with evaluation_config_name(cfg.OUTPUT_DIR):  # config.yaml stays the training run's
            default_setup(cfg, args)
    else:
        default_setup(cfg, args)
    # default_setup configures the "detectron2" and "fvcore" loggers only; without this, the
    # package's INFO lines (logger "selsa_d2") went nowhere.
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="selsa_d2")
    retain_freed_cpu_memory_from_config(cfg)
    return cfg


def train_or_evaluate(args: argparse.Namespace, trainer_class=SelsaTrainer):
    """Train (``--resume`` continues from OUTPUT_DIR's last checkpoint) or, with ``--eval-only``,
    evaluate ``MODEL.WEIGHTS``; returns the evaluation results. Raises one of
    :data:`USER_ERRORS` for a cause the user can fix.

    --eval-only needs MODEL.WEIGHTS that initialise every parameter of the model
    (``TEST.ALLOW_MISSING_WEIGHTS True`` allows random ones) and whose tensors are all parameters
    of it (``TEST.ALLOW_UNUSED_WEIGHTS``); training loads partial weights as Detectron2 does.
    """
    cfg = setup_training_run(args)
    if args.eval_only:
        model = trainer_class.build_model(cfg)
        load_inference_weights(
            model,
            cfg.MODEL.WEIGHTS,
            allow_missing=cfg.TEST.ALLOW_MISSING_WEIGHTS,
            allow_unused=cfg.TEST.ALLOW_UNUSED_WEIGHTS,
            save_dir=cfg.OUTPUT_DIR,
            resume=args.resume,
        )
        res = trainer_class.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res
    trainer = trainer_class(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()
