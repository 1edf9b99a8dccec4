"""Session and load() against a hostile caller: close() racing calls, weights files changed after
load, manifests that disagree with their engine, and malformed arguments. Each test tries the bad
thing and expects a typed error (or the documented behaviour), never a bare exception or a crash."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from danet_deploy import runtime
from danet_deploy.errors import ConfigError, InputError, ManifestError, SessionClosedError
from danet_deploy.export import ExportRequest, export

IMAGE = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    path, _ = export(
        ExportRequest("danet_demo", input_size=(64, 64), output=tmp_path_factory.mktemp("s") / "art"),
        log=lambda _: None,
    )
    return path


def _edited(artifact, tmp_path, edit) -> str:
    copy = tmp_path / "edited"
    shutil.copytree(artifact, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return str(copy)


def test_close_waits_for_a_call_inside_the_engine_and_refuses_later_ones(artifact):
    session = runtime.load(artifact)
    engine_infer = session.backend.infer
    entered = threading.Event()

    def slow_infer(tensor):
        entered.set()
        time.sleep(0.3)
        return engine_infer(tensor)

    session.backend.infer = slow_infer
    results: list = []
    worker = threading.Thread(target=lambda: results.append(session.run(IMAGE)))
    worker.start()
    assert entered.wait(30)
    session.close()  # must not free the engine under the running call
    worker.join(30)
    assert len(results) == 1 and results[0].shape == (64, 64)
    with pytest.raises(SessionClosedError):
        session.run(IMAGE)


def test_threads_racing_close_see_results_or_session_closed_only(artifact):
    session = runtime.load(artifact)
    errors: list[BaseException] = []
    done = []

    def loop():
        for _ in range(200):
            try:
                session.run(IMAGE)
                done.append(1)
            except SessionClosedError:
                return
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    session.close()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]


def test_openvino_session_survives_its_weights_file_changing_after_load(tmp_path):
    pytest.importorskip("openvino")
    path, _ = export(
        ExportRequest("danet_demo", target="openvino", input_size=(64, 64), output=tmp_path / "ov"), log=lambda _: None
    )
    with runtime.load(path) as session:
        before = session.run(IMAGE)
        with open(path / "model.bin", "r+b") as f:  # an update copied over the file in place
            f.write(b"\x7f" * os.path.getsize(path / "model.bin"))
        np.testing.assert_array_equal(session.run(IMAGE), before)
        os.truncate(path / "model.bin", 0)  # mapped weights would end the process with SIGBUS here
        np.testing.assert_array_equal(session.run(IMAGE), before)


def test_manifest_naming_outputs_the_engine_lacks_is_a_manifest_error(artifact, tmp_path):
    def claim_mask(m):
        m["output"]["tensors"] = [{"name": "mask", "shape": [1, 64, 64], "dtype": "uint8"}]

    with runtime.load(_edited(artifact, tmp_path, claim_mask)) as session, pytest.raises(ManifestError, match="mask"):
        session.run(IMAGE)


def test_manifest_class_count_is_checked_against_the_engine(artifact, tmp_path):
    def three_classes(m):
        m["model"]["num_classes"] = 3

    with runtime.load(_edited(artifact, tmp_path, three_classes)) as session:
        with pytest.raises(ManifestError, match="num_classes 3"):
            session.run(IMAGE)
        with pytest.raises(ManifestError, match="num_classes 3"):
            session.run(IMAGE, tile=(64, 64))


@pytest.mark.parametrize("chunks", ["x", 1e300, [1], 0])
def test_manifest_attention_chunks_must_be_a_positive_integer(artifact, tmp_path, chunks):
    def edit(m):
        m["model"]["attention_chunks"] = chunks

    with pytest.raises(ManifestError, match="attention_chunks"):
        runtime.load(_edited(artifact, tmp_path, edit))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(tile=64),
        dict(tile=("a", "b")),
        dict(tile=(64, 64), stride=(64,)),
        dict(tile=(64, 64), stride=(1.5, 1.5)),
        dict(tile=(64.9, 64.9)),
        dict(tile=(0, 64)),
    ],
)
def test_malformed_windows_are_config_errors(artifact, kwargs):
    with runtime.load(artifact) as session, pytest.raises(ConfigError, match="tile|stride"):
        session.run(IMAGE, **kwargs)


def test_an_empty_batch_is_an_input_error_like_an_empty_list(artifact):
    with runtime.load(artifact) as session:
        for empty in (np.zeros((0, 64, 64, 3), np.uint8), []):
            with pytest.raises(InputError, match="empty"):
                session.run(empty)


@pytest.mark.parametrize(
    "path, kwargs, named",
    [
        (None, {}, "load()"),
        (123, {}, "load()"),
        ("", {}, "load()"),
        ("ART", dict(backend=123), "backend"),
        ("ART", dict(optimization="foo"), "optimization"),
        ("ART", dict(providers=123), "providers"),
        ("ART", dict(providers=[None]), "providers"),
        ("ART", dict(threads=5000), "threads"),
        ("ART", dict(threads="abc"), "threads"),
    ],
)
def test_load_arguments_are_checked(artifact, path, kwargs, named):
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(")", r"\)")):
        runtime.load(artifact if path == "ART" else path, **kwargs)


@pytest.mark.parametrize("kwargs, named", [(dict(max_shapes="x"), "max_shapes"), (dict(config=[1]), "config")])
def test_openvino_options_are_checked(artifact, kwargs, named):
    pytest.importorskip("openvino")
    with pytest.raises(ConfigError, match=named):
        runtime.load(artifact, backend="openvino", **kwargs)


def test_infer_refuses_unnormalised_pixels_and_takes_what_preprocessing_gives(artifact):
    """Raw 0-255 floats (the commonest infer() mistake) would give a confident wrong mask: refused,
    naming the fix. Every tensor the artifact's own preprocessing makes, and ordinary noise, passes."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from danet_deploy.runtime.preprocess import preprocess

    with runtime.load(artifact) as session:
        low, high = session.normalized_range()
        assert low == pytest.approx((0 - 0.485) / 0.229) and high == pytest.approx((1 - 0.406) / 0.225)
        raw = IMAGE.transpose(2, 0, 1)[None].astype(np.float32)
        with pytest.raises(InputError, match="raw 0-255 pixels.*run\\(\\)"):
            session.infer(raw)
        with pytest.raises(InputError, match="far outside"):
            session.infer(-raw)
        noise = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32) * 1.5
        assert np.isfinite(session.infer(noise)).all()
        session.check_inputs = False  # on purpose: passed through
        assert session.infer(raw).shape == (1, session.num_classes, 64, 64)
        session.check_inputs = True

        @settings(max_examples=25, deadline=None)
        @given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 2**32 - 1))
        def every_preprocessed_image_passes(a, b, seed):
            lo, hi = min(a, b), max(a, b)
            image = np.random.default_rng(seed).integers(lo, hi + 1, (64, 64, 3), dtype=np.uint8)
            session.check_tensor(preprocess([image], session.preprocessing))

        every_preprocessed_image_passes()
