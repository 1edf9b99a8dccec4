"""Tests of a hostile-but-realistic user: odd paths, hand-edited manifests, kills, threads, huge inputs.

Each asserts the typed error, exit code 2 from the CLIs, and that nothing outside the output folder
changed. The artifacts here are the suite's shared danet_demo exports; tests copy them before
changing them. Helpers: ``hostile_support``.
"""

import pytest


@pytest.fixture(scope="session")
def artifact(demo_artifact_64):
    """The shared static 64x64 ONNX artifact of danet_demo."""
    return demo_artifact_64


@pytest.fixture(scope="session")
def dynamic_artifact(demo_dynamic_artifact_64):
    """The shared dynamic-size ONNX artifact of danet_demo."""
    return demo_dynamic_artifact_64
