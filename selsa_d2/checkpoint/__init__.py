"""Checkpoints: converters (mmtracking SELSA models, torchvision ImageNet backbones) and loading."""

from .loading import (  # noqa: F401
    WeightsCheckpointer,
    WeightsError,
    check_weights_file,
    load_inference_weights,
    read_checkpoint_file,
)
from .mmtrack import (  # noqa: F401
    check_arch_against_cfg,
    convert_mmtrack_checkpoint,
    convert_mmtrack_state_dict,
    infer_mmtrack_arch,
    load_mmtrack_state_dict,
    mmdet_to_d2_anchor_permutation,
    mmtrack_inference_mismatches,
)
from .torchvision import convert_torchvision_checkpoint, convert_torchvision_state_dict  # noqa: F401
