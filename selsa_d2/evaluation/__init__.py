"""Evaluation for video object detection: ImageNet VID metrics and a Detectron2 evaluator."""

from . import vid_metrics  # noqa: F401
from .vid_evaluator import VIDEvaluator, merge_predictions  # noqa: F401

__all__ = ["VIDEvaluator", "merge_predictions", "vid_metrics"]
