"""What ``tools/lazyconfig_train_net.py`` runs in each process: Detectron2's LazyConfig training
loop (as Detectron2's own ``tools/lazyconfig_train_net.py``) with the run guards, atomic
checkpoints, DDP on any device and the per-frame timing of ``train_net.py``."""

import logging

import detectron2.utils.comm as comm
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.engine import (
    AMPTrainer,
    SimpleTrainer,
    default_setup,
    default_writers,
    hooks,
)
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils.logger import setup_logger

from ..checkpoint.loading import WeightsCheckpointer, load_inference_weights
from ..cpu_allocator import retain_freed_cpu_memory
from ..run_guard import evaluation_config_name, guard_output_dir
from .defaults import create_ddp_model_any_device
from .hooks import UnscaleGradientsForClipping
from .timing import FrameTimer
from .trainer import write_results

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
        write_results(evaluator, results)
    return results


def build_model(cfg):
    """``cfg.model`` instantiated on ``cfg.train.device``."""
    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    return model


def do_train(args, cfg):
    """Detectron2's plain training loop on ``cfg`` (``SimpleTrainer`` / ``AMPTrainer`` with its
    hooks), DDP on any device, atomic checkpoints; ``--resume`` continues from the last one."""
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


def setup_lazy_run(args):
    """The LazyConfig of a run (``args`` from Detectron2's ``default_argument_parser``), with
    OUTPUT_DIR guarded and logging set up, as :func:`~selsa_d2.engine.setup_training_run`."""
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


def lazy_train_or_evaluate(args):
    """Train, or with ``--eval-only`` evaluate ``train.init_checkpoint``; raises one of
    :data:`~selsa_d2.engine.USER_ERRORS` for a cause the user can fix."""
    cfg = setup_lazy_run(args)
    if args.eval_only:
        model = build_model(cfg)
        load_inference_weights(
            model,
            cfg.train.init_checkpoint,
            allow_missing=cfg.train.get("allow_missing_weights", False),
            save_dir=cfg.train.output_dir,
            resume=args.resume,
        )
        return do_test(cfg, create_ddp_model_any_device(model))
    return do_train(args, cfg)
