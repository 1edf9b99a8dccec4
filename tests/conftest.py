import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def torch():
    import torch as _torch

    _torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    return _torch


def make_test_checkpoint(root: Path):
    """A test-initialised (non-zero attention gammas) danet_demo saved as safetensors: (model, path)."""
    from safetensors.torch import save_file

    from danet_deploy.model import create_model, init_for_testing

    model = init_for_testing(create_model("danet_demo", weights=False), seed=0).eval()
    path = root / "demo.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model, path


class isolated_cache:
    """Point the calibration cache ($DANET_DEPLOY_CACHE) at ``path`` for the duration of a block."""

    def __init__(self, path: Path) -> None:
        self.path, self.old = path, None

    def __enter__(self) -> Path:
        self.old = os.environ.get("DANET_DEPLOY_CACHE")
        os.environ["DANET_DEPLOY_CACHE"] = str(self.path)
        return self.path

    def __exit__(self, *exc: object) -> None:
        if self.old is None:
            os.environ.pop("DANET_DEPLOY_CACHE", None)
        else:
            os.environ["DANET_DEPLOY_CACHE"] = self.old


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory):
    """A calibration cache private to one test module."""
    with isolated_cache(tmp_path_factory.mktemp("cache")) as path:
        yield path


@pytest.fixture(scope="session")
def demo_artifact_64(tmp_path_factory):
    """A static 64x64 ONNX artifact of danet_demo, exported once per session: tests copy it before changing it."""
    from danet_deploy.export import ExportRequest, export

    path, _ = export(
        ExportRequest("danet_demo", input_size=(64, 64), output=tmp_path_factory.mktemp("a") / "art"),
        log=lambda _: None,
    )
    return path


@pytest.fixture(scope="session")
def demo_mask_artifact_64(tmp_path_factory):
    """A static 64x64 ONNX artifact of danet_demo with the arg-max in the graph (``--emit mask``),
    exported once per session for the stream and replay tests: tests copy it before changing it."""
    from danet_deploy.export import ExportRequest, export

    path, _ = export(
        ExportRequest("danet_demo", input_size=(64, 64), emit="mask", output=tmp_path_factory.mktemp("m") / "mask"),
        log=lambda _: None,
    )
    return path


@pytest.fixture(scope="session")
def demo_dynamic_artifact_64(tmp_path_factory):
    """A dynamic-size ONNX artifact of danet_demo (64x64 at export), exported once per session."""
    from danet_deploy.export import ExportRequest, export

    path, _ = export(
        ExportRequest("danet_demo", input_size=(64, 64), dynamic=True, output=tmp_path_factory.mktemp("d") / "dyn"),
        log=lambda _: None,
    )
    return path
