"""Temporal RoI Align (Gong et al., AAAI 2021) on top of SELSA, as mmtracking's ``TemporalRoIAlign``
(mmtrack/models/roi_heads/roi_extractors/temporal_roi_align.py, mmtrack 0.14).

A key frame's pooled RoI features are augmented with, per RoI position and per reference frame,
the reference feature map's most similar points:

1. **Most similar RoI align** (:meth:`TemporalRoIAlign.most_similar_features`): cosine similarity
   between each of a key RoI's ``h*w`` feature vectors and every position of a reference map,
   the top ``K`` (2) positions, softmax over their similarities, weighted sum of the reference
   feature vectors there.
2. **Temporal attentional feature aggregation** (:meth:`TemporalRoIAlign.aggregate`): a 3x3 conv
   (``embed_network``) embeds the key RoI features and each reference's most-similar features;
   with ``G`` attention blocks splitting the channels, per position and block the weight of frame
   ``t`` is ``softmax_t(<e_t, e_key> / sqrt(C/G))`` over (key, references); the output is the
   weighted sum of the un-embedded features. ``G = 0``: the plain mean (no embed network).

The search is the expensive part: ``N*h*w`` queries against ``T`` maps of ``H*W`` positions of
``C`` channels (R-50-DC5 at 600x1000 with 14 references + the key: 300 x 49 x 15 x 38 x 63 x 512,
about 270 G multiply-adds per key frame). It runs as one matrix product per reference frame and
chunk of queries, each followed by a top-k, so that at most ``chunk_size`` similarities exist at
once; :meth:`forward` searches and aggregates chunk of RoIs by chunk of RoIs, so that the stacked
frames' features of a chunk hold at most ``chunk_size`` values too.

Differences from mmtracking, none on well-formed inputs:
- Vectors are normalised with ``F.normalize`` (``x / max(|x|, 1e-12)``): an all-zero feature
  vector (possible after the neck's ReLU) has similarity 0 to everything instead of NaN.
- A reference map with fewer than ``K`` positions uses all its positions (mmtracking's ``topk``
  would raise).
- Among positions of exactly equal similarity, which one the top-k keeps is up to ``torch.topk``,
  as in mmtracking (only the weighted sum can differ, and only when tied positions hold different
  vectors, e.g. parallel vectors of different norms).
"""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec
from detectron2.utils.registry import Registry
from fvcore.nn import weight_init
from torch import nn

__all__ = ["TEMPORAL_ROI_ALIGN_REGISTRY", "TemporalRoIAlign", "build_temporal_roi_align"]

TEMPORAL_ROI_ALIGN_REGISTRY = Registry("TEMPORAL_ROI_ALIGN")
TEMPORAL_ROI_ALIGN_REGISTRY.__doc__ = """
Registry for the module that augments a key frame's pooled RoI features with reference frames'
feature maps (``MODEL.SELSA.TROI.NAME``). Called with ``(cfg, input_shape)``, the ShapeSpec of the
feature map the box pooler reads.
"""


def build_temporal_roi_align(cfg, input_shape: ShapeSpec) -> nn.Module:
    return TEMPORAL_ROI_ALIGN_REGISTRY.get(cfg.MODEL.SELSA.TROI.NAME)(cfg, input_shape)


@TEMPORAL_ROI_ALIGN_REGISTRY.register()
class TemporalRoIAlign(nn.Module):
    """Most similar RoI align + temporal attentional feature aggregation (see the module docstring).

    Parameter names: ``embed_network`` (mmtracking: ``bbox_roi_extractor.embed_network.conv``).
    """

    @configurable
    def __init__(
        self,
        *,
        in_channels: int,
        feature_stride: int,
        num_most_similar_points: int = 2,
        num_temporal_attention_blocks: int = 4,
        chunk_size: int = 1 << 25,
    ):
        """
        Args:
            in_channels: channels C of the feature map (and of the pooled RoI features).
            feature_stride: input pixels per feature-map position (crops padded maps, see
                :meth:`reference_map`).
            num_most_similar_points: K, positions kept per query and reference frame.
            num_temporal_attention_blocks: G, channel groups of the temporal attention; 0 = mean.
            chunk_size: most similarity scores (search) or feature values of the stacked frames
                (aggregation) held at once; bounds the memory, not the result.
        """
        super().__init__()
        if num_most_similar_points < 1:
            raise ValueError(
                f"TemporalRoIAlign: num_most_similar_points must be >= 1, got {num_most_similar_points}"
            )
        if num_temporal_attention_blocks < 0 or (
            num_temporal_attention_blocks and in_channels % num_temporal_attention_blocks
        ):
            raise ValueError(
                f"TemporalRoIAlign: in_channels {in_channels} is not divisible by "
                f"num_temporal_attention_blocks {num_temporal_attention_blocks} (or it is negative)"
            )
        if chunk_size < 1:
            raise ValueError(f"TemporalRoIAlign: chunk_size must be >= 1, got {chunk_size}")
        self.in_channels = in_channels
        self.feature_stride = feature_stride
        self.num_most_similar_points = num_most_similar_points
        self.num_temporal_attention_blocks = num_temporal_attention_blocks
        self.chunk_size = chunk_size
        if num_temporal_attention_blocks > 0:
            # mmcv ConvModule(C, C, 3, padding=1), no norm / activation; its kaiming init (fan_out, relu), bias 0
            self.embed_network = Conv2d(in_channels, in_channels, 3, padding=1, bias=True)
            weight_init.c2_msra_fill(self.embed_network)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec):
        t = cfg.MODEL.SELSA.TROI
        return {
            "in_channels": input_shape.channels,
            "feature_stride": input_shape.stride,
            "num_most_similar_points": t.NUM_MOST_SIMILAR_POINTS,
            "num_temporal_attention_blocks": t.NUM_TEMPORAL_ATTENTION_BLOCKS,
            "chunk_size": t.CHUNK_SIZE,
        }

    # ------------------------------------------------------------------ reference maps
    def reference_map(self, feature: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """One image's feature [C, H, W] of a padded batch -> [C, ceil(h/s), ceil(w/s)]: the map of
        the image padded to a multiple of the stride only (what mmtracking searches, one image per
        GPU), not the batch padding."""
        h = math.ceil(image_size[0] / self.feature_stride)
        w = math.ceil(image_size[1] / self.feature_stride)
        return feature[:, :h, :w]

    # ------------------------------------------------------------------ most similar RoI align
    def most_similar_features(
        self, roi_feats: torch.Tensor, ref_maps: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """roi_feats [N, C, h, w], ``ref_maps`` T maps [C, H_t, W_t] -> [T, N, C, h, w]."""
        return self._most_similar(
            roi_feats, [self._search_memory(m, roi_feats.shape[1]) for m in ref_maps]
        )

    @staticmethod
    def _search_memory(ref_map: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A map [C, H, W] -> (unit keys [C, HW], values [HW, C])."""
        c = ref_map.shape[0]
        if c != channels:
            raise ValueError(
                f"TemporalRoIAlign: reference map has {c} channels, RoI features {channels}"
            )
        if ref_map[0].numel() == 0:
            raise ValueError("TemporalRoIAlign: empty reference feature map")
        values = ref_map.reshape(c, -1).t()
        return F.normalize(values, dim=1).t(), values

    def _most_similar(
        self, roi_feats: torch.Tensor, memories: Sequence[tuple[torch.Tensor, torch.Tensor]]
    ) -> torch.Tensor:
        n, c, h, w = roi_feats.shape
        queries = F.normalize(roi_feats.permute(0, 2, 3, 1).reshape(n * h * w, c), dim=1)  # [Q, C]
        out = [self._search_one_map(queries, keys, values) for keys, values in memories]
        if not out:
            return roi_feats.new_zeros((0, n, c, h, w))
        # [T, N*h*w, C] -> [T, N, C, h, w]
        return torch.stack(out).view(len(out), n, h, w, c).permute(0, 1, 4, 2, 3)

    def _search_one_map(
        self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
    ) -> torch.Tensor:
        """Unit queries [Q, C], one map's unit keys [C, HW] and values [HW, C] -> [Q, C]
        softmax-weighted top-k vectors."""
        hw, c = values.shape
        k = min(self.num_most_similar_points, hw)
        rows = max(1, self.chunk_size // hw)
        out: list[torch.Tensor] = []
        for q in queries.split(rows):
            sim, idx = (q @ keys).topk(k, dim=1)  # [q, K]
            picked = values.index_select(0, idx.reshape(-1)).view(-1, k, c)  # [q, K, C]
            # [q, 1, K] x [q, K, C]: ~4x faster on CPU than a broadcast multiply + sum over K
            out.append(torch.bmm(sim.softmax(dim=1).unsqueeze(1), picked).squeeze(1))
        if not out:
            return queries.new_zeros((0, c))
        return torch.cat(out)

    # ------------------------------------------------------------------ temporal attention
    def aggregate(self, roi_feats: torch.Tensor, similar_feats: torch.Tensor) -> torch.Tensor:
        """roi_feats [N, C, h, w] (key), similar_feats [T, N, C, h, w] -> [N, C, h, w]."""
        rois = self._rois_per_chunk(roi_feats, 1 + similar_feats.shape[0])
        out = [
            self._aggregate_chunk(torch.cat([x[None], s], dim=0))
            for x, s in zip(roi_feats.split(rois), similar_feats.split(rois, dim=1))
        ]
        return torch.cat(out) if out else roi_feats

    def _rois_per_chunk(self, roi_feats: torch.Tensor, frames: int) -> int:
        """RoIs whose stacked frames [frames, n, C, h, w] hold at most ``chunk_size`` values."""
        return max(1, self.chunk_size // (frames * roi_feats[0].numel()))

    def _aggregate_chunk(self, x: torch.Tensor) -> torch.Tensor:
        """x [F, n, C, h, w] with the key frame first -> [n, C, h, w]."""
        g = self.num_temporal_attention_blocks
        if g <= 0:
            return x.mean(dim=0)
        f, n, c, h, w = x.shape
        embed = self.embed_network(x.reshape(f * n, c, h, w)).view(f, n, g, c // g, h, w)
        logits = (embed * embed[:1]).sum(dim=3, keepdim=True) / math.sqrt(
            c / g
        )  # [F, n, G, 1, h, w]
        weights = logits.softmax(dim=0)
        return (x.view(f, n, g, c // g, h, w) * weights).sum(dim=0).view(n, c, h, w)

    def forward(self, roi_feats: torch.Tensor, ref_maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """Key RoI features [N, C, h, w] and the T reference maps [C, H_t, W_t] of their image
        -> temporal RoI features [N, C, h, w]. With no reference map the input is returned.

        Search and aggregation run RoI chunk by RoI chunk, so that the most-similar features of
        all RoIs ([T, N, C, h, w]: 450 MB for R-50-DC5 with 15 maps) never exist at once."""
        if len(ref_maps) == 0 or roi_feats.shape[0] == 0:
            return roi_feats
        # float32 even under autocast, as mmtracking's @force_fp32: half-precision similarities
        # would change which points are the most similar
        with torch.autocast(device_type=roi_feats.device.type, enabled=False):
            x = roi_feats.float()
            memories = [self._search_memory(m.float(), x.shape[1]) for m in ref_maps]
            rois = self._rois_per_chunk(x, 1 + len(memories))
            out = torch.cat(
                [
                    self._aggregate_chunk(torch.cat([xc[None], self._most_similar(xc, memories)]))
                    for xc in x.split(rois)
                ]
            )
        return out.to(roi_feats.dtype)
