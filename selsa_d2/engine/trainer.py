"""SELSA's trainer: Detectron2's ``DefaultTrainer`` with the video data pipeline, the ImageNet VID
evaluator, mmdet-style gradient clipping and checkpoints that are written atomically."""

import json
import logging
import os
import weakref
from collections import OrderedDict

import detectron2.utils.comm as comm
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils.file_io import PathManager

from ..checkpoint.loading import WeightsCheckpointer
from ..data import build_video_test_loader, build_video_train_loader
from ..evaluation import VIDEvaluator
from ..file_io import atomic_open
from ..solver import build_selsa_optimizer
from .defaults import AnyDeviceTrainer
from .hooks import UnscaleGradientsForClipping
from .timing import FrameTimer

logger = logging.getLogger("selsa_d2")


class SelsaTrainer(AnyDeviceTrainer):
    """DefaultTrainer with the video data pipeline, the VID evaluator and mmdet-style clipping.

    Used by ``train_net.py``; subclass it as Detectron2's ``DefaultTrainer`` (override a
    ``build_*`` class method) to change one piece.
    """

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
        self.complete_final_model()
        return results

    def complete_final_model(self):
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
                write_results(evaluator, results_i)
            results[dataset_name] = results_i
        return results[cfg.DATASETS.TEST[0]] if len(results) == 1 else results


def write_results(evaluator, results: dict) -> None:
    """Save the metrics and timing next to the evaluator's own files (``results.json``)."""
    out_dir = getattr(evaluator, "output_dir", None)
    if out_dir:
        PathManager.mkdirs(out_dir)
        with atomic_open(os.path.join(out_dir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
