"""Run the repository's scripts (``datasets/``, ``tools/``, ``demo/``, ``benchmarks/``,
``train_net.py``) in tests as their users do: in a subprocess. The scripts are thin command lines
over the package; tests that need their work in-process import it from ``selsa_d2``."""

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
