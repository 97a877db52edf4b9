"""Loading ``MODEL.WEIGHTS``: unusable files named in one line, and complete weights for inference.

Detectron2's :class:`DetectionCheckpointer` loads whatever matches the model and only *warns*
about the parameters it leaves at their initial values: keys missing from the file, and keys of
another shape (e.g. the classifier of a 4-class checkpoint in a 30-class model), which it skips.
That is right for training (fine-tuning a Faster R-CNN checkpoint into SELSA initialises the
aggregators), but for inference it silently runs a partly random model. Hence:

* :class:`WeightsCheckpointer`: a ``DetectionCheckpointer`` that turns a file it cannot use
  (missing, a directory, empty, not a checkpoint, no parameter of the model in it) into a
  :class:`WeightsError` with a one-line message naming the file, and records the keys a load left
  uninitialised. ``train_net.py`` trains with it (Detectron2's behaviour otherwise: missing keys
  are logged once, grouped by module).
* :func:`load_inference_weights`: for evaluation, the demo and ``VideoPredictor``; weights that
  leave any parameter or buffer of the model uninitialised, or an empty ``MODEL.WEIGHTS``, are a
  ``WeightsError`` naming the keys, unless ``TEST.ALLOW_MISSING_WEIGHTS`` allows random weights
  (smoke tests, benchmarks).
* :func:`read_checkpoint_file`: the same file checks for tools that read a checkpoint themselves
  (the mmtracking converter).
"""

import logging
import os
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager

from ..file_io import AtomicPathManager
from .integrity import FINAL_NAME, checkpoint_problem, newest_complete_checkpoint

__all__ = [
    "WeightsError",
    "WeightsCheckpointer",
    "check_weights_file",
    "read_checkpoint_file",
    "load_inference_weights",
    "summarize_keys",
    "describe_uninitialised",
]

logger = logging.getLogger(__name__)

ALLOW_MISSING_KEY = "TEST.ALLOW_MISSING_WEIGHTS"
ALLOW_UNUSED_KEY = "TEST.ALLOW_UNUSED_WEIGHTS"


class WeightsError(ValueError):
    """A weights file that cannot be used; the message is one line naming the file and the problem."""


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or "no message"
    return f"{type(e).__name__}: {text[:300]}"


def check_weights_file(path: str, what: str = "MODEL.WEIGHTS") -> None:
    """Raise :class:`WeightsError` if the local file ``path`` is missing, a directory or empty.

    URLs (``scheme://``) are left to Detectron2's ``PathManager``, which downloads or resolves them.
    """
    if "://" in path:
        return
    if os.path.isdir(path):
        raise WeightsError(f"{what} {path}: is a directory, not a checkpoint file")
    if not os.path.exists(path):
        raise WeightsError(f"{what} {path}: file not found")
    if os.path.getsize(path) == 0:
        raise WeightsError(f"{what} {path}: file is empty")


def read_checkpoint_file(path: str, what: str = "checkpoint") -> Any:
    """``torch.load`` of a local checkpoint (on the CPU), with unusable files as :class:`WeightsError`."""
    check_weights_file(path, what)
    try:
        with PathManager.open(path, "rb") as f:
            return torch.load(f, map_location="cpu")
    except Exception as e:  # pickle, zip and torch errors all mean: not a checkpoint
        raise WeightsError(
            f"{what} {path}: not a readable PyTorch checkpoint ({_one_line(e)})"
        ) from None


def summarize_keys(keys: Iterable[str], limit: int = 8) -> str:
    """One line grouping state-dict keys by module: ``"a.b.{bias, weight}, c.weight (+3 modules)"``."""
    groups: OrderedDict[str, list[str]] = OrderedDict()
    for k in sorted(keys):
        module, _, leaf = k.rpartition(".")
        groups.setdefault(module, []).append(leaf)
    parts = []
    for module, leaves in list(groups.items())[:limit]:
        names = leaves[0] if len(leaves) == 1 else "{" + ", ".join(leaves) + "}"
        parts.append(f"{module}.{names}" if module else names)
    more = len(groups) - limit
    return ", ".join(parts) + (f" (+{more} more modules)" if more > 0 else "")


class WeightsCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` that names unusable weight files, records what a load left out,
    writes its checkpoints atomically and resumes only from a complete checkpoint.

    After :meth:`load`, ``uninitialised_keys`` lists the model's state-dict keys the file did not
    provide (missing, or skipped for a shape mismatch; keys of parameters shared under another
    loaded name excluded), ``unused_keys`` the file's tensors the model has no parameter for, and
    ``shape_mismatches`` the ``(key, shape in file, shape in model)``.
    Overrides fvcore's documented ``_load_file`` / ``_load_model`` hooks, as Detectron2 does.

    ``save`` and ``tag_last_checkpoint`` (fvcore's, unchanged) write through the public
    ``path_manager``, here an :class:`~selsa_d2.file_io.AtomicPathManager`: a kill while a
    checkpoint or ``last_checkpoint`` is written leaves the previous complete file. Resuming
    (:meth:`get_checkpoint_file`) checks the file ``last_checkpoint`` names and, when it is empty,
    truncated or missing, stops with a :class:`WeightsError` naming the cause and the newest
    complete checkpoint; resuming from a checkpoint of another model is refused the same way.
    """

    def __init__(self, model, save_dir: str = "", *, what: str = "MODEL.WEIGHTS", **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.path_manager = AtomicPathManager(self.path_manager)
        self.what = what
        self.uninitialised_keys: list[str] = []
        self.unused_keys: list[str] = []
        self.shape_mismatches: list[tuple] = []
        self._path = ""
        self._resuming = False

    def get_checkpoint_file(self) -> str:
        """The checkpoint ``last_checkpoint`` names, checked to be complete."""
        tag = os.path.join(self.save_dir, "last_checkpoint")
        with open(tag) as f:
            name = f.read().strip()
        newest = newest_complete_checkpoint(self.save_dir)
        hint = (
            f"the newest complete checkpoint is {newest}: write its name "
            f"({os.path.basename(newest)}) into {tag} to resume from it"
            if newest
            else f"no complete checkpoint is left in {self.save_dir}: train without --resume"
        )
        if not name:
            raise WeightsError(
                f"{tag} is empty (its write was interrupted), so --resume does not know what to "
                f"load; {hint}"
            )
        path = os.path.join(self.save_dir, name)
        problem = checkpoint_problem(path)
        if problem:
            raise WeightsError(
                f"{tag} names {name}, which {problem}; cannot resume from it; {hint}"
            )
        return path

    def resume_or_load(self, path: str, *, resume: bool = True) -> dict[str, Any]:
        self._resuming = bool(resume and self.has_checkpoint())
        try:
            return super().resume_or_load(path, resume=resume)
        finally:
            self._resuming = False

    def final_checkpoint_problem(self) -> str | None:
        """Why ``<save_dir>/model_final.pth`` is not a complete checkpoint (None: it is)."""
        return checkpoint_problem(os.path.join(self.save_dir, FINAL_NAME))

    def load(self, path: str, *args, **kwargs) -> dict[str, Any]:
        self.uninitialised_keys, self.shape_mismatches, self._path = [], [], path
        self.unused_keys = []
        if path:
            check_weights_file(path, self.what)
        return super().load(path, *args, **kwargs)

    def _load_file(self, filename: str) -> dict[str, Any]:
        try:
            checkpoint = super()._load_file(filename)
        except (
            AttributeError,
            TypeError,
            KeyError,
            AssertionError,
        ) as e:  # unpickled, but of another structure
            raise WeightsError(
                f"{self.what} {self._path}: not a model checkpoint ({_one_line(e)})"
            ) from None
        except Exception as e:  # pickle, zip and torch errors: not a checkpoint file at all
            raise WeightsError(
                f"{self.what} {self._path}: not a readable checkpoint ({_one_line(e)})"
            ) from None
        state = checkpoint.get("model") if isinstance(checkpoint, Mapping) else None
        if not isinstance(state, Mapping) or not state:
            raise WeightsError(
                f"{self.what} {self._path}: not a model checkpoint (no state dict of tensors in it)"
            )
        return checkpoint

    def _load_model(self, checkpoint: Any):
        # Detectron2's name-matching heuristics (.pkl model zoo files) rename the keys and log
        # their own matching table; otherwise the file's keys are the model's names.
        exact_names = not checkpoint.get("matching_heuristics", False)
        num_file_keys = len(checkpoint["model"])
        try:
            incompatible = super()._load_model(checkpoint)
        except (TypeError, ValueError, AttributeError, KeyError) as e:
            raise WeightsError(
                f"{self.what} {self._path}: not a model checkpoint ({_one_line(e)})"
            ) from None
        unused = len(incompatible.unexpected_keys) + len(incompatible.incorrect_shapes)
        if exact_names and unused >= num_file_keys:
            raise WeightsError(
                f"{self.what} {self._path}: none of its {num_file_keys} tensors is a parameter of the model "
                f"(its keys: {summarize_keys(incompatible.unexpected_keys, 3) or 'only shape mismatches'}); "
                "not a checkpoint of this model"
            )
        self.uninitialised_keys = sorted(
            _without_loaded_aliases(self.model, incompatible.missing_keys)
        )
        self.shape_mismatches = list(incompatible.incorrect_shapes)
        self.unused_keys = sorted(incompatible.unexpected_keys)
        if self._resuming and (self.uninitialised_keys or self.unused_keys):
            left = self.uninitialised_keys or [k for k, _, _ in self.shape_mismatches]
            detail = (
                f"the model's {summarize_keys(left, 3)} not in it"
                if left
                else f"its {summarize_keys(self.unused_keys, 3)} not in the model"
            )
            raise WeightsError(
                f"--resume: {self._path} is a checkpoint of another model ({detail}); resume with "
                "the config it was trained with, or train this one into another OUTPUT_DIR"
            )
        if self.uninitialised_keys:
            report = describe_uninitialised(self.uninitialised_keys, self.shape_mismatches)
            level = logging.WARNING if "other parameters" in report else logging.INFO
            logger.log(
                level, "%s %s: left at their initial values: %s", self.what, self._path, report
            )
        return incompatible


def describe_uninitialised(keys: Iterable[str], shape_mismatches: Iterable[tuple] = ()) -> str:
    """One line saying what a load left uninitialised, in the terms of starting SELSA from a
    single-frame detector: the SELSA aggregators (new: expected), the class layers when the file
    was trained for another class count (``box_predictor`` keys of another shape: expected when
    ``MODEL.ROI_HEADS.NUM_CLASSES`` differs), and "other parameters" (anything else: a checkpoint
    of another architecture)."""
    keys = sorted(keys)
    shapes = {k: (tuple(got), tuple(want)) for k, got, want in shape_mismatches}
    aggregators = [k for k in keys if ".aggregators." in f".{k}"]
    class_layers = [k for k in keys if k in shapes and "box_predictor." in k]
    other = [k for k in keys if k not in aggregators and k not in class_layers]
    parts = []
    if aggregators:
        parts.append(
            f"the SELSA aggregators ({len(aggregators)} tensors, not in a single-frame detector; "
            "MODEL.SELSA.ZERO_INIT_AGGREGATOR_OUTPUT True makes the model start as that detector)"
        )
    if class_layers:
        text = f"the class layers {summarize_keys(class_layers)}"
        cls = next((k for k in class_layers if k.endswith("cls_score.weight")), None)
        if cls is not None:  # [num_classes + 1, D]: the background is the last class
            got, want = shapes[cls]
            text += (
                f" (the file's are for {got[0] - 1} classes, the model's for {want[0] - 1}: "
                "MODEL.ROI_HEADS.NUM_CLASSES differs; they start random)"
            )
        parts.append(text)
    if other:
        parts.append(f"other parameters {summarize_keys(other)}")
    return "; ".join(parts)


def _without_loaded_aliases(model: torch.nn.Module, missing: Iterable[str]) -> list[str]:
    """``missing`` minus keys whose tensor was loaded under another name (shared modules)."""
    missing = set(missing)
    names_of_tensor = defaultdict(set)
    state = model.state_dict(keep_vars=True)
    for name, tensor in state.items():
        names_of_tensor[id(tensor)].add(name)
    return [k for k in missing if k not in state or names_of_tensor[id(state[k])] <= missing]


def load_inference_weights(
    model: torch.nn.Module,
    path: str,
    *,
    allow_missing: bool = False,
    allow_unused: bool = False,
    save_dir: str = "",
    resume: bool = False,
) -> dict[str, Any]:
    """Load trained weights for inference; every parameter and buffer must come from the file.

    Args:
        path: ``MODEL.WEIGHTS``; empty is an error unless ``allow_missing``.
        allow_missing: ``TEST.ALLOW_MISSING_WEIGHTS``: accept an empty path or uninitialised keys
            (logged as a warning): a randomly initialised (part of the) model.
        allow_unused: ``TEST.ALLOW_UNUSED_WEIGHTS``: accept a file with trained tensors the model
            has no parameter for (e.g. a SELSA checkpoint in the single-frame config: its
            aggregators would be silently dropped, a different detector than the one trained).
        save_dir, resume: as ``Checkpointer.resume_or_load``: with ``resume``, the last checkpoint
            of ``save_dir`` (if any) instead of ``path``.

    Returns:
        The checkpoint's other entries (as ``Checkpointer.load``).
    Raises:
        WeightsError: an unusable file, or missing weights without ``allow_missing``.
    """
    checkpointer = WeightsCheckpointer(model, save_dir)
    if resume and checkpointer.has_checkpoint():
        path = checkpointer.get_checkpoint_file()
    if not path:
        if not allow_missing:
            raise WeightsError(
                "MODEL.WEIGHTS is empty: inference needs trained weights "
                f"(set {ALLOW_MISSING_KEY} True to run a randomly initialised model)"
            )
        logger.warning(
            "MODEL.WEIGHTS is empty: running a randomly initialised model (%s)", ALLOW_MISSING_KEY
        )
        return {}
    extra = checkpointer.load(path, checkpointables=[])
    missing = checkpointer.uninitialised_keys
    if missing:
        total = len(model.state_dict())
        msg = f"MODEL.WEIGHTS {path}: leaves {len(missing)} of the model's {total} parameters/buffers uninitialised: "
        msg += summarize_keys(missing)
        if checkpointer.shape_mismatches:
            k, got, want = checkpointer.shape_mismatches[0]
            msg += (
                f"; {len(checkpointer.shape_mismatches)} of them have another shape in the file "
                f"(e.g. {k}: {tuple(got)} in the file, {tuple(want)} in the model; NUM_CLASSES?)"
            )
        if not allow_missing:
            raise WeightsError(
                msg + f" (trained weights of this model needed; {ALLOW_MISSING_KEY} True allows it)"
            )
        logger.warning(msg + f"; running with them random ({ALLOW_MISSING_KEY})")
    unused = checkpointer.unused_keys
    if unused:
        msg = (
            f"MODEL.WEIGHTS {path}: {len(unused)} of its tensors are not parameters of this model "
            f"and would be ignored: {summarize_keys(unused)} (a checkpoint of another architecture, "
            "e.g. SELSA weights in a single-frame config?)"
        )
        if not allow_unused:
            raise WeightsError(
                msg + f"; use the config it was trained with, or {ALLOW_UNUSED_KEY} True"
            )
        logger.warning(msg + f"; ignoring them ({ALLOW_UNUSED_KEY})")
    return extra
