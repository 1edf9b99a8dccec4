"""Checkpoints laid out as the released DANet files are, for tests (no download, no mmcv).

* :class:`MMSegDANet` is written from mmsegmentation's semantics, independently of this
  project's model: ResNetV1c (``stem_channels=64``: a ``stem`` Sequential 3->32->32->64 with BN and
  ReLU after each conv, strides (1, 2, 1, 1), dilations (1, 1, 2, 4), ``contract_dilation``), DAHead
  (mmcv ``ConvModule``s named ``conv``/``bn``, PAM as a ``SelfAttentionBlock`` with bias convs
  ``query_project``/``key_project``/``value_project``, ``Scale`` gammas holding ``scale``), an
  FCN auxiliary head on stage 3, and ``align_corners=False`` resizing. Its ``state_dict()`` thus
  has mmsegmentation's real key names, and its forward is an oracle for the exported logits.
* :func:`official_container` renames this project's keys to the official code's (``pretrained.*``,
  ``head.*``, an ``auxlayer`` FCN head) and wraps them as its training script saves them.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class ConvModule(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=padding, bias=False)  # bias="auto": none before a norm
        self.bn = nn.BatchNorm2d(cout)
        self.activate = nn.ReLU()

    def forward(self, x):
        return self.activate(self.bn(self.conv(x)))


class Scale(nn.Module):
    def __init__(self, value: float = 0.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(value, dtype=torch.float))

    def forward(self, x):
        return x * self.scale


class Bottleneck(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int, dilation: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNetV1c(nn.Module):
    def __init__(self, depth: int = 50, stem_channels: int = 64, base_channels: int = 64) -> None:
        super().__init__()
        blocks = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]
        half = stem_channels // 2
        self.stem = nn.Sequential(
            nn.Conv2d(3, half, 3, 2, 1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(),
            nn.Conv2d(half, half, 3, 1, 1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(),
            nn.Conv2d(half, stem_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(stem_channels),
            nn.ReLU(),
        )
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = stem_channels
        for i, (n, stride, dilation) in enumerate(zip(blocks, (1, 2, 1, 1), (1, 1, 2, 4))):
            planes = base_channels * 2**i
            down = None
            if stride != 1 or cin != planes * 4:
                down = nn.Sequential(nn.Conv2d(cin, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))
            first = dilation // 2 if dilation > 1 else dilation  # contract_dilation=True
            layer = [Bottleneck(cin, planes, stride, first, down)]
            layer += [Bottleneck(planes * 4, planes, 1, dilation, None) for _ in range(1, n)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
            cin = planes * 4

    def forward(self, x):
        x = self.maxpool(self.stem(x))
        outs = []
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
            outs.append(x)
        return outs


class PAM(nn.Module):
    def __init__(self, channels: int, pam_channels: int) -> None:
        super().__init__()
        self.key_project = nn.Conv2d(channels, pam_channels, 1)
        self.query_project = nn.Conv2d(channels, pam_channels, 1)
        self.value_project = nn.Conv2d(channels, channels, 1)
        self.gamma = Scale(0)

    def forward(self, x):
        b = x.size(0)
        query = self.query_project(x).reshape(b, -1, x.shape[2] * x.shape[3]).permute(0, 2, 1)
        key = self.key_project(x).reshape(b, -1, x.shape[2] * x.shape[3])
        value = self.value_project(x).reshape(b, x.shape[1], -1).permute(0, 2, 1)
        sim = F.softmax(torch.matmul(query, key), dim=-1)
        context = torch.matmul(sim, value).permute(0, 2, 1).reshape(b, -1, *x.shape[2:])
        return self.gamma(context) + x


class CAM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gamma = Scale(0)

    def forward(self, x):
        b, c, h, w = x.size()
        q = x.view(b, c, -1)
        energy = torch.bmm(q, q.permute(0, 2, 1))
        energy_new = torch.max(energy, -1, keepdim=True)[0].expand_as(energy) - energy
        out = torch.bmm(F.softmax(energy_new, dim=-1), q).view(b, c, h, w)
        return self.gamma(out) + x


class DAHead(nn.Module):
    def __init__(self, in_channels: int, channels: int, pam_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.dropout = nn.Dropout2d(0.1)
        self.pam_in_conv = ConvModule(in_channels, channels, 3, padding=1)
        self.pam = PAM(channels, pam_channels)
        self.pam_out_conv = ConvModule(channels, channels, 3, padding=1)
        self.pam_conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.cam_in_conv = ConvModule(in_channels, channels, 3, padding=1)
        self.cam = CAM()
        self.cam_out_conv = ConvModule(channels, channels, 3, padding=1)
        self.cam_conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats):
        x = feats[3]
        pam_feat = self.pam_out_conv(self.pam(self.pam_in_conv(x)))
        cam_feat = self.cam_out_conv(self.cam(self.cam_in_conv(x)))
        return self.conv_seg(self.dropout(pam_feat + cam_feat))


class FCNHead(nn.Module):
    def __init__(self, in_channels: int, channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.convs = nn.Sequential(ConvModule(in_channels, channels, 3, padding=1))


class MMSegDANet(nn.Module):
    """mmsegmentation's ``configs/_base_/models/danet_r50-d8.py`` (depth 50 or 101), eval forward."""

    def __init__(self, depth: int = 50, num_classes: int = 19, align_corners: bool = False) -> None:
        super().__init__()
        self.backbone = ResNetV1c(depth)
        self.decode_head = DAHead(2048, 512, 64, num_classes)
        self.auxiliary_head = FCNHead(1024, 256, num_classes)
        self.align_corners = align_corners

    def forward(self, x):
        logits = self.decode_head(self.backbone(x))
        return F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=self.align_corners)


@torch.no_grad()
def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Seeded weights, random BN statistics and non-zero gammas, so every part of the model matters."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.copy_(1 + 0.1 * torch.randn(m.num_features, generator=g))
            m.bias.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(1 + 0.2 * torch.rand(m.num_features, generator=g))
        elif isinstance(m, Scale):
            m.scale.fill_(0.5)
    return model.eval()


def mmseg_container(model: MMSegDANet, classes: tuple[str, ...], config: str | None) -> dict:
    """What mmsegmentation's model-zoo files hold: ``meta`` (mmcv's: the config text under ``config``,
    ``CLASSES``) + ``state_dict`` (+ optimizer state). ``config=None``: a file without its config."""
    state = model.state_dict()
    meta = {
        "mmseg_version": "0.5.0+b2724da",
        "time": "Thu Jun  5 19:13:24 2020",
        "epoch": 1,
        "iter": 40000,
        "CLASSES": classes,
    }
    if config is not None:
        meta["config"] = config
    return {
        "meta": meta,
        "state_dict": state,
        "optimizer": {
            "state": {0: {"momentum_buffer": torch.zeros(3)}},
            "param_groups": [{"lr": 1e-4, "momentum": 0.9, "weight_decay": 5e-4, "params": [0]}],
        },
    }


def official_state(state: dict[str, torch.Tensor], num_classes: int, module_prefix: bool = False) -> dict:
    """This project's state dict under the official code's names, plus its auxiliary FCN head."""
    out = {("pretrained." + k[len("backbone.") :] if k.startswith("backbone.") else k): v for k, v in state.items()}
    g = torch.Generator().manual_seed(1)
    out["auxlayer.conv5.0.weight"] = torch.randn(256, 1024, 3, 3, generator=g)
    for name in ("weight", "bias", "running_mean", "running_var"):
        out[f"auxlayer.conv5.1.{name}"] = torch.rand(256, generator=g)
    out["auxlayer.conv5.4.weight"] = torch.randn(num_classes, 256, 1, 1, generator=g)
    out["auxlayer.conv5.4.bias"] = torch.randn(num_classes, generator=g)
    if module_prefix:  # saved from a DataParallel-wrapped model
        out = {"module." + k: v for k, v in out.items()}
    return out


def official_container(state: dict[str, torch.Tensor]) -> dict:
    """What the official train.py saves as ``*.pth.tar`` (best_pred is a numpy float there)."""
    return {
        "epoch": 240,
        "state_dict": state,
        "best_pred": np.float64(0.8769),
        "optimizer": {
            "state": {0: {"momentum_buffer": torch.zeros(4)}},
            "param_groups": [{"lr": 0.003, "momentum": 0.9, "weight_decay": 1e-4, "params": [0]}],
        },
    }


def save_legacy_with_numpy1_names(obj: dict, path) -> None:
    """``torch.save`` in the pre-1.6 (non-zip) format, with numpy 1.x's module name for scalars,
    as the 2019 official release was written."""
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=False)
    data = buffer.getvalue().replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar")
    with open(path, "wb") as f:
        f.write(data)


def mmseg_config_text(depth: int = 50, num_classes: int = 19, dataset: str = "cityscapes") -> str:
    """The merged config as mmengine stores it in ``meta['cfg']`` (``Config.pretty_text`` of
    mmsegmentation 1.2.2's ``configs/danet/danet_r{depth}-d8_*_{dataset}.py``), abridged to the
    parts that differ between releases plus enough of the rest to be realistic."""
    crop, resize, test_cfg, align = {
        "cityscapes": ((512, 1024), (2048, 1024), "dict(mode='whole')", False),
        "cityscapes_769": (
            (769, 769),
            (2049, 1025),
            (
                "dict(crop_size=(\n        769,\n        769,\n    ), "
                "mode='slide', stride=(\n        513,\n        513,\n    ))"
            ),
            True,
        ),
        "ade20k": ((512, 512), (2048, 512), "dict(mode='whole')", False),
        "voc12aug": ((512, 512), (2048, 512), "dict(mode='whole')", False),
    }[dataset]
    preprocessor = (
        "dict(\n    bgr_to_rgb=True,\n    mean=[\n        123.675,\n        116.28,\n        103.53,\n    ],\n"
        "    pad_val=0,\n    seg_pad_val=255,\n    size=(\n        {},\n        {},\n    ),\n"
        "    std=[\n        58.395,\n        57.12,\n        57.375,\n    ],\n"
        "    type='SegDataPreProcessor')"
    ).format(*crop)
    nested = preprocessor.replace("\n", "\n    ")  # the same dict inside model=dict(...), one level deeper
    return f"""crop_size = (
    {crop[0]},
    {crop[1]},
)
data_preprocessor = {preprocessor}
data_root = 'data/cityscapes/'
default_scope = 'mmseg'
model = dict(
    auxiliary_head=dict(
        align_corners={align},
        channels=256,
        concat_input=False,
        dropout_ratio=0.1,
        in_channels=1024,
        in_index=2,
        loss_decode=dict(
            loss_weight=0.4, type='CrossEntropyLoss', use_sigmoid=False),
        norm_cfg=dict(requires_grad=True, type='SyncBN'),
        num_classes={num_classes},
        num_convs=1,
        type='FCNHead'),
    backbone=dict(
        contract_dilation=True,
        depth={depth},
        dilations=(
            1,
            1,
            2,
            4,
        ),
        norm_cfg=dict(requires_grad=True, type='SyncBN'),
        norm_eval=False,
        num_stages=4,
        out_indices=(
            0,
            1,
            2,
            3,
        ),
        strides=(
            1,
            2,
            1,
            1,
        ),
        style='pytorch',
        type='ResNetV1c'),
    data_preprocessor={nested},
    decode_head=dict(
        align_corners={align},
        channels=512,
        dropout_ratio=0.1,
        in_channels=2048,
        in_index=3,
        loss_decode=dict(
            loss_weight=1.0, type='CrossEntropyLoss', use_sigmoid=False),
        norm_cfg=dict(requires_grad=True, type='SyncBN'),
        num_classes={num_classes},
        pam_channels=64,
        type='DAHead'),
    pretrained='open-mmlab://resnet{depth}_v1c',
    test_cfg={test_cfg},
    train_cfg=dict(),
    type='EncoderDecoder')
norm_cfg = dict(requires_grad=True, type='SyncBN')
optim_wrapper = dict(
    clip_grad=None,
    optimizer=dict(lr=0.01, momentum=0.9, type='SGD', weight_decay=0.0005),
    type='OptimWrapper')
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(keep_ratio=True, scale=(
        {resize[0]},
        {resize[1]},
    ), type='Resize'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
work_dir = './work_dirs/danet_r{depth}-d8_4xb2-40k_{dataset}'
"""


class FakeHistoryBuffer:
    """mmengine's ``HistoryBuffer`` as far as pickling goes: a plain class whose ``__dict__`` holds numpy
    arrays. :func:`pickled_as_mmengine` registers it under mmengine's name."""

    def __init__(self, values=(), counts=(), max_length: int = 1000000) -> None:
        self.max_length = max_length
        self._log_history = np.array(values)
        self._count_history = np.array(counts)


def mmengine_training_checkpoint(
    model: nn.Module, path, classes: tuple[str, ...], config: str | None, optimizer_mb: float = 0.0
) -> None:
    """Save what mmengine's ``Runner.save_checkpoint`` writes during mmseg 1.x training: ``meta`` (the
    config text under ``cfg``, ``dataset_meta``), ``state_dict``, ``message_hub`` (HistoryBuffers of numpy
    arrays, numpy metric values), ``optimizer`` (momentum buffers: ``optimizer_mb`` MB of them) and
    ``param_schedulers``. mmengine is not needed: a stand-in module is registered while pickling only."""
    from collections import OrderedDict

    meta = {
        "dataset_meta": {"classes": classes, "palette": [[128, 64, 128]] * len(classes)},
        "seed": 42,
        "experiment_name": "danet_train",
        "time": "20240105_101010",
        "mmengine_version": "0.10.3",
        "epoch": 0,
        "iter": 40000,
    }
    if config is not None:
        meta["cfg"] = config
    hub = {
        "log_scalars": OrderedDict(
            [
                ("train/loss", FakeHistoryBuffer([0.91, 0.88], [1, 1])),
                ("train/lr", FakeHistoryBuffer([0.01, 0.0099], [1, 1])),
            ]
        ),
        "runtime_info": OrderedDict(
            [
                ("epoch", 0),
                ("iter", 40000),
                ("max_iters", 40000),
                ("dataset_meta", meta["dataset_meta"]),
                ("val/mIoU", np.float64(78.74)),
                ("last_ckpt", "work_dirs/iter_40000.pth"),
            ]
        ),
        "resumed_keys": OrderedDict([("train/loss", True), ("epoch", True)]),
    }
    elements = int(optimizer_mb * 2**20 / 4)
    state = {
        "meta": meta,
        "state_dict": model.state_dict(),
        "message_hub": hub,
        "optimizer": {
            "state": {0: {"momentum_buffer": torch.ones(elements)}},
            "param_groups": [{"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "params": [0]}],
        },
        "param_schedulers": [
            {
                "eta_min": 1e-4,
                "power": 0.9,
                "begin": 0,
                "end": 40000,
                "by_epoch": False,
                "last_step": 40000,
                "base_values": [0.01],
            }
        ],
    }
    with pickled_as_mmengine():
        torch.save(state, path)


@contextlib.contextmanager
def pickled_as_mmengine():
    """While inside, :class:`FakeHistoryBuffer` pickles as ``mmengine.logging.history_buffer.HistoryBuffer``
    (stand-in modules in ``sys.modules``); afterwards that name is unknown again, as without mmengine."""
    import sys
    import types

    names = ("mmengine", "mmengine.logging", "mmengine.logging.history_buffer")
    saved = {n: sys.modules.get(n) for n in names}
    module = types.ModuleType(names[-1])
    FakeHistoryBuffer.__module__, FakeHistoryBuffer.__qualname__ = names[-1], "HistoryBuffer"
    module.HistoryBuffer = FakeHistoryBuffer
    sys.modules.update({names[0]: types.ModuleType(names[0]), names[1]: types.ModuleType(names[1]), names[2]: module})
    try:
        yield
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
        FakeHistoryBuffer.__module__, FakeHistoryBuffer.__qualname__ = __name__, "FakeHistoryBuffer"
