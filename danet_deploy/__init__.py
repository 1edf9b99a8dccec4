"""danet-deploy: export, run, verify and benchmark DANet on CPUs, NVIDIA GPUs and Jetson.

``import danet_deploy`` is cheap and torch-free; the reference model (torch) and each backend
library are imported only when used, so a robot can install the runtime and one backend.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import DanetDeployError  # noqa: E402
from .model.factory import create_model  # noqa: E402
from .model.registry import get_config, list_models  # noqa: E402

__all__ = ["DanetDeployError", "__version__", "create_model", "get_config", "list_models"]
