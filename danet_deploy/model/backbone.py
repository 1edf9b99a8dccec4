"""Dilated ResNet backbone, written here (torchvision's CPU build does not load beside this torch).

Follows the layout of the official DANet backbone (the ``encoding`` ResNet): optional deep
stem (three 3x3 convs), BasicBlock / Bottleneck stages, and dilation instead of stride in the
last stages to reach output stride 8 or 16. As in the official code (and mmsegmentation's
``contract_dilation``), the first block of a dilated stage uses half the stage's dilation.
Parameter names (``conv1``, ``bn1``, ``layerK.i.conv1``, ``downsample.0``) match both
checkpoints' conventions, so mapping keys is a rename of prefixes.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        first_dilation: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, padding=first_dilation, dilation=first_dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        first_dilation: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        del dilation  # a bottleneck has a single 3x3 conv: it takes the block's own dilation
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=first_dilation, dilation=first_dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


# the residual block types: each has `expansion`, its output channels over its width
Block = type[BasicBlock] | type[Bottleneck]

_DEPTHS: dict[int, tuple[Block, tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}

# stride/dilation of stages 2..4 for each output stride
_OUTPUT_STRIDES: dict[int, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    8: ((2, 1, 1), (1, 2, 4)),
    16: ((2, 2, 1), (1, 1, 2)),
    32: ((2, 2, 2), (1, 1, 1)),
}


class DilatedResNet(nn.Module):
    """ResNet-{18,34,50,101} with dilated last stages; returns the last stage's feature map.

    Args:
        depth: 18, 34, 50 or 101.
        output_stride: 8 (paper), 16 or 32.
        deep_stem: three 3x3 convs (official DANet / ResNetV1c) instead of one 7x7.
        base_width: channels of the first stage (64 in the paper; smaller for edge presets).
        multi_grid: per-block dilation multipliers of the last stage, e.g. (1, 2, 4).
        stem_width: width of the stem's first conv (``None``: ``base_width``). A deep stem is
            ``3 -> w -> w -> 2w`` (official DANet: w=64, so 3->64->64->128; mmsegmentation's
            ResNetV1c with ``stem_channels=64``: w=32, so 3->32->32->64); a 7x7 stem is ``3 -> w``.
            Released checkpoints differ exactly here, so it must be settable.
    """

    def __init__(
        self,
        depth: int = 50,
        output_stride: int = 8,
        deep_stem: bool = True,
        base_width: int = 64,
        multi_grid: Sequence[int] | None = None,
        stem_width: int | None = None,
    ) -> None:
        super().__init__()
        if depth not in _DEPTHS:
            raise ValueError(f"ResNet depth must be one of {sorted(_DEPTHS)}, got {depth}")
        if output_stride not in _OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {sorted(_OUTPUT_STRIDES)}, got {output_stride}")
        block, layers = _DEPTHS[depth]
        strides, dilations = _OUTPUT_STRIDES[output_stride]
        self.depth = depth
        self.output_stride = output_stride
        stem_width = base_width if stem_width is None else stem_width
        if stem_width < 1 or base_width < 1:
            raise ValueError(f"stem_width and base_width must be >= 1, got {stem_width} and {base_width}")
        self.conv1: nn.Module
        if deep_stem:
            self.conv1 = nn.Sequential(
                nn.Conv2d(3, stem_width, 3, 2, 1, bias=False),
                nn.BatchNorm2d(stem_width),
                nn.ReLU(inplace=True),
                nn.Conv2d(stem_width, stem_width, 3, 1, 1, bias=False),
                nn.BatchNorm2d(stem_width),
                nn.ReLU(inplace=True),
                nn.Conv2d(stem_width, stem_width * 2, 3, 1, 1, bias=False),
            )
            self.inplanes = stem_width * 2
        else:
            self.conv1 = nn.Conv2d(3, stem_width, 7, 2, 3, bias=False)
            self.inplanes = stem_width
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        w = base_width
        self.layer1 = self._make_layer(block, w, layers[0], 1, 1)
        self.layer2 = self._make_layer(block, w * 2, layers[1], strides[0], dilations[0])
        self.layer3 = self._make_layer(block, w * 4, layers[2], strides[1], dilations[1])
        self.layer4 = self._make_layer(block, w * 8, layers[3], strides[2], dilations[2], multi_grid)
        self.out_channels = w * 8 * block.expansion
        self.low_level_channels = w * block.expansion  # first stage's output (stride 4): a decoder's skip

    def _make_layer(
        self,
        block: Block,
        planes: int,
        blocks: int,
        stride: int,
        dilation: int,
        multi_grid: Sequence[int] | None = None,
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        if multi_grid:
            grid = [dilation * m for m in multi_grid]
            if len(grid) < blocks:
                grid += [grid[-1]] * (blocks - len(grid))
            first = grid[0]
        else:
            grid = [dilation] * blocks
            first = max(dilation // 2, 1)  # contracted first block, as in the official code
        layers = [block(self.inplanes, planes, stride, grid[0], first, downsample)]
        self.inplanes = planes * block.expansion
        for i in range(1, blocks):
            layers.append(block(self.inplanes, planes, 1, grid[i], grid[i]))
        return nn.Sequential(*layers)

    def forward_with_low_level(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(stride-4 features of the first stage, last stage's features)``."""
        low = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        return low, self.layer4(self.layer3(self.layer2(low)))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_low_level(x)[1]
