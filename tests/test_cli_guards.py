"""Numbers and paths the CLIs refuse up front (exit 2, the flag named), and files they never replace
without --force: each test tries the bad thing and checks that nothing was written or changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from danet_deploy.export import ExportRequest, export

MODEL = "danet_demo"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    path, _ = export(
        ExportRequest(MODEL, input_size=(64, 64), output=tmp_path_factory.mktemp("g") / "art"), log=lambda _: None
    )
    return path


@pytest.fixture
def image(tmp_path):
    from PIL import Image

    path = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    return path


def _cli(name: str, argv: list[str]) -> int:
    return __import__(f"danet_deploy.cli.{name}", fromlist=["main"]).main(argv)


def test_parity_never_replaces_an_existing_report_or_plot_without_force(artifact, tmp_path, capsys):
    mine = tmp_path / "mine.json"
    mine.write_text("the user's notes")
    assert _cli("parity", [str(artifact), "--generated", "1", "--no-manifest", "--output", str(mine)]) == 2
    assert "--force" in capsys.readouterr().err and mine.read_text() == "the user's notes"
    plot = tmp_path / "mine.png"
    plot.write_bytes(b"a picture")
    # --per-layer derives the plot's name from --output: that file is protected as well
    assert _cli(
        "parity", [str(artifact), "--per-layer", "--generated", "1", "--output", str(tmp_path / "mine.json"), "--force"]
    ) in (0, 1)
    assert plot.read_bytes() != b"a picture" and json.loads(mine.read_text())
    plot.write_bytes(b"a picture")
    assert (
        _cli(
            "parity",
            [
                str(artifact),
                "--per-layer",
                "--generated",
                "1",
                "--output",
                str(tmp_path / "new.json"),
                "--plot",
                str(plot),
            ],
        )
        == 2
    )
    assert plot.read_bytes() == b"a picture" and not (tmp_path / "new.json").exists()


@pytest.mark.parametrize("flags, named", [(["--plot", "x.png"], "--per-layer"), (["--threads", "0"], "--threads")])
def test_parity_refuses_flags_that_would_be_ignored_or_crash(artifact, capsys, flags, named):
    assert _cli("parity", [str(artifact), "--generated", "1", "--no-manifest", *flags]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


def test_per_layer_names_a_truncated_reference(artifact, tmp_path, capsys):
    reference = tmp_path / "ref.onnx"
    reference.write_bytes((artifact / "model.onnx").read_bytes()[:5000])
    assert _cli("parity", [str(artifact), "--per-layer", "--generated", "1", "--reference", str(reference)]) == 2
    err = capsys.readouterr().err
    assert "not a readable ONNX model" in err and str(reference) in err


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--alpha", "nan"], "--alpha"),
        (["--alpha", "5"], "--alpha"),
        (["--alpha", "-1"], "--alpha"),
        (["--max-pixels", "nan"], "--max-pixels"),
        (["--max-pixels", "-1"], "--max-pixels"),
        (["--max-pixels", "inf"], "--max-pixels"),
        (["--stride", "8x8"], "--tile"),
        (["--threads", "-3"], "threads"),
        (["--threads", "0"], "threads"),
    ],
)
def test_run_refuses_numbers_that_would_change_the_result_silently(artifact, image, tmp_path, capsys, flags, named):
    out = tmp_path / "out"
    assert _cli("run", ["--model", str(artifact), str(image), "-o", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


def test_run_refuses_a_frame_count_below_one_before_writing(artifact, tmp_path, capsys):
    out = tmp_path / "video"
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"never opened")
    assert _cli("run", ["--model", str(artifact), "--video", str(video), "-o", str(out), "--max-frames", "0"]) == 2
    assert "--max-frames" in capsys.readouterr().err and not out.exists()


def test_sessions_refuse_a_thread_count_below_one(artifact):
    from danet_deploy import runtime
    from danet_deploy.errors import ConfigError

    for threads in (0, -3, 1.5, True):
        with pytest.raises(ConfigError, match="threads"):
            runtime.load(artifact, threads=threads)
    with runtime.load(artifact, threads=np.int64(1)) as session:  # any whole number type is fine
        assert session.run(np.zeros((64, 64, 3), np.uint8)).shape == (64, 64)


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--dynamic", "--min-size", "128x128", "--max-size", "64x64"], "--min-size"),
        (["--dynamic", "--max-size", "32x32"], "--max-size"),
        (["--min-size", "32x32"], "--dynamic"),
        (["--opset", "5"], "--opset"),
        (["--opset", "99"], "--opset"),
        (["--num-classes", "-1"], "--num-classes"),
        (["--num-classes", "3"], "trained for 8 classes"),
    ],
)
def test_export_refuses_bounds_opsets_and_class_counts_it_cannot_honour(tmp_path, capsys, flags, named):
    out = tmp_path / "art"
    assert _cli("export", ["--model", MODEL, "--input-size", "64x64", "-o", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err and len(err) < 2000
    assert not out.exists()


def test_client_refuses_a_scene_size_it_cannot_render(capsys):
    assert _cli("client", ["--http", "127.0.0.1:9", "--size", "100000x100000", "--wait", "0"]) == 2
    assert "--size" in capsys.readouterr().err


def test_client_refuses_a_negative_warmup_before_connecting(capsys):
    assert _cli("client", ["--http", "127.0.0.1:9", "--grpc", "", "--warmup", "-2", "--wait", "0"]) == 2
    assert "--warmup must be a number of requests >= 0" in capsys.readouterr().err


def test_16_bit_images_scale_by_bit_depth_not_by_content(tmp_path):
    from PIL import Image

    from danet_deploy.data.images import read_image

    ramp = np.tile(np.arange(256, dtype=np.uint16), (8, 1))
    Image.fromarray(ramp).save(tmp_path / "dark.png")
    bright = ramp.copy()
    bright[0, 0] = 256  # one pixel above 8 bits must not rescale the rest
    Image.fromarray(bright).save(tmp_path / "dark-plus-one.png")
    dark, plus = read_image(tmp_path / "dark.png"), read_image(tmp_path / "dark-plus-one.png")
    np.testing.assert_array_equal(dark[1:], plus[1:])
    assert dark.max() == 1  # 255 / 65535 of full scale
    full = np.full((8, 8), 65535, np.uint16)
    Image.fromarray(full).save(tmp_path / "white.png")
    assert read_image(tmp_path / "white.png").min() == 255


@pytest.mark.parametrize("key, value", [("color_order", "XYZ"), ("layout", "NHWC"), ("input_range", [255, 0])])
def test_manifests_with_preprocessing_the_runtime_would_ignore_are_refused(artifact, tmp_path, key, value):
    from danet_deploy import runtime
    from danet_deploy.errors import DanetDeployError

    copy = tmp_path / "edited"
    shutil.copytree(artifact, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["preprocessing"][key] = value
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DanetDeployError, match=key):
        runtime.load(copy)


def test_run_accepts_the_edge_values(artifact, image, tmp_path):
    """The accepted edge values still run: opacity 0 and 1, no pixel limit."""
    for alpha in ("0", "1"):
        out = tmp_path / f"a{alpha}"
        assert (
            _cli("run", ["--model", str(artifact), str(image), "-o", str(out), "--alpha", alpha, "--max-pixels", "0"])
            == 0
        )
        assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "a0").iterdir())
    assert Path(tmp_path / "a1").is_dir()


def test_parity_refuses_zero_generated_scenes_naming_the_flag(artifact, capsys):
    assert _cli("parity", [str(artifact), "--generated", "0", "--no-manifest"]) == 2
    assert "--generated" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, expected",
    [
        (lambda p: np.savez(p, input=np.zeros((0, 3, 64, 64), np.float32)), "holds no tensors"),
        (lambda p: np.savez(p, input=np.array([{"a": 1}], dtype=object)), "never unpickled"),
        (lambda p: p.write_text("not an archive"), "not a readable .npz"),
    ],
)
@pytest.mark.slow  # over 5 s: make test-slow (CI)
def test_calibration_npz_errors_give_advice_that_works(tmp_path, capsys, content, expected):
    npz = tmp_path / "calib.npz"
    content(npz)
    assert (
        _cli(
            "export",
            [
                "--model",
                MODEL,
                "--input-size",
                "64x64",
                "--target",
                "onnxruntime",
                "--precision",
                "int8",
                "--calib",
                str(npz),
                "-o",
                str(tmp_path / "art"),
            ],
        )
        == 2
    )
    err = capsys.readouterr().err
    assert expected in err and "allow_pickle" not in err and "--calib-count 0" not in err


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--calib", "generated"], "--precision int8"),
        (["--arch", "danet_r18_d8"], "--arch"),
        (["--target", "tensorrt", "--workspace", "abc"], "workspace"),
    ],
)
def test_export_refuses_flags_it_would_ignore_or_fail_on_later(tmp_path, capsys, flags, named):
    out = tmp_path / "art"
    assert _cli("export", ["--model", MODEL, "--input-size", "64x64", "-o", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
    assert not out.exists()


def test_parity_refuses_a_size_a_static_artifact_cannot_take(artifact, capsys):
    assert _cli("parity", [str(artifact), "--generated", "1", "--no-manifest", "--size", "128x128"]) == 2
    assert "--size" in capsys.readouterr().err
    assert _cli("parity", [str(artifact), "--generated", "1", "--no-manifest", "--size", "64x64"]) == 0


@pytest.mark.parametrize("version", [True, 1.0, "1"])
def test_manifest_format_version_must_be_the_integer(artifact, tmp_path, version):
    from danet_deploy import runtime
    from danet_deploy.errors import ManifestError

    copy = tmp_path / "edited"
    shutil.copytree(artifact, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["format_version"] = version
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="format version"):
        runtime.load(copy)
