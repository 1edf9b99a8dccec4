"""Write protobuf text format (``config.pbtxt``) from plain Python data, without protobuf.

The repository writer must run where only the runtime is installed (a robot, a build box), so it
cannot require ``tritonclient``'s generated ``model_config_pb2``. Text format is simple enough to
emit directly: a dict is a message, a list of dicts a repeated message, a list of scalars a
repeated scalar, :class:`Enum` an unquoted enum value. The tests parse every generated file
with Triton's own schema, so a misspelt field fails there, not on the server.
"""

from __future__ import annotations

import json
from typing import Any


class Enum(str):
    """An enum value (``KIND_CPU``, ``TYPE_FP32``): written unquoted."""


def _scalar(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # double quotes, backslash escapes: valid text-format strings
    raise TypeError(f"cannot write {type(value).__name__} as a protobuf text scalar")


def dumps(message: dict[str, Any], indent: int = 0) -> str:
    """``message`` as protobuf text format, two spaces per nesting level; ``None`` fields are omitted."""
    pad = "  " * indent
    lines: list[str] = []
    for key, value in message.items():
        if value is None:
            continue
        if isinstance(value, dict):
            lines.append(f"{pad}{key} {{\n{dumps(value, indent + 1)}{pad}}}")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                lines.append(f"{pad}{key} {{\n{dumps(item, indent + 1)}{pad}}}")
        elif isinstance(value, list):
            if value:
                lines.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "".join(line + "\n" for line in lines)
