"""Property-based fuzzing: whatever a caller or a manifest throws at the runtime, nothing but a
``danet_deploy`` error may come out (no AttributeError, TypeError, backend exception or crash),
no path a manifest names may resolve outside its folder, and what does run is finite.

A few hundred examples per property (``DANET_FUZZ_EXAMPLES`` raises it), on a 64x64 artifact.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
pytest.importorskip("onnxruntime")

from hypothesis import HealthCheck, event, given, settings  # noqa: E402 after importorskip
from hypothesis import strategies as st  # noqa: E402 after importorskip
from hypothesis.extra import numpy as hnp  # noqa: E402 after importorskip

from danet_deploy import runtime  # noqa: E402 after importorskip
from danet_deploy.errors import DanetDeployError, ManifestError  # noqa: E402 after importorskip
from danet_deploy.export import ExportRequest, export  # noqa: E402 after importorskip
from danet_deploy.manifest import artifact_path  # noqa: E402 after importorskip

EXAMPLES = int(os.environ.get("DANET_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    path, _ = export(
        ExportRequest("danet_demo", input_size=(64, 64), dynamic=True, output=tmp_path_factory.mktemp("fuzz") / "art"),
        log=lambda _: None,
    )
    return path


@pytest.fixture(scope="module")
def session(artifact):
    with runtime.load(artifact, threads=1) as s:
        yield s


# -- Session.infer / Session.run inputs ------------------------------------------------------------
_DTYPES = st.sampled_from([np.float32, np.float64, np.float16, np.uint8, np.int32, np.int64, np.bool_, np.complex64])
_VALUES = st.one_of(
    st.just(0.0),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([1e38, -1e38, 3.0e38, 1e-45]),
)


def _arrays(max_side: int) -> st.SearchStrategy:
    """Arrays of any dtype and rank 0-4, sides tiny or network-sized (at most ~25k elements)."""
    sides = st.integers(0, 4) | st.integers(30, max_side)
    shapes = st.lists(sides, max_size=4).filter(lambda shape: int(np.prod(shape)) <= 3 * max_side * max_side * 2)
    return st.tuples(_DTYPES, shapes).flatmap(lambda ds: hnp.arrays(ds[0], tuple(ds[1]), elements=_elements(ds[0])))


def _elements(dtype) -> st.SearchStrategy:
    if np.issubdtype(dtype, np.floating):
        return st.floats(allow_nan=True, allow_infinity=True, width=min(64, np.dtype(dtype).itemsize * 8))
    if dtype is np.bool_:
        return st.booleans()
    if np.issubdtype(dtype, np.complexfloating):
        return st.complex_numbers(max_magnitude=1e3, width=64)
    info = np.iinfo(dtype)
    return st.integers(int(info.min), int(info.max))


def _nchw(data) -> np.ndarray:
    """Mostly well-formed float32 NCHW tensors with hostile sizes and values."""
    n = data.draw(st.integers(1, 2))
    h = data.draw(st.integers(1, 80) | st.integers(32, 80))
    w = data.draw(st.integers(1, 80) | st.integers(32, 80))
    fill = data.draw(st.sampled_from(["normal", "normal", "huge", "nan", "inf", "zeros"]))
    x = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).standard_normal((n, 3, h, w)).astype(np.float32)
    if fill == "huge":
        x *= np.float32(1e37)
    elif fill in ("nan", "inf"):
        x.flat[data.draw(st.integers(0, x.size - 1))] = np.nan if fill == "nan" else np.inf
    elif fill == "zeros":
        x[:] = 0
    return x


@FUZZ
@given(st.data())
def test_infer_raises_only_typed_errors(session, data):
    kind = data.draw(st.sampled_from(["nchw"] * 3 + ["array", "other"]))
    if kind == "nchw":
        tensor = _nchw(data)
    elif kind == "array":
        tensor = data.draw(_arrays(70))
    else:
        tensor = data.draw(st.one_of(st.none(), st.text(max_size=5), st.lists(st.floats(), max_size=4)))
    try:
        logits = session.infer(tensor)
    except DanetDeployError as exc:
        event(f"refused: {type(exc).__name__}")
        return
    event("ran")
    assert logits.dtype == np.float32 and np.isfinite(logits).all()
    assert logits.shape == (tensor.shape[0], session.num_classes, *tensor.shape[2:])


def _image(data) -> np.ndarray:
    h, w = data.draw(st.integers(1, 90)), data.draw(st.integers(1, 90))
    return np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).integers(0, 256, (h, w, 3), dtype=np.uint8)


@FUZZ
@given(st.data())
def test_run_raises_only_typed_errors(session, data):
    images = data.draw(
        st.one_of(
            st.builds(_image, st.data()),
            st.lists(st.builds(_image, st.data()), min_size=0, max_size=3),
            _arrays(40),
            st.none(),
            st.integers(),
            st.lists(st.one_of(st.none(), st.text(max_size=3)), max_size=2),
        )
    )
    tile = data.draw(st.one_of(st.none(), st.tuples(st.integers(-2, 80), st.integers(-2, 80))))
    try:
        out = session.run(images, tile=tile)
    except DanetDeployError as exc:
        event(f"refused: {type(exc).__name__}")
        return
    event("ran")
    masks = out if isinstance(out, list) else [out]
    for mask in masks:
        assert mask.dtype == np.uint8 and mask.max() < session.num_classes


# -- manifest contents ----------------------------------------------------------------------------
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
_PATHS = st.one_of(
    st.sampled_from(
        [
            "model.onnx",
            "../model.onnx",
            "/etc/passwd",
            "./model.onnx",
            "a/../model.onnx",
            "",
            "model.onnx/",
            "..",
            ".",
            "C:\\model.onnx",
            "sub\\..\\..\\x",
            "model.onnx\x00",
            "//model.onnx",
            "link_out",
            "link_in",
            "loop",
            "manifest.json",
        ]
    ),
    st.text(alphabet=st.sampled_from(list("ab./\\:~\x00 é")), max_size=12),
)
_SIZES = st.one_of(
    st.integers(-5, 5),
    st.integers(2**31 - 2, 2**63),
    st.sampled_from([64, 32, 1, 0, 10**400]),
    st.text(max_size=3),
    st.none(),
    st.floats(),
)
_FIELDS = (
    "format_version",
    "target",
    "backend",
    "precision",
    "primary",
    "model",
    "preprocessing",
    "input",
    "output",
    "files",
    "tools",
    "export",
    "checkpoint",
    "calibration",
    "parity",
    "extra",
)


def _mutate(data, manifest: dict) -> dict:
    """Change one to three things: a field's type, a path, a size, a shape or a preprocessing value."""
    for _ in range(data.draw(st.integers(1, 3))):
        kind = data.draw(st.sampled_from(["field", "primary", "files", "shape", "bound", "prep", "model", "drop"]))
        if kind == "field":
            manifest[data.draw(st.sampled_from(_FIELDS))] = data.draw(_JSON)
        elif kind == "primary":
            manifest["primary"] = data.draw(_PATHS)
        elif kind == "files" and isinstance(manifest.get("files"), dict):
            name = data.draw(_PATHS)
            manifest["files"][name] = data.draw(
                st.one_of(st.just(manifest["files"].get("model.onnx", "")), st.text(max_size=64), _JSON)
            )
        elif kind == "shape" and isinstance(manifest.get("input"), dict):
            manifest["input"]["shape"] = data.draw(st.lists(_SIZES, max_size=5))
        elif kind == "bound" and isinstance(manifest.get("input"), dict):
            key = data.draw(st.sampled_from(["min_shape", "max_shape", "opt_shape"]))
            manifest["input"][key] = data.draw(st.one_of(st.lists(_SIZES, max_size=5), _JSON))
        elif kind == "prep" and isinstance(manifest.get("preprocessing"), dict):
            key = data.draw(st.sampled_from(["mean", "std", "color_order"]))
            manifest["preprocessing"][key] = data.draw(
                st.one_of(_JSON, st.lists(st.floats() | _SIZES, min_size=3, max_size=3))
            )
        elif kind == "model" and isinstance(manifest.get("model"), dict):
            key = data.draw(st.sampled_from(["num_classes", "class_names", "output_stride", "name"]))
            manifest["model"][key] = data.draw(st.one_of(_SIZES, _JSON))
        elif kind == "drop" and manifest:
            manifest.pop(data.draw(st.sampled_from(sorted(manifest))), None)
    return manifest


@pytest.fixture(scope="module")
def playground(artifact, tmp_path_factory):
    """A copy of the artifact with links that point outside, inside, and to themselves."""
    root = tmp_path_factory.mktemp("play")
    (root / "outside.onnx").write_bytes((artifact / "model.onnx").read_bytes())
    folder = root / "art"
    shutil.copytree(artifact, folder)
    (folder / "link_out").symlink_to(root / "outside.onnx")
    (folder / "link_in").symlink_to("model.onnx")
    (folder / "loop").symlink_to("loop")
    return folder, json.loads((folder / "manifest.json").read_text())


@FUZZ
@given(st.data())
def test_manifest_contents_raise_only_typed_errors(playground, data):
    folder, good = playground
    manifest = _mutate(data, json.loads(json.dumps(good)))
    (folder / "manifest.json").write_text(json.dumps(manifest))
    try:
        try:
            session = runtime.load(folder, threads=1, verify=data.draw(st.booleans()))
        except DanetDeployError as exc:
            event(f"load refused: {type(exc).__name__}")
            return
        with session:
            # anything that loaded runs only files inside the folder
            assert Path(folder / session.manifest.primary).resolve().is_relative_to(folder.resolve())
            try:
                mask = session.run(np.zeros((40, 48, 3), np.uint8))
            except DanetDeployError as exc:
                event(f"run refused: {type(exc).__name__}")
                return
            event("loaded and ran")
            assert mask.shape == (40, 48)
    finally:
        (folder / "manifest.json").write_text(json.dumps(good))


@FUZZ
@given(_PATHS)
def test_artifact_path_never_leaves_the_folder(playground, name):
    folder = playground[0]
    try:
        path = artifact_path(folder, name)
    except ManifestError:
        return
    assert path.resolve().is_relative_to(folder.resolve()) and path.resolve() != folder.resolve()


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        np.uint8, hnp.array_shapes(min_dims=4, max_dims=4, min_side=1, max_side=9).map(lambda s: (s[0], s[1], s[2], 3))
    ),
    st.tuples(*[st.floats(-2, 2, allow_nan=False, width=32)] * 3),
    st.tuples(*[st.floats(0.0625, 4, allow_nan=False, width=32)] * 3),
)
def test_lookup_normalize_is_bit_identical_to_the_arithmetic(batch, mean, std):
    """The table-driven normalise must give exactly ``(x / 255 - mean) / std`` in float32, NCHW."""
    from danet_deploy.runtime.preprocess import normalize

    reference = (batch.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    reference = reference.transpose(0, 3, 1, 2)
    got = normalize(list(batch), mean, std)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, reference)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=3, max_dims=4, min_side=1, max_side=9),
        elements=st.floats(width=32) | st.sampled_from([0.0, 1.0, -1.0]),
    )
)
def test_running_max_mask_is_numpy_argmax(logits):
    """The plane-by-plane arg-max equals ``np.argmax`` over the class axis: ties (first wins), +-Inf, NaN."""
    from danet_deploy.runtime.preprocess import logits_to_mask

    got = logits_to_mask(logits)
    assert got.dtype == (np.uint8 if logits.shape[-3] <= 255 else np.int32)
    np.testing.assert_array_equal(got, np.argmax(logits, axis=-3))


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=9),
        elements=st.floats(-1e6, 1e6, width=32) | st.sampled_from([0.0, 1.0, float("nan")]),
    ),
    st.tuples(st.integers(1, 40), st.integers(1, 40)),
    st.integers(1, 4000),
)
def test_banded_mask_is_the_whole_resize_then_argmax(logits, size, band_bytes):
    """``mask_at_size`` (rows resized and arg-maxed band by band) equals resizing the whole logits
    and arg-maxing them, bit for bit, for any band height (NaN included)."""
    from danet_deploy.runtime.preprocess import logits_to_mask, mask_at_size, resize_logits

    want = logits_to_mask(resize_logits(logits, size))
    got = mask_at_size(logits, size, band_bytes=band_bytes)
    assert got.shape == tuple(size) and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("classes", [2, 255, 256, 300])
def test_host_argmax_and_graph_masks_agree_on_the_mask_type(classes):
    """The host arg-max and an exported mask graph use one rule (uint8 up to 255 classes), so a
    served model's declared output type matches what every artifact returns."""
    from danet_deploy.outputs import mask_dtype
    from danet_deploy.runtime.preprocess import logits_to_mask

    logits = np.zeros((classes, 2, 2), np.float32)
    logits[-1] = 1.0
    mask = logits_to_mask(logits)
    assert mask.dtype == np.dtype(mask_dtype(classes)) and (mask == classes - 1).all()
