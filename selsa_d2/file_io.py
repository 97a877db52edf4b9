"""Writing files so that a kill or an error never leaves a half-written output, and never
overwrites an input of the run.

* :func:`atomic_open`: a file written to a temporary name in the same directory, flushed,
  ``fsync``-ed and renamed over the destination (``os.replace``) only when the ``with`` block ends
  without an error: readers see the old file or the complete new one, never a truncated one.
* :class:`AtomicPathManager`: Detectron2's ``PathManager`` whose ``open`` for writing a local file
  is :func:`atomic_open`; given to a ``Checkpointer`` (its public ``path_manager``) it makes
  ``save`` and ``tag_last_checkpoint`` atomic without changing their logic.
* :func:`atomic_directory`: a tool's output folder built under a temporary name and renamed into
  place at the end; on an error nothing is left behind.
* :func:`same_path` / :func:`check_not_an_input`: an output equal to an input of the run, however
  given (relative paths, symlinks, hard links), is refused before any work is done.
"""

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator

from detectron2.utils.file_io import PathManager

__all__ = [
    "OutputError",
    "atomic_open",
    "atomic_write_text",
    "AtomicPathManager",
    "atomic_directory",
    "same_path",
    "check_not_an_input",
    "check_output_file",
    "config_input_files",
]

_WRITE_MODES = ("w", "a", "x", "+")


class OutputError(ValueError):
    """An output that cannot or must not be written; the message names the path and the cause."""


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems do not sync directories
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", **kwargs) -> Iterator:
    """``open(path, mode)`` for writing, made atomic: the data goes to a temporary file next to
    ``path``, which replaces ``path`` only once complete (flushed and ``fsync``-ed). An exception in
    the block (or a kill) leaves ``path`` as it was and removes (or orphans, on a kill) the
    temporary ``.<name>.*.tmp``. ``mode`` "w"/"wb" (appending is not atomic: refused)."""
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_open: mode {mode!r} is not supported (only w / wb)")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600 files; give the file the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_open`)."""
    with atomic_open(path, "w") as f:
        f.write(text)


class AtomicPathManager:
    """``PathManager`` whose ``open(path, "w"/"wb")`` of a local file is :func:`atomic_open`;
    every other call goes to Detectron2's ``PathManager``."""

    def __init__(self, path_manager=PathManager):
        self._pm = path_manager

    def open(self, path: str, mode: str = "r", **kwargs):
        if "://" not in str(path) and mode in ("w", "wb", "wt"):
            return atomic_open(path, mode, **kwargs)
        return self._pm.open(path, mode, **kwargs)

    def __getattr__(self, name):
        return getattr(self._pm, name)


@contextlib.contextmanager
def atomic_directory(path: str) -> Iterator[str]:
    """Yield a temporary folder next to ``path``; when the block ends without an error the folder
    becomes ``path`` (which must not exist, or be an empty folder). On an error it is removed:
    a failed tool leaves no half-written output."""
    path = os.path.abspath(path)
    if os.path.lexists(path) and not (os.path.isdir(path) and not os.listdir(path)):
        raise OutputError(f"{path} already exists (and is not an empty folder)")
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".partial", dir=parent)
    try:
        yield tmp
        if os.path.isdir(path):
            os.rmdir(path)  # empty (checked above)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(parent)


def same_path(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` name the same file: equal after resolving symlinks and relative
    parts, or the same inode (hard links)."""
    a, b = os.path.expanduser(str(a)), os.path.expanduser(str(b))
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path != folder and os.path.commonpath([path, folder]) == folder


def check_not_an_input(
    output: str, inputs: Iterable[tuple[str, str]], what: str = "output"
) -> None:
    """Raise :class:`OutputError` if ``output`` is one of ``inputs`` (``(description, path)``
    pairs, the description a noun phrase such as "the input checkpoint"; a folder input also
    covers everything inside it) -- so that writing it cannot destroy what the run reads."""
    for desc, inp in inputs:
        if not inp or "://" in str(inp):
            continue
        if same_path(output, inp):
            raise OutputError(
                f"{what} {output} is {desc} {inp}, an input of this run; it would be overwritten"
            )
        if os.path.isdir(inp) and _inside(output, inp):
            raise OutputError(
                f"{what} {output} lies inside {desc} {inp}, an input of this run; write elsewhere"
            )


def check_output_file(output: str, inputs: Iterable[tuple[str, str]], what: str = "output") -> None:
    """``output`` can be written as a file: not a directory, its folder exists, and it is none
    of ``inputs`` (:func:`check_not_an_input`)."""
    if "://" in str(output):
        return
    if os.path.isdir(output):
        raise OutputError(f"{what} {output} is a directory; give the file to write")
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise OutputError(f"{what} folder {folder} does not exist (create it first)")
    check_not_an_input(output, inputs, what)


def config_input_files(cfg, config_file: str | None = None) -> list[tuple[str, str]]:
    """The files a run with ``cfg`` reads: the config file, ``MODEL.WEIGHTS`` and the json files of
    ``DATASETS.COCO_VID`` and of the registered ``DATASETS.TRAIN`` / ``TEST`` datasets, as
    ``(description, path)`` pairs for :func:`check_not_an_input`."""
    from detectron2.data import MetadataCatalog

    files = []
    if config_file:
        files.append(("the config file", config_file))
    if cfg.MODEL.WEIGHTS:
        files.append(("the MODEL.WEIGHTS file", cfg.MODEL.WEIGHTS))
    for i, entry in enumerate(cfg.DATASETS.get("COCO_VID", ())):
        if isinstance(entry, (list, tuple)) and len(entry) == 3:
            files.append((f"the DATASETS.COCO_VID[{i}] json", str(entry[1])))
    for name in list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST):
        if name in MetadataCatalog.list():
            md = MetadataCatalog.get(name)
            for key in ("json_file", "list_file"):
                value = md.__dict__.get(key)  # plain attributes only: no lazy dataset read
                if value:
                    files.append((f"the {key} of dataset {name!r}", str(value)))
    return files
