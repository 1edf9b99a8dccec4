"""The DANet head and network (Fu et al., "Dual Attention Network for Scene Segmentation", CVPR 2019).

Module names mirror the official implementation (``head.conv5a``, ``head.sa``, ``head.sc``,
``head.conv51`` ... ``head.conv8``) so official checkpoints load by a prefix rename.
"""

from __future__ import annotations

import dataclasses

import torch.nn.functional as F
from torch import Tensor, nn

from .attention import ChannelAttention, PositionAttention
from .backbone import DilatedResNet


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _classifier(in_channels: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Dropout2d(0.1, False), nn.Conv2d(in_channels, num_classes, 1))


class DANetHead(nn.Module):
    """Two branches (conv -> PAM -> conv, conv -> CAM -> conv), summed and classified.

    Training returns ``(fused, pam, cam)`` logits for the official three-loss objective; eval
    returns only the fused logits (the only output that is ever exported).
    """

    def __init__(self, in_channels: int, num_classes: int, attention_chunks: int = 1) -> None:
        super().__init__()
        inter = in_channels // 4
        self.conv5a = _conv_bn_relu(in_channels, inter)
        self.conv5c = _conv_bn_relu(in_channels, inter)
        self.sa = PositionAttention(inter, chunks=attention_chunks)
        self.sc = ChannelAttention()
        self.conv51 = _conv_bn_relu(inter, inter)
        self.conv52 = _conv_bn_relu(inter, inter)
        self.conv6 = _classifier(inter, num_classes)
        self.conv7 = _classifier(inter, num_classes)
        self.conv8 = _classifier(inter, num_classes)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        sa_conv = self.conv51(self.sa(self.conv5a(x)))
        sc_conv = self.conv52(self.sc(self.conv5c(x)))
        fused = self.conv8(sa_conv + sc_conv)
        if self.training:
            return fused, self.conv6(sa_conv), self.conv7(sc_conv)
        return fused


class DANet(nn.Module):
    """Dilated ResNet + DANet head; logits are bilinearly upsampled to the input size.

    Input: ``[B, 3, H, W]`` float32, normalised with :attr:`mean` / :attr:`std` (RGB, 0..1 range).
    Output (eval): ``[B, num_classes, H, W]`` logits. Output (train): a tuple of three.
    """

    def __init__(self, num_classes: int = 19, depth: int = 50, output_stride: int = 8,
                 deep_stem: bool = True, base_width: int = 64, multi_grid: tuple[int, ...] | None = None,
                 attention_chunks: int = 1, align_corners: bool = True, stem_width: int | None = None) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        # the official code upsamples with align_corners=True; mmsegmentation's DAHead (most of its
        # configs) with False: a checkpoint's logits are only reproduced with its own choice
        self.align_corners = align_corners
        self.backbone = DilatedResNet(depth, output_stride, deep_stem, base_width, multi_grid, stem_width)
        self.head = DANetHead(self.backbone.out_channels, num_classes, attention_chunks)

    @property
    def attention_chunks(self) -> int:
        return self.head.sa.chunks

    def set_attention_chunks(self, chunks: int) -> None:
        """Compute position attention in ``chunks`` query blocks (exact; bounds peak memory).

        The model's ``config`` (attached by ``create_model``) follows, so metadata written from
        it states the plan the exported graph computes.
        """
        self.head.sa.chunks = chunks
        config = getattr(self, "config", None)
        if config is not None and getattr(config, "attention_chunks", chunks) != chunks:
            self.config = dataclasses.replace(config, attention_chunks=chunks)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:
        size = x.shape[-2:]
        out = self.head(self.backbone(x))
        if isinstance(out, tuple):
            return tuple(F.interpolate(o, size=size, mode="bilinear", align_corners=self.align_corners) for o in out)
        return F.interpolate(out, size=size, mode="bilinear", align_corners=self.align_corners)
