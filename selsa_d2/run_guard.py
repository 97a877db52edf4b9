"""Checks an entry point runs before it writes anything into ``OUTPUT_DIR`` or starts training.

Each check raises :class:`RunError` (or :class:`ConfigError`) with a one-line message naming the
key, file or folder and the cause; entry points print it as ``<script>: error: <message>``.

* :func:`validate_config`: the SELSA keys and the solver keys a run needs (type and range).
* :func:`check_output_dir` / :class:`OutputDirLock`: ``OUTPUT_DIR`` is a writable folder and no
  other run uses it (an ``fcntl.flock`` held for the life of the process: released on any exit,
  a kill included, so a stale lock file never blocks).
* :func:`check_not_replacing_finished_model`: training from scratch into a folder that holds a
  complete ``model_final.pth`` is refused unless ``OVERWRITE_FINISHED_MODEL`` is True.
* :func:`check_num_classes`: ``MODEL.ROI_HEADS.NUM_CLASSES`` equals the class count of every
  dataset of the run (its metadata), before the model is built.
* :func:`evaluation_config_name`: ``--eval-only`` keeps the training ``config.yaml`` and saves its
  own config as ``config_eval.yaml``.
"""

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator

from .checkpoint.integrity import FINAL_NAME, is_complete_checkpoint

__all__ = [
    "RunError",
    "ConfigError",
    "merge_config",
    "validate_config",
    "check_output_dir",
    "OutputDirLock",
    "check_not_replacing_finished_model",
    "refuse_replacing_finished_model",
    "guard_output_dir",
    "release_output_dirs",
    "check_num_classes",
    "evaluation_config_name",
    "EVAL_CONFIG_NAME",
    "LOCK_NAME",
]

LOCK_NAME = ".run.lock"
EVAL_CONFIG_NAME = "config_eval.yaml"
OVERWRITE_KEY = "OVERWRITE_FINISHED_MODEL"


class RunError(ValueError):
    """A run that must not start; the message is one line naming the cause."""


class ConfigError(RunError):
    """A config file, option or value that cannot be used; the message names the key or file."""


def merge_config(cfg, config_file: str | None, opts) -> None:
    """``cfg.merge_from_file`` + ``merge_from_list`` with their errors (missing file, unknown or
    mistyped key, odd option list) as one-line :class:`ConfigError`s."""
    if config_file:
        if not os.path.isfile(config_file):
            raise ConfigError(f"--config-file {config_file}: file not found")
        try:
            cfg.merge_from_file(config_file)
        except (KeyError, ValueError, TypeError, AssertionError, OSError) as e:
            raise ConfigError(
                f"--config-file {config_file}: {_one_line(e)}{_did_you_mean(cfg, e)}"
            ) from None
        except Exception as e:  # yaml syntax errors
            raise ConfigError(
                f"--config-file {config_file}: not a valid config ({_one_line(e)})"
            ) from None
    opts = list(opts or [])
    if len(opts) % 2:
        raise ConfigError(
            f"config options must be KEY VALUE pairs, got an odd number ({len(opts)}): "
            + " ".join(map(str, opts))[-200:]
        )
    try:
        cfg.merge_from_list(opts)
    except (KeyError, ValueError, TypeError, AssertionError) as e:
        raise ConfigError(f"config option: {_one_line(e)}{_did_you_mean(cfg, e)}") from None


def _all_keys(node, prefix=""):
    for k, v in node.items():
        if isinstance(v, dict):
            yield from _all_keys(v, f"{prefix}{k}.")
        else:
            yield prefix + k


def _did_you_mean(cfg, e: BaseException) -> str:
    """`` (did you mean X?)`` for yacs' "Non-existent key: <key>" errors, else ""."""
    import difflib

    text = str(e.args[0]) if e.args else ""
    if "Non-existent" not in text:
        return ""
    key = text.rsplit(":", 1)[-1].strip()
    close = difflib.get_close_matches(key, list(_all_keys(cfg)), n=1, cutoff=0.8)
    return f" (did you mean {close[0]}?)" if close else ""


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e.args[0] if len(e.args) == 1 else e).split()).strip("'\"")
    return text or type(e).__name__


# ------------------------------------------------------------------------------ config values
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _get(cfg, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _choices(*names):
    return lambda v: v in names, f"one of {', '.join(map(repr, names))}"


_BOOL = (lambda v: isinstance(v, bool), "a boolean (true / false, not a string)")
_INT_GE = lambda lo: (lambda v: _is_int(v) and v >= lo, f"an integer >= {lo}")  # noqa: E731


def _schema():
    from .data.sampling import OFFLINE_METHODS, TEST_MODES, TRAIN_METHODS
    from .data.transforms import RESIZE_STYLES
    from .evaluation.vid_metrics import BOX_CONVENTIONS

    return {
        "MODEL.SELSA.NUM_ATTENTION_BLOCKS": _INT_GE(1),
        "MODEL.SELSA.NECK_CHANNELS": _INT_GE(1),
        "MODEL.SELSA.ZERO_INIT_RESIDUAL": _BOOL,
        "MODEL.SELSA.ZERO_INIT_AGGREGATOR_OUTPUT": _BOOL,
        "MODEL.SELSA.TROI.NUM_MOST_SIMILAR_POINTS": _INT_GE(1),
        "MODEL.SELSA.TROI.NUM_TEMPORAL_ATTENTION_BLOCKS": _INT_GE(0),
        "MODEL.SELSA.TROI.CHUNK_SIZE": _INT_GE(1),
        "MODEL.SELSA.INFERENCE.CACHE_FEATURES": _BOOL,
        "MODEL.SELSA.INFERENCE.KEY_FRAME_AS_REF": _BOOL,
        "MODEL.SELSA.INFERENCE.KEY_FRAME_ONLY": _BOOL,
        "MODEL.RPN.LOW_QUALITY_MIN_IOU": (
            lambda v: _is_number(v) and 0 <= v <= 1,
            "a number in [0, 1]",
        ),
        "INPUT.VIDEO.TRAIN_SAMPLER": _choices(*TRAIN_METHODS),
        "INPUT.VIDEO.TRAIN_NUM_REFS": _INT_GE(0),
        "INPUT.VIDEO.TRAIN_FRAME_RANGE": _INT_GE(0),
        "INPUT.VIDEO.TEST_MODE": _choices(*TEST_MODES),
        "INPUT.VIDEO.TEST_SAMPLER": _choices(*OFFLINE_METHODS),
        "INPUT.VIDEO.TEST_NUM_REFS": _INT_GE(0),
        "INPUT.VIDEO.TEST_FRAME_STRIDE": _INT_GE(1),
        "INPUT.RESIZE_STYLE": _choices(*RESIZE_STYLES),
        "DATASETS.TRAIN_SAMPLING_WEIGHTS": (
            lambda v: all(_is_number(w) and w >= 0 for w in v) and (not v or sum(v) > 0),
            "non-negative numbers, not all 0",
        ),
        "TEST.VID.MOTION_IOU_RANGE": _INT_GE(0),
        "TEST.VID.BOX_CONVENTION": _choices(*BOX_CONVENTIONS),
        "TEST.ALLOW_MISSING_WEIGHTS": _BOOL,
        "TEST.ALLOW_UNUSED_WEIGHTS": _BOOL,
        "RETAIN_FREED_CPU_MEMORY": _BOOL,
        OVERWRITE_KEY: _BOOL,
        "MODEL.ROI_HEADS.NUM_CLASSES": _INT_GE(1),
    }


_TRAINING_SCHEMA = {
    "SOLVER.MAX_ITER": _INT_GE(1),
    "SOLVER.IMS_PER_BATCH": _INT_GE(1),
    "SOLVER.CHECKPOINT_PERIOD": _INT_GE(1),
    "SOLVER.BASE_LR": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
}


def validate_config(cfg, *, training: bool = True, world_size: int = 1) -> None:
    """Raise :class:`ConfigError` naming the first key whose value has the wrong type or range."""
    schema = dict(_schema())
    if training:
        schema.update(_TRAINING_SCHEMA)
    for key, (ok, expected) in schema.items():
        try:
            value = _get(cfg, key)
        except KeyError:
            continue  # a key of a config without the SELSA additions
        if not ok(value):
            raise ConfigError(f"{key} must be {expected}, got {value!r}")
    selsa_heads = "Selsa" in cfg.MODEL.ROI_HEADS.NAME + cfg.MODEL.ROI_BOX_HEAD.NAME
    blocks = cfg.MODEL.SELSA.NUM_ATTENTION_BLOCKS
    if selsa_heads and cfg.MODEL.ROI_BOX_HEAD.FC_DIM % blocks:
        raise ConfigError(
            f"MODEL.ROI_BOX_HEAD.FC_DIM ({cfg.MODEL.ROI_BOX_HEAD.FC_DIM}) must be a multiple of "
            f"MODEL.SELSA.NUM_ATTENTION_BLOCKS ({blocks}) in a SELSA model"
        )
    if training and cfg.SOLVER.IMS_PER_BATCH % max(1, world_size):
        raise ConfigError(
            f"SOLVER.IMS_PER_BATCH ({cfg.SOLVER.IMS_PER_BATCH}) must be a multiple of the number "
            f"of processes ({world_size})"
        )


# ------------------------------------------------------------------------------ output folder
def check_output_dir(output_dir: str) -> None:
    """``OUTPUT_DIR`` is a folder we can write into (created if missing)."""
    if not output_dir:
        raise RunError("OUTPUT_DIR is empty: give the folder the run writes into")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise RunError(f"OUTPUT_DIR {output_dir} is a file, not a folder")
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as e:
        raise RunError(f"OUTPUT_DIR {output_dir}: cannot be created ({e.strerror or e})") from None
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise RunError(f"OUTPUT_DIR {output_dir}: not writable (permission denied / read-only)")


class OutputDirLock:
    """An exclusive ``flock`` on ``<output_dir>/.run.lock``, held until :meth:`release` or the
    process ends (the kernel releases it on any exit, SIGKILL included; a lock file left behind
    by a dead run is simply locked again). A second run into the same folder gets a
    :class:`RunError` naming the process holding it."""

    def __init__(self, output_dir: str):
        self.path = os.path.join(output_dir, LOCK_NAME)
        self._fd: int | None = None

    def acquire(self) -> "OutputDirLock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunError(f"cannot create the run lock {self.path} ({e.strerror or e})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunError(
                    f"OUTPUT_DIR {os.path.dirname(self.path)} is in use by another run ({holder}); "
                    "wait for it to end or give another OUTPUT_DIR"
                ) from None
            raise RunError(f"cannot lock {self.path} ({e.strerror or e})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def check_not_replacing_finished_model(cfg, resume: bool, has_checkpoint: bool) -> None:
    """Training that starts from iteration 0 (no ``--resume``, or nothing to resume from) would
    overwrite ``OUTPUT_DIR/model_final.pth``: refused unless ``OVERWRITE_FINISHED_MODEL``."""
    refuse_replacing_finished_model(
        cfg.OUTPUT_DIR,
        resume=resume,
        has_checkpoint=has_checkpoint,
        overwrite=cfg.get(OVERWRITE_KEY, False),
        how_to_overwrite=f"set {OVERWRITE_KEY} True",
    )


def refuse_replacing_finished_model(
    output_dir: str, *, resume: bool, has_checkpoint: bool, overwrite: bool, how_to_overwrite: str
) -> None:
    """:func:`check_not_replacing_finished_model` for any config system: ``overwrite`` is the
    user's permission, ``how_to_overwrite`` says how to give it."""
    final = os.path.join(output_dir, FINAL_NAME)
    if (resume and has_checkpoint) or overwrite or not is_complete_checkpoint(final):
        return
    how = "--resume finds no last_checkpoint to continue from" if resume else "without --resume"
    raise RunError(
        f"{final} is a finished model and training {how} would replace it; give another "
        f"output folder, or {how_to_overwrite} to train it again from scratch"
    )


_HELD_LOCKS: dict[str, OutputDirLock] = {}  # output folder -> its lock, for the process's life


def release_output_dirs() -> None:
    """Release the locks :func:`guard_output_dir` holds (for callers that run several entry
    points in one process, e.g. tests; a script's locks go with its process)."""
    while _HELD_LOCKS:
        _HELD_LOCKS.popitem()[1].release()


def guard_output_dir(
    output_dir: str,
    *,
    eval_only: bool,
    resume: bool,
    overwrite: bool,
    how_to_overwrite: str,
) -> None:
    """What an entry point does with its output folder before writing anything (main process
    only): a writable folder, locked for the life of the process, a training config an
    interrupted evaluation set aside put back, and (training) no finished model replaced."""
    check_output_dir(output_dir)
    key = os.path.realpath(output_dir)
    if key not in _HELD_LOCKS:
        _HELD_LOCKS[key] = OutputDirLock(output_dir).acquire()
    restore_training_config(output_dir)
    if not eval_only:
        has_checkpoint = os.path.isfile(os.path.join(output_dir, "last_checkpoint"))
        refuse_replacing_finished_model(
            output_dir,
            resume=resume,
            has_checkpoint=has_checkpoint,
            overwrite=overwrite,
            how_to_overwrite=how_to_overwrite,
        )


# ------------------------------------------------------------------------------ classes
def check_num_classes(cfg, dataset_names) -> None:
    """``MODEL.ROI_HEADS.NUM_CLASSES`` must equal each dataset's class count (its metadata's
    ``thing_classes``): fewer would train the last classes as background or crash mid-training,
    more would leave classes no data ever teaches."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    for name in dataset_names:
        if name not in DatasetCatalog.list():
            continue  # Detectron2 names an unregistered dataset itself
        try:
            classes = MetadataCatalog.get(name).get("thing_classes", None)
        except (FileNotFoundError, ValueError) as e:  # a missing class file: the loader says more
            raise RunError(f"dataset {name!r}: {_one_line(e)}") from None
        if classes is not None and len(classes) != num_classes:
            raise RunError(
                f"MODEL.ROI_HEADS.NUM_CLASSES is {num_classes} but dataset {name!r} has "
                f"{len(classes)} classes ({', '.join(map(str, classes[:6]))}"
                f"{', ...' if len(classes) > 6 else ''}); set MODEL.ROI_HEADS.NUM_CLASSES "
                f"{len(classes)}"
            )


# ------------------------------------------------------------------------------ eval config
@contextlib.contextmanager
def evaluation_config_name(output_dir: str) -> Iterator[None]:
    """Within this block Detectron2's ``default_setup`` may write ``<output_dir>/config.yaml``;
    afterwards that file is ``config_eval.yaml`` and the training run's ``config.yaml`` is back.

    The training config is moved aside (an atomic rename to ``.config.yaml.training``) for the
    moment ``default_setup`` writes; :func:`restore_training_config` puts it back if a kill
    struck in between (every run calls it before writing).
    """
    config = os.path.join(output_dir, "config.yaml")
    aside = os.path.join(output_dir, ".config.yaml.training")
    restore_training_config(output_dir)
    had_training_config = os.path.isfile(config)
    if had_training_config:
        os.replace(config, aside)
    try:
        yield
    finally:
        if os.path.isfile(config) and (had_training_config or not os.path.exists(aside)):
            os.replace(config, os.path.join(output_dir, EVAL_CONFIG_NAME))
        if had_training_config:
            os.replace(aside, config)


def restore_training_config(output_dir: str) -> None:
    """Put back a training ``config.yaml`` an interrupted ``--eval-only`` set aside."""
    aside = os.path.join(output_dir, ".config.yaml.training")
    if os.path.isfile(aside):
        os.replace(aside, os.path.join(output_dir, "config.yaml"))
