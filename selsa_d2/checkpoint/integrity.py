"""Which checkpoints of an output folder are complete, and what ``last_checkpoint`` really names.

``torch.save`` writes a zip archive whose central directory comes last: a file cut short by a kill
(or a full disk) has none, so opening it as a zip tells a complete checkpoint from a truncated one
without loading any tensor. Our checkpointer writes atomically (:mod:`selsa_d2.file_io`), so such
files only come from older runs or other programs; they are reported, never resumed from.
"""

import os
import re
import zipfile

__all__ = [
    "checkpoint_problem",
    "is_complete_checkpoint",
    "newest_complete_checkpoint",
    "FINAL_NAME",
]

FINAL_NAME = "model_final.pth"
_PERIODIC = re.compile(r"^model_(\d+)\.pth$")


def checkpoint_problem(path: str) -> str | None:
    """Why the local file ``path`` is not a complete checkpoint (None: it is one)."""
    if os.path.isdir(path):
        return "is a directory"
    if not os.path.exists(path):
        return "does not exist"
    size = os.path.getsize(path)
    if size == 0:
        return "is empty (0 bytes: its write was interrupted)"
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic.startswith(b"PK"):  # torch.save's zip format
        try:
            with zipfile.ZipFile(path) as z:
                z.namelist()
        except (zipfile.BadZipFile, OSError, EOFError):
            return f"is truncated ({size} bytes, no end of archive: its write was interrupted)"
    return None


def is_complete_checkpoint(path: str) -> bool:
    return checkpoint_problem(path) is None


def _order(name: str) -> int:
    if name == FINAL_NAME:
        return 1 << 62
    m = _PERIODIC.match(name)
    return int(m.group(1)) if m else -1


def newest_complete_checkpoint(save_dir: str) -> str | None:
    """The newest complete ``model_final.pth`` / ``model_<iter>.pth`` in ``save_dir`` (its path),
    by iteration (``model_final`` newest); None if there is none."""
    try:
        names = [n for n in os.listdir(save_dir) if _order(n) >= 0]
    except OSError:
        return None
    for name in sorted(names, key=_order, reverse=True):
        path = os.path.join(save_dir, name)
        if is_complete_checkpoint(path):
            return path
    return None
