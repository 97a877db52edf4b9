"""Import the repository's scripts (``datasets/``, ``tools/``, ``demo/``, ``train_net.py``) in tests.

They are scripts, not packages, so tests load them by path.
"""

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


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
