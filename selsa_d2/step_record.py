"""What produced a step's output, so that a pipeline reuses an output only for the same inputs.

A multi-step job (``tools/run_demo.py``, ``tools/gain_study.py``) writes ``step.json`` into a
step's folder before running it: the step's *identity*, a JSON-able dict of everything the result
depends on (config file, options, seed, dataset files and the digests of upstream checkpoints).
On a rerun the finished output is reused only when its recorded identity equals the new one;
:func:`compare` says what differs, for a message naming it.
"""

import hashlib
import json
import os
from collections.abc import Iterable

from .file_io import atomic_write_text

__all__ = ["RECORD_NAME", "file_digest", "files_digest", "read_record", "write_record", "compare"]

RECORD_NAME = "step.json"


def file_digest(path: str) -> str:
    """``sha256:<hex>`` of a file's bytes (``missing`` if it does not exist)."""
    if not os.path.isfile(path):
        return "missing"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def files_digest(paths: Iterable[str]) -> dict[str, str]:
    """``{path: file_digest(path)}``."""
    return {str(p): file_digest(str(p)) for p in paths}


def _normalise(identity: dict) -> dict:
    return json.loads(json.dumps(identity, default=str))


def read_record(folder: str) -> dict | None:
    """The identity recorded in ``folder`` (None: no record, or an unreadable one)."""
    path = os.path.join(folder, RECORD_NAME)
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_record(folder: str, identity: dict) -> None:
    """Record ``identity`` as what produces ``folder``'s output (atomically)."""
    os.makedirs(folder, exist_ok=True)
    atomic_write_text(
        os.path.join(folder, RECORD_NAME), json.dumps(_normalise(identity), indent=2) + "\n"
    )


def compare(recorded: dict | None, identity: dict) -> str | None:
    """None if ``recorded`` is ``identity``; otherwise a short text naming what differs."""
    if recorded is None:
        return f"no {RECORD_NAME} records what produced it"
    identity = _normalise(identity)
    keys = sorted(set(recorded) | set(identity))
    diffs = [k for k in keys if recorded.get(k) != identity.get(k)]
    if not diffs:
        return None
    parts = []
    for k in diffs[:3]:
        old, new = json.dumps(recorded.get(k)), json.dumps(identity.get(k))
        if len(old) + len(new) > 160:
            parts.append(f"{k} differs")
        else:
            parts.append(f"{k} {old} then, {new} now")
    more = f" (+{len(diffs) - 3} more)" if len(diffs) > 3 else ""
    return "made with other inputs: " + "; ".join(parts) + more
