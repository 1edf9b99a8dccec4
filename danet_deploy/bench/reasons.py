"""One-line failure reasons for table rows, from exceptions of any engine.

Why not the first line: OpenVINO and ONNX Runtime put the location first and the cause on
later lines ("Exception from src/inference/...:117:" then the real message), so the first
few non-empty lines are joined and capped instead.
"""

from __future__ import annotations


def short_reason(exc: BaseException, limit: int = 300) -> str:
    """``"<Type>: <message>"`` (typed project errors without the type), on one line, at most ``limit`` chars."""
    from ..errors import DanetDeployError

    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ".join(lines[:4])
    if not isinstance(exc, DanetDeployError) or not text:
        text = f"{type(exc).__name__}: {text}".rstrip(": ")
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."
