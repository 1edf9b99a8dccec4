"""A hostile-but-realistic user: odd paths, hand-edited manifests, kills, threads, huge inputs.

One test (or a few) per defect of the hardening issue, numbered as there. Each asserts the typed
error, exit code 2 from the CLIs, and that nothing outside the output folder changed (a snapshot
of the surrounding folder before and after).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from danet_deploy import runtime  # noqa: E402
from danet_deploy.errors import (  # noqa: E402
    ArtifactError, CalibrationError, CheckpointError, ConfigError, InputError, ManifestError, NonFiniteOutputError,
    SessionClosedError)
from danet_deploy.export import ExportRequest, export  # noqa: E402

MODEL = "danet_demo"


def _quiet(_: str) -> None:
    pass


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` with the sha256 of files (``dir``/``link -> target`` otherwise)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            out[rel] = f"link -> {os.readlink(path)}"
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """A static 64x64 ONNX artifact of danet_demo (exported once; tests copy it before changing it)."""
    path, _ = export(ExportRequest(MODEL, input_size=(64, 64), output=tmp_path_factory.mktemp("a") / "art"), log=_quiet)
    return path


@pytest.fixture(scope="module")
def dynamic_artifact(tmp_path_factory):
    path, _ = export(ExportRequest(MODEL, input_size=(64, 64), dynamic=True,
                                   output=tmp_path_factory.mktemp("d") / "dyn"), log=_quiet)
    return path


def _copy(artifact: Path, dest: Path) -> Path:
    shutil.copytree(artifact, dest)
    return dest


def _edit_manifest(folder: Path, **changes) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def in_threads(work, count: int = 8, timeout_s: float = 120.0) -> list[BaseException]:
    """Run ``work(i)`` in ``count`` threads released together by a barrier; the exceptions they raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def worker(i: int) -> None:
        try:
            barrier.wait()
            work(i)
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s)
    return errors


def _cli(name: str, argv: list[str]) -> int:
    module = __import__(f"danet_deploy.cli.{name}", fromlist=["main"])
    return module.main(argv)


@contextlib.contextmanager
def read_only(path: Path):
    """Make ``path`` read-only for this process: chmod for a normal user, a read-only bind mount as root."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    if shutil.which("mount") is None or subprocess.run(["mount", "--bind", str(path), str(path)],
                                                       capture_output=True).returncode != 0:
        pytest.skip("running as root without the right to bind-mount: cannot make a read-only folder")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], capture_output=True).returncode != 0:
            pytest.skip("cannot remount read-only here")
        yield path
    finally:
        subprocess.run(["umount", str(path)], capture_output=True)


def _image(path: Path, hw=(40, 50), seed=0) -> Path:
    from PIL import Image

    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)).save(path)
    return path


# -- 1. manifest paths stay inside the artifact folder ---------------------------------------------
def test_1_absolute_primary_outside_the_folder_is_refused(artifact, tmp_path, capsys):
    evil = tmp_path / "elsewhere" / "evil.onnx"
    evil.parent.mkdir()
    shutil.copy(artifact / "model.onnx", evil)
    art = _copy(artifact, tmp_path / "art")
    _edit_manifest(art, primary=str(evil), files={str(evil): _sha(evil)})
    before = snapshot(tmp_path)
    with pytest.raises(ManifestError, match="outside the artifact folder"):
        runtime.load(art)
    with pytest.raises(ManifestError):
        runtime.load(art, verify=False)  # containment holds without hash verification too
    image = _image(tmp_path / "elsewhere" / "img.png")
    before = snapshot(tmp_path)
    assert _cli("run", ["--model", str(art), str(image), "-o", str(tmp_path / "out")]) == 2
    assert "outside the artifact folder" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_1_dotdot_file_is_never_opened_or_hashed(artifact, tmp_path, monkeypatch):
    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    art = _copy(artifact, tmp_path / "deep" / "art")
    files = json.loads((art / "manifest.json").read_text())["files"]
    files["../../secret.txt"] = _sha(secret)
    _edit_manifest(art, files=files)
    hashed = []
    import danet_deploy.manifest as manifest_module

    real = manifest_module.sha256_file
    monkeypatch.setattr(manifest_module, "sha256_file", lambda p: hashed.append(Path(p).resolve()) or real(p))
    with pytest.raises(ManifestError, match="outside the artifact folder"):
        runtime.load(art)
    assert secret.resolve() not in hashed and all(p.is_relative_to(art.resolve()) for p in hashed)


def test_1_symlink_leaving_the_folder_is_refused(artifact, tmp_path):
    outside = tmp_path / "outside.onnx"
    shutil.copy(artifact / "model.onnx", outside)
    art = _copy(artifact, tmp_path / "art")
    (art / "model.onnx").unlink()
    (art / "model.onnx").symlink_to(outside)  # same bytes, same hash: only the link gives it away
    with pytest.raises(ManifestError, match="symbolic link"):
        runtime.load(art)
    inside = _copy(artifact, tmp_path / "inside")  # a link that stays inside is fine
    (inside / "real.onnx").write_bytes((inside / "model.onnx").read_bytes())
    (inside / "model.onnx").unlink()
    (inside / "model.onnx").symlink_to("real.onnx")
    runtime.load(inside).close()


def test_1_tensorrt_bundle_onnx_outside_is_refused_before_anything_else(artifact, tmp_path):
    from danet_deploy.export.tensorrt_build import build_engine_from_bundle

    shutil.copy(artifact / "model.onnx", tmp_path / "evil.onnx")
    bundle = _copy(artifact, tmp_path / "bundle")
    info = {"stage": "prepared", "onnx": "../evil.onnx", "profiles": [{"min": [1, 3, 64, 64], "opt": [1, 3, 64, 64],
                                                                        "max": [1, 3, 64, 64]}],
            "attention": {"chunks": 1, "output_stride": 8, "feature_channels": 128}}
    _edit_manifest(bundle, target="tensorrt", extra={"tensorrt": info})
    before = snapshot(tmp_path)
    with pytest.raises(ManifestError, match="outside the artifact folder"):
        build_engine_from_bundle(bundle, tmp_path / "engine", log=_quiet)
    assert snapshot(tmp_path) == before


def test_1_torch_backend_checkpoint_named_by_a_manifest_must_be_inside(artifact, tmp_path):
    pytest.importorskip("torch")
    from danet_deploy.model.registry import weights_dir

    art = _copy(artifact, tmp_path / "art")
    _edit_manifest(art, checkpoint={"path": str(weights_dir() / "danet_demo.safetensors")})
    with pytest.raises(ManifestError, match="outside the artifact folder"):
        runtime.load(art, backend="torch")


def test_1_openvino_weights_beside_the_ir_are_held_to_the_manifest_rules(tmp_path, capsys):
    """``read_model`` loads ``model.bin`` beside ``model.xml`` without the manifest naming it: that
    file must lie inside the folder and carry a hash like every listed file."""
    pytest.importorskip("openvino")
    ir, _ = export(ExportRequest(MODEL, target="openvino", input_size=(64, 64), output=tmp_path / "ir"), log=_quiet)
    outside = tmp_path / "outside.bin"
    shutil.copy(ir / "model.bin", outside)
    evil = _copy(ir, tmp_path / "evil")
    files = json.loads((evil / "manifest.json").read_text())["files"]
    _edit_manifest(evil, files={k: v for k, v in files.items() if k != "model.bin"})
    (evil / "model.bin").unlink()
    (evil / "model.bin").symlink_to(outside)
    with pytest.raises(ManifestError, match="symbolic link leading outside"):
        runtime.load(evil)
    assert _cli("run", ["--model", str(evil), str(_image(tmp_path / "img.png")), "-o", str(tmp_path / "out")]) == 2
    unlisted = _copy(ir, tmp_path / "unlisted")  # inside, but its bytes unchecked: refused too
    _edit_manifest(unlisted, files={k: v for k, v in files.items() if k != "model.bin"})
    with pytest.raises(ManifestError, match="has no hash"):
        runtime.load(unlisted)
    runtime.load(ir).close()


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_1_onnx_external_data_outside_the_folder_is_refused(tmp_path, backend):
    """A model file can name other files too (ONNX external data): both engines refuse `../`."""
    onnx = pytest.importorskip("onnx")
    if backend == "openvino":
        pytest.importorskip("openvino")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(1, 4), "w")
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    np.arange(4, dtype=np.float32).tofile(tmp_path / "secret.bin")
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", "16")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    (tmp_path / "art").mkdir()
    onnx.save(model, tmp_path / "art" / "model.onnx")
    with pytest.raises(ArtifactError, match="outside|escapes"):
        runtime.load(tmp_path / "art" / "model.onnx", backend=backend)


# -- 2. danet-export never deletes a folder or file that is not an artifact ------------------------
def test_2_existing_unrelated_folder_is_refused_then_replaced_only_with_force(tmp_path, capsys):
    target = tmp_path / "d"
    (target / "sub").mkdir(parents=True)
    (target / "thesis.txt").write_text("x")
    before = snapshot(tmp_path)
    argv = ["--model", MODEL, "--input-size", "64x64", "-o", str(target)]
    assert _cli("export", argv) == 2
    assert "--force" in capsys.readouterr().err
    assert snapshot(tmp_path) == before
    assert _cli("export", argv + ["--force"]) == 0
    assert (target / "manifest.json").is_file() and not (target / "thesis.txt").exists()
    assert _cli("export", argv) == 0  # an artifact is replaced without --force
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no .d.tmp-* / .d.old-* left


def test_2_existing_file_is_refused_and_kept(tmp_path, capsys):
    target = tmp_path / "f"
    target.write_text("mine")
    before = snapshot(tmp_path)
    for extra in ([], ["--force"]):
        assert _cli("export", ["--model", MODEL, "--input-size", "64x64", "-o", str(target), *extra]) == 2
        assert "existing file" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


# -- 3. danet-run keeps outputs of inputs sharing a stem apart --------------------------------------
def test_3_same_stem_inputs_keep_every_result(artifact, tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _image(tmp_path / "a" / "x.png", seed=1)
    second = _image(tmp_path / "b" / "x.jpg", seed=2)
    out = tmp_path / "out"
    assert _cli("run", ["--model", str(artifact), str(first), str(second), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    masks = [json.loads(line)["mask"] for line in captured.out.splitlines()]
    assert len(set(masks)) == 2 and all(Path(m).is_file() for m in masks)
    assert "share a file name stem" in captured.err
    assert len(list(out.glob("*_mask.png"))) == 2


def test_3_run_never_overwrites_existing_outputs_without_force(artifact, tmp_path, capsys):
    image = _image(tmp_path / "x.png", seed=3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "x_overlay.png").write_text("the user's own file")
    assert _cli("run", ["--model", str(artifact), str(image), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already has x_overlay.png" in err and "--force" in err
    assert sorted(p.name for p in out.iterdir()) == ["x_overlay.png"]  # refused before writing anything
    assert (out / "x_overlay.png").read_text() == "the user's own file"
    assert _cli("run", ["--model", str(artifact), str(image), "-o", str(out), "--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["x_color.png", "x_mask.png", "x_overlay.png"]
    capsys.readouterr()
    assert _cli("run", ["--model", str(artifact), str(image), "-o", str(out)]) == 2  # a rerun keeps the results
    assert "x_mask.png, x_color.png, x_overlay.png" in capsys.readouterr().err


# -- 4. replacing an artifact is recoverable; scratch of killed exports is cleaned ------------------
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_4_swap_is_atomic_and_the_fallback_is_recoverable(tmp_path, monkeypatch):
    from danet_deploy import artifact_dir as ad

    def artifact_folder(path: Path, text: str) -> Path:
        path.mkdir()
        (path / "manifest.json").write_text(json.dumps({"format_version": 1, "primary": "m.onnx", "files": {},
                                                        "tag": text}))
        return path

    def tag(path: Path) -> str:
        return json.loads((path / "manifest.json").read_text())["tag"]

    final = artifact_folder(tmp_path / "art", "old")
    ad.swap_into_place(artifact_folder(tmp_path / "new1", "new1"), final)
    assert tag(final) == "new1" and sorted(os.listdir(tmp_path)) == ["art"]

    monkeypatch.setattr(ad, "_exchange", lambda a, b: False)  # a file system without renameat2
    ad.swap_into_place(artifact_folder(tmp_path / "new2", "new2"), final)
    assert tag(final) == "new2" and sorted(os.listdir(tmp_path)) == ["art"]

    # a kill between the fallback's two renames: the old artifact stranded under a hidden name, with
    # the owner file the swap writes first (a folder without one is never touched)
    pid = _dead_pid()
    stranded = tmp_path / f".art.old-{pid}"
    ad.claim(final, pid=pid)
    os.replace(final, stranded)
    with pytest.raises(ArtifactError, match=r"holds the previous one.*next danet-export"):
        runtime.load(final)  # the runtime points at the stranded copy instead of "does not exist"
    notes = ad.recover_stale(final)
    assert tag(final) == "new2" and not stranded.exists() and "restored" in notes[0]

    # a folder replaced with --force (not an artifact) stranded the same way is restored, never deleted
    web = tmp_path / "web"
    pid = _dead_pid()
    stranded_web = tmp_path / f".web.old-{pid}"
    stranded_web.mkdir()
    ad.claim(stranded_web, pid=pid)
    (stranded_web / "manifest.json").write_text(json.dumps({"name": "my app"}))
    (stranded_web / "index.html").write_text("<html></html>")
    notes = ad.recover_stale(web)
    assert (web / "index.html").read_text() == "<html></html>" and not stranded_web.exists() and "restored" in notes[0]


def test_4_sigkill_scratch_is_removed_by_the_next_export(tmp_path, monkeypatch):
    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch_root), "PYTHONPATH": os.pathsep.join(sys.path)}
    target = tmp_path / "out" / "art"
    proc = subprocess.Popen([sys.executable, "-m", "danet_deploy.cli.export", "--model", MODEL, "--input-size",
                             "64x64", "-o", str(target)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "out").glob(".art.tmp-*")):
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    left = list((tmp_path / "out").glob(".art.tmp-*")) + list(scratch_root.glob("danet-export-*"))
    assert left, "the export finished before it could be killed"
    monkeypatch.setattr("tempfile.tempdir", str(scratch_root))
    export(ExportRequest(MODEL, input_size=(64, 64), output=target), log=_quiet)
    assert sorted(os.listdir(tmp_path / "out")) == ["art"] and not list(scratch_root.glob("danet-export-*"))


def test_4_sigterm_leaves_nothing_behind(tmp_path):
    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch_root), "PYTHONPATH": os.pathsep.join(sys.path)}
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "danet_deploy.cli.export", "--model", MODEL, "--input-size",
                             "64x64", "-o", str(out / "art")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob(".art.tmp-*")):
        time.sleep(0.05)
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the export finished before SIGTERM arrived")
    assert proc.returncode == 143, err.decode()[-2000:]
    assert os.listdir(out) == [] and not list(scratch_root.glob("danet-export-*"))


@pytest.mark.parametrize("delay_s", [0.5, 1.5, 3.0])
def test_4_sigterm_at_any_moment_exits_143_and_leaves_nothing(tmp_path, delay_s):
    """SIGTERM during imports (inside C-extension module init), tracing or writing: never SIGABRT."""
    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch_root), "PYTHONPATH": os.pathsep.join(sys.path)}
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "danet_deploy.cli.export", "--model", MODEL, "--input-size",
                             "64x64", "-o", str(out / "art")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    time.sleep(delay_s)
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    if b"wrote" in err:  # finished first: the artifact is whole, the signal found no work to undo
        # (143 when the signal landed between the log line and the exit)
        assert proc.returncode in (0, 143, -signal.SIGTERM) and os.listdir(out) == ["art"]
        assert (out / "art" / "manifest.json").is_file() and not list(scratch_root.glob("danet-export-*"))
        return
    # 143 from the handler; -SIGTERM when a loaded machine delivered it before Python installed one
    assert proc.returncode in (143, -signal.SIGTERM), err.decode()[-2000:]
    assert os.listdir(out) == [] and not list(scratch_root.glob("danet-export-*"))


# -- 5. concurrent calls on one Session: distinct inputs, results equal to single-threaded ----------
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino", "torch"])
def test_5_eight_threads_get_their_own_results(dynamic_artifact, backend):
    if backend == "openvino":
        pytest.importorskip("openvino")
    if backend == "torch":
        pytest.importorskip("torch")
    session = runtime.load(dynamic_artifact, backend=backend, threads=1) if backend != "torch" else \
        runtime.load(MODEL, threads=1)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((1, 3, 64, 64)).astype(np.float32) for _ in range(8)]
    expected = [session.infer(x) for x in inputs]
    assert not np.allclose(expected[0], expected[1])  # distinct inputs give distinguishable logits
    results: dict[tuple[int, int], np.ndarray] = {}

    def work(i: int) -> None:
        for j in range(5):
            results[i, j] = session.infer(inputs[i])

    errors = in_threads(work)
    session.close()
    assert not errors and len(results) == 40
    for (i, _), logits in results.items():
        np.testing.assert_allclose(logits, expected[i], rtol=1e-5, atol=1e-5)


# -- 6. non-finite weights and outputs --------------------------------------------------------------
def test_6_nan_checkpoint_is_refused_at_load(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file, save_file

    from danet_deploy.model.registry import weights_dir

    state = load_file(str(weights_dir() / "danet_demo.safetensors"))
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = torch.full_like(state[key], float("nan"))
    ckpt = tmp_path / "nan.safetensors"
    save_file(state, str(ckpt))
    before = snapshot(tmp_path)
    assert _cli("export", ["--model", str(ckpt), "--arch", MODEL, "--input-size", "64x64", "-o",
                           str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "NaN or Inf" in err and key in err
    assert snapshot(tmp_path) == before


def test_6_non_finite_logits_are_an_error_by_default(artifact):
    with runtime.load(artifact) as session:
        huge = np.full((1, 3, 64, 64), 1e38, np.float32)
        with pytest.raises(InputError, match="far outside"):  # no preprocessing gives such values
            session.infer(huge)
        session.check_inputs = False  # let them through, to overflow the logits
        with pytest.raises(NonFiniteOutputError, match="NaN/Inf"):
            session.infer(huge)
        session.check_outputs = False
        assert not np.isfinite(session.infer(huge)).all()


@pytest.mark.parametrize("target, precision", [("onnx", "fp32"), ("onnxruntime", "fp16"), ("openvino", "fp32")])
def test_6_mask_only_graphs_flag_non_finite_logits(tmp_path, target, precision):
    """With --emit mask no logits leave the engine; the graph marks an image whose logits were
    NaN/Inf with the invalid value, and the session raises on it (the other images are kept)."""
    if target == "openvino":
        pytest.importorskip("openvino")
    from danet_deploy.outputs import invalid_mask_value

    art, _ = export(ExportRequest(MODEL, target=target, precision=precision, input_size=(64, 64), emit="mask",
                                  dynamic=True, output=tmp_path / "mask"), log=_quiet)
    with runtime.load(art) as session:
        session.check_inputs = False  # out-of-range inputs on purpose: they overflow the logits
        normal = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
        huge = np.full((1, 3, 64, 64), 1e38, np.float32)
        mask = session.infer_outputs(normal)["mask"]
        assert mask.dtype == np.uint8 and mask.max() < session.num_classes
        with pytest.raises(NonFiniteOutputError, match="NaN/Inf"):
            session.infer_outputs(huge)
        with pytest.raises(NonFiniteOutputError):
            session.infer_outputs(np.concatenate([normal, huge]))
        session.check_outputs = False
        both = session.infer_outputs(np.concatenate([normal, huge]))["mask"]
        np.testing.assert_array_equal(both[0], mask[0])  # the finite image keeps its own mask
        assert (both[1] == invalid_mask_value(np.uint8)).all()


# -- 7. read-only output locations --------------------------------------------------------------------
def test_7_read_only_outputs_fail_cleanly(artifact, tmp_path, capsys):
    image = _image(tmp_path / "img.png")
    with read_only(tmp_path / "ro") as ro:
        before = snapshot(tmp_path)
        assert _cli("export", ["--model", MODEL, "--input-size", "64x64", "-o", str(ro / "art")]) == 2
        assert _cli("run", ["--model", str(artifact), str(image), "-o", str(ro / "masks")]) == 2
        from danet_deploy.cli.bench import main as bench_main

        assert bench_main(["--model", MODEL, "--output", str(ro / "bench")]) == 2
        assert _cli("parity", [str(artifact), "--output", str(ro / "report.json")]) == 2
        errors = capsys.readouterr().err
        assert errors.count("read-only or no permission") >= 3 and "Traceback" not in errors
        assert snapshot(tmp_path) == before


def test_7_parity_on_a_read_only_artifact_skips_the_manifest_with_a_note(artifact, tmp_path, capsys):
    holder = tmp_path / "ro"
    _copy(artifact, holder / "art")
    with read_only(holder):
        before = snapshot(holder)
        assert _cli("parity", [str(holder / "art"), "--generated", "1"]) in (0, 1)
        assert "read-only" in capsys.readouterr().err
        assert snapshot(holder) == before


# -- 8. -o . and mount points are refused before any work ---------------------------------------------
def test_8_dot_and_mount_point_are_refused_before_work(tmp_path, monkeypatch, capsys):
    import danet_deploy.export.pipeline as pipeline

    monkeypatch.setattr(pipeline, "load_model", lambda r: (_ for _ in ()).throw(AssertionError("work started")))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("x")
    before = snapshot(tmp_path)
    for out in (".", "..", str(tmp_path)):
        assert _cli("export", ["--input-size", "64x64", "-o", out, "--force"]) == 2
    mount = tmp_path / "mnt"
    mount.mkdir()
    (mount / "manifest.json").write_text("{}")  # even an artifact-looking mount point
    before = snapshot(tmp_path)
    real_ismount = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda p: Path(p) == mount or real_ismount(p))
    assert _cli("export", ["--input-size", "64x64", "-o", str(mount)]) == 2
    assert "mount point" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


# -- 9. decompression bombs --------------------------------------------------------------------------
def test_9_images_above_the_pixel_limit_are_refused_from_the_header(tmp_path, capsys, artifact):
    from PIL import Image

    from danet_deploy.data.images import read_image

    big = tmp_path / "big.png"
    Image.new("1", (10000, 10000)).save(big)  # 100 MP, 12 kB on disk
    with pytest.raises(InputError, match="megapixels"):
        read_image(big)
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 10000)).save(bomb)  # beyond Pillow's own DecompressionBombError threshold
    with pytest.raises(InputError):
        read_image(bomb, max_pixels=None)
    before = snapshot(tmp_path)
    assert _cli("run", ["--model", str(artifact), str(big), "-o", str(tmp_path / "out")]) == 2
    assert "megapixels" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_9_large_jpeg_is_decoded_downscaled_for_a_static_engine(tmp_path):
    from PIL import Image

    from danet_deploy.data.images import read_image

    path = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (800, 800, 3), dtype=np.uint8)).save(path)
    with pytest.raises(InputError):
        read_image(path, max_pixels=100_000)
    small = read_image(path, max_pixels=100_000, reduce_to=(64, 64))
    assert small.shape == (100, 100, 3)  # libjpeg's 1/8 scale, the smallest not below 64x64


# -- 10. input sizes the planner cannot fit or the network cannot resolve --------------------------
def test_10_impossible_and_tiny_sizes_are_refused_with_a_valid_size(tmp_path, capsys, dynamic_artifact):
    before = snapshot(tmp_path)
    assert _cli("export", ["--input-size", "99999x99999", "-o", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "largest input of this shape that can is" in err
    fit = err.split("that can is ")[1].split(" ")[0]
    from danet_deploy.planner import plan_attention

    assert plan_attention(tuple(int(v) for v in fit.split("x"))).chunks <= 256
    assert _cli("export", ["--input-size", "7x7", "-o", str(tmp_path / "a")]) == 2
    assert "minimum of 32x32" in capsys.readouterr().err
    assert snapshot(tmp_path) == before
    with runtime.load(dynamic_artifact) as session:
        with pytest.raises(InputError, match="minimum"):
            session.infer(np.zeros((1, 3, 16, 16), np.float32))
        mask = session.run(np.zeros((16, 20, 3), np.uint8))  # run() upsamples to the minimum
        assert mask.shape == (16, 20)
        with pytest.raises(InputError, match="position-attention block"):  # 10000x10000: 2.2 TiB of energy
            session.infer(np.zeros((1, 3, 10000, 10000), np.float32))
        session.max_attention_bytes = 2**20
        with pytest.raises(InputError, match="--tile"):
            session.infer(np.zeros((1, 3, 256, 256), np.float32))


# -- 11. malformed manifests; a closed Session -------------------------------------------------------
@pytest.mark.parametrize("content", ["[1, 2]", '"text"', "null", "3"])
def test_11_manifest_that_is_not_an_object(artifact, tmp_path, content, capsys):
    art = _copy(artifact, tmp_path / "art")
    (art / "manifest.json").write_text(content)
    with pytest.raises(ManifestError, match="not an object"):
        runtime.load(art)
    assert _cli("run", ["--model", str(art), str(_image(tmp_path / "i.png")), "-o", str(tmp_path / "o")]) == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("field,value", [("files", None), ("files", []), ("input", None), ("model", "x"),
                                         ("primary", 3), ("preprocessing", {"mean": [0, 0], "std": [1, 1, 1]})])
def test_11_wrong_field_types(artifact, tmp_path, field, value):
    art = _copy(artifact, tmp_path / "art")
    _edit_manifest(art, **{field: value})
    with pytest.raises(ManifestError):
        runtime.load(art)


def test_11_session_after_close(artifact):
    session = runtime.load(artifact)
    session.close()
    session.close()  # harmless
    with pytest.raises(SessionClosedError):
        session.run(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(SessionClosedError):
        session.infer(np.zeros((1, 3, 64, 64), np.float32))


# -- 12. danet-bench without matplotlib ----------------------------------------------------------------
def test_12_reports_are_written_and_plots_skipped_without_matplotlib(tmp_path, monkeypatch, capsys):
    from danet_deploy.bench import report as bench_report

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.setattr(bench_report, "to_markdown", lambda r: "| table |\n")
    monkeypatch.setattr(bench_report, "to_csv", lambda r: "target\n")
    paths = bench_report.write_reports({"rows": []}, tmp_path, plots=True)
    assert set(paths) == {"json", "csv", "markdown"} and all(p.is_file() for p in paths.values())
    assert "danet-deploy[bench]" in paths["markdown"].read_text()
    assert "plots skipped" in capsys.readouterr().err and not list(tmp_path.glob("*.png"))


# -- 13. messages that used to mislead --------------------------------------------------------------
def test_13_messages(tmp_path, capsys, artifact):
    folder = tmp_path / "imgs"
    folder.mkdir()
    assert _cli("run", ["--model", str(artifact), str(folder), "-o", str(tmp_path / "o")]) == 2
    assert "is a folder" in capsys.readouterr().err

    from danet_deploy.data.calibration import load_calibration

    (folder / "broken.png").write_bytes(b"not a png")
    with pytest.raises(CalibrationError) as empty:
        load_calibration(str(folder), count=4, size=(64, 64), preprocessing={"mean": [0] * 3, "std": [1] * 3},
                         log=_quiet)
    assert "--calib-count" not in str(empty.value) and "no readable image" in str(empty.value)
    with pytest.raises(CalibrationError) as missing:
        load_calibration(str(tmp_path / "nope"), count=4, size=(64, 64), preprocessing={"mean": [0] * 3,
                                                                                         "std": [1] * 3}, log=_quiet)
    assert "--calib-dir" in str(missing.value) and "does not exist" in str(missing.value)


def test_13_checkpoint_errors_never_advise_unsafe_loading(tmp_path):
    torch = pytest.importorskip("torch")
    from danet_deploy.model import create_model
    from danet_deploy.model.checkpoints import read_state_dict

    class Payload:
        def __reduce__(self):
            return (print, ("unpickled!",))

    evil = tmp_path / "evil.pt"
    torch.save({"weight": Payload()}, evil)
    with pytest.raises(CheckpointError) as info:
        read_state_dict(evil)
    text = str(info.value)
    assert "weights_only=False" not in text and "add_safe_globals" not in text and "print" in text
    partial = tmp_path / "partial.pt"
    torch.save({"backbone.conv1.weight": torch.zeros(1)}, partial)
    with pytest.raises(CheckpointError) as mismatch:
        create_model(MODEL, weights=partial)
    assert "strict=False" not in str(mismatch.value)


def test_13_bench_says_it_takes_presets_not_artifacts(artifact, tmp_path, capsys):
    from danet_deploy.cli.bench import main as bench_main

    before = snapshot(tmp_path)
    assert bench_main(["--model", str(artifact), "--output", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "preset name or a checkpoint" in err and f"--model {MODEL}" in err
    assert snapshot(tmp_path) == before


def _fake_tensorrt_backend(monkeypatch, tmp_path, context_factory, **options):
    """A TensorRTBackend over cuda-python and TensorRT stand-ins (tests/fake_cuda.py): no GPU here."""
    sys.path.insert(0, str(Path(__file__).parent))
    from fake_cuda import FakeCudart, install_fake_cuda_python, install_fake_tensorrt

    from danet_deploy.manifest import Manifest
    from danet_deploy.tensorrt import logger

    fake = FakeCudart()
    install_fake_tensorrt(monkeypatch, lambda: context_factory(fake))
    install_fake_cuda_python(monkeypatch, fake)
    logger._reset_for_tests()
    from danet_deploy.runtime.backends.tensorrt import TensorRTBackend

    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan")
    facts = {"stage": "engine", "version": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"}
    manifest = Manifest(target="tensorrt", backend="tensorrt", precision="fp16", primary="model.engine",
                        model={"name": "fake"}, preprocessing={}, input={"name": "input", "shape": [1, 3, 4, 6]},
                        output={"name": "logits"}, extra={"tensorrt": facts})

    def make(**more):
        return TensorRTBackend(engine, manifest, **{**options, **more})

    return make(), fake, make


@pytest.mark.parametrize("contexts", [1, 3])
def test_5_tensorrt_backend_gives_each_concurrent_call_its_own_context(monkeypatch, tmp_path, contexts):
    """TensorRT through cuda-python and TensorRT stand-ins (no GPU here): 8 threads with distinct
    inputs on one backend get their own results; at most ``contexts`` execution contexts exist,
    each serving one call at a time, and with several they run side by side."""
    from fake_cuda import FakeContext

    created, lock = [], threading.Lock()
    busy, peak = set(), [0]

    class SlowContext(FakeContext):
        def execute_async_v3(self, stream: int) -> bool:
            with lock:
                assert self not in busy, "two calls on one execution context"
                busy.add(self)
                peak[0] = max(peak[0], len(busy))
            time.sleep(0.003)
            try:
                return super().execute_async_v3(stream)
            finally:
                with lock:
                    busy.discard(self)

    def new_context(fake):
        created.append(SlowContext(fake))
        return created[-1]

    backend, fake, make = _fake_tensorrt_backend(monkeypatch, tmp_path, new_context, contexts=contexts)
    assert backend.parallel_requests() == contexts and backend.describe()["contexts"] == contexts
    results = {}

    def work(i: int) -> None:
        x = np.full((1, 3, 4, 6), float(i), np.float32)
        results[i] = [backend.infer(x + k) for k in range(10)]

    errors = in_threads(work, timeout_s=60)
    assert not errors and len(results) == 8
    for i, outs in results.items():
        for k, out in enumerate(outs):
            np.testing.assert_allclose(out[:, 0], np.full((1, 4, 6), 3.0 * (i + k)))
            np.testing.assert_allclose(out[:, 1], np.full((1, 4, 6), -3.0 * (i + k)))
    assert len(created) == contexts and peak[0] == contexts  # the pool grew to its limit, and no further
    backend.close()
    assert fake.memory == {}  # every lane's buffers freed
    with pytest.raises(ConfigError, match="contexts must be a positive integer"):
        make(contexts=0)


def test_5_closing_a_tensorrt_session_lets_the_running_call_finish_and_refuses_the_rest(monkeypatch, tmp_path):
    """close() while one call runs on the only context and another waits for it: the running call
    returns its result, the waiting one and every later one get SessionClosedError, nothing hangs."""
    from fake_cuda import FakeContext

    started, release = threading.Event(), threading.Event()

    class HeldContext(FakeContext):
        def execute_async_v3(self, stream: int) -> bool:
            if not started.is_set():
                started.set()
                release.wait(30)
            return super().execute_async_v3(stream)

    backend, fake, _ = _fake_tensorrt_backend(monkeypatch, tmp_path, HeldContext)
    x = np.ones((1, 3, 4, 6), np.float32)
    outcome: dict[str, object] = {}

    def call(name):
        try:
            outcome[name] = backend.infer(x)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome[name] = exc

    first = threading.Thread(target=call, args=("running",))
    first.start()
    assert started.wait(10)
    waiting = threading.Thread(target=call, args=("waiting",))
    waiting.start()
    time.sleep(0.05)
    closer = threading.Thread(target=backend.close)
    closer.start()
    time.sleep(0.05)
    release.set()
    for t in (first, waiting, closer):
        t.join(10)
        assert not t.is_alive(), "a thread hung on the closing session"
    np.testing.assert_allclose(outcome["running"][:, 0], np.full((1, 4, 6), 3.0))
    assert isinstance(outcome["waiting"], SessionClosedError)
    with pytest.raises(SessionClosedError):
        backend.infer(x)
    assert fake.memory == {}


def test_sigterm_cleanup_covers_atomic_writes_and_scratch_folders(tmp_path):
    """What the SIGTERM handler removes: temp files of atomic writes and live scratch folders,
    never the finished file or anything after its block ended."""
    from danet_deploy.artifact_dir import scratch_dir
    from danet_deploy.files import atomic_output, remove_live_scratch

    target = tmp_path / "weights.safetensors"
    with atomic_output(target) as tmp, scratch_dir() as scratch:
        tmp.write_bytes(b"half")
        (scratch / "x").write_text("y")
        remove_live_scratch()  # as the handler would, mid-write
        assert not tmp.exists() and not scratch.exists()
        tmp.write_bytes(b"whole")  # (the real handler exits here; the test goes on to finish)
    assert target.read_bytes() == b"whole"
    remove_live_scratch()  # nothing registered any more: the finished file stays
    assert target.read_bytes() == b"whole" and sorted(p.name for p in tmp_path.iterdir()) == ["weights.safetensors"]


def test_8_bind_mount_on_the_same_file_system_is_a_mount_point(tmp_path, capsys):
    from danet_deploy.artifact_dir import is_mount_point

    spaced = tmp_path / "a b"
    spaced.mkdir()
    table = (f"36 35 98:0 /x {str(spaced).replace(' ', chr(92) + '040')} rw,noatime master:1 - ext3 /dev/root rw\n"
             "37 35 98:0 / / rw - ext4 /dev/sda1 rw\n")
    assert is_mount_point(spaced, table)  # the kernel's escaped space is read back
    assert not is_mount_point(tmp_path, table)
    mount = tmp_path / "mnt"
    mount.mkdir()
    if subprocess.run(["mount", "--bind", str(mount), str(mount)], capture_output=True).returncode != 0:
        pytest.skip("no permission to bind-mount here; the mount table parsing is tested above")
    try:
        assert is_mount_point(mount)
        assert _cli("export", ["--input-size", "64x64", "-o", str(mount), "--force"]) == 2
        assert "mount point" in capsys.readouterr().err
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
    # an artifact folder with something mounted inside it: replacing it would delete the mounted files
    precious, art = tmp_path / "precious", tmp_path / "art"
    precious.mkdir()
    (precious / "important.txt").write_text("keep me")
    art.mkdir()
    (art / "manifest.json").write_text(json.dumps({"format_version": 1, "primary": "m.onnx", "files": {}}))
    (art / "data").mkdir()
    assert subprocess.run(["mount", "--bind", str(precious), str(art / "data")], capture_output=True).returncode == 0
    try:
        assert _cli("export", ["--input-size", "64x64", "-o", str(art), "--force"]) == 2
        assert "holds a mount point" in capsys.readouterr().err
    finally:
        subprocess.run(["umount", str(art / "data")], capture_output=True)
    assert (precious / "important.txt").read_text() == "keep me"


def test_2_a_folder_with_someone_elses_manifest_json_is_not_an_artifact(tmp_path, monkeypatch, capsys):
    import danet_deploy.export.pipeline as pipeline

    monkeypatch.setattr(pipeline, "load_model", lambda r: (_ for _ in ()).throw(AssertionError("work started")))
    webapp = tmp_path / "webapp"
    webapp.mkdir()
    (webapp / "manifest.json").write_text(json.dumps({"name": "my app", "start_url": "/", "icons": []}))
    (webapp / "index.html").write_text("<html></html>")
    before = snapshot(tmp_path)
    assert _cli("export", ["--input-size", "64x64", "-o", str(webapp)]) == 2
    assert "not a danet-deploy artifact" in capsys.readouterr().err
    assert snapshot(tmp_path) == before
    for broken in ("[1, 2]", "{not json", "\\x00" * 8):
        (webapp / "manifest.json").write_text(broken)
        assert _cli("export", ["--input-size", "64x64", "-o", str(webapp)]) == 2


# -- 14. danet-bench and danet-demo: report names, timeouts, the user's files, output folders ---------
BENCH_TINY = ["--model", MODEL, "--engines", "torch,onnxruntime", "--input-size", "64x64", "--iters", "1",
              "--warmup", "0", "--scenes", "2", "--no-plots", "--no-progress"]
DEMO_TINY = ["--combos", "onnxruntime:fp32", "--input-size", "64x64", "--iters", "1", "--warmup", "0", "--scenes", "1"]


@pytest.fixture
def no_bench_work(monkeypatch):
    """Fail the test if danet-bench or danet-demo starts exporting or timing."""
    import danet_deploy.bench.runner as runner

    def started(*args, **kwargs):
        raise AssertionError("work started")

    monkeypatch.setattr(runner, "run_benchmark", started)
    monkeypatch.setattr(runner, "ensure_artifact", started)


def _reached_the_work(monkeypatch) -> None:
    """Let a command pass its checks and stop, with a recognisable error, where the work begins."""
    import danet_deploy.bench.runner as runner

    def reached(*args, **kwargs):
        raise ConfigError("reached the work")

    monkeypatch.setattr(runner, "run_benchmark", reached)
    monkeypatch.setattr(runner, "ensure_artifact", reached)


@pytest.mark.parametrize("stem", ["../../escape", "sub/bench", "/tmp/bench", "", " ", "..", "."])
def test_14_bench_stem_must_be_a_plain_name(stem, tmp_path, no_bench_work, capsys):
    before = snapshot(tmp_path)
    assert _cli("bench", [*BENCH_TINY, "--output", str(tmp_path / "a" / "b"), "--stem", stem]) == 2
    err = capsys.readouterr().err
    assert "--stem" in err and "plain file name" in err and "Traceback" not in err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("timeout", ["nan", "-1", "0", "inf", "-inf"])
def test_14_bench_timeout_must_be_finite_and_positive(timeout, tmp_path, no_bench_work, capsys):
    assert _cli("bench", [*BENCH_TINY, "--output", str(tmp_path / "out"), f"--timeout={timeout}"]) == 2
    err = capsys.readouterr().err
    assert "--timeout must be a finite number of seconds > 0" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_14_bench_keeps_the_users_report_files_without_force(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("bench.md", "bench.json", "bench.csv"):
        (out / name).write_text(f"my own {name}")
    (out / "mine.json").write_text("my own mine.json")
    before = snapshot(tmp_path)
    _reached_the_work(monkeypatch)
    assert _cli("bench", [*BENCH_TINY, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already has bench.json, bench.csv, bench.md" in err and "--force" in err and "reached" not in err
    assert _cli("bench", [*BENCH_TINY, "--output", str(out), "--stem", "mine"]) == 2
    assert "already has mine.json" in capsys.readouterr().err
    assert snapshot(tmp_path) == before
    # another stem, or --force, passes the check and reaches the work
    assert _cli("bench", [*BENCH_TINY, "--output", str(out), "--stem", "other"]) == 2
    assert "reached the work" in capsys.readouterr().err
    assert _cli("bench", [*BENCH_TINY, "--output", str(out), "--force"]) == 2
    assert "reached the work" in capsys.readouterr().err


def test_14_demo_keeps_the_users_files_without_force(tmp_path, monkeypatch, capsys):
    out = tmp_path / "demo"
    (out / "bench").mkdir(parents=True)
    (out / "overlay.png").write_text("my own overlay")
    (out / "parity.json").write_text("{}")
    (out / "bench" / "bench.md").write_text("my notes")
    before = snapshot(tmp_path)
    _reached_the_work(monkeypatch)
    assert _cli("demo", [*DEMO_TINY, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "overlay.png, parity.json, bench/bench.md" in err and "--force" in err and "reached" not in err
    assert snapshot(tmp_path) == before
    assert _cli("demo", [*DEMO_TINY, "-o", str(out), "--force"]) == 2
    assert "reached the work" in capsys.readouterr().err


def test_14_demo_checks_its_arguments_and_output_before_creating_anything(tmp_path, no_bench_work, capsys):
    a_file = tmp_path / "results.txt"
    a_file.write_text("not a folder")
    before = snapshot(tmp_path)
    assert _cli("demo", [*DEMO_TINY, "-o", str(a_file)]) == 2
    assert "is a file; pass a folder" in capsys.readouterr().err
    assert _cli("demo", [*DEMO_TINY, "-o", str(a_file / "sub")]) == 2
    assert "is a file; pass a folder" in capsys.readouterr().err
    for bad in (["--iters", "0"], ["--warmup", "-1"], ["--combos", "onnxruntime:fp64"], ["--input-size", "16x16"]):
        assert _cli("demo", [*DEMO_TINY, *bad, "-o", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err
    assert "--iters must be >= 1" in err and "Traceback" not in err
    assert snapshot(tmp_path) == before  # no empty output folder left behind


def test_14_demo_read_only_output_is_a_typed_error(tmp_path, no_bench_work, capsys):
    with read_only(tmp_path / "ro") as ro:
        before = snapshot(tmp_path)
        assert _cli("demo", [*DEMO_TINY, "-o", str(ro / "demo")]) == 2
        assert _cli("demo", [*DEMO_TINY, "-o", str(ro)]) == 2
        err = capsys.readouterr().err
        assert err.count("read-only or no permission") == 2 and "Traceback" not in err
        assert snapshot(tmp_path) == before


def test_14_make_demo_reruns_into_its_own_folder(tmp_path, no_bench_work):
    """``make demo`` runs danet-demo into one fixed folder every time: its command must pass the
    refusal to replace the previous run's results (and only that: the other checks still apply)."""
    import shlex

    import dataclasses

    from danet_deploy import demo
    from danet_deploy.cli.dataclass_args import parse_request
    from danet_deploy.cli.demo import build_parser

    makefile = (Path(__file__).resolve().parent.parent / "Makefile").read_text()
    line = next(line for line in makefile.splitlines() if "danet-demo" in line and not line.startswith("#"))
    argv = shlex.split(line)[1:]
    args = parse_request(demo.DemoRequest, build_parser(), argv)
    args = dataclasses.replace(args, output=str(tmp_path / "runs" / "demo"))  # an earlier run's results are there
    for name in demo.output_names():
        (tmp_path / "runs" / "demo" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "runs" / "demo" / name).write_text("earlier run")
    demo.demo_config(args)  # no refusal
