"""Typed exceptions for every user-facing failure.

Each message names the problem *and* the fix, so a user never has to read a traceback
from deep inside torch, ONNX Runtime, OpenVINO or TensorRT to learn what they did wrong.
The CLI catches :class:`DanetDeployError` and prints ``error: <message>`` with exit code 2.
"""

from __future__ import annotations


class DanetDeployError(Exception):
    """Base class: anything the user can fix by changing inputs, files or options."""


class UnknownModelError(DanetDeployError, KeyError):
    """A model preset name that is not registered."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(DanetDeployError):
    """A checkpoint file is missing, unreadable, not a state dict, or does not match the model."""


class InputError(DanetDeployError, ValueError):
    """An image or tensor handed to a session has the wrong shape, dtype, channels or values."""


class ConfigError(DanetDeployError, ValueError):
    """An option or combination of options is invalid (size, target, precision, ...)."""


class ArtifactError(DanetDeployError):
    """An exported artifact is missing, incomplete, corrupt or fails its manifest checks."""


class ManifestError(ArtifactError):
    """``manifest.json`` is missing, of an unknown format version, or its hashes do not match."""


class BackendUnavailableError(DanetDeployError, ImportError):
    """The backend library needed for an artifact is not installed on this machine."""


class MissingExtraError(BackendUnavailableError):
    """A package an optional feature needs (torch, an exporter, an engine) is not installed; the
    message names the ``danet-deploy[extra]`` that installs it (see :mod:`danet_deploy.extras`)."""


class CalibrationError(DanetDeployError):
    """The calibration source is empty, unreadable, or has images of the wrong kind."""


class EngineCompatibilityError(ArtifactError):
    """A TensorRT engine was built for another TensorRT version or another GPU."""


class ExportError(DanetDeployError):
    """An exporter or converter failed; the message carries the library's reason."""


class SessionClosedError(DanetDeployError, RuntimeError):
    """A :class:`~danet_deploy.runtime.Session` was used after ``close()``."""


class NonFiniteOutputError(DanetDeployError, ArithmeticError):
    """An engine returned NaN or Inf logits (a broken engine, bad weights, or inputs far outside range)."""


class FrameError(InputError):
    """One camera frame (a ROS image message, a recorded one) cannot be read: ``cause`` names the
    kind (``encoding``, ``size``, ``decode``, ``pixels``) so a node can count and log each kind once."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


class ServeError(DanetDeployError):
    """A model server cannot start, is unreachable, or answered a request with an error."""


#: Lines libraries put before the cause (OpenVINO: "Exception from src/...:117:", "Check '...' failed").
_LOCATION_PREFIXES = ("Exception from", "Check '")


def summarize_exception(exc: BaseException, lines: int = 1, limit: int = 300) -> str:
    """One line that says why ``exc`` happened, safe for any exception.

    The first ``lines`` informative lines (OpenVINO's location lines skipped), joined and capped at
    ``limit`` characters; the exception's type name is prefixed for foreign exceptions and stands
    alone when the message is empty (``str(exc).splitlines()[0]`` raised ``IndexError`` there).
    """
    text_lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    informative = [ln for ln in text_lines if not ln.startswith(_LOCATION_PREFIXES)] or text_lines
    text = " ".join(informative[:lines])
    if not isinstance(exc, DanetDeployError) or not text:
        text = f"{type(exc).__name__}: {text}".rstrip(": ")
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."
