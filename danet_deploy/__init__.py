"""danet-deploy: export, run, verify and benchmark DANet on CPUs, NVIDIA GPUs and Jetson.

``import danet_deploy`` is cheap and torch-free, and imports no room: the model helpers below
are looked up on first use, so ``import danet_deploy.runtime`` on a robot loads the runtime and
its floors only (never ``model``). The reference model (torch) and each backend library are
imported only when used, so a robot can install the runtime and one backend.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .errors import DanetDeployError

__version__ = "0.1.0"
_LAZY = {"create_model": ".model.factory", "get_config": ".model.registry", "list_models": ".model.registry"}

__all__ = ["DanetDeployError", "__version__", "create_model", "get_config", "list_models"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
