"""Packaging: the base install is the runtime, torch and the exporters come in extras.

Why: a robot installs ``danet-deploy[onnxruntime]`` and must get no torch, yet run an artifact; a
command that needs a missing extra must name it (exit 2), not end in an ImportError traceback. The
runtime-without-torch cases run in a subprocess whose import system refuses torch (and the other
export-only packages), as on such a robot; scripts/check_runtime_wheel.sh does the same with a real
wheel in a fresh venv (run by .ci/run).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib

from danet_deploy.errors import MissingExtraError
from danet_deploy.extras import PACKAGES, install_hint, missing_extra, require

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]
#: packages a robot's runtime-only install does not have
#: requirements no extra can carry: TensorRT comes from JetPack or NVIDIA's own packages (README, TensorRT)
FROM_ELSEWHERE = {"tensorrt"}
EXPORT_ONLY = ("torch", "safetensors", "onnx", "onnxslim", "onnxscript", "nncf", "openvino", "modelopt")

# A sys.meta_path finder that makes the export-only packages unimportable, as on a runtime-only install.
BLOCKER = f"""
import importlib.abc, sys
class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {EXPORT_ONLY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _Blocked())
"""


def _name(requirement: str) -> str:
    """``'torch>=2.4,<2.15; extra == ...'`` -> ``'torch'``; ``'danet-deploy[export]'`` -> ``'danet-deploy'``."""
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _expanded(extra: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """The package names an extra installs, following ``danet-deploy[...]`` self-references."""
    names: set[str] = set()
    for requirement in EXTRAS[extra]:
        if _name(requirement) == "danet-deploy":
            for inner in requirement.partition("[")[2].rstrip("]").split(","):
                if inner.strip() not in seen:
                    names |= _expanded(inner.strip(), seen | {extra})
        else:
            names.add(_name(requirement))
    return names


def _run(code: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + code], check=False, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


# -- pyproject ------------------------------------------------------------------------------------------


def test_base_dependencies_are_the_runtime_only():
    base = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert base == {"numpy", "pillow"}, base
    assert not base & {"torch", "safetensors", "onnx", "onnxruntime", "openvino"}


def test_device_extras_pull_no_torch():
    for extra in ("onnxruntime", "openvino", "tensorrt", "tensorrt-cu13", "video"):
        assert "torch" not in _expanded(extra), extra
    assert {"torch", "safetensors", "onnx", "onnxslim", "onnxscript"} <= _expanded("export")
    assert {"torch", "onnxruntime", "openvino", "nncf", "matplotlib", "av"} <= _expanded("all-cpu")


def test_extras_table_names_extras_that_install_the_package():
    for module, (pip, extra) in PACKAGES.items():
        assert extra in EXTRAS, f"{module}: no extra {extra!r} in pyproject.toml"
        assert _name(pip) in _expanded(extra), f"{module}: extra {extra!r} does not install {pip}"


def test_every_target_and_engine_names_existing_extras():
    from danet_deploy.targets import engines, targets

    for entry in [*targets(), *engines()]:
        for extra in filter(None, entry.extra.split(",")):
            assert extra in EXTRAS, f"{entry.name}: extra {extra!r} is not in pyproject.toml"
        for requirement in entry.requires:
            pip = _name(requirement.pip)
            if pip in FROM_ELSEWHERE:
                continue
            named = set().union(*(_expanded(x) for x in filter(None, entry.extra.split(","))))
            assert pip in named, f"{entry.name}: {pip} is not installed by danet-deploy[{entry.extra}]"


def test_console_scripts_exist():
    for name, spec in PYPROJECT["project"]["scripts"].items():
        module = spec.partition(":")[0]
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), name


# -- the extras door ------------------------------------------------------------------------------------


def test_missing_extra_names_the_extra(monkeypatch):
    monkeypatch.setitem(PACKAGES, "absent_pkg_for_test", ("absent-pkg", "video"))
    error = missing_extra(
        ModuleNotFoundError("No module named 'absent_pkg_for_test.sub'", name="absent_pkg_for_test.sub"), "video input"
    )
    assert isinstance(error, MissingExtraError)
    assert str(error) == "video input needs absent-pkg, which is not installed: pip install 'danet-deploy[video]'"
    assert install_hint("torch") == "pip install torch==2.13.0 'danet-deploy[export]'"


def test_missing_extra_leaves_other_import_errors_alone(monkeypatch):
    """An installed package that fails to import (a name missing in its version) is a bug whose traceback
    is the clue, not a missing extra; nor is a missing danet_deploy module."""
    monkeypatch.setitem(PACKAGES, "json", ("json", "export"))
    assert missing_extra(ImportError("cannot import name 'nothing' from 'json'", name="json")) is None
    assert missing_extra(ModuleNotFoundError("No module named 'danet_deploy.x'", name="danet_deploy.x")) is None


def test_require_leaves_unknown_modules_alone():
    with pytest.raises(ModuleNotFoundError):
        require("no_such_module_anywhere_xyz", "x")


# -- without torch --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_artifact(tmp_path_factory):
    from danet_deploy.export.pipeline import ExportRequest, export

    path = tmp_path_factory.mktemp("pkg") / "demo-onnx"
    export(ExportRequest("danet_demo", target="onnx", input_size=(64, 64), output=path), log=lambda _: None)
    return path


def test_runtime_runs_an_onnx_artifact_without_torch(onnx_artifact, tmp_path):
    from danet_deploy import runtime

    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    np.save(tmp_path / "image.npy", image)
    with runtime.load(onnx_artifact) as session:
        expected = session.run(image)
    proc = _run(f"""
import json, numpy as np
from danet_deploy import runtime
with runtime.load({str(onnx_artifact)!r}) as session:
    mask = session.run(np.load({str(tmp_path / "image.npy")!r}))
np.save({str(tmp_path / "mask.npy")!r}, mask)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "onnx", "safetensors")
                        or m.startswith(("danet_deploy.model", "danet_deploy.export")))))
""")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []  # no torch, no model, no export loaded
    assert np.array_equal(np.load(tmp_path / "mask.npy"), expected)


def test_danet_eval_reads_the_recorded_protocol_without_torch(onnx_artifact):
    """The protocol class and the releases' table are torch-free: danet-eval on a robot reads them."""
    proc = _run(f"""
import json
from danet_deploy.manifest import read_manifest
from danet_deploy.verify.evaluate import EvalRequest, model_protocol
from danet_deploy.eval_protocol import release_protocol
p = model_protocol(read_manifest({str(onnx_artifact)!r}), EvalRequest(models=("x",), data="folder:x"))
print(p.mode, p.source, release_protocol("danet_mmseg_r50_d8_cityscapes_769").crop)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "torch"
                        or m in ("danet_deploy.model.inspect", "danet_deploy.model.mmseg_config"))))
""")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "whole default for a generated preset (769, 769)" and json.loads(lines[-1]) == []


def test_torch_backend_without_torch_names_the_extra():
    proc = _run("""
from danet_deploy import runtime
from danet_deploy.errors import MissingExtraError
try:
    runtime.load("danet_demo")
except MissingExtraError as exc:
    print("typed:", exc)
try:
    runtime.load("no_such_artifact_or_preset")
except Exception as exc:
    print("missing:", type(exc).__name__)
import danet_deploy.model as m
try:
    m.DANet
except MissingExtraError as exc:
    print("model:", exc)
""")
    assert proc.returncode == 0, proc.stderr
    assert "typed: the torch backend needs torch==2.13.0" in proc.stdout
    assert "danet-deploy[export]" in proc.stdout
    assert "missing: ArtifactError" in proc.stdout
    assert "model: danet_deploy.model.DANet needs torch==2.13.0" in proc.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["export", "--model", "danet_demo", "--target", "onnx", "--output", "{tmp}/e"],
        ["run", "--model", "danet_demo", "--output", "{tmp}/r", "{image}"],
        ["parity", "{artifact}", "--generated", "1"],
        ["bench", "--model", "danet_demo", "--engines", "onnxruntime", "--input-size", "64x64", "--output", "{tmp}/b"],
        ["demo", "--output", "{tmp}/d", "--input-size", "64x64"],
        ["train", "--steps", "1", "--output", "{tmp}/t"],
    ],
    ids=lambda argv: argv[0],
)
def test_commands_without_torch_name_the_extra(argv, tmp_path, onnx_artifact):
    """Each console script that needs torch fails with exit 2 and the extra to install, no traceback."""
    from PIL import Image

    Image.new("RGB", (64, 64)).save(tmp_path / "image.png")
    args = [a.format(tmp=tmp_path, image=tmp_path / "image.png", artifact=onnx_artifact) for a in argv]
    proc = _run(f"""
import runpy
sys.argv = {["danet-" + args[0], *args[1:]]!r}
runpy.run_module("danet_deploy.cli.{args[0]}", run_name="__main__")
""")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "danet-deploy[export]" in proc.stderr, proc.stderr


# -- the docs site --------------------------------------------------------------------------------------


def test_docs_tables_come_from_the_registry():
    """docs/targets.md's tables are written by the mkdocs hook from the registry: every entry is a row."""
    import importlib.util

    from danet_deploy.targets import engine_names, target_names

    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "scripts" / "mkdocs_hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    page = hooks.on_page_markdown("<!-- targets-table -->\n\n<!-- engines-table -->", page=None)
    for name in [*target_names(), *engine_names()]:
        assert f"| `{name}` |" in page
    assert "<!-- targets-table -->" in (ROOT / "docs" / "targets.md").read_text()


def test_the_documented_parity_import_of_the_last_release_still_works():
    """README and docs/api.md said ``from danet_deploy.parity import run_parity`` before parity moved to
    verify/: that import keeps working (the same objects), with a DeprecationWarning naming the new path."""
    code = (
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    from danet_deploy.parity import run_parity, write_report\n"
        "import danet_deploy.verify.parity as new\n"
        "assert run_parity is new.run_parity and write_report is new.write_report\n"
        "assert any(w.category is DeprecationWarning and 'verify.parity' in str(w.message) for w in caught)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
