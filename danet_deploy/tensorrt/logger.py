"""One ``trt.Logger`` per process, shared by every builder, runtime and session.

TensorRT keeps a single global logger: the first ``Builder``/``Runtime`` registers its logger and
later ones with a different logger only get a warning ("The logger passed into createInferRuntime
differs from one already provided ..."), so a second session's own ``trt.Logger(level)`` would be
silently ignored. Here every caller gets the same object, and a level asked for explicitly sets that
logger's ``min_severity`` (process-wide: the most recent explicit request wins). Callers that pass
no level leave the current level alone.
"""

from __future__ import annotations

import threading
from typing import Any

from ..errors import ConfigError

LEVELS = {"error": "ERROR", "warning": "WARNING", "info": "INFO", "verbose": "VERBOSE"}
DEFAULT_LEVEL = "warning"

_lock = threading.Lock()
_logger: Any = None
_owner: Any = None  # the tensorrt module the logger belongs to (tests swap in fakes)


def level_name(level: str) -> str:
    """``"Info"`` -> ``"INFO"`` (the ``trt.Logger`` attribute); an unknown name is a :class:`ConfigError`
    listing the choices. No TensorRT needed: options are checked with it before any is imported."""
    name = LEVELS.get(str(level).strip().lower())
    if name is None:
        raise ConfigError(f"unknown TensorRT log level {level!r}; choose one of {', '.join(LEVELS)}")
    return name


def severity(trt: Any, level: str) -> Any:
    """``"info"`` -> ``trt.Logger.INFO``; an unknown name is a :class:`ConfigError` listing the choices."""
    return getattr(trt.Logger, level_name(level))


def shared_logger(trt: Any, level: str | None = None) -> Any:
    """The process's one ``trt.Logger``; created at ``level`` (default warning) on first use."""
    global _logger, _owner
    with _lock:
        if _logger is None or _owner is not trt:
            _logger, _owner = trt.Logger(severity(trt, level or DEFAULT_LEVEL)), trt
        elif level is not None:
            _logger.min_severity = severity(trt, level)
        return _logger


def _reset_for_tests() -> None:
    global _logger, _owner
    with _lock:
        _logger, _owner = None, None
