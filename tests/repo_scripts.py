"""Run the repository's scripts (``datasets/``, ``tools/``, ``demo/``, ``train_net.py``) in tests.

:func:`run_script` runs one as its users do, in a subprocess: the way to test a command line.
:func:`load_script` imports one by path, for the tests that still drive a script's ``main`` or
classes in-process (the demo, the training script, the demo and study tools); code that tests
need to import belongs in the package instead.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_script(relpath: str, *args) -> subprocess.CompletedProcess:
    """``python REPO/relpath args...`` from the current directory; output captured as text."""
    return subprocess.run(
        [sys.executable, str(REPO / relpath), *(str(a) for a in args)],
        capture_output=True,
        text=True,
        check=False,
    )


def load_script(relpath: str, name: str = None):
    """The module of ``REPO/relpath`` (loaded once; registered in sys.modules for dataclasses/pickle)."""
    name = name or Path(relpath).stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / relpath)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
