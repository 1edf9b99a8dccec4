"""TensorRT facts that need no GPU: profiles, the 2^31 - 1 element limit, engine compatibility,
and the clear failure (and exit code) of a build where TensorRT or a GPU is missing."""

import importlib.util
import json
import re

import pytest

from danet_deploy.errors import BackendUnavailableError, ConfigError, EngineCompatibilityError
from danet_deploy.planner import TENSORRT_MAX_ELEMENTS, plan_attention
from danet_deploy.tensorrt.compat import (
    check_attention_limit,
    check_engine_compatibility,
    largest_fitting_size,
    parse_version,
    profile_from_input_spec,
)

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None

ENGINE = {"stage": "engine", "version": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"}
ORIN = {"tensorrt": "10.3.0.30", "gpu": "Orin", "compute_capability": "8.7", "dla_cores": 2}


# -- profiles ---------------------------------------------------------------------------------
def test_profile_of_a_static_input_is_its_shape():
    assert profile_from_input_spec({"name": "input", "shape": [1, 3, 64, 96]}) == {
        "min": [1, 3, 64, 96],
        "opt": [1, 3, 64, 96],
        "max": [1, 3, 64, 96],
    }


def test_profile_of_a_dynamic_input_comes_from_the_bounds():
    spec = {
        "shape": ["batch", 3, "height", "width"],
        "min_shape": [1, 3, 32, 32],
        "opt_shape": [1, 3, 512, 512],
        "max_shape": [4, 3, 1024, 2048],
    }
    assert profile_from_input_spec(spec) == {"min": [1, 3, 32, 32], "opt": [1, 3, 512, 512], "max": [4, 3, 1024, 2048]}


def test_profile_needs_bounds_and_order():
    with pytest.raises(ConfigError, match="--min-size/--max-size"):
        profile_from_input_spec({"shape": ["batch", 3, "height", "width"]})
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        profile_from_input_spec(
            {
                "shape": ["b", 3, "h", "w"],
                "min_shape": [1, 3, 64, 64],
                "opt_shape": [1, 3, 32, 64],
                "max_shape": [1, 3, 128, 128],
            }
        )


# -- the 2^31 - 1 element limit ------------------------------------------------------------------
def test_attention_limit_accepts_what_fits():
    plan = check_attention_limit([1, 3, 1024, 2048], chunks=1, output_stride=8, feature_channels=512)
    assert plan.positions == 128 * 256 and plan.energy_elements == 32768**2 <= TENSORRT_MAX_ELEMENTS


def test_attention_limit_refuses_with_sizes_that_fit_and_the_chunk_option():
    # batch 2 at 1024x2048: 2 * 32768^2 = 2^31 elements, one more than TensorRT allows
    with pytest.raises(ConfigError) as info:
        check_attention_limit([2, 3, 1024, 2048], chunks=1, output_stride=8, feature_channels=512)
    message = str(info.value)
    assert "2,147,483,648" in message and "2,147,483,647" in message
    assert "--attention-chunks 2" in message and "--attention-memory" in message
    h, w = map(int, re.search(r"largest input of this aspect ratio that fits is 2x3x(\d+)x(\d+)", message).groups())
    assert plan_attention((h, w), 2, chunks=1).fits_tensorrt
    assert not plan_attention((h + 8, w + 16), 2, chunks=1).fits_tensorrt
    assert check_attention_limit([2, 3, 1024, 2048], chunks=2, output_stride=8, feature_channels=512).chunks == 2


def test_largest_fitting_size_keeps_the_aspect_ratio():
    h, w = largest_fitting_size((2048, 4096), batch=1, chunks=1, output_stride=8, feature_channels=512)
    assert w == 2 * h and h % 8 == 0
    assert plan_attention((h, w), 1, chunks=1).fits_tensorrt


# -- engine compatibility --------------------------------------------------------------------------
def test_matching_engine_and_device_load():
    assert check_engine_compatibility(ENGINE, ORIN) == []


def test_build_numbers_do_not_matter_but_patch_versions_do():
    assert parse_version("10.3.0.26") == (10, 3, 0, 26) and parse_version("10.7.0.post1") == (10, 7, 0)
    assert check_engine_compatibility({**ENGINE, "version": "10.3.0.26"}, ORIN) == []
    with pytest.raises(
        EngineCompatibilityError,
        match=r"built with TensorRT 10\.3\.0 but this machine has TensorRT "
        r"10\.4\.0.*--from BUNDLE_DIR",
    ):
        check_engine_compatibility(ENGINE, {**ORIN, "tensorrt": "10.4.0"})
    with pytest.raises(EngineCompatibilityError, match="11.4.0"):
        check_engine_compatibility(ENGINE, {**ORIN, "tensorrt": "11.4.0"})


def test_version_compatible_engines_run_on_later_versions_of_the_same_major():
    engine = {**ENGINE, "version_compatible": True}
    assert check_engine_compatibility(engine, {**ORIN, "tensorrt": "10.8.0"}) == []
    with pytest.raises(EngineCompatibilityError, match="version-compatible"):
        check_engine_compatibility(engine, {**ORIN, "tensorrt": "10.2.0"})
    with pytest.raises(EngineCompatibilityError, match="version-compatible"):
        check_engine_compatibility(engine, {**ORIN, "tensorrt": "11.0.0"})


def test_other_gpu_architecture_is_refused_with_the_fix():
    with pytest.raises(EngineCompatibilityError, match=r"compute capability 8\.7 \(Orin\).*H100.*9\.0.*Rebuild"):
        check_engine_compatibility(ENGINE, {**ORIN, "gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"})


def test_same_architecture_other_gpu_loads_with_a_note():
    engine = {**ENGINE, "gpu": "NVIDIA GeForce RTX 3090", "compute_capability": "8.6"}
    notes = check_engine_compatibility(engine, {**ORIN, "gpu": "NVIDIA A40", "compute_capability": "8.6"})
    assert len(notes) == 1 and "NVIDIA A40" in notes[0]


def test_hardware_compatible_engines_need_ampere_or_later():
    engine = {**ENGINE, "compute_capability": "8.6", "hardware_compatibility": "ampere_plus"}
    assert check_engine_compatibility(engine, {**ORIN, "compute_capability": "9.0"}) == []
    with pytest.raises(EngineCompatibilityError, match="Ampere"):
        check_engine_compatibility(engine, {**ORIN, "compute_capability": "7.5"})


def test_dla_engines_need_that_dla_core():
    engine = {**ENGINE, "dla_core": 1}
    assert check_engine_compatibility(engine, ORIN) == []
    with pytest.raises(EngineCompatibilityError, match="DLA core 1.*0 DLA core"):
        check_engine_compatibility(engine, {**ORIN, "dla_cores": 0})


def test_missing_tensorrt_or_gpu_is_backend_unavailable():
    with pytest.raises(BackendUnavailableError, match="pip install tensorrt"):
        check_engine_compatibility(ENGINE, {"tensorrt": None, "compute_capability": None})
    with pytest.raises(BackendUnavailableError, match="no CUDA GPU"):
        check_engine_compatibility(ENGINE, {"tensorrt": "10.3.0", "compute_capability": None})


def test_a_prepared_bundle_is_not_an_engine():
    with pytest.raises(EngineCompatibilityError, match="stage 'prepared'.*--from BUNDLE_DIR"):
        check_engine_compatibility({"stage": "prepared"}, ORIN)


def test_compat_module_and_backend_import_without_torch():
    import subprocess
    import sys

    code = (
        "import sys; import danet_deploy.tensorrt.compat, danet_deploy.runtime.backends.tensorrt, "
        "danet_deploy.tensorrt.cuda; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- without TensorRT: fail fast, clearly, with a non-zero exit code --------------------------------
@pytest.fixture(scope="module")
def fp32_bundle(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from danet_deploy.export import ExportRequest, export

    out = tmp_path_factory.mktemp("trt") / "bundle"
    path, _ = export(
        ExportRequest(
            "danet_edge_r18_d8",
            target="tensorrt",
            precision="fp32",
            input_size=(64, 64),
            dynamic=True,
            min_size=(32, 32),
            max_size=(96, 96),
            output=out,
            options={"build": False},
        ),
        log=lambda _: None,
    )
    return path


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_build_without_tensorrt_raises_backend_unavailable(fp32_bundle, tmp_path):
    from danet_deploy.export.tensorrt import build_engine_from_bundle

    with pytest.raises(BackendUnavailableError, match="needs TensorRT and an NVIDIA GPU"):
        build_engine_from_bundle(fp32_bundle, tmp_path / "engine", log=lambda _: None)
    assert not (tmp_path / "engine").exists()


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_cli_build_without_tensorrt_exits_non_zero(fp32_bundle, tmp_path, capsys):
    from danet_deploy.cli.export import main

    code = main(["--target", "tensorrt", "--from", str(fp32_bundle), "--output", str(tmp_path / "engine")])
    assert code != 0
    assert "needs TensorRT and an NVIDIA GPU" in capsys.readouterr().err
    assert not (tmp_path / "engine").exists()


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_cli_from_bundle_into_a_foreign_folder_needs_force(fp32_bundle, tmp_path, capsys):
    """--from honours --force like every export: a folder that is not an artifact is refused
    without it; with it the checks pass on to the next one (here: no TensorRT)."""
    from danet_deploy.cli.export import main

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("x")
    args = ["--target", "tensorrt", "--from", str(fp32_bundle), "--output", str(foreign)]
    assert main(args) == 2 and "not a danet-deploy artifact" in capsys.readouterr().err
    assert main([*args, "--force"]) != 0 and "needs TensorRT" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "x"  # nothing replaced before the build could run


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_prepare_with_build_true_fails_before_the_slow_work(tmp_path):
    from danet_deploy.export import ExportRequest, export

    request = ExportRequest(
        "danet_edge_r18_d8",
        target="tensorrt",
        precision="int8",
        input_size=(64, 64),
        output=tmp_path / "x",
        options={"build": "true"},
    )
    with pytest.raises(BackendUnavailableError, match="needs TensorRT"):
        export(request, log=lambda _: None)
    assert not (tmp_path / "x").exists()


def test_build_refuses_a_bundle_whose_profile_breaks_the_element_limit(fp32_bundle, tmp_path):
    import shutil

    from danet_deploy.export.tensorrt import build_engine_from_bundle

    bundle = tmp_path / "wide"
    shutil.copytree(fp32_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["extra"]["tensorrt"]["profiles"][0]["max"] = [4, 3, 1024, 2048]
    manifest["extra"]["tensorrt"]["attention"]["feature_channels"] = 512
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="--attention-chunks 3 or more"):
        build_engine_from_bundle(bundle, tmp_path / "engine", log=lambda _: None)


def test_build_refuses_what_is_not_a_prepared_bundle(tmp_path):
    pytest.importorskip("onnxruntime")
    from danet_deploy.export import ExportRequest, export
    from danet_deploy.export.tensorrt import build_engine_from_bundle

    path, _ = export(
        ExportRequest("danet_edge_r18_d8", input_size=(64, 64), output=tmp_path / "onnx"), log=lambda _: None
    )
    with pytest.raises(ConfigError, match="not a prepared TensorRT bundle"):
        build_engine_from_bundle(path, tmp_path / "engine", log=lambda _: None)


def test_fp32_bundle_manifest(fp32_bundle):
    manifest = json.loads((fp32_bundle / "manifest.json").read_text())
    info = manifest["extra"]["tensorrt"]
    assert manifest["backend"] == "onnxruntime" and info["stage"] == "prepared"
    assert info["profiles"][0]["max"] == [1, 3, 96, 96] and info["calibration_hash"] is None


# -- DLA: refused before building when it could only run on the GPU ---------------------------------
STATIC = {"min": [1, 3, 64, 64], "opt": [1, 3, 64, 64], "max": [1, 3, 64, 64]}
DYNAMIC = {"min": [1, 3, 32, 32], "opt": [1, 3, 64, 64], "max": [1, 3, 96, 96]}


def test_dla_accepts_static_fp16_and_int8():
    from danet_deploy.tensorrt.compat import check_dla_request

    for precision in ("fp16", "int8"):
        check_dla_request(0, precision, STATIC)
        check_dla_request(1, precision, STATIC, tensorrt_version="10.3.0.30")
        check_dla_request(0, precision, STATIC, tensorrt_version="11.4.1")
    check_dla_request(None, "fp32", DYNAMIC)  # no DLA asked: nothing to refuse


@pytest.mark.parametrize(
    "args, message",
    [
        ((0, "fp32", STATIC), "DLA runs FP16 and INT8 only, this bundle is fp32"),
        (
            (0, "fp16", DYNAMIC),
            r"DLA has no dynamic shapes.*min 1x3x32x32, opt 1x3x64x64, max 1x3x96x96.*without --dynamic",
        ),
        ((0, "int8", {k: [4097, 3, 64, 64] for k in STATIC}), "batch <= 4096"),
        ((0, "fp16", {k: [1, 3, 64, 8200] for k in STATIC}), "dimensions <= 8192"),
        ((-1, "fp16", STATIC), "0 or more"),
        (("x", "fp16", STATIC), "must be a DLA core number"),
    ],
)
def test_dla_refusals_name_the_problem_and_the_fix(args, message):
    from danet_deploy.tensorrt.compat import check_dla_request

    with pytest.raises(ConfigError, match=message):
        check_dla_request(*args)


def test_dla_refused_on_tensorrt_releases_without_dla_and_with_hardware_compatibility():
    from danet_deploy.tensorrt.compat import check_dla_request

    check_dla_request(0, "fp16", STATIC, tensorrt_version="10.7.0.23")
    for version in ("10.8.0", "10.16.1.11", "11.0.0", "11.3.1", "11.4.0.106"):
        with pytest.raises(ConfigError, match=f"TensorRT {re.escape(version)} has no DLA support"):
            check_dla_request(0, "fp16", STATIC, tensorrt_version=version)
    with pytest.raises(ConfigError, match="AMPERE_PLUS"):
        check_dla_request(0, "fp16", STATIC, hardware_compatible=True)


def test_hardware_compatible_build_needs_an_ampere_gpu():
    from danet_deploy.tensorrt.compat import check_hardware_compatible_build

    check_hardware_compatible_build("8.0")
    check_hardware_compatible_build("8.7", "Orin")
    with pytest.raises(ConfigError, match=r"compute capability >= 8\.0.*Tesla T4 has 7\.5"):
        check_hardware_compatible_build("7.5", "Tesla T4")


def test_dla_layers_are_counted_from_the_inspector_json():
    from danet_deploy.tensorrt.compat import count_dla_layers

    detailed = {
        "Layers": [
            {"Name": "{ForeignNode[/backbone/conv1...]}", "LayerType": "DLA"},
            {"Name": "/head/pam/MatMul", "LayerType": "Myelin"},
            {"Name": "/head/middlayer/Conv", "LayerType": "CaskConvolution"},
        ],
        "Bindings": ["input", "logits"],
    }
    assert count_dla_layers(json.dumps(detailed)) == {"layers": 3, "dla_layers": 1}
    names_only = {"Layers": ["[DlaLayer] {ForeignNode[conv1...relu]}", "Reformatting CopyNode for Input", "middlayer"]}
    assert count_dla_layers(names_only) == {"layers": 3, "dla_layers": 1}
    assert count_dla_layers('{"Layers": []}') == {"layers": 0, "dla_layers": 0}


def _bundle_variant(src, dst, precision=None, profile=None):
    import shutil

    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    if precision:
        manifest["precision"] = precision
        manifest["extra"]["tensorrt"]["precision"] = precision
    if profile:
        manifest["extra"]["tensorrt"]["profiles"][0].update(profile)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def test_dla_build_of_an_fp32_or_dynamic_bundle_is_refused_from_its_manifest(fp32_bundle, tmp_path):
    from danet_deploy.export.tensorrt import build_engine_from_bundle

    with pytest.raises(ConfigError, match="FP16 and INT8 only, this bundle is fp32"):
        build_engine_from_bundle(fp32_bundle, tmp_path / "e1", dla_core=0, log=lambda _: None)
    dynamic_fp16 = _bundle_variant(fp32_bundle, tmp_path / "fp16-dynamic", precision="fp16")
    with pytest.raises(ConfigError, match="DLA has no dynamic shapes"):
        build_engine_from_bundle(dynamic_fp16, tmp_path / "e2", dla_core="0", log=lambda _: None)
    assert not (tmp_path / "e1").exists() and not (tmp_path / "e2").exists()


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_dla_build_of_a_static_fp16_bundle_passes_the_check(fp32_bundle, tmp_path):
    from danet_deploy.export.tensorrt import build_engine_from_bundle

    static_fp16 = _bundle_variant(
        fp32_bundle,
        tmp_path / "fp16-static",
        precision="fp16",
        profile={k: [1, 3, 64, 64] for k in ("min", "opt", "max")},
    )
    with pytest.raises(BackendUnavailableError, match="needs TensorRT"):  # the next check: TensorRT itself
        build_engine_from_bundle(static_fp16, tmp_path / "e", dla_core=0, log=lambda _: None)


def test_cli_dla_with_a_dynamic_bundle_exits_2(fp32_bundle, tmp_path, capsys):
    from danet_deploy.cli.export import main

    dynamic_fp16 = _bundle_variant(fp32_bundle, tmp_path / "fp16-dynamic", precision="fp16")
    code = main(
        ["--target", "tensorrt", "--from", str(dynamic_fp16), "--dla-core", "0", "--output", str(tmp_path / "engine")]
    )
    assert code == 2 and "DLA has no dynamic shapes" in capsys.readouterr().err


def test_prepare_with_dla_refuses_fp32_before_the_slow_work(tmp_path):
    from danet_deploy.export import ExportRequest, export

    request = ExportRequest(
        "danet_edge_r18_d8",
        target="tensorrt",
        precision="fp32",
        input_size=(64, 64),
        output=tmp_path / "x",
        options={"dla_core": 0, "build": False},
    )
    with pytest.raises(ConfigError, match="FP16 and INT8 only"):
        export(request, log=lambda _: None)
    assert not (tmp_path / "x").exists()


def test_legacy_calibration_tensors_of_another_size_are_refused_before_tensorrt(fp32_bundle, tmp_path):
    import numpy as np

    from danet_deploy.export.tensorrt import build_engine_from_bundle
    from danet_deploy.export.tensorrt_build import LEGACY_CALIBRATION, LEGACY_ONNX

    bundle = _bundle_variant(
        fp32_bundle, tmp_path / "legacy", precision="int8", profile={"opt": [2, 3, 64, 64], "max": [2, 3, 96, 96]}
    )
    (bundle / LEGACY_ONNX).write_bytes((bundle / "model.onnx").read_bytes())
    np.save(bundle / LEGACY_CALIBRATION, np.zeros((1, 3, 64, 64), np.float32), allow_pickle=False)
    with pytest.raises(ConfigError, match="1 calibration sample.*one batch of 2"):
        build_engine_from_bundle(bundle, tmp_path / "e", legacy_calibrator=True, log=lambda _: None)
