"""Model presets as data, and ``create_model`` / ``list_models``.

Presets are plain dicts (as timm keeps variants as registry entries), so adding a size is a
line of data, and every exported artifact can record exactly which config produced it.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, UnknownModelError
from ..extras import require
from ..util.counts import MAX_CLASSES, is_count
from ..util.files import weights_name_problem
from .releases import CITYSCAPES_CLASSES, release_presets

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB uint8 image becomes the network's input: ``(x / 255 - mean) / std``, NCHW."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    color_order: str = "RGB"
    input_range: tuple[float, float] = (0.0, 255.0)
    layout: str = "NCHW"

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        return cls(
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
            color_order=data.get("color_order", "RGB"),
            input_range=tuple(data.get("input_range", (0.0, 255.0))),
            layout=data.get("layout", "NCHW"),
        )


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a DANet: architecture, classes and preprocessing."""

    name: str
    depth: int = 50
    output_stride: int = 8
    deep_stem: bool = True
    base_width: int = 64
    multi_grid: tuple[int, ...] | None = None
    stem_width: int | None = None  # first stem conv's width; None: base_width (see DilatedResNet)
    num_classes: int = 19
    class_names: tuple[str, ...] = CITYSCAPES_CLASSES
    align_corners: bool = True
    attention_chunks: int = 1
    decoder_channels: int = 0  # >0: a stride-4 skip decoder after the head (not in the paper; see SkipDecoder)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    weights: str | None = None  # file name inside danet_deploy/weights, for shipped presets
    description: str = ""

    @property
    def logits_stride(self) -> int:
        """Stride of the logits before the final upsample: the decoder's 4, else the output stride."""
        return 4 if self.decoder_channels else self.output_stride

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["preprocessing"] = self.preprocessing.to_dict()
        data["class_names"] = list(self.class_names)
        data["multi_grid"] = list(self.multi_grid) if self.multi_grid else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        data = dict(data)
        data["preprocessing"] = Preprocessing.from_dict(data.get("preprocessing", {}) or asdict(Preprocessing()))
        data["class_names"] = tuple(data.get("class_names", ()))
        if data.get("multi_grid"):
            data["multi_grid"] = tuple(data["multi_grid"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


DEMO_CLASSES = ("road", "sidewalk", "building", "vegetation", "sky", "car", "person", "pole")

_PRESETS: dict[str, ModelConfig] = {
    "danet_r101_d8": ModelConfig("danet_r101_d8", depth=101, description="paper size: ResNet-101, output stride 8"),
    "danet_r50_d8": ModelConfig("danet_r50_d8", depth=50, description="paper size: ResNet-50, output stride 8"),
    "danet_r18_d8": ModelConfig("danet_r18_d8", depth=18, description="ResNet-18, output stride 8"),
    "danet_edge_r18_d8": ModelConfig(
        "danet_edge_r18_d8",
        depth=18,
        deep_stem=False,
        base_width=32,
        description="edge size: half-width ResNet-18, output stride 8",
    ),
    "danet_demo": ModelConfig(
        "danet_demo",
        depth=18,
        deep_stem=False,
        base_width=32,
        num_classes=len(DEMO_CLASSES),
        class_names=DEMO_CLASSES,
        weights="danet_demo.safetensors",
        decoder_channels=64,
        description="edge size with a stride-4 decoder, trained here on generated street scenes (ships with weights)",
    ),
}
for _name, _kwargs in release_presets().items():
    _mean, _std = _kwargs.pop("mean", IMAGENET_MEAN), _kwargs.pop("std", IMAGENET_STD)
    _PRESETS[_name] = ModelConfig(_name, preprocessing=Preprocessing(mean=_mean, std=_std), **_kwargs)


def list_models() -> list[str]:
    """Names of every registered preset."""
    return sorted(_PRESETS)


def preset_order() -> list[str]:
    """Preset names in registration order (the paper sizes first, then the released checkpoints,
    most common variant of each release first): the order candidates are preferred in."""
    return list(_PRESETS)


def check_class_count(num_classes: int, flag: str = "--num-classes") -> None:
    """Refuse a class count below 1 or above :data:`MAX_CLASSES`, naming ``flag``.

    Why an upper bound: a class name is generated for each class and every preset is configured
    with the count to find the ones that fit a checkpoint, so ``--num-classes 10000000`` took
    minutes and GBs before it could say anything (10**9 never finished); the logits grow with it too.
    """
    if not is_count(num_classes, 1, MAX_CLASSES):
        raise ConfigError(f"{flag} must be a whole number from 1 to {MAX_CLASSES}, got {num_classes!r}")


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """A preset's config with ``overrides`` applied (e.g. ``num_classes=5``)."""
    if name not in _PRESETS:
        raise UnknownModelError(
            f"unknown model {name!r}: choose one of {', '.join(list_models())}, or pass a checkpoint path"
        )
    config = copy.deepcopy(_PRESETS[name])
    if overrides:
        unknown = set(overrides) - set(ModelConfig.__dataclass_fields__)
        if unknown:
            raise ConfigError(
                f"unknown model option(s) {sorted(unknown)}; valid: {sorted(ModelConfig.__dataclass_fields__)}"
            )
        data = config.to_dict()
        data.update(overrides)
        if "class_names" in overrides and "num_classes" not in overrides:
            data["num_classes"] = len(overrides["class_names"])
        if "num_classes" in overrides:
            check_class_count(overrides["num_classes"])
        if "num_classes" in overrides and "class_names" not in overrides:
            n = overrides["num_classes"]
            names = list(config.class_names)
            data["class_names"] = names[:n] if len(names) >= n else names + [f"class_{i}" for i in range(len(names), n)]
        config = ModelConfig.from_dict(data)
    return config


def build_model(config: ModelConfig):
    """An untrained DANet for ``config`` (weights are loaded by :func:`create_model`)."""
    require("torch", "building a DANet model")  # a typed error naming the extra on a runtime-only install

    if config.num_classes != len(config.class_names):
        raise ConfigError(f"{config.name}: num_classes={config.num_classes} but {len(config.class_names)} class names")
    _check_parameter_count(config)
    return _danet(config)


#: The most parameters a config may build: 1e9 float32 weights are 4 GB, 15x ResNet-101 DANet's 67M.
MAX_PARAMETERS = 1_000_000_000


def _check_parameter_count(config: ModelConfig) -> None:
    """Refuse a config whose network would hold more than :data:`MAX_PARAMETERS` weights, before allocating.

    Why: each width option is range-checked alone, but they multiply: ``base_width=4096`` is in
    range and builds convolutions of 32768x32768x3x3, tens of GB that end the process with an
    allocator error or the OOM killer instead of a message. The network is built on the meta
    device (shapes only, no memory) to count them.
    """
    import torch

    with torch.device("meta"):
        count = sum(p.numel() for p in _danet(config).parameters())
    if count > MAX_PARAMETERS:
        raise ConfigError(
            f"{config.name}: depth {config.depth}, base_width {config.base_width}, stem_width "
            f"{config.stem_width or config.base_width}, decoder_channels {config.decoder_channels} "
            f"and {config.num_classes} "
            f"classes make {count / 1e9:.1f}e9 parameters ({count * 4 / 2**30:.0f} GiB as float32), "
            f"more than the {MAX_PARAMETERS / 1e9:.0f}e9 this builds: lower the widths (the paper uses "
            "base_width=64)"
        )


def _danet(config: ModelConfig):
    from .danet import DANet

    try:
        return DANet(
            num_classes=config.num_classes,
            depth=config.depth,
            output_stride=config.output_stride,
            deep_stem=config.deep_stem,
            base_width=config.base_width,
            multi_grid=config.multi_grid,
            attention_chunks=config.attention_chunks,
            align_corners=config.align_corners,
            stem_width=config.stem_width,
            decoder_channels=config.decoder_channels,
        )
    except ValueError as exc:  # depth, output stride, widths out of range
        raise ConfigError(f"{config.name}: {exc}") from exc


def weights_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "weights"


def shipped_weights(name: Any) -> Path:
    """The file of the weights folder that a config's ``weights`` entry names, or :class:`ConfigError`.

    Checked by name (:func:`weights_name_problem`) and, after resolving symbolic links, by place:
    the file must lie inside :func:`weights_dir`, so a config (often a manifest's ``model`` entry)
    cannot make the loader open a file elsewhere.
    """
    problem = weights_name_problem(name)
    folder = weights_dir()
    if problem is None and not (folder / name).resolve().is_relative_to(folder):
        problem = "leads outside the shipped weights folder"
    if problem is not None:
        raise ConfigError(
            f"model.weights {name!r:.120} {problem}: it names a file shipped in {folder} (such as "
            "'danet_demo.safetensors'), or is null. Re-export the artifact, or load your own weights "
            "as a checkpoint file (danet-export --model FILE)"
        )
    return folder / name
