"""The served model's ``model.py`` inside Triton: PyTriton's proxy model with client errors answered as such.

PyTriton 0.7's proxy model (run by Triton's Python backend) raises every failure out of
``execute``, so Triton answers HTTP 500 / gRPC INTERNAL with the Python traceback and the
server's file paths in the message, even for a bad image; a 0x0 image even fails inside the
proxy (a zero-size memoryview) before the inference callable sees it. This file goes into the
model's version folder as ``model.py`` and PyTriton's own model beside it as
``pytriton_model.py``; it subclasses that model and:

* checks each request's image before it is copied to the server process: a side of 0 or above
  the limit is answered ``INVALID_ARG`` (HTTP 400, gRPC INVALID_ARGUMENT) with a one-line reason;
* answers an inference-callable error that carries :data:`CLIENT_ERROR_MARK` (raised by
  ``danet_deploy.serve.server.make_infer`` for bad input) the same way, with that reason;
* answers any other failure ``INTERNAL`` with one line pointing to the server's log (where
  PyTriton logs the traceback), never the traceback itself.

It runs in Triton's Python backend stub, which cannot import ``danet_deploy``: it needs only the
standard library and ``triton_python_backend_utils``. Limits come from :data:`LIMITS_FILE`
beside it; both are sent with the model's load request by
:func:`danet_deploy.serve.server.add_request_checks`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from typing import Any

CLIENT_ERROR_MARK = "[client error] "
LIMITS_FILE = "danet_limits.json"
SERVER_FAILURE = "inference failed on the server; its log has the details"
_MARKED = re.compile(re.escape(CLIENT_ERROR_MARK) + r"([^\n]*)")


def image_problem(shape: Sequence[int], input_name: str, max_side: int) -> str | None:
    """The one-line reason an ``input_name`` of ``shape`` ([H, W, C] or [1, H, W, C]) is refused, or None."""
    dims = list(shape)[-3:]
    if len(dims) < 3:
        return None  # Triton itself refuses a wrong rank against the model's declared dims
    height, width = dims[0], dims[1]
    if min(height, width) < 1 or max(height, width) > max_side:
        return f"{input_name} is {height}x{width}; sides must be 1..{max_side}"
    return None


def client_reason(text: str) -> str | None:
    """The reason a client-error-marked failure carries (the rest of the marked line), or None."""
    found = _MARKED.search(text)
    return (found.group(1).strip() or None) if found else None


try:  # inside Triton's Python backend; elsewhere (tests, docs) only the checks above are used
    import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

    from . import pytriton_model as _pytriton  # type: ignore[attr-defined]
except ImportError:
    pb_utils = None

if pb_utils is not None:

    def _error(message: str, code: Any) -> Any:
        return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message, code))

    class TritonPythonModel(_pytriton.TritonPythonModel):  # type: ignore[misc,name-defined]
        """PyTriton's proxy model, answering bad requests and failures with one-line errors."""

        def initialize(self, args: dict) -> None:
            with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), LIMITS_FILE)) as file:
                limits = json.load(file)
            self._input_name, self._max_side = str(limits["input"]), int(limits["max_image_side"])
            super().initialize(args)

        def execute(self, requests: list) -> list:
            responses: list = [None] * len(requests)
            good = []
            for index, request in enumerate(requests):
                tensor = pb_utils.get_input_tensor_by_name(request, self._input_name)
                problem = (
                    None if tensor is None else image_problem(tensor.as_numpy().shape, self._input_name, self._max_side)
                )
                if problem is None:
                    good.append(index)
                else:
                    responses[index] = _error(problem, pb_utils.TritonError.INVALID_ARG)
            if good:
                try:
                    answers = super().execute([requests[i] for i in good])
                except Exception as exc:
                    text = str(exc)
                    reason = client_reason(text)
                    if reason is None:
                        pb_utils.Logger.log_error(f"inference failed: {text}")
                        answers = [_error(SERVER_FAILURE, pb_utils.TritonError.INTERNAL) for _ in good]
                    else:
                        answers = [_error(reason, pb_utils.TritonError.INVALID_ARG) for _ in good]
                for index, answer in zip(good, answers):
                    responses[index] = answer
            return responses
