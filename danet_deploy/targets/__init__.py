"""Export targets and runtime engines: one registry (see :mod:`.registry`), typed options (:mod:`.options`)."""

from .options import TargetOptions, option
from .registry import (
    CALIB_METHODS,
    DEFAULT_CALIB_METHOD,
    PRECISIONS,
    Engine,
    Requirement,
    Target,
    TritonPlatform,
    engine_for_suffix,
    engine_names,
    engines,
    get_engine,
    get_target,
    reference_engine,
    register_engine,
    register_target,
    resolve,
    target_for,
    target_names,
    targets,
    unregister,
)

__all__ = ["CALIB_METHODS", "DEFAULT_CALIB_METHOD", "PRECISIONS", "Engine", "Requirement", "Target", "TargetOptions",
           "TritonPlatform", "engine_for_suffix", "engine_names", "engines", "get_engine", "get_target", "option",
           "reference_engine",
           "register_engine", "register_target", "resolve", "target_for", "target_names", "targets", "unregister"]
