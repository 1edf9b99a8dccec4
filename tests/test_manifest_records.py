"""The manifest's typed section records: committed manifests (one written by danet-export before the
records existed, one in the older forms: no --emit tensors, one checkpoint digest) load and write
back the same JSON byte for byte; a section validates in ``from_dict`` and names the key path; and
hypothesis mutates valid manifests (a key dropped, a value of the wrong type, an extra level of
nesting) to show that reading one raises :class:`ManifestError` or nothing, never
``KeyError``/``TypeError``/``AttributeError``, and that what is read writes back unchanged."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from danet_deploy.errors import ManifestError
from danet_deploy.manifest import (
    CheckpointInfo,
    ExportInfo,
    InputInfo,
    Manifest,
    ModelInfo,
    OutputInfo,
    PreprocessingInfo,
    check_schema,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "manifests"
CURRENT = FIXTURES / "onnx_fp32.json"  # written by danet-export (format 1) before the sections were records
OLDER = FIXTURES / "older_onnx_checkpoint.json"  # older writers' forms: no output.tensors, one checkpoint digest


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", [CURRENT, OLDER], ids=["current", "older"])
def test_committed_manifests_load_and_write_back_byte_for_byte(path):
    text = path.read_text(encoding="utf-8")
    manifest = Manifest.from_dict(json.loads(text), source=str(path))
    assert manifest.to_dict() == json.loads(text)
    assert json.dumps(manifest.to_dict(), indent=2) + "\n" == text  # what Manifest.write puts on disk


def test_records_read_the_committed_manifest():
    manifest = Manifest.from_dict(_load(CURRENT))
    assert manifest.model.name == "danet_demo" and manifest.num_classes == 8 and manifest.model.output_stride == 8
    assert manifest.class_names[0] == "road" and manifest.model.weights == "danet_demo.safetensors"
    assert manifest.input.shape == (1, 3, 64, 64) and manifest.input.dtype == "float32"
    assert manifest.input.accept == "float" and manifest.input.layout == "NCHW" and manifest.input.max_shape is None
    assert manifest.output.names == ("logits",) and manifest.output.emit == "logits"
    assert manifest.preprocessing.std == (0.229, 0.224, 0.225) and manifest.preprocessing.color_order == "RGB"
    assert manifest.export.input_size == (64, 64) and manifest.export.opset == 17
    assert manifest.export.attention_plan is not None and manifest.export.attention_plan["chunks"] == 1
    assert manifest.checkpoint is None and manifest.extra["attention"]["form"] == "fused"


def test_records_read_the_older_forms():
    manifest = Manifest.from_dict(_load(OLDER))
    assert manifest.output.names == ("logits",) and manifest.output.emit is None  # before --emit
    assert [t.name for t in manifest.output.emitted_tensors] == ["logits"]
    assert manifest.checkpoint is not None and manifest.checkpoint.carried_digest == "1" * 64  # the one digest
    assert manifest.checkpoint.test_protocol is not None and manifest.export.test_protocol is None
    assert manifest.model.attention_chunks == 1 and manifest.export.accept is None


def test_a_section_is_still_its_json_mapping():
    """Functions that take a section's JSON (preprocess, recorded_protocol) and code written
    before the records read the same keys and values."""
    data = _load(CURRENT)
    manifest = Manifest.from_dict(data)
    assert manifest.input == data["input"] and dict(manifest.preprocessing) == data["preprocessing"]
    assert {**manifest.output}["tensors"] == data["output"]["tensors"]
    copied = manifest.input.to_dict()
    copied["shape"][0] = 99  # a copy: the record is not changed through it
    assert manifest.input.shape[0] == 1 and manifest.to_dict() == data


def test_a_manifest_built_from_dicts_gets_checked_records():
    data = _load(CURRENT)
    manifest = Manifest(
        target="onnx",
        backend="onnxruntime",
        precision="fp32",
        primary="model.onnx",
        model=data["model"],
        preprocessing=data["preprocessing"],
        input=data["input"],
        output=data["output"],
    )
    assert isinstance(manifest.input, InputInfo) and isinstance(manifest.export, ExportInfo)
    assert manifest.export.to_dict() == {} and manifest.output.names == ("logits",)
    assert dataclasses.replace(manifest, output={**manifest.output, "emit": "mask"}).output.emit == "mask"
    with pytest.raises(ManifestError, match=r"input\.shape"):
        dataclasses.replace(manifest, input={**manifest.input, "shape": [1, 3, 64]})


@pytest.mark.parametrize(
    "path,value,words",
    [
        (("model", "name"), 3, r"model\.name must be a non-empty string"),
        (("model", "num_classes"), "8", r"model\.num_classes must be an integer"),
        (("preprocessing", "std"), [0.2, 0.0, 0.2], r"preprocessing\.std must not be 0"),
        (("input", "shape"), [1, 3, 0, 64], r"input\.shape must be 4 dims"),
        (("input", "accept"), ["rgb8"], r"input\.accept must be one of"),
        (("output", "tensors", 0, "shape"), [1, 8], r"output\.tensors\[0\]\.shape must be 3 or 4 dims"),
        (("export", "input_size"), [64], r"export\.input_size must be 2 positive integers"),
        (("checkpoint",), {"path": 3}, r"checkpoint\.path must be a string"),
        (("checkpoint",), [], r"'checkpoint' must be an object"),
        (("export",), None, r"'export' must be an object"),
    ],
)
def test_a_bad_value_is_a_manifest_error_naming_its_key_path_and_the_fix(path, value, words):
    data = _load(CURRENT)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ManifestError, match=words) as info:
        Manifest.from_dict(data, source="art/manifest.json")
    assert str(info.value).startswith("art/manifest.json: ") and str(info.value).endswith("re-export the artifact")


@pytest.mark.parametrize(
    "record,key",
    [
        (ModelInfo, "model"),
        (PreprocessingInfo, "preprocessing"),
        (InputInfo, "input"),
        (OutputInfo, "output"),
        (ExportInfo, "export"),
    ],
)
def test_each_section_round_trips_alone(record, key):
    data = _load(CURRENT)[key]
    assert record.from_dict(data).to_dict() == data
    with pytest.raises(ManifestError, match=f"'{key}' must be an object"):
        record.from_dict([data])
    assert CheckpointInfo.from_dict(_load(OLDER)["checkpoint"]).to_dict() == _load(OLDER)["checkpoint"]


# -- property-based: valid manifests round-trip, mutated ones raise ManifestError or nothing --------
_NAMES = st.sampled_from(["batch", "height", "width", "N"])
_DIM = st.one_of(st.integers(1, 4096), _NAMES)
_EXTRA_KEYS = st.dictionaries(
    st.sampled_from(["note", "x_future", "comment"]),
    st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=3)),
    max_size=2,
)


@st.composite
def valid_manifests(draw) -> dict[str, Any]:
    """The committed manifests with the values the runtime reads varied within their rules, the
    older optional keys present or not, and unknown keys added to the open sections."""
    data = _load(draw(st.sampled_from([CURRENT, OLDER])))
    classes = draw(st.integers(1, 300))
    data["model"].update(
        num_classes=classes,
        class_names=[f"c{i}" for i in range(classes)],
        output_stride=draw(st.sampled_from([4, 8, 16, 32])),
        attention_chunks=draw(st.one_of(st.none(), st.integers(1, 64))),
    )
    data["preprocessing"]["std"] = draw(st.lists(st.floats(0.01, 100), min_size=3, max_size=3))
    data["preprocessing"]["color_order"] = draw(st.sampled_from(["RGB", "BGR", "rgb"]))
    if draw(st.booleans()):  # an --accept graph: a uint8 NHWC image input
        shape = [draw(_DIM), draw(_DIM), draw(_DIM), 3]
        data["input"].update(
            name="image", dtype="uint8", layout="NHWC", accept=draw(st.sampled_from(["rgb8", "bgr8"])), shape=shape
        )
    else:
        data["input"]["shape"] = [draw(_DIM), 3, draw(_DIM), draw(_DIM)]
    if draw(st.booleans()):
        data["input"]["max_shape"] = draw(st.lists(st.integers(1, 4096), min_size=4, max_size=4))
    out = [draw(_DIM), classes, draw(_DIM), draw(_DIM)]
    data["output"]["shape"] = out
    if "tensors" in data["output"]:
        data["output"]["tensors"] = [{"name": "logits", "shape": list(out), "dtype": "float32"}]
    for key in ("model", "input", "output", "export"):
        data[key].update(draw(_EXTRA_KEYS))
    data["export"]["input_size"] = draw(st.one_of(st.none(), st.lists(st.integers(1, 4096), min_size=2, max_size=2)))
    return data


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into a JSON value (list items by index)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _paths(item, (*prefix, i))
    return found


def _holds(parent: Any, key: Any) -> bool:
    """Whether ``parent`` (a JSON object or list) has ``key``."""
    if isinstance(parent, dict):
        return key in parent
    return isinstance(parent, list) and isinstance(key, int) and key < len(parent)


_WRONG = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True),
    st.text(max_size=4),
    st.lists(st.integers(0, 3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


#: the keys the records read (set when absent, so a wrong type is tried there too)
_READ = [
    (key,)
    for key in (
        "target",
        "backend",
        "precision",
        "primary",
        "files",
        "tools",
        "checkpoint",
        "calibration",
        "parity",
        "extra",
        "format_version",
    )
] + [
    (section, key)
    for section, keys in {
        "model": ModelInfo,
        "preprocessing": PreprocessingInfo,
        "input": InputInfo,
        "output": OutputInfo,
        "export": ExportInfo,
        "checkpoint": CheckpointInfo,
    }.items()
    for key in [f.name for f in dataclasses.fields(keys) if f.name != "raw"]
]


def _mutate(data, manifest: dict[str, Any]) -> dict[str, Any]:
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(manifest)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths) | st.sampled_from(_READ))
        parent: Any = manifest
        for key in path[:-1]:
            parent = parent[key] if _holds(parent, key) and isinstance(parent[key], (dict, list)) else None
            if parent is None:
                break
        kind = data.draw(st.sampled_from(["drop", "wrong type", "nest in a list", "nest in an object"]))
        if parent is None or not (_holds(parent, path[-1]) or (kind == "wrong type" and isinstance(parent, dict))):
            continue
        if kind == "drop":
            del parent[path[-1]]
        elif kind == "wrong type":
            parent[path[-1]] = data.draw(_WRONG)
        elif kind == "nest in a list":
            parent[path[-1]] = [parent[path[-1]]]
        else:
            parent[path[-1]] = {"value": parent[path[-1]]}
    return manifest


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifest=valid_manifests())
def test_valid_manifests_round_trip(manifest):
    check_schema(manifest)  # the composition of the sections' checks
    record = Manifest.from_dict(copy.deepcopy(manifest))
    assert record.to_dict() == manifest and list(record.to_dict()) == list(manifest)  # keys in their order
    assert Manifest.from_dict(record.to_dict()).to_dict() == manifest
    assert (
        record.input.shape == tuple(manifest["input"]["shape"])
        and record.num_classes == manifest["model"]["num_classes"]
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), manifest=valid_manifests())
def test_mutated_manifests_raise_only_manifest_errors(data, manifest):
    mutated = _mutate(data, manifest)
    try:
        record = Manifest.from_dict(copy.deepcopy(mutated), source="m.json")
    except ManifestError as exc:  # anything else (KeyError, TypeError, AttributeError, ...) fails the test
        assert str(exc).startswith("m.json: ")
        return
    written = record.to_dict()  # what was read writes back unchanged; what was dropped gets its default
    assert all(written[k] == v for k, v in mutated.items() if k in written)
    assert Manifest.from_dict(written).to_dict() == written
