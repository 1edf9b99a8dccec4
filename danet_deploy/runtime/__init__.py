"""The thin, embeddable runtime: ``load(path) -> Session``; ``Session.run(images) -> masks``.

Needs numpy, Pillow and the one backend library an artifact uses; never torch (unless the
artifact *is* the torch reference). Example::

    from danet_deploy import runtime
    with runtime.load("artifacts/danet_demo-onnx-fp32") as session:
        mask = session.run(rgb_uint8_image)
"""

from __future__ import annotations

from ..targets import register_engine
from .backends.base import Backend, InputSpec, available_backends
from .loader import load
from .session import Session

__all__ = ["Backend", "InputSpec", "Session", "available_backends", "load", "register_engine"]
