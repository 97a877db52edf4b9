"""SELSA box head: shared FC layers with attention over reference proposals after each."""

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import ROI_BOX_HEAD_REGISTRY
from fvcore.nn import weight_init
from torch import nn

from .aggregator import SelsaAggregator

__all__ = ["SelsaBoxHead"]

# Per shared FC layer: the aggregator's projected reference (keys, values), each [M, C].
ReferenceMemory = List[Tuple[torch.Tensor, torch.Tensor]]


@ROI_BOX_HEAD_REGISTRY.register()
class SelsaBoxHead(nn.Module):
    """Flatten, then for each shared FC layer ``i``::

        x = fc_i(x); ref = fc_i(ref)
        x = x + aggregators[i](x, ref)      # both pre-ReLU, as mmtracking
        x = relu(x); ref = relu(ref)

    FC names (``fc1``, ``fc2``, ...) match Detectron2's ``FastRCNNConvFCHead`` so single-frame
    weights transfer. The reference path only depends on the references, which lets the video
    engine split the head into a per-frame part (:meth:`reference_features`,
    :meth:`reference_memory`) and a per-key-frame part (:meth:`forward_from_key_input`).
    """

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, fc_dims: List[int], num_attention_blocks: int = 16):
        """
        Args:
            input_shape: shape of the pooled RoI features (C, H, W).
            fc_dims: output size of each shared FC layer (all equal).
            num_attention_blocks: attention heads of each aggregator.
        """
        super().__init__()
        if not fc_dims:
            raise ValueError("SelsaBoxHead needs at least one FC layer (MODEL.ROI_BOX_HEAD.NUM_FC >= 1)")
        in_dim = int(np.prod([input_shape.channels, input_shape.height or 1, input_shape.width or 1]))
        self.fcs: List[nn.Linear] = []
        for k, fc_dim in enumerate(fc_dims):
            fc = nn.Linear(in_dim, fc_dim)
            weight_init.c2_xavier_fill(fc)
            self.add_module(f"fc{k + 1}", fc)
            self.fcs.append(fc)
            in_dim = fc_dim
        self.aggregators = nn.ModuleList(SelsaAggregator(d, num_attention_blocks) for d in fc_dims)
        self._output_size = fc_dims[-1]

    @classmethod
    def from_config(cls, cfg, input_shape):
        if cfg.MODEL.ROI_BOX_HEAD.NUM_CONV:
            raise ValueError("SelsaBoxHead has no conv layers: set MODEL.ROI_BOX_HEAD.NUM_CONV = 0")
        return {
            "input_shape": input_shape,
            "fc_dims": [cfg.MODEL.ROI_BOX_HEAD.FC_DIM] * cfg.MODEL.ROI_BOX_HEAD.NUM_FC,
            "num_attention_blocks": cfg.MODEL.SELSA.NUM_ATTENTION_BLOCKS,
        }

    @property
    def output_shape(self) -> ShapeSpec:
        return ShapeSpec(channels=self._output_size)

    # ------------------------------------------------------------------ training / generic path
    def forward(
        self,
        x: torch.Tensor,
        ref_x: Optional[torch.Tensor] = None,
        num_x: Optional[Sequence[int]] = None,
        num_ref: Optional[Sequence[int]] = None,
    ) -> torch.Tensor:
        """
        Args:
            x: [N, C, 7, 7] (or [N, C*49]) pooled key proposal features of all key images.
            ref_x: [M, C, 7, 7] pooled reference proposal features, image after image; ``None``
                or empty: no references (aggregation adds zero).
            num_x, num_ref: per key image, its rows of ``x`` and of ``ref_x`` (each key image
                attends only to its own references); ``None``: a single key image.
        Returns:
            [N, FC_DIM] box features.
        """
        x = torch.flatten(x, start_dim=1)
        ref = x.new_zeros((0, x.shape[1])) if ref_x is None else torch.flatten(ref_x, start_dim=1)
        for i, (fc, agg) in enumerate(zip(self.fcs, self.aggregators)):
            x = fc(x)
            ref = fc(ref)
            x = x + agg.attend_grouped(x, *agg.project_reference(ref), num_x, num_ref)
            x = F.relu(x)
            if i + 1 < len(self.fcs):
                ref = F.relu(ref)
        return x

    # ------------------------------------------------------------------ cached video path
    def reference_features(self, pooled: torch.Tensor) -> List[torch.Tensor]:
        """pooled [M, C, 7, 7] -> per shared FC layer the pre-ReLU output [M, FC_DIM].

        Layer 0's output of a frame's own proposals is also that frame's key input
        (:meth:`forward_from_key_input`), as key and reference proposals coincide at test time.
        """
        ref = torch.flatten(pooled, start_dim=1)
        feats = []
        for i, fc in enumerate(self.fcs):
            ref = fc(F.relu(ref) if i else ref)
            feats.append(ref)
        return feats

    def reference_memory(self, ref_feats: Sequence[torch.Tensor]) -> ReferenceMemory:
        """Per-layer reference features -> per-layer aggregator (keys, values), each [M, FC_DIM]."""
        return [agg.project_reference(r) for agg, r in zip(self.aggregators, ref_feats)]

    def forward_from_key_input(self, key_input: torch.Tensor, memory: ReferenceMemory) -> torch.Tensor:
        """Key frame's layer-0 pre-ReLU features [N, FC_DIM] + reference memory -> [N, FC_DIM]."""
        x = key_input
        for i, (fc, agg) in enumerate(zip(self.fcs, self.aggregators)):
            if i:
                x = fc(x)
            x = F.relu(x + agg.attend(x, *memory[i]))
        return x

    def forward_with_reference_features(
        self, x: torch.Tensor, ref_feats: Sequence[torch.Tensor], x_is_key_input: bool = False
    ) -> torch.Tensor:
        """Key features (pooled [N, C, 7, 7], or the layer-0 output [N, FC_DIM] when
        ``x_is_key_input``) with per-layer reference features from :meth:`reference_features`."""
        key_input = x if x_is_key_input else self.fcs[0](torch.flatten(x, start_dim=1))
        return self.forward_from_key_input(key_input, self.reference_memory(ref_feats))
