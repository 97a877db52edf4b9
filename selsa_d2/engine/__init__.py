"""Detectron2's engine for SELSA: the config every entry point runs with
(:func:`setup_selsa_cfg`), the trainer (:class:`SelsaTrainer`) and what ``train_net.py`` runs in
each process (:func:`train_or_evaluate`)."""

from .defaults import (
    AnyDeviceTrainer,
    create_ddp_model_any_device,
    fall_back_to_cpu,
    finish_distributed,
    setup_selsa_cfg,
)
from .hooks import UnscaleGradientsForClipping
from .launch import USER_ERRORS, setup_training_run, train_or_evaluate
from .timing import FrameTimer
from .trainer import SelsaTrainer, write_results
