"""Which pip extra installs each optional package, and one typed error when one is missing.

Why: the base install is the runtime (numpy, Pillow); torch, the exporters and every engine come
in extras (``[project.optional-dependencies]`` in pyproject.toml), so a robot that installs
``danet-deploy[onnxruntime]`` gets no torch. A command that needs a package the machine lacks must
say which extra brings it, not end in a ``ModuleNotFoundError`` traceback: :func:`require` is the
door for code that imports one lazily, and :func:`missing_extra` turns an ``ImportError`` raised
anywhere below a console script into the same message (``cli_main`` uses it). The table is held
to pyproject.toml by ``tests/test_packaging.py``. Torch-free (errors and the target registry only):
the runtime imports it.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from .errors import MissingExtraError
from .targets.registry import Requirement

#: the torch release the project is tested with; unpinned, pip picks a multi-GB CUDA build
TORCH_PIN = "torch==2.13.0"

#: top-level module -> (the pip requirement that provides it, the danet-deploy extra that installs it)
PACKAGES: dict[str, tuple[str, str]] = {
    "torch": (TORCH_PIN, "export"),
    "safetensors": ("safetensors", "export"),
    "onnx": ("onnx", "export"),
    "onnxslim": ("onnxslim", "export"),
    "onnxscript": ("onnxscript", "export"),
    "nncf": ("nncf", "export"),
    "onnxruntime": ("onnxruntime", "onnxruntime"),
    "openvino": ("openvino", "openvino"),
    "matplotlib": ("matplotlib", "bench"),
    "psutil": ("psutil", "bench"),
    "tqdm": ("tqdm", "bench"),
    "skimage": ("scikit-image", "photos"),
    "av": ("av", "video"),
    "cityscapesscripts": ("cityscapesscripts", "datasets"),
    "mcap": ("mcap", "bag"),
    "mcap_ros2": ("mcap-ros2-support", "bag"),
    "pytriton": ("nvidia-pytriton", "serve"),
    "tritonclient": ("tritonclient", "serve"),
    "modelopt": ("nvidia-modelopt", "tensorrt-prepare"),
    "onnx_graphsurgeon": ("onnx-graphsurgeon", "tensorrt-prepare"),
    "polygraphy": ("polygraphy", "tensorrt-prepare"),
    "cuda": ("cuda-python", "tensorrt"),
}


def install_hint(module: str) -> str:
    """The pip command that installs ``module`` (its top-level name) the way this project expects.

    torch is named with its pin in the same command: alone, the extra's range would let pip pick
    the newest torch, a CUDA build of several GB.
    """
    top = module.partition(".")[0]
    if top not in PACKAGES:
        return f"pip install {top}"
    extra = PACKAGES[top][1]
    return (
        f"pip install {TORCH_PIN} 'danet-deploy[{extra}]'" if top == "torch" else f"pip install 'danet-deploy[{extra}]'"
    )


def missing_extra(exc: ImportError, what: str = "this command") -> MissingExtraError | None:
    """The typed error for an ``ImportError`` of a package an extra provides that is not installed;
    ``None`` for any other (a missing danet_deploy module, an unknown package, or an installed package
    that fails to import, e.g. a version without a name the code uses, is a bug and keeps its traceback)."""
    name = getattr(exc, "name", None) or ""
    top = name.partition(".")[0]
    if top not in PACKAGES or Requirement(top, PACKAGES[top][0]).installed():
        return None
    error = MissingExtraError(f"{what} needs {PACKAGES[top][0]}, which is not installed: {install_hint(top)}")
    error.__cause__ = exc
    return error


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra that installs it."""
    try:
        return import_module(module)
    except ImportError as exc:
        error = missing_extra(exc, what)
        if error is None:
            raise
        raise error from exc
