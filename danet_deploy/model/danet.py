"""The DANet head and network (Fu et al., "Dual Attention Network for Scene Segmentation", CVPR 2019).

Module names mirror the official implementation (``head.conv5a``, ``head.sa``, ``head.sc``,
``head.conv51`` ... ``head.conv8``) so official checkpoints load by a prefix rename.
"""

from __future__ import annotations

import dataclasses

import torch
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

    def branches(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(fused features, PAM branch, CAM branch)`` before their classifiers."""
        sa_conv = self.conv51(self.sa(self.conv5a(x)))
        sc_conv = self.conv52(self.sc(self.conv5c(x)))
        return sa_conv + sc_conv, sa_conv, sc_conv

    def forward(self, x: Tensor, unclassified: bool = False) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        """Logits (a tuple of three in training); with ``unclassified``, :meth:`branches` instead.

        A decoder reaches the branches through this call, not :meth:`branches` directly, so exported
        node names keep the ``/head/sa/``, ``/head/sc/`` scopes that precision policies name.
        """
        fused, sa_conv, sc_conv = self.branches(x)
        if unclassified:
            return fused, sa_conv, sc_conv
        if self.training:
            return self.conv8(fused), self.conv6(sa_conv), self.conv7(sc_conv)
        return self.conv8(fused)


class SkipDecoder(nn.Module):
    """Stride-4 decoder (as DeepLabv3+'s): the head's fused features, upsampled 2x, joined with the
    first backbone stage's features, refined by two 3x3 convs and classified.

    Why: at output stride 8 a pedestrian 10 px wide is one or two feature cells, and bilinear
    upsampling of stride-8 logits cannot place its edges (``benchmarks/stride_ceiling.py``: even a
    perfect stride-8 prediction caps person IoU near 0.70-0.78 on the demo scenes). The stride-4 skip
    restores the edges for about a tenth more compute, while attention still runs at stride 8
    (its N x N memory is unchanged). Not part of the paper's DANet: presets enable it with
    ``decoder_channels`` (0 = the paper's head alone).
    """

    def __init__(
        self, in_channels: int, low_channels: int, channels: int, num_classes: int, align_corners: bool
    ) -> None:
        super().__init__()
        low_out = max(8, channels // 2)
        self.align_corners = align_corners
        self.project = nn.Sequential(
            nn.Conv2d(low_channels, low_out, 1, bias=False), nn.BatchNorm2d(low_out), nn.ReLU(inplace=True)
        )
        self.fuse = nn.Sequential(_conv_bn_relu(in_channels + low_out, channels), _conv_bn_relu(channels, channels))
        self.classifier = _classifier(channels, num_classes)

    def forward(self, x: Tensor, low: Tensor) -> Tensor:
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=self.align_corners)
        return self.classifier(self.fuse(torch.cat([x, self.project(low)], dim=1)))


class DANet(nn.Module):
    """Dilated ResNet + DANet head; logits are bilinearly upsampled to the input size.

    Input: ``[B, 3, H, W]`` float32, normalised with :attr:`mean` / :attr:`std` (RGB, 0..1 range).
    Output (eval): ``[B, num_classes, H, W]`` logits. Output (train): a tuple of three (fused, PAM,
    CAM), or with a decoder four (decoder, fused at stride 8, PAM, CAM): the stride-8 fused
    classifier then only supervises training, as the auxiliary heads do.
    """

    def __init__(
        self,
        num_classes: int = 19,
        depth: int = 50,
        output_stride: int = 8,
        deep_stem: bool = True,
        base_width: int = 64,
        multi_grid: tuple[int, ...] | None = None,
        attention_chunks: int = 1,
        align_corners: bool = True,
        stem_width: int | None = None,
        decoder_channels: int = 0,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        # the official code upsamples with align_corners=True; mmsegmentation's DAHead (most of its
        # configs) with False: a checkpoint's logits are only reproduced with its own choice
        self.align_corners = align_corners
        self.backbone = DilatedResNet(depth, output_stride, deep_stem, base_width, multi_grid, stem_width)
        self.head = DANetHead(self.backbone.out_channels, num_classes, attention_chunks)
        if decoder_channels < 0:
            raise ValueError(f"decoder_channels must be >= 0 (0 = no decoder), got {decoder_channels}")
        self.decoder = (
            SkipDecoder(
                self.backbone.out_channels // 4,
                self.backbone.low_level_channels,
                decoder_channels,
                num_classes,
                align_corners,
            )
            if decoder_channels
            else None
        )

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

    def forward_lowres(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:
        """Logits before the final upsample (stride 8, or 4 with a decoder); a tuple in training."""
        if self.decoder is None:
            return self.head(self.backbone(x))
        low, deep = self.backbone.forward_with_low_level(x)
        fused, sa_conv, sc_conv = self.head(deep, unclassified=True)
        out = self.decoder(fused, low)
        if self.training:
            return out, self.head.conv8(fused), self.head.conv6(sa_conv), self.head.conv7(sc_conv)
        return out

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:
        size = x.shape[-2:]
        out = self.forward_lowres(x)
        if isinstance(out, tuple):
            return tuple(F.interpolate(o, size=size, mode="bilinear", align_corners=self.align_corners) for o in out)
        return F.interpolate(out, size=size, mode="bilinear", align_corners=self.align_corners)
