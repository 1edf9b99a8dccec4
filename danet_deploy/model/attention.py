"""DANet's two attention modules: position attention (PAM) and channel attention (CAM).

Both follow the official implementation (Fu et al., CVPR 2019) in their parameters and maths,
written so the exported graphs stay lean and memory-bounded:

* PAM multiplies N x C tensors (``softmax(Q^T K) @ V^T``) instead of transposing the N x N
  attention matrix, and uses 4-D single-head matmuls, which OpenVINO fuses into its attention
  kernel.
* PAM can split the query positions into a *fixed number* of chunks. Each chunk's softmax still
  spans every key, so the result is the same maths; the N x N energy is never held at once.
  Chunk bounds are computed from the symbolic N (``N * i // n``), so a dynamic-shape export stays
  correct at sizes larger than the one it was exported at.
* CAM uses ``torch.amax(keepdim=True)`` with broadcasting, which exports as a single ReduceMax.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PositionAttention(nn.Module):
    """Position attention module (PAM).

    ``energy = Q^T K`` over the N = H*W positions, softmax over the keys, ``out = V attn^T``,
    then ``gamma * out + x``. ``gamma`` starts at 0 as in the paper, so an untrained module is
    the identity.

    Args:
        in_channels: channels C of the input map.
        key_channels: channels of the query/key projections (C // 8 in the paper).
        chunks: number of query blocks the attention is computed in (1 = unchunked). Exact:
            only peak memory changes, from N*N to about N*N/chunks elements per image.
    """

    def __init__(self, in_channels: int, key_channels: int | None = None, chunks: int = 1) -> None:
        super().__init__()
        key_channels = key_channels or max(in_channels // 8, 1)
        self.in_channels = in_channels
        self.key_channels = key_channels
        self.query_conv = nn.Conv2d(in_channels, key_channels, kernel_size=1)
        self.key_conv = nn.Conv2d(in_channels, key_channels, kernel_size=1)
        self.value_conv = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.chunks = int(chunks)

    @property
    def chunks(self) -> int:
        return self._chunks

    @chunks.setter
    def chunks(self, value: int) -> None:
        if int(value) < 1:
            raise ValueError(f"attention chunks must be >= 1, got {value}")
        self._chunks = int(value)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        n = h * w
        # 4-D single-head layout: [B, 1, N, C'] @ [B, 1, C', N] -> [B, 1, N, N]
        query = self.query_conv(x).reshape(b, 1, self.key_channels, n).transpose(2, 3)
        key = self.key_conv(x).reshape(b, 1, self.key_channels, n)
        value_t = self.value_conv(x).reshape(b, 1, c, n).transpose(2, 3)  # [B, 1, N, C]
        if self._chunks == 1:
            out_t = torch.matmul(torch.softmax(torch.matmul(query, key), dim=-1), value_t)
        else:
            parts = []
            for i in range(self._chunks):
                start = (n * i) // self._chunks
                end = (n * (i + 1)) // self._chunks
                q = query[:, :, start:end]
                parts.append(torch.matmul(torch.softmax(torch.matmul(q, key), dim=-1), value_t))
            out_t = torch.cat(parts, dim=2)
        out = out_t.transpose(2, 3).reshape(b, c, h, w)
        return self.gamma * out + x


class ChannelAttention(nn.Module):
    """Channel attention module (CAM).

    ``energy = X X^T`` (C x C), ``energy_new = rowmax(energy) - energy`` (the official code's
    trick for numerical range), softmax, ``out = attn X``, then ``gamma * out + x``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        flat = x.reshape(b, c, h * w)
        energy = torch.bmm(flat, flat.transpose(1, 2))
        energy_new = torch.amax(energy, dim=-1, keepdim=True) - energy
        attention = torch.softmax(energy_new, dim=-1)
        out = torch.bmm(attention, flat).reshape(b, c, h, w)
        return self.gamma * out + x
