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

import json
import logging
import os

import detectron2.utils.comm as comm
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.engine import (
    AMPTrainer,
    SimpleTrainer,
    default_argument_parser,
    default_setup,
    default_writers,
    hooks,
    launch,
)
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils.logger import setup_logger

import selsa_d2  # noqa: F401  (registers datasets and models)
from selsa_d2.checkpoint.loading import WeightsCheckpointer, WeightsError, load_inference_weights
from selsa_d2.cpu_allocator import retain_freed_cpu_memory
from selsa_d2.engine import (
    FrameTimer,
    UnscaleGradientsForClipping,
    create_ddp_model_any_device,
    finish_distributed,
)
from selsa_d2.file_io import OutputError, atomic_write_text
from selsa_d2.run_guard import RunError, evaluation_config_name, guard_output_dir

logger = logging.getLogger("selsa_d2")


def do_test(cfg, model):
    """Evaluate ``dataloader.test`` with ``dataloader.evaluator``; also reports the time per frame."""
    if "evaluator" not in cfg.dataloader:
        return {}
    evaluator = instantiate(cfg.dataloader.evaluator)
    timed_model = FrameTimer(model)
    results = inference_on_dataset(timed_model, instantiate(cfg.dataloader.test), evaluator)
    if comm.is_main_process():
        results["timing"] = {
            "ms_per_frame": timed_model.ms_per_frame(),
            "frames": timed_model.frames,
        }
        print_csv_format(results)
        _write_results(getattr(evaluator, "output_dir", None), results)
    return results


def _write_results(out_dir, results):
    """``results.json`` in ``out_dir`` (nothing without one), written atomically."""
    if not out_dir:
        return
    os.makedirs(out_dir, exist_ok=True)
    atomic_write_text(os.path.join(out_dir, "results.json"), json.dumps(results, indent=2))


def build_model(cfg):
    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    return model


def do_train(args, cfg):
    model = build_model(cfg)
    logger.info("Model:\n%s", model)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)

    model = create_ddp_model_any_device(model, **cfg.train.ddp)
    amp = cfg.train.amp.enabled
    trainer = (AMPTrainer if amp else SimpleTrainer)(model, train_loader, optimizer)
    checkpointer = WeightsCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            UnscaleGradientsForClipping() if amp else None,
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            (
                hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer)
                if comm.is_main_process()
                else None
            ),
            hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
            (
                hooks.PeriodicWriter(
                    default_writers(cfg.train.output_dir, cfg.train.max_iter),
                    period=cfg.train.log_period,
                )
                if comm.is_main_process()
                else None
            ),
        ]
    )
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    # the checkpoint holds the iteration that just finished
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)


def setup(args):
    cfg = LazyConfig.load(args.config_file)
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
    if cfg.train.device.startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger(__name__).warning(
            f"train.device is {cfg.train.device} but CUDA is not available: running on the CPU"
        )
        cfg.train.device = "cpu"
    if comm.is_main_process():  # before anything is written, as train_net.py
        guard_output_dir(
            cfg.train.output_dir,
            eval_only=args.eval_only,
            resume=args.resume,
            overwrite=cfg.train.get("overwrite_finished_model", False),
            how_to_overwrite="pass train.overwrite_finished_model=True",
        )
    if args.eval_only and comm.is_main_process():
        with evaluation_config_name(cfg.train.output_dir):  # config.yaml stays the training's
            default_setup(cfg, args)
    else:
        default_setup(cfg, args)
    setup_logger(cfg.train.output_dir, distributed_rank=comm.get_rank(), name="selsa_d2")
    if cfg.train.device == "cpu" and retain_freed_cpu_memory():  # as RETAIN_FREED_CPU_MEMORY
        logger.info("glibc malloc keeps freed memory for reuse (selsa_d2.cpu_allocator)")
    return cfg


def main(args):
    try:
        cfg = setup(args)
        if args.eval_only:
            model = build_model(cfg)
            load_inference_weights(
                model,
                cfg.train.init_checkpoint,
                allow_missing=cfg.train.get("allow_missing_weights", False),
                save_dir=cfg.train.output_dir,
                resume=args.resume,
            )
            results = do_test(cfg, create_ddp_model_any_device(model))
        else:
            results = do_train(args, cfg)
    except (WeightsError, RunError, OutputError) as e:  # one line naming the cause, no traceback
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
