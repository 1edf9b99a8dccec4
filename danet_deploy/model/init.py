"""Deterministic *test* initialisation that makes every part of DANet matter.

A freshly built DANet has ``gamma = 0`` in both attention modules, which makes them the
identity: a parity test on such a model would pass even if the attention were exported wrong.
This initialisation seeds all weights, sets non-zero gammas and randomises BatchNorm statistics
so the attention branches, BN folding and the classifier are all exercised.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import ChannelAttention, PositionAttention


@torch.no_grad()
def init_for_testing(model: nn.Module, seed: int = 0, gamma: float = 0.5) -> nn.Module:
    """Seeded weights, non-zero attention gammas, random BN running stats; returns ``model``."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1] // module.groups
            module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
            if module.bias is not None:
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.05)
        elif isinstance(module, nn.BatchNorm2d):
            c = module.num_features
            module.weight.copy_(1.0 + 0.1 * torch.randn(c, generator=generator))
            module.bias.copy_(0.1 * torch.randn(c, generator=generator))
            assert module.running_mean is not None and module.running_var is not None, (
                "DANet's BatchNorm2d layers track running statistics (track_running_stats=True)"
            )
            module.running_mean.copy_(0.1 * torch.randn(c, generator=generator))
            module.running_var.copy_(1.0 + 0.2 * torch.rand(c, generator=generator))
        elif isinstance(module, (PositionAttention, ChannelAttention)):
            module.gamma.fill_(gamma)
    return model
