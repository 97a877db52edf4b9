"""SELSA box head: shared FC layers with attention over reference proposals after each."""

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import ROI_BOX_HEAD_REGISTRY
from fvcore.nn import weight_init
from torch import nn

from .aggregator import SelsaAggregator

__all__ = ["SelsaBoxHead", "ReferenceMemory"]


class ReferenceMemory:
    """What key proposals attend to: per shared FC layer of :class:`SelsaBoxHead`, the
    aggregator's projected reference proposals ``(keys, values)``, each [M, FC_DIM].

    Built per frame (:meth:`SelsaBoxHead.frame_features`) and concatenated over a key frame's
    references (:meth:`cat`). A concatenation may keep ``spare_rows`` of room after its ``M``
    rows, so that :meth:`append` (e.g. the key frame's own proposals as the last reference) writes
    only the appended rows instead of copying all references again.
    """

    def __init__(
        self, layers: Sequence[tuple[torch.Tensor, torch.Tensor]], num_rows: int | None = None
    ):
        self._storage = [(k, v) for k, v in layers]
        if not self._storage:
            raise ValueError("ReferenceMemory needs at least one layer")
        capacity = self._storage[0][0].shape[0]
        self.num_rows = capacity if num_rows is None else int(num_rows)
        if not 0 <= self.num_rows <= capacity:
            raise ValueError(
                f"ReferenceMemory: {self.num_rows} rows do not fit a storage of {capacity}"
            )

    @property
    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer ``(keys, values)`` [M, FC_DIM] (views of the storage)."""
        n = self.num_rows
        return [(k[:n], v[:n]) for k, v in self._storage]

    def __len__(self) -> int:
        return self.num_rows

    def __getitem__(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self._storage[layer]
        return k[: self.num_rows], v[: self.num_rows]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(self.layers)

    @property
    def spare_rows(self) -> int:
        return self._storage[0][0].shape[0] - self.num_rows

    def split(self, counts: Sequence[int]) -> list["ReferenceMemory"]:
        """Rows split into consecutive groups of ``counts`` (views)."""
        per_layer = [(k.split(list(counts)), v.split(list(counts))) for k, v in self.layers]
        return [
            ReferenceMemory([(ks[i], vs[i]) for ks, vs in per_layer]) for i in range(len(counts))
        ]

    @staticmethod
    def cat(parts: Sequence["ReferenceMemory"], spare_rows: int = 0) -> "ReferenceMemory":
        """The rows of ``parts`` one after another (a new storage with ``spare_rows`` of room)."""
        if not parts:
            raise ValueError(
                "ReferenceMemory.cat needs at least one part (its layer count and width)"
            )
        rows = sum(len(p) for p in parts)
        storage = []  # one copy of every row; the spare rows are left uninitialised
        for layer in range(len(parts[0]._storage)):
            pair = []
            for j in (0, 1):
                chunks = [p[layer][j] for p in parts]
                if spare_rows:
                    chunks.append(chunks[0].new_empty((spare_rows, chunks[0].shape[1])))
                pair.append(torch.cat(chunks, dim=0))
            storage.append(tuple(pair))
        return ReferenceMemory(storage, rows)

    def append(self, tail: "ReferenceMemory") -> "ReferenceMemory":
        """These rows, then ``tail``'s. When ``tail`` fits the spare rows it is written there and
        the result shares this storage (so a later ``append`` overwrites it); otherwise a new
        concatenation."""
        n, p = self.num_rows, len(tail)
        if p > self.spare_rows:
            return ReferenceMemory.cat([self, tail])
        for (k, v), (tk, tv) in zip(self._storage, tail.layers):
            k[n : n + p].copy_(tk)
            v[n : n + p].copy_(tv)
        return ReferenceMemory(self._storage, n + p)


def xavier_uniform_fill(module: nn.Linear) -> None:
    """mmdet ``ConvFCBBoxHead``'s init of its shared FCs (``init_cfg`` ``Xavier``,
    ``distribution='uniform'``): Glorot uniform, bound sqrt(6 / (fan_in + fan_out)), bias 0."""
    nn.init.xavier_uniform_(module.weight)
    nn.init.zeros_(module.bias)


# MODEL.ROI_BOX_HEAD.FC_INIT -> init of a shared FC
FC_INITS = {
    # Detectron2's FastRCNNConvFCHead: uniform, bound sqrt(3 / fan_in), bias 0
    "c2_xavier": weight_init.c2_xavier_fill,
    "xavier_uniform": xavier_uniform_fill,
}


@ROI_BOX_HEAD_REGISTRY.register()
class SelsaBoxHead(nn.Module):
    """Flatten, then for each shared FC layer ``i``::

        x = fc_i(x); ref = fc_i(ref)
        x = x + aggregators[i](x, ref)      # both pre-ReLU, as mmtracking
        x = relu(x); ref = relu(ref)

    FC names (``fc1``, ``fc2``, ...) match Detectron2's ``FastRCNNConvFCHead`` so single-frame
    weights transfer.

    The reference path depends on the references only, so the head is written as two parts that
    training and cached video inference share: :meth:`frame_features` (a frame's proposals ->
    its key input and :class:`ReferenceMemory`, once per frame) and :meth:`attend_references`
    (key input + the references' memory -> box features, once per key frame). :meth:`forward`
    is the two together.
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        fc_dims: list[int],
        num_attention_blocks: int = 16,
        fc_init: str = "c2_xavier",
    ):
        """
        Args:
            input_shape: shape of the pooled RoI features (C, H, W).
            fc_dims: output size of each shared FC layer (all equal).
            num_attention_blocks: attention heads of each aggregator.
            fc_init: initialisation of the shared FCs, see :data:`FC_INITS`.
        """
        super().__init__()
        if not fc_dims:
            raise ValueError(
                "SelsaBoxHead needs at least one FC layer (MODEL.ROI_BOX_HEAD.NUM_FC >= 1)"
            )
        if fc_init not in FC_INITS:
            raise ValueError(
                f"MODEL.ROI_BOX_HEAD.FC_INIT must be one of {sorted(FC_INITS)}, got {fc_init!r}"
            )
        in_dim = int(
            np.prod([input_shape.channels, input_shape.height or 1, input_shape.width or 1])
        )
        self.fcs: list[nn.Linear] = []
        for k, fc_dim in enumerate(fc_dims):
            fc = nn.Linear(in_dim, fc_dim)
            FC_INITS[fc_init](fc)
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
            "fc_init": cfg.MODEL.ROI_BOX_HEAD.FC_INIT,
        }

    @property
    def output_shape(self) -> ShapeSpec:
        return ShapeSpec(channels=self._output_size)

    def forward(
        self,
        x: torch.Tensor,
        ref_x: torch.Tensor | None = None,
        num_x: Sequence[int] | None = None,
        num_ref: Sequence[int] | None = None,
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
        n = x.shape[0]
        if ref_x is not None and len(ref_x):
            # layer 0 once over key and reference rows: in training one weight-gradient product
            # (and no accumulation of two) for the largest layer, [FC_DIM, C*49]
            x = torch.cat([x, torch.flatten(ref_x, start_dim=1)])
        first = self.fcs[0](x)
        memory = self._memory_from_first_layer(first[n:])
        return self.attend_references(first[:n], memory, num_x, num_ref)

    def frame_features(self, pooled: torch.Tensor) -> tuple[torch.Tensor, ReferenceMemory]:
        """Pooled proposal features [P, C, 7, 7] (or [P, C*49]) of a frame (or of several, row
        after row) -> (key input [P, FC_DIM]: layer 0's pre-ReLU output, the proposals'
        :class:`ReferenceMemory`).

        The key input serves the frame as a key frame, the memory as a reference: key and
        reference proposals of a frame coincide at test time.
        """
        first = self.fcs[0](torch.flatten(pooled, start_dim=1))
        return first, self._memory_from_first_layer(first)

    def _memory_from_first_layer(self, ref: torch.Tensor) -> ReferenceMemory:
        """Layer 0's pre-ReLU output of reference proposals [M, FC_DIM] -> their memory."""
        layers = []
        for i, (fc, agg) in enumerate(zip(self.fcs, self.aggregators)):
            if i:
                ref = fc(F.relu(ref))
            layers.append(agg.project_reference(ref))
        return ReferenceMemory(layers)

    def attend_references(
        self,
        key_input: torch.Tensor,
        memory: ReferenceMemory,
        num_x: Sequence[int] | None = None,
        num_ref: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Key input [N, FC_DIM] (layer 0's pre-ReLU output) + the references' memory
        -> box features [N, FC_DIM]. ``num_x``/``num_ref``: per key image, its rows of
        ``key_input`` and of ``memory`` (see :meth:`forward`)."""
        x = key_input
        for i, (fc, agg) in enumerate(zip(self.fcs, self.aggregators)):
            if i:
                x = fc(x)
            x = F.relu(x + agg.attend_grouped(x, *memory[i], num_x, num_ref))
        return x
