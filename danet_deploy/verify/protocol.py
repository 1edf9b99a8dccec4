"""The test protocol a model's accuracy is measured with: resize, whole image or sliding window.

A release's mIoU is only comparable when measured as the release measured it. mmsegmentation's
DANet configs (1.2.2) test Cityscapes 512x1024 models on the whole image after ``Resize(scale=
(2048, 1024), keep_ratio=True)``; the 769x769 ones after ``Resize((2049, 1025))`` with
``mode='slide', crop_size=(769, 769), stride=(513, 513)`` and ``align_corners=True``; ADE20K and
VOC on the whole image after ``Resize((2048, 512), keep_ratio=True)``. The official DANet test
script evaluates the whole image at its own size. Generated presets are evaluated whole at their
input size. :func:`release_protocol` returns these as data; ``danet-eval --mode/--resize/--crop/
--stride`` override them, and the protocol used is printed and stored with the results.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

MODES = ("whole", "slide")


@dataclass(frozen=True)
class TestProtocol:
    """How images are fed to the model. ``resize``: mmseg's keep-ratio ``Resize`` box as (H, W): the
    image is scaled by ``min(max(H, W) / long side, min(H, W) / short side)``; ``None`` keeps it."""

    __test__ = False  # not a pytest class despite the name

    mode: str = "whole"
    resize: tuple[int, int] | None = None
    crop: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    align_corners: bool = False
    source: str = "default"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode == "slide" and self.crop is None:
            raise ConfigError("--mode slide needs --crop HxW (the window the model sees)")
        if self.mode == "whole" and (self.crop or self.stride):
            raise ConfigError("--crop/--stride apply to --mode slide only")
        if self.crop and self.stride and (self.stride[0] > self.crop[0] or self.stride[1] > self.crop[1]):
            raise ConfigError(f"--stride {self.stride} must not exceed --crop {self.crop} (no gaps between windows)")

    def scaled_size(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) the image is resized to (mmcv's ``rescale_size`` with keep_ratio)."""
        if self.resize is None:
            return height, width
        long_edge, short_edge = max(self.resize), min(self.resize)
        scale = min(long_edge / max(height, width), short_edge / min(height, width))
        return int(height * scale + 0.5), int(width * scale + 0.5)

    def with_overrides(self, **changes: Any) -> TestProtocol:
        given = {k: v for k, v in changes.items() if v is not None}
        if not given:
            return self
        if given.get("mode") == "whole":
            given.setdefault("crop", None)
            given.setdefault("stride", None)
        return dataclasses.replace(self, **given, source=f"{self.source} + overrides")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        size = (f"resize to fit {self.resize[0]}x{self.resize[1]} (keep ratio)" if self.resize else
                "no resize (a fixed-size engine takes its own input size)")
        how = (f"slide {self.crop[0]}x{self.crop[1]} windows, stride {self.stride[0]}x{self.stride[1]}"
               if self.mode == "slide" and self.crop and self.stride else
               f"slide {self.crop[0]}x{self.crop[1]} windows" if self.mode == "slide" and self.crop else "whole image")
        return f"{how}, {size}, align_corners={self.align_corners} ({self.source})"


#: mmsegmentation 1.2.2 test pipelines of its DANet configs, by the release preset's dataset suffix
_MMSEG = {
    "cityscapes": TestProtocol("whole", (1024, 2048), None, None, False, "mmseg danet cityscapes 512x1024 config"),
    "cityscapes_769": TestProtocol("slide", (1025, 2049), (769, 769), (513, 513), True,
                                   "mmseg danet cityscapes 769x769 config"),
    "ade20k": TestProtocol("whole", (512, 2048), None, None, False, "mmseg danet ade20k config"),
    "voc12aug": TestProtocol("whole", (512, 2048), None, None, False, "mmseg danet voc12aug config"),
}


def release_protocol(model_name: str | None, recorded: dict[str, Any] | None = None) -> TestProtocol:
    """The protocol a model is evaluated with: ``recorded`` (a manifest's ``export.test_protocol``)
    when present, else the release preset's, else the whole image as the engine takes it."""
    if recorded:
        fields = {f.name for f in dataclasses.fields(TestProtocol)}
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items()
                                  if k in fields}
        return TestProtocol(**values)
    name = str(model_name or "")
    if name.startswith("danet_mmseg_"):
        dataset = name.split("_d8_", 1)[-1]
        if dataset in _MMSEG:
            return _MMSEG[dataset]
    if name.startswith("danet_official_"):
        return TestProtocol("whole", None, None, None, True, "official DANet test script (single scale)")
    return TestProtocol(source="default for a generated preset")
