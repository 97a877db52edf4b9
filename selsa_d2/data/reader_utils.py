"""Helpers shared by the annotation readers: text lines, class lookup, box checks, skip counters."""

import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence

from detectron2.utils.file_io import PathManager

logger = logging.getLogger(__name__)

_MAX_EXAMPLES = 5


def local_abspath(path: str) -> str:
    """Absolute path for local files; URLs (``scheme://...``) are kept as they are."""
    return path if "://" in path else os.path.abspath(path)


def read_text_lines(path: str) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 text file (class files, list files), without line ends.

    A leading byte-order mark (as Windows editors write) is dropped ("utf-8-sig"), so it does not
    become part of the first class id. Bytes that are not UTF-8 raise ``ValueError`` naming the
    file, line and column.
    """
    with PathManager.open(path, "rb") as f:
        data = f.read()
    for lineno, raw in enumerate(data.splitlines(), 1):
        try:
            line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(
                f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                "save the file as UTF-8"
            ) from None
        yield lineno, line


class ClassMatcher:
    """Maps an annotation label (class id such as a WordNet id, or a class name) to its 0-based index."""

    def __init__(self, names: Sequence[str], ids: Sequence[str]):
        self.names, self.ids = list(names), list(ids)
        self._lookup: dict[str, int] = {}
        # Names are accepted too (custom datasets may write either), but never shadow an id.
        for i, n in enumerate(self.names):
            self._lookup.setdefault(n, i)
        for i, c in enumerate(self.ids):
            self._lookup[c] = i

    def __call__(self, label: str | None) -> int | None:
        if label is None:
            return None
        return self._lookup.get(label.strip())


class ReadStats:
    """Counts objects a reader skipped or changed, logged once per dataset by :meth:`log`."""

    def __init__(self):
        self.unknown_class: Counter = Counter()
        self.malformed = 0
        self.clipped = 0
        self.outside = 0
        self.empty_frames = 0
        self.examples: dict[str, list[str]] = {"clipped": [], "outside": []}

    def note(self, kind: str, where: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        ex = self.examples[kind]
        if len(ex) < _MAX_EXAMPLES:
            ex.append(where)

    def log(self, dataset: str, num_classes: int) -> None:
        if self.unknown_class:
            logger.warning(
                "%s: skipped %d objects whose class is not one of the dataset's %d classes (by label: %s)",
                dataset,
                sum(self.unknown_class.values()),
                num_classes,
                dict(self.unknown_class.most_common(20)),
            )
        if self.malformed:
            logger.warning(
                "%s: skipped %d objects with malformed boxes (files named above)",
                dataset,
                self.malformed,
            )
        if self.clipped:
            logger.info(
                "%s: clipped %d boxes that extend outside their image (e.g. %s)",
                dataset,
                self.clipped,
                self.examples["clipped"],
            )
        if self.outside:
            logger.warning(
                "%s: skipped %d boxes that lie entirely outside their image (e.g. %s)",
                dataset,
                self.outside,
                self.examples["outside"],
            )
        if self.empty_frames:
            logger.info(
                "%s: %d frames have no annotated objects (kept)", dataset, self.empty_frames
            )


_FLAG_WORDS = {"0": False, "1": True, "false": False, "true": True}


def read_flag(value, default: bool, field: str, where: str) -> bool:
    """An annotation's yes/no field (``is_vid_train_frame``, ``occluded``, ``iscrowd``, ...):
    a boolean, 0 / 1, or the strings "0" / "1" / "true" / "false"; None: ``default``. Anything
    else (e.g. "no", 2) is a ``ValueError`` naming ``where`` and the field: ``bool("false")`` is
    True, which would silently flip the flag. None or an empty string: ``default``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _FLAG_WORDS:
        return _FLAG_WORDS[value.strip().lower()]
    raise ValueError(f"{where}: {field} must be true / false (or 1 / 0), got {value!r}")


def read_string_list(value, field: str, where: str) -> list[str]:
    """A list-of-names field (e.g. ``degradations``); None: empty. A single string or any other
    type is a ``ValueError`` naming ``where`` (``list("blur")`` would be four names)."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: {field} must be a list of strings, got {value!r:.80}")
    return list(value)


def sanitize_box(
    raw: Sequence, width: int, height: int, where: str, stats: ReadStats
) -> list[float] | None:
    """Validate an XYXY box and clip it to the image.

    Returns ``[x1, y1, x2, y2]`` floats, or None (with a log line / count) when the object is
    skipped: malformed (non-numeric, ``x2 <= x1`` or ``y2 <= y1``) or entirely outside the image.
    """
    try:
        x1, y1, x2, y2 = (float(v) for v in raw)
        ok = all(v == v and abs(v) != float("inf") for v in (x1, y1, x2, y2))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        logger.warning(
            "%s: skipping object with a non-numeric box %r",
            where,
            list(raw) if raw is not None else raw,
        )
        stats.malformed += 1
        return None
    if x2 <= x1 or y2 <= y1:
        logger.warning(
            "%s: skipping object with an empty or inverted box %r", where, [x1, y1, x2, y2]
        )
        stats.malformed += 1
        return None
    c = [
        min(max(x1, 0.0), width),
        min(max(y1, 0.0), height),
        min(max(x2, 0.0), width),
        min(max(y2, 0.0), height),
    ]
    if c[2] <= c[0] or c[3] <= c[1]:
        stats.note("outside", where)
        return None
    if c != [x1, y1, x2, y2]:
        stats.note("clipped", where)
    return c
