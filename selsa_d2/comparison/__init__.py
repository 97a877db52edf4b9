"""The demo's comparison (``make demo``, ``tools/run_demo.py``): single-frame Faster R-CNN and SELSA
continued from the same checkpoint, evaluated with and without reference frames, and the
seed x variant study that repeats it (``tools/gain_study.py``).

Modules: :mod:`.dataset` (the dataset every step uses), :mod:`.steps` (train / evaluate /
re-score through the repository's scripts, reused when made by the same inputs),
:mod:`.report` (gains, summary, tables), :mod:`.render` (video and outcome figure),
:mod:`.run_demo` and :mod:`.gain_study` (the two command lines).
"""

from .dataset import CocoVidPair, count_classes, datasets_root_for
from .report import format_gains, format_table, gains, summarize
from .steps import Budget, Comparison, StepError, run_comparison, schedule_opts
