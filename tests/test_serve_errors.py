"""What a danet-serve client is told when its request fails: one line, never a server traceback.

The model file Triton runs (``serve/triton_model.py``) is checked here without a server; the live
answers (HTTP 400, gRPC INVALID_ARGUMENT) are checked against a real server in test_serve.py.
"""

from __future__ import annotations

import json

import pytest

from danet_deploy.errors import ServeError
from danet_deploy.serve.triton_model import (
    CLIENT_ERROR_MARK,
    client_reason,
    image_problem,
)


@pytest.mark.parametrize(
    "shape, problem",
    [
        ((1, 0, 0, 3), "image is 0x0; sides must be 1..256"),
        ((0, 5, 3), "image is 0x5; sides must be 1..256"),
        ((1, 300, 8, 3), "image is 300x8; sides must be 1..256"),
        ((1, 256, 256, 3), None),
        ((1, 1, 1, 3), None),
        ((16, 16), None),  # a wrong rank is Triton's to refuse, against the declared dims
    ],
)
def test_image_problems(shape, problem):
    assert image_problem(shape, "image", 256) == problem


def test_a_marked_reason_is_found_inside_pytritons_traceback_text():
    text = (
        'Model execute error: Traceback (most recent call last):\n  File "/tmp/x/1/model.py", line 492\n'
        f"pytriton.exceptions.PyTritonBadParameterError: {CLIENT_ERROR_MARK}image has NaN values \n\nAt:\n"
    )
    assert client_reason(text) == "image has NaN values"
    assert client_reason("Traceback (most recent call last):\nZeroDivisionError: division by zero") is None
    assert client_reason(CLIENT_ERROR_MARK) is None


def test_the_load_request_carries_the_checking_model_in_front_of_pytritons():
    pytest.importorskip("pytriton", reason="nvidia-pytriton (serve extra) not installed")
    from danet_deploy.serve.server import proxy_files_with_checks

    with pytest.raises(ServeError, match="nvidia-pytriton==0.7"):
        proxy_files_with_checks({"file:1/data.py": b""}, 1, 256)
    files = proxy_files_with_checks({"file:1/model.py": b"# proxy", "file:1/data.py": b"# data"}, 1, 256)
    assert files["file:1/pytriton_model.py"] == b"# proxy" and files["file:1/data.py"] == b"# data"
    assert b"class TritonPythonModel" in files["file:1/model.py"]
    assert json.loads(files["file:1/danet_limits.json"]) == {"input": "image", "max_image_side": 256}
