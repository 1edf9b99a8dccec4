"""FLOP count of a DANet at one input size: convolutions by forward hooks, attention analytically.

Why not a generic counter: common counters (fvcore, thop, ptflops) see only modules, so they
miss DANet's attention matmuls, which are functional ``matmul``/``bmm`` calls inside PAM and CAM
and grow with the square of the number of positions (at 512x1024 they rival the backbone).
Convolutions and linear layers are counted from the shapes seen by forward hooks; the attention
terms are added from the shapes entering each attention module:

* PAM, ``N = h*w`` positions, ``C'`` key channels, ``C`` value channels:
  ``Q^T K`` costs ``2*N*N*C'`` and ``attn @ V^T`` costs ``2*N*N*C``.
* CAM: ``X X^T`` and ``attn @ X`` each cost ``2*C*C*N``.

A multiply-add counts as 2 FLOPs. Elementwise ops (BN, ReLU, softmax, resize) are not counted:
they are memory-bound and small next to the GEMMs. The model runs on torch's ``meta`` device,
so counting a paper-size model at 1024x2048 allocates nothing and takes well under a second.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class FlopCount:
    """FLOPs for one forward pass of ``batch`` images at ``size``, split by where they are spent."""

    size: tuple[int, int]
    batch: int
    conv: int
    linear: int
    pam: int
    cam: int

    @property
    def attention(self) -> int:
        return self.pam + self.cam

    @property
    def total(self) -> int:
        return self.conv + self.linear + self.pam + self.cam

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["size"] = list(self.size)
        data.update(attention=self.attention, total=self.total, gflops=round(self.total / 1e9, 3))
        return data


def pam_flops(batch: int, positions: int, key_channels: int, channels: int) -> int:
    """``2*N*N*C'`` (energy) + ``2*N*N*C`` (weighted values), per image, times ``batch``."""
    n = positions
    return batch * (2 * n * n * key_channels + 2 * n * n * channels)


def cam_flops(batch: int, positions: int, channels: int) -> int:
    """``2*C*C*N`` (energy) + ``2*C*C*N`` (weighted features), per image, times ``batch``."""
    return batch * 2 * (2 * channels * channels * positions)


def count_model_flops(model: Any, size: tuple[int, int], batch: int = 1) -> FlopCount:
    """Count the FLOPs of ``model`` (a DANet from :func:`danet_deploy.model.create_model`).

    The model is deep-copied to the ``meta`` device, so its weights and the caller's copy are
    untouched and no memory is allocated for activations.
    """
    import copy

    import torch
    from torch import nn

    from ..model.attention import ChannelAttention, PositionAttention

    net = copy.deepcopy(model).to("meta").eval()
    totals = {"conv": 0, "linear": 0, "pam": 0, "cam": 0}

    def conv_hook(module: nn.Conv2d, inputs: tuple[Any, ...], output: Any) -> None:
        kh, kw = module.kernel_size
        per_out = 2 * (module.in_channels // module.groups) * kh * kw
        totals["conv"] += per_out * output.numel() + (output.numel() if module.bias is not None else 0)

    def linear_hook(module: nn.Linear, inputs: tuple[Any, ...], output: Any) -> None:
        totals["linear"] += 2 * module.in_features * output.numel()

    def pam_hook(module: PositionAttention, inputs: tuple[Any, ...], output: Any) -> None:
        b, c, h, w = inputs[0].shape
        totals["pam"] += pam_flops(b, h * w, module.key_channels, c)

    def cam_hook(module: ChannelAttention, inputs: tuple[Any, ...], output: Any) -> None:
        b, c, h, w = inputs[0].shape
        totals["cam"] += cam_flops(b, h * w, c)

    handles = []
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
        elif isinstance(module, PositionAttention):
            handles.append(module.register_forward_hook(pam_hook))
        elif isinstance(module, ChannelAttention):
            handles.append(module.register_forward_hook(cam_hook))
    try:
        with torch.no_grad():
            net(torch.empty(batch, 3, size[0], size[1], device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return FlopCount(size=(int(size[0]), int(size[1])), batch=int(batch), **totals)


def count_preset_flops(name: str, size: tuple[int, int], batch: int = 1, num_classes: int | None = None) -> FlopCount:
    """FLOPs of a preset architecture (random init: the count does not depend on weights)."""
    from ..model import create_model

    return count_model_flops(create_model(name, num_classes=num_classes, weights=False), size, batch)
