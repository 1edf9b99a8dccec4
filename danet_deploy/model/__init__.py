"""The reference PyTorch DANet: attention modules, dilated ResNet, head, presets, checkpoints.

Importing this package does not import torch (the runtime must work without it); the
torch-based classes are loaded on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from ..extras import require
from .factory import create_model, create_model_from_config
from .registry import DEMO_CLASSES, ModelConfig, Preprocessing, get_config, list_models

_LAZY = {
    "DANet": ".danet",
    "DANetHead": ".danet",
    "PositionAttention": ".attention",
    "ChannelAttention": ".attention",
    "DilatedResNet": ".backbone",
    "BasicBlock": ".backbone",
    "Bottleneck": ".backbone",
    "load_checkpoint": ".checkpoints",
    "read_state_dict": ".checkpoints",
    "map_state_dict": ".checkpoints",
    "read_checkpoint": ".checkpoints",
    "infer_architecture": ".inspect",
    "matching_presets": ".inspect",
    "model_from_checkpoint": ".inspect",
    "init_for_testing": ".init",
}

__all__ = [
    "DEMO_CLASSES",
    "ModelConfig",
    "Preprocessing",
    "create_model",
    "create_model_from_config",
    "get_config",
    "list_models",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        require("torch", f"danet_deploy.model.{name}")  # a typed error naming the extra on a runtime-only install
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
