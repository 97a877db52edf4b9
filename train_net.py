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
"""

import json
import logging
import os
import weakref
from collections import OrderedDict

import detectron2.utils.comm as comm
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.evaluation import inference_on_dataset, print_csv_format, verify_results
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import setup_logger

import selsa_d2  # noqa: F401  (registers datasets and models)
from selsa_d2.checkpoint.loading import WeightsCheckpointer, WeightsError, load_inference_weights
from selsa_d2.cpu_allocator import retain_freed_cpu_memory_from_config
from selsa_d2.data import (
    build_video_test_loader,
    build_video_train_loader,
)
from selsa_d2.engine import (
    AnyDeviceTrainer,
    FrameTimer,
    UnscaleGradientsForClipping,
    finish_distributed,
    setup_selsa_cfg,
)
from selsa_d2.evaluation import VIDEvaluator
from selsa_d2.file_io import OutputError, atomic_open
from selsa_d2.run_guard import (
    RunError,
    check_num_classes,
    evaluation_config_name,
    guard_output_dir,
    validate_config,
)
from selsa_d2.solver import build_selsa_optimizer

logger = logging.getLogger("selsa_d2")


class Trainer(AnyDeviceTrainer):
    """DefaultTrainer with the video data pipeline, the VID evaluator and mmdet-style clipping."""

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.SOLVER.AMP.ENABLED and cfg.SOLVER.CLIP_GRADIENTS.ENABLED:
            self._trainer.register_hooks([UnscaleGradientsForClipping()])

    def build_hooks(self):
        # DefaultTrainer creates its DetectionCheckpointer just before calling build_hooks; the
        # hooks (PeriodicCheckpointer) and resume_or_load then use this one, which names a weights
        # file it cannot use in one line (and otherwise loads exactly like Detectron2's).
        self.checkpointer = WeightsCheckpointer(
            self.checkpointer.model, self.cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        return super().build_hooks()

    def train(self):
        results = super().train()
        self._complete_final_model()
        return results

    def _complete_final_model(self):
        """A run resumed from a checkpoint already at MAX_ITER trains 0 iterations, so the
        PeriodicCheckpointer never writes model_final.pth; if it is missing or incomplete (a kill
        while it was written, before writes were atomic), write it from the loaded state."""
        if not comm.is_main_process() or self.iter < self.max_iter - 1:
            return
        problem = self.checkpointer.final_checkpoint_problem()
        if problem:
            logger.warning(
                "model_final.pth %s: writing it from the state at iteration %d", problem, self.iter
            )
            self.checkpointer.save("model_final", iteration=self.max_iter - 1)

    @classmethod
    def build_train_loader(cls, cfg):
        return build_video_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_video_test_loader(cfg, dataset_name)

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_selsa_optimizer(cfg, model)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference")
            if len(cfg.DATASETS.TEST) > 1:
                output_folder = os.path.join(output_folder, dataset_name)
        return VIDEvaluator(cfg, dataset_name, output_folder)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """Evaluate on every DATASETS.TEST entry; also reports the model's time per frame."""
        results = OrderedDict()
        for idx, dataset_name in enumerate(cfg.DATASETS.TEST):
            data_loader = cls.build_test_loader(cfg, dataset_name)
            evaluator = evaluators[idx] if evaluators else cls.build_evaluator(cfg, dataset_name)
            timed_model = FrameTimer(model)
            results_i = inference_on_dataset(timed_model, data_loader, evaluator)
            if comm.is_main_process():
                results_i["timing"] = {
                    "ms_per_frame": timed_model.ms_per_frame(),
                    "frames": timed_model.frames,
                }
                logger.info("Evaluation results for %s in csv format:", dataset_name)
                print_csv_format(results_i)
                _write_results(evaluator, results_i)
            results[dataset_name] = results_i
        return results[cfg.DATASETS.TEST[0]] if len(results) == 1 else results


def _write_results(evaluator, results):
    """Save the metrics and timing next to the evaluator's own files (results.json)."""
    out_dir = getattr(evaluator, "output_dir", None)
    if out_dir:
        PathManager.mkdirs(out_dir)
        with atomic_open(os.path.join(out_dir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)


def setup(args):
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
    # default_setup configures the "detectron2" and "fvcore" loggers only; without this, this
    # script's and the package's INFO lines (logger "selsa_d2") went nowhere.
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="selsa_d2")
    retain_freed_cpu_memory_from_config(cfg)
    return cfg


def main(args):
    try:
        results = _main(args)
    except (WeightsError, RunError, OutputError) as e:  # one line naming the cause, no traceback
        raise SystemExit(f"train_net.py: error: {e}") from None
    finish_distributed()
    return results


def _main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        load_inference_weights(
            model,
            cfg.MODEL.WEIGHTS,
            allow_missing=cfg.TEST.ALLOW_MISSING_WEIGHTS,
            allow_unused=cfg.TEST.ALLOW_UNUSED_WEIGHTS,
            save_dir=cfg.OUTPUT_DIR,
            resume=args.resume,
        )
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


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
