"""selsa-d2: SELSA video object detection for Detectron2.

Importing the package registers its datasets, backbone, meta architecture, ROI heads and box
head with Detectron2's registries.
"""

from . import (
    data,  # noqa: F401  (registers builtin datasets)
    evaluation,  # noqa: F401
    modeling,  # noqa: F401  (registers models)
)
from .config import add_selsa_config  # noqa: F401

__version__ = "0.1.0"
