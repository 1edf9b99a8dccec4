"""Hand-edited TensorRT bundle and engine manifests are schema-checked like every artifact's.

An empty, missing or string ``profiles``, a missing ``attention``, chunks written as a string or
``extra.tensorrt`` as a string stopped ``danet-export --target tensorrt --from`` with an
IndexError, KeyError, AttributeError or TypeError (exit 1). Each is now a ManifestError naming
the field (exit 2), and hypothesis mutates the entry to look for any other way through.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from danet_deploy.errors import DanetDeployError, ManifestError
from danet_deploy.manifest import Manifest, check_schema


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A prepared FP32 TensorRT bundle of danet_demo (static 32x32; prepared anywhere, no TensorRT)."""
    from danet_deploy.export import export
    from danet_deploy.export.pipeline import ExportRequest

    out = tmp_path_factory.mktemp("trt") / "bundle"
    path, _ = export(
        ExportRequest(model="danet_demo", target="tensorrt", precision="fp32", input_size=(32, 32), output=str(out)),
        log=lambda _m: None,
    )
    return Path(path)


def _edited(bundle: Path, dest: Path, edit) -> Path:
    shutil.copytree(bundle, dest)
    data = json.loads((dest / "manifest.json").read_text())
    edit(data["extra"]["tensorrt"]) if callable(edit) else data["extra"].__setitem__("tensorrt", edit)
    (dest / "manifest.json").write_text(json.dumps(data))
    return dest


EDITS = {
    "empty profiles": (lambda t: t.__setitem__("profiles", []), "profiles must be a non-empty list"),
    "missing profiles": (lambda t: t.pop("profiles"), "profiles must be a non-empty list"),
    "string profiles": (lambda t: t.__setitem__("profiles", "1x3x32x32"), "profiles must be a non-empty list"),
    "string profile": (lambda t: t.__setitem__("profiles", ["x"]), r"profiles\[0\] must be an object"),
    "profile max missing": (lambda t: t["profiles"][0].pop("max"), r"profiles\[0\].max must be 4 positive"),
    "profile min above max": (lambda t: t["profiles"][0].__setitem__("min", [1, 3, 64, 64]), "min <= opt <= max"),
    "missing attention": (lambda t: t.pop("attention"), "attention must be an object"),
    "string chunks": (lambda t: t["attention"].__setitem__("chunks", "4"), "attention.chunks must be an integer"),
    "zero chunks": (lambda t: t["attention"].__setitem__("chunks", 0), "attention.chunks must be an integer"),
    "odd stride": (lambda t: t["attention"].__setitem__("output_stride", 7), "output_stride must be 4, 8"),
    "string extra.tensorrt": ("prepared", "extra.tensorrt must be an object"),
    "unknown stage": (lambda t: t.__setitem__("stage", "built"), "stage must be 'prepared' or 'engine'"),
    "list onnx name": (lambda t: t.__setitem__("onnx", ["model.onnx"]), "onnx must be a non-empty string"),
}


@pytest.mark.parametrize("case", list(EDITS))
def test_hand_edited_bundles_are_refused_naming_the_field(bundle, tmp_path, case, capsys):
    from danet_deploy.cli.export import main as export_main

    edit, words = EDITS[case]
    folder = _edited(bundle, tmp_path / "bundle", edit)
    assert export_main(["--target", "tensorrt", "--from", str(folder), "--output", str(tmp_path / "engine")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "extra.tensorrt" in err
    with pytest.raises(ManifestError, match=words):
        Manifest.from_dict(json.loads((folder / "manifest.json").read_text()))
    assert not (tmp_path / "engine").exists()


def test_the_unedited_bundle_and_an_engine_manifest_pass(bundle):
    data = json.loads((bundle / "manifest.json").read_text())
    check_schema(data)
    engine = copy.deepcopy(data)
    engine["extra"]["tensorrt"] = {
        "stage": "engine",
        "version": "10.3.0",
        "gpu": "Orin",
        "compute_capability": "8.7",
        "dla_core": None,
        "hardware_compatibility": "none",
        "version_compatible": False,
        "profiles": data["extra"]["tensorrt"]["profiles"],
        "attention": data["extra"]["tensorrt"]["attention"],
    }
    check_schema(engine)
    engine["extra"]["tensorrt"]["dla_core"] = "zero"
    with pytest.raises(ManifestError, match="dla_core"):
        check_schema(engine)


SCALARS = st.none() | st.booleans() | st.integers(-5, 2**33) | st.floats(allow_nan=True) | st.text(max_size=8)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
PATHS = [
    ("stage",),
    ("profiles",),
    ("profiles", 0),
    ("profiles", 0, "min"),
    ("profiles", 0, "opt"),
    ("profiles", 0, "max"),
    ("profiles", 0, "max", 2),
    ("profiles", 0, "input"),
    ("attention",),
    ("attention", "chunks"),
    ("attention", "output_stride"),
    ("attention", "feature_channels"),
    ("onnx",),
    ("dla_core",),
    ("precision",),
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.sampled_from(PATHS), JSON | st.just("<delete>")), min_size=1, max_size=3))
def test_fuzzed_bundle_manifests_build_or_fail_typed(bundle, tmp_path_factory, edits):
    """Whatever the entry holds, the build from the bundle stops with a typed error (here: no TensorRT,
    BackendUnavailableError, once every check before the build has passed), never another exception."""
    from danet_deploy.export.tensorrt_build import build_engine_from_bundle

    folder = tmp_path_factory.mktemp("fuzz") / "bundle"

    def edit(info: dict) -> None:
        for path, value in edits:
            parent = info
            for key in path[:-1]:
                try:
                    parent = parent[key]
                except (KeyError, IndexError, TypeError):
                    return
            try:
                if value == "<delete>":
                    del parent[path[-1]]
                else:
                    parent[path[-1]] = value
            except (KeyError, IndexError, TypeError):
                return

    _edited(bundle, folder, edit)
    try:
        build_engine_from_bundle(folder, folder.with_name("engine"), log=lambda _m: None)
    except DanetDeployError:
        pass
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)
