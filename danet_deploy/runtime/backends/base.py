"""The backend contract: load / infer / close. Everything else lives once, in ``Session``.

A backend receives an already validated, contiguous float32 NCHW array that fits its input
spec, and returns float32 NCHW logits. It must not import torch unless it *is* the torch backend.
Backend modules import their library lazily (inside ``__init__``) and raise
:class:`~danet_deploy.errors.BackendUnavailableError` naming the pip package when it is missing.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, Callable

import numpy as np

from ...errors import BackendUnavailableError, ConfigError


@dataclass(frozen=True)
class InputSpec:
    """The network input: name, shape (``None`` for a dynamic dim), dtype and profile bounds.

    ``min_shape``/``max_shape`` bound dynamic dims where the engine has limits (TensorRT
    optimisation profiles); ``None`` means unbounded.
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"
    min_shape: tuple[int, ...] | None = None
    max_shape: tuple[int, ...] | None = None
    opt_shape: tuple[int, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_dynamic(self) -> bool:
        return any(d is None for d in self.shape)

    @property
    def static_hw(self) -> tuple[int, int] | None:
        """The fixed (H, W) if height and width are static, else ``None``."""
        h, w = self.shape[2], self.shape[3]
        return (h, w) if h is not None and w is not None else None

    @property
    def static_batch(self) -> int | None:
        return self.shape[0]

    @classmethod
    def from_manifest(cls, spec: dict[str, Any]) -> "InputSpec":
        shape = tuple(d if isinstance(d, int) and d > 0 else None for d in spec["shape"])

        def opt(key: str) -> tuple[int, ...] | None:
            return tuple(spec[key]) if spec.get(key) else None

        return cls(name=spec.get("name", "input"), shape=shape, dtype=spec.get("dtype", "float32"),
                   min_shape=opt("min_shape"), max_shape=opt("max_shape"), opt_shape=opt("opt_shape"))


class Backend(abc.ABC):
    """One inference engine. Subclasses implement ``infer`` and ``close``; set ``input_spec``."""

    name: str = "backend"
    input_spec: InputSpec

    @abc.abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """float32 NCHW -> float32 logits ``[N, classes, H, W]``."""

    def close(self) -> None:  # noqa: B027 - optional for backends that hold nothing
        """Release engine memory; the default holds nothing."""

    def describe(self) -> dict[str, Any]:
        """Facts for reports (device, threads, providers...)."""
        return {"backend": self.name}


# name -> "module:Class"; imported only when used, so missing libraries fail late and clearly
_BACKENDS: dict[str, str] = {
    "torch": "danet_deploy.runtime.backends.torch:TorchBackend",
    "onnxruntime": "danet_deploy.runtime.backends.onnxruntime:OnnxRuntimeBackend",
    "openvino": "danet_deploy.runtime.backends.openvino:OpenVINOBackend",
    "tensorrt": "danet_deploy.runtime.backends.tensorrt:TensorRTBackend",
}


def register_backend(name: str, target: str) -> None:
    """Register ``"module:Class"`` under ``name`` (for third-party engines)."""
    _BACKENDS[name] = target


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def backend_class(name: str) -> Callable[..., Backend]:
    if name not in _BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(available_backends())}")
    module_name, _, cls_name = _BACKENDS[name].partition(":")
    try:
        module = import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("danet_deploy"):
            raise ConfigError(f"backend {name!r} is not available in this danet-deploy build") from exc
        raise BackendUnavailableError(f"backend {name!r} needs {exc.name!r}, which is not installed") from exc
    return getattr(module, cls_name)


def require(module: str, pip_name: str, backend: str) -> Any:
    """Import a backend library or raise a clear :class:`BackendUnavailableError`."""
    try:
        return import_module(module)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the {backend} backend needs the '{pip_name}' package: pip install {pip_name} ({exc})") from exc
