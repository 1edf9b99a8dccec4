"""The test protocol a model's accuracy is measured with (resize, whole image or sliding window), and
the table of the releases' protocols: one class, one table, no torch.

Why a leaf: the checkpoint inspector (``model/``, torch) records the protocol an artifact is
evaluated with, and ``danet-eval`` (``verify/``, which must run without torch) reads it back; both
import this module, which imports nothing but :mod:`.errors`.

A release's mIoU is only comparable when measured as the release measured it. mmsegmentation's
DANet configs (1.2.2) test Cityscapes 512x1024 models on the whole image after ``Resize(scale=
(2048, 1024), keep_ratio=True)``; the 769x769 ones after ``Resize((2049, 1025))`` with
``mode='slide', crop_size=(769, 769), stride=(513, 513)`` and ``align_corners=True``; ADE20K and
VOC on the whole image after ``Resize((2048, 512), keep_ratio=True)``. The official DANet test
script evaluates the whole image at its own size. Generated presets are evaluated whole at their
input size.

Sizes are ``(height, width)`` throughout, ``resize`` included: mmseg writes ``Resize(scale=(w, h))``,
which :mod:`.model.mmseg_config` turns around when it reads a config. With ``keep_ratio`` (every
release) the order does not matter: the image is scaled by ``min(long / max(H, W), short / min(H, W))``.

One protocol is recorded per artifact, in ``manifest["export"]["test_protocol"]``
(:func:`artifact_protocol`): the checkpoint's own (its stored mmseg config) when it states one, else
the release preset's, else the generated-preset default, with the ``align_corners`` the network was
built with. :func:`recorded_protocol` reads it back, from older manifests too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, ManifestError

MODES = ("whole", "slide")


def _check_pair(name: str, value: Any) -> None:
    if value is not None and not (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ConfigError(f"{name} must be two positive whole numbers HxW, got {value!r}")


@dataclass(frozen=True)
class TestProtocol:
    """How images are fed to the model (single scale, no flip).

    ``resize``: the (H, W) box of mmseg's ``Resize``; with ``keep_ratio`` the image is scaled to fit
    it, aspect kept, else resized to exactly H x W; ``None`` keeps the image as it is. ``mode``:
    ``"whole"`` (one forward pass over the whole image) or ``"slide"`` (``crop`` windows, ``stride``
    apart, overlapping logits averaged). ``align_corners``: the network's bilinear upsampling (for
    the record; the network has it built in). ``source`` says where the facts were read.
    """

    __test__ = False  # not a pytest class despite the name

    mode: str = "whole"
    resize: tuple[int, int] | None = None
    keep_ratio: bool = True
    crop: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    align_corners: bool = False
    source: str = "default"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("resize", "crop", "stride"):
            _check_pair(f"--{name}", getattr(self, name))
        if self.mode == "slide" and self.crop is None:
            raise ConfigError("--mode slide needs --crop HxW (the window the model sees)")
        if self.mode == "whole" and (self.crop or self.stride):
            raise ConfigError("--crop/--stride apply to --mode slide only")
        if self.crop and self.stride and (self.stride[0] > self.crop[0] or self.stride[1] > self.crop[1]):
            raise ConfigError(f"--stride {self.stride} must not exceed --crop {self.crop} (no gaps between windows)")

    def scaled_size(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) the image is resized to (mmcv's ``rescale_size`` with keep_ratio, else ``resize``)."""
        if self.resize is None:
            return height, width
        if not self.keep_ratio:
            return self.resize
        long_edge, short_edge = max(self.resize), min(self.resize)
        scale = min(long_edge / max(height, width), short_edge / min(height, width))
        return int(height * scale + 0.5), int(width * scale + 0.5)

    def with_overrides(self, **changes: Any) -> TestProtocol:
        """This protocol with the given (not ``None``) fields replaced, as ``danet-eval --mode/--resize/
        --crop/--stride`` ask; a ``--resize`` keeps the aspect ratio, as its help says."""
        given = {k: v for k, v in changes.items() if v is not None}
        if not given:
            return self
        if given.get("mode") == "whole":
            given.setdefault("crop", None)
            given.setdefault("stride", None)
        if "resize" in given:
            given.setdefault("keep_ratio", True)
        return dataclasses.replace(self, **given, source=f"{self.source} + overrides")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (pairs as lists), as the manifest stores it."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "the manifest") -> TestProtocol:
        """The protocol a manifest recorded (unknown keys ignored); a malformed one is a
        :class:`~danet_deploy.errors.ManifestError` naming ``where``."""
        fields = {f.name for f in dataclasses.fields(cls)}
        try:
            values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in fields}
            return cls(**values)
        except (ConfigError, TypeError) as exc:
            raise ManifestError(
                f"{where} records an unusable test protocol ({exc}); re-export the artifact, or "
                "give danet-eval --mode/--resize/--crop/--stride"
            ) from exc

    def describe(self) -> str:
        if self.resize is None:
            size = "no resize (a fixed-size engine takes its own input size)"
        elif self.keep_ratio:
            size = f"resize to fit {self.resize[0]}x{self.resize[1]} (keep ratio)"
        else:
            size = f"resize to {self.resize[0]}x{self.resize[1]}"
        how = (
            f"slide {self.crop[0]}x{self.crop[1]} windows, stride {self.stride[0]}x{self.stride[1]}"
            if self.mode == "slide" and self.crop and self.stride
            else f"slide {self.crop[0]}x{self.crop[1]} windows"
            if self.mode == "slide" and self.crop
            else "whole image"
        )
        return f"{how}, {size}, align_corners={self.align_corners} ({self.source})"


#: The evaluation of a preset that reproduces no release: the whole image at the engine's size.
DEFAULT_PROTOCOL = TestProtocol(source="default for a generated preset")

_MMSEG_SOURCE = "mmsegmentation 1.2.2 configs/danet/*.py and configs/_base_/datasets/*.py"
#: mmsegmentation 1.2.2's DANet test pipelines, by the release preset's dataset suffix
MMSEG_PROTOCOLS: dict[str, TestProtocol] = {
    "cityscapes": TestProtocol(
        "whole", (1024, 2048), align_corners=False, source=f"{_MMSEG_SOURCE}: cityscapes 512x1024"
    ),
    "cityscapes_769": TestProtocol(
        "slide",
        (1025, 2049),
        crop=(769, 769),
        stride=(513, 513),
        align_corners=True,
        source=f"{_MMSEG_SOURCE}: cityscapes 769x769",
    ),
    "ade20k": TestProtocol("whole", (512, 2048), align_corners=False, source=f"{_MMSEG_SOURCE}: ade20k"),
    "voc12aug": TestProtocol("whole", (512, 2048), align_corners=False, source=f"{_MMSEG_SOURCE}: voc12aug"),
}
MMSEG_DEPTHS = (50, 101)


def mmseg_preset(depth: int, dataset: str) -> str:
    """The name of the preset that reproduces mmsegmentation's DANet R-``depth``-D8 on ``dataset``."""
    return f"danet_mmseg_r{depth}_d8_{dataset}"


#: preset name -> its release's test protocol (presets that reproduce no release have none)
RELEASE_PROTOCOLS: dict[str, TestProtocol] = {
    "danet_official_r101_cityscapes": TestProtocol(
        "whole",
        None,
        align_corners=True,
        source="official DANet test script (junfu1115/DANet): whole 1024x2048 image, single scale",
    ),
    **{
        mmseg_preset(depth, dataset): protocol
        for dataset, protocol in MMSEG_PROTOCOLS.items()
        for depth in MMSEG_DEPTHS
    },
}


def release_protocol(preset: str | None) -> TestProtocol | None:
    """The test protocol of the release ``preset`` reproduces, or ``None`` when it reproduces none."""
    return RELEASE_PROTOCOLS.get(str(preset or ""))


def artifact_protocol(
    preset: str | None, own: TestProtocol | None = None, align_corners: bool | None = None
) -> TestProtocol:
    """The one protocol an artifact of ``preset`` is evaluated with: ``own`` (a checkpoint's stored
    config) when given, else the release's, else :data:`DEFAULT_PROTOCOL`; with ``align_corners``
    as the network was built (an ``--arch`` or ``--model-option`` may differ from the release)."""
    protocol = own or release_protocol(preset) or DEFAULT_PROTOCOL
    if align_corners is not None and protocol.align_corners != align_corners:
        note = "" if protocol is DEFAULT_PROTOCOL else "; align_corners as built"
        protocol = dataclasses.replace(protocol, align_corners=align_corners, source=protocol.source + note)
    return protocol


def recorded_protocol(
    model: Mapping[str, Any], export: Mapping[str, Any] | None, checkpoint: Mapping[str, Any] | None = None
) -> TestProtocol:
    """The protocol a manifest records (its ``model``, ``export`` and ``checkpoint`` entries).

    ``export.test_protocol`` is the one place; manifests written before carried the checkpoint's
    protocol in ``checkpoint.test_protocol`` (then preferred: their ``export`` entry ignored the
    checkpoint's config), with ``resize`` in mmseg's (W, H) order. A manifest that records none
    (a bare model file, the torch reference) gets :func:`artifact_protocol` of its preset.
    """
    old = (checkpoint or {}).get("test_protocol")
    if isinstance(old, Mapping) and old:
        data = dict(old)
        if isinstance(data.get("resize"), list) and len(data["resize"]) == 2:
            data["resize"] = data["resize"][::-1]
        return TestProtocol.from_dict(data, "the manifest's checkpoint.test_protocol")
    recorded = (export or {}).get("test_protocol")
    if isinstance(recorded, Mapping) and recorded:
        return TestProtocol.from_dict(recorded, "the manifest's export.test_protocol")
    align = model.get("align_corners")
    return artifact_protocol(model.get("name"), align_corners=align if isinstance(align, bool) else None)
