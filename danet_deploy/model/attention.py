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
* In eager PyTorch (not while exporting, not while training) both cores take
  ``F.scaled_dot_product_attention``'s fused CPU kernel where that is the same maths and faster.
  The kernel needs one head size for query, key and value: PAM's query/key (C/8) are zero-padded
  to the value's C, which leaves every dot product unchanged, and pays off only while C is small
  (measured, 2 threads: C = 64 at N = 4096 2.2x faster than softmax(QK)V; C = 512 at N = 8192
  slower, so PAM stays unfused above :data:`FUSED_PAM_MAX_CHANNELS`). CAM's
  ``softmax(rowmax(E) - E)`` equals ``softmax(-E)`` (softmax ignores a per-row shift), i.e. SDPA
  over the channels with ``scale=-1``: 1.7-4x faster, within 2e-4 of the unfused result (kernel
  summation order). Exported graphs keep the plain form, which each engine's exporter fuses itself
  (:mod:`danet_deploy.export.fused_attention`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: PAM takes the zero-padded fused kernel in eager mode up to this many value channels (measured)
FUSED_PAM_MAX_CHANNELS = 128


def _eager_inference(module: nn.Module) -> bool:
    """True outside training, ONNX export, tracing and torch.export/compile (the dynamo exporter goes
    through torch.export): where the fused kernel may replace the graph form."""
    return not (
        module.training or torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or torch.compiler.is_compiling()
    )


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
        self.fused = True  # eager inference may use the fused SDPA kernel (see the module doc)

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
        if self.fused and c <= FUSED_PAM_MAX_CHANNELS and _eager_inference(self):
            # flash kernel: never holds the N x N matrix, so it is memory-bounded without chunks
            pad = c - self.key_channels
            out_t = F.scaled_dot_product_attention(
                F.pad(query, (0, pad)), F.pad(key.transpose(2, 3), (0, pad)), value_t.contiguous(), scale=1.0
            )
        elif self._chunks == 1:
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
        self.fused = True  # eager inference may use the fused SDPA kernel (see the module doc)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        flat = x.reshape(b, c, h * w)
        if self.fused and _eager_inference(self):
            heads = flat.unsqueeze(1)
            out = F.scaled_dot_product_attention(heads, heads, heads, scale=-1.0).reshape(b, c, h, w)
            return self.gamma * out + x
        energy = torch.bmm(flat, flat.transpose(1, 2))
        energy_new = torch.amax(energy, dim=-1, keepdim=True) - energy
        attention = torch.softmax(energy_new, dim=-1)
        out = torch.bmm(attention, flat).reshape(b, c, h, w)
        return self.gamma * out + x
