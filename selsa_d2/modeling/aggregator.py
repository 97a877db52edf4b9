"""SELSA's multi-head attention over proposal features (mmtracking's ``SelsaAggregator``)."""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SelsaAggregator"]


class SelsaAggregator(nn.Module):
    """Aggregate reference proposal features into key proposal features.

    ``out = fc(concat_h(softmax_M(q_h k_h^T / sqrt(C/G)) v_h))`` with ``q = fc_embed(x)``,
    ``k = ref_fc_embed(ref_x)``, ``v = ref_fc(ref_x)`` split into ``G`` heads of ``C/G`` channels.
    Parameter names match mmtracking (``fc_embed``, ``ref_fc_embed``, ``ref_fc``, ``fc``), so its
    weights map one to one.

    The reference projections ``(k, v)`` depend on the references only, so the video inference
    engine computes them once per frame (:meth:`project_reference`) and reuses them for every key
    frame (:meth:`attend`); :meth:`forward` is the two together.
    """

    def __init__(self, in_channels: int, num_attention_blocks: int = 16):
        super().__init__()
        if in_channels % num_attention_blocks != 0:
            raise ValueError(
                f"SelsaAggregator: in_channels {in_channels} is not divisible by "
                f"num_attention_blocks {num_attention_blocks}"
            )
        self.in_channels = in_channels
        self.num_attention_blocks = num_attention_blocks
        self.fc_embed = nn.Linear(in_channels, in_channels)
        self.ref_fc_embed = nn.Linear(in_channels, in_channels)
        self.ref_fc = nn.Linear(in_channels, in_channels)
        self.fc = nn.Linear(in_channels, in_channels)

    def project_reference(self, ref_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ref_x [M, C] -> (keys [M, C], values [M, C])."""
        return self.ref_fc_embed(ref_x), self.ref_fc(ref_x)

    def attend(
        self, x: torch.Tensor, ref_key: torch.Tensor, ref_value: torch.Tensor
    ) -> torch.Tensor:
        """x [N, C], projected references ``ref_key``/``ref_value`` [M, C] -> [N, C].

        With no references (M == 0) the aggregate is zero, so ``x + attend(...)`` is ``x``.
        """
        n, c = x.shape
        m = ref_key.shape[0]
        if m == 0 or n == 0:
            return x.new_zeros((n, c))
        g = self.num_attention_blocks
        d = c // g
        # [1, G, N, d] queries against [1, G, M, d] keys/values. scaled_dot_product_attention
        # computes softmax(q k^T / sqrt(d)) v with fused kernels (flash attention on CPU and
        # CUDA, fp16/bf16 under autocast); the leading batch dimension of 1 selects them (with
        # 3-d inputs torch 2.3 falls back to the unfused maths on CPU).
        q = self.fc_embed(x).reshape(1, n, g, d).transpose(1, 2)
        k = ref_key.reshape(1, m, g, d).transpose(1, 2)
        v = ref_value.reshape(1, m, g, d).transpose(1, 2)
        if v.dtype != q.dtype:  # memory cached outside autocast, queries inside it (or vice versa)
            k, v = k.to(q.dtype), v.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v)  # [1, G, N, d]
        out = out.transpose(1, 2).reshape(n, c)  # [N, G, d] -> [N, C]
        return self.fc(out)

    def attention_weights(self, x: torch.Tensor, ref_key: torch.Tensor) -> torch.Tensor:
        """The softmax weights :meth:`attend` uses (for analysis): x [N, C], projected reference
        keys [M, C] -> [G, N, M], each row summing to 1 over the M references."""
        n, c = x.shape
        g = self.num_attention_blocks
        d = c // g
        q = self.fc_embed(x).reshape(n, g, d).transpose(0, 1)  # [G, N, d]
        k = ref_key.reshape(-1, g, d).permute(1, 2, 0)  # [G, d, M]
        return torch.bmm(q, k).div_(math.sqrt(d)).softmax(dim=2)

    def forward(self, x: torch.Tensor, ref_x: torch.Tensor) -> torch.Tensor:
        """x [N, C] (key proposals), ref_x [M, C] (reference proposals) -> [N, C]."""
        if ref_x.shape[0] == 0:
            return x.new_zeros(x.shape)
        return self.attend(x, *self.project_reference(ref_x))

    def attend_grouped(
        self,
        x: torch.Tensor,
        ref_key: torch.Tensor,
        ref_value: torch.Tensor,
        num_x: Sequence[int] | None = None,
        num_ref: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Per-image attention for a batch of key images, each with its own references.

        Args:
            x: [sum(num_x), C] key proposals of all images, image after image.
            ref_key, ref_value: [sum(num_ref), C] projected references, in the same image order.
            num_x, num_ref: per-image row counts; ``None`` means one group holding everything.
        Returns:
            [sum(num_x), C]
        """
        if num_x is None or len(num_x) <= 1:
            return self.attend(x, ref_key, ref_value)
        if num_ref is None or len(num_ref) != len(num_x):
            raise ValueError(
                f"attend_grouped: need one reference count per key image, got {num_ref} for {num_x}"
            )
        outs: list[torch.Tensor] = []
        for xi, ki, vi in zip(
            x.split(list(num_x)), ref_key.split(list(num_ref)), ref_value.split(list(num_ref))
        ):
            outs.append(self.attend(xi, ki, vi))
        return torch.cat(outs, dim=0)
