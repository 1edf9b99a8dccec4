"""Triton model repositories from artifacts: layout, config.pbtxt against Triton's own schema, bad input.

The schema checks need ``tritonclient`` (the ``serve`` extra) and are skipped without it; the
layout, read-back and error tests run everywhere.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from danet_deploy import runtime
from danet_deploy.errors import ArtifactError, ConfigError, ManifestError
from danet_deploy.inputs import contract_note
from danet_deploy.manifest import Manifest, read_manifest
from danet_deploy.serve import TritonOptions, read_triton_repository, render_config, write_triton_repository
from danet_deploy.serve.repository import plan_model

#: a valid preprocessing section (a Manifest checks its sections when it is built)
PREPROCESSING = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}

try:
    from google.protobuf import text_format  # noqa: F401 imported only to see that it is installed
    from tritonclient.grpc import model_config_pb2

    from danet_deploy.serve import parse_config

    HAVE_SCHEMA = True
except ImportError:
    HAVE_SCHEMA = False

needs_schema = pytest.mark.skipif(
    not HAVE_SCHEMA,
    reason="tritonclient (serve extra) not installed: "
    "pip install 'danet-deploy[serve]' to check config.pbtxt with Triton's schema",
)

SIZE = (32, 32)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, module_cache):
    """Real danet_demo exports: ONNX, OpenVINO and a prepared TensorRT bundle, static and dynamic."""
    from danet_deploy.export import export
    from danet_deploy.export.pipeline import ExportRequest

    root = tmp_path_factory.mktemp("artifacts")
    out = {}
    for target in ("onnx", "openvino", "tensorrt"):
        for dynamic in (False, True):
            extra = dict(dynamic=True, max_size=(64, 64), max_batch=4) if dynamic else {}
            path, _ = export(
                ExportRequest(
                    model="danet_demo",
                    target=target,
                    precision="fp32",
                    input_size=SIZE,
                    output=str(root / f"{target}-{'dyn' if dynamic else 'static'}"),
                    options={"build": "false"} if target == "tensorrt" else {},
                    **extra,
                ),
                log=lambda _m: None,
            )
            out[(target, dynamic)] = path
    return out


@pytest.fixture(scope="module")
def engine_artifact(artifacts, tmp_path_factory):
    """An engine artifact's folder as the TensorRT build writes it (manifest from the bundle's); the plan
    bytes are a placeholder: the writer reads manifests only and never opens the engine."""
    from danet_deploy.export.tensorrt_build import engine_manifest_from_bundle

    bundle = read_manifest(artifacts[("tensorrt", True)])
    folder = tmp_path_factory.mktemp("engine")
    (folder / "model.engine").write_bytes(b"placeholder plan bytes")
    facts = {
        "stage": "engine",
        "version": "10.3.0",
        "profiles": bundle.extra["tensorrt"]["profiles"],
        "bundle": {"path": "bundle"},
    }
    manifest = engine_manifest_from_bundle(bundle, facts)
    manifest.hash_files(folder)
    manifest.write(folder)
    return folder


EXPECTED = {
    "onnx": ("platform", "onnxruntime_onnx", "model.onnx", "KIND_CPU"),
    "openvino": ("backend", "openvino", "model.xml", "KIND_CPU"),
    "tensorrt": ("platform", "tensorrt_plan", "model.onnx", "KIND_GPU"),
}


@needs_schema
@pytest.mark.parametrize("target", ["onnx", "openvino", "tensorrt"])
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_repository_for_each_platform_parses_with_triton_schema(artifacts, tmp_path, target, dynamic):
    result = write_triton_repository(artifacts[(target, dynamic)], tmp_path / "repo", instances=3)
    config = parse_config((result.model_dir / "config.pbtxt").read_text())
    field, platform, model_file, kind = EXPECTED[target]
    assert getattr(config, field) == platform
    assert config.name == result.name == result.model_dir.name
    assert (result.version_dir / model_file).is_file()
    assert [g.count for g in config.instance_group] == [3]
    assert model_config_pb2.ModelInstanceGroup.Kind.Name(config.instance_group[0].kind) == kind
    assert model_config_pb2.DataType.Name(config.input[0].data_type) == "TYPE_FP32"
    assert config.input[0].name == "input" and config.output[0].name == "logits"
    if dynamic:
        assert config.max_batch_size == 4  # the export's --max-batch
        assert list(config.input[0].dims) == [3, -1, -1]
        assert list(config.output[0].dims) == [8, -1, -1]
        assert config.HasField("dynamic_batching")
        assert config.dynamic_batching.max_queue_delay_microseconds == 100
    else:
        assert config.max_batch_size == 0
        assert list(config.input[0].dims) == [1, 3, *SIZE]
        assert list(config.output[0].dims) == [1, 8, *SIZE]
        assert not config.HasField("dynamic_batching")
    if target == "tensorrt":  # a prepared bundle: config from its metadata, engine built on the serving GPU
        assert result.pending and str(result.version_dir) in result.pending
        assert not (result.version_dir / "model.plan").exists()
    else:
        assert result.pending is None


@needs_schema
def test_engine_artifact_becomes_model_plan(engine_artifact, tmp_path):
    result = write_triton_repository(engine_artifact, tmp_path / "repo", gpus=(0,), instances=2)
    config = parse_config(result.config)
    assert config.platform == "tensorrt_plan" and result.pending is None
    assert (result.version_dir / "model.plan").read_bytes() == b"placeholder plan bytes"
    assert list(config.instance_group[0].gpus) == [0]
    served = read_manifest(result.version_dir)  # hashes verified under the new file name
    assert served.primary == "model.plan" and served.backend == "tensorrt"


@needs_schema
def test_backend_parameters_and_ort_tensorrt_accelerator(artifacts, tmp_path):
    ov = write_triton_repository(
        artifacts[("openvino", True)],
        tmp_path / "repo",
        threads=3,
        streams=2,
        preferred_batch_sizes=(2, 4),
        max_queue_delay_us=500,
    )
    config = parse_config(ov.config)
    assert {k: v.string_value for k, v in config.parameters.items()} == {
        "INFERENCE_NUM_THREADS": "3",
        "NUM_STREAMS": "2",
    }
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    ort = write_triton_repository(artifacts[("onnx", False)], tmp_path / "repo", threads=2)
    assert {k: v.string_value for k, v in parse_config(ort.config).parameters.items()} == {"intra_op_thread_count": "2"}
    trt = write_triton_repository(
        artifacts[("tensorrt", True)],
        tmp_path / "repo",
        name="bundle_on_ort",
        platform="onnxruntime",
        ort_tensorrt=True,
        ort_tensorrt_fp16=True,
    )
    config = parse_config(trt.config)
    assert config.platform == "onnxruntime_onnx" and trt.pending is None
    accel = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert [a.name for a in accel] == ["tensorrt"] and dict(accel[0].parameters) == {"precision_mode": "FP16"}
    assert model_config_pb2.ModelInstanceGroup.Kind.Name(config.instance_group[0].kind) == "KIND_GPU"


@needs_schema
def test_schema_rejects_a_misspelt_field():
    """The check the tests rely on does fail on a field Triton does not know."""
    with pytest.raises(ArtifactError, match="schema"):
        parse_config('name: "x"\nmax_batch_sise: 4\n')


def test_repository_reads_back_and_runs_like_the_artifact(artifacts, tmp_path):
    source = artifacts[("onnx", True)]
    write_triton_repository(source, tmp_path / "repo", name="demo")
    write_triton_repository(artifacts[("openvino", False)], tmp_path / "repo", name="demo_ov")
    models = read_triton_repository(tmp_path / "repo")
    assert set(models) == {"demo", "demo_ov"}
    image = (np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)
    with runtime.load(source) as a, runtime.load(models["demo"].latest()) as b:
        np.testing.assert_array_equal(a.run(image), b.run(image))
    manifest = read_manifest(models["demo"].latest())
    assert manifest.extra["triton"]["model"] == "demo" and manifest.extra["triton"]["platform"] == "onnxruntime_onnx"


def test_existing_model_folder_needs_force(artifacts, tmp_path):
    repo = tmp_path / "repo"
    first = write_triton_repository(artifacts[("onnx", False)], repo, name="m")
    marker = first.model_dir / "keep.txt"
    marker.write_text("user file")
    with pytest.raises(ArtifactError, match="already exists"):
        write_triton_repository(artifacts[("onnx", False)], repo, name="m", instances=2)
    assert marker.read_text() == "user file"
    write_triton_repository(artifacts[("onnx", False)], repo, name="m", instances=2, force=True)
    assert not marker.exists() and "count: 2" in (repo / "m" / "config.pbtxt").read_text()


def test_repository_output_that_is_a_file(artifacts, tmp_path):
    (tmp_path / "repo").write_text("not a folder")
    with pytest.raises(ArtifactError, match="is a file"):
        write_triton_repository(artifacts[("onnx", False)], tmp_path / "repo")


def test_tampered_artifact_is_refused(artifacts, tmp_path):
    copy = tmp_path / "art"
    shutil.copytree(artifacts[("onnx", False)], copy)
    with open(copy / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ManifestError, match="sha256"):
        write_triton_repository(copy, tmp_path / "repo")
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


@pytest.mark.parametrize("name", ["../escape", "sub/../../escape", "ABSOLUTE"])
def test_manifest_naming_files_outside_is_refused(artifacts, tmp_path, name):
    """Even when the outside file's hash matches, nothing outside the artifact is copied."""
    copy = tmp_path / "art"
    shutil.copytree(artifacts[("onnx", False)], copy)
    (copy / "sub").mkdir()
    shutil.copyfile(copy / "model.onnx", tmp_path / "escape")
    name = str(tmp_path / "escape") if name == "ABSOLUTE" else name
    data = json.loads((copy / "manifest.json").read_text())
    data["files"][name] = data["files"]["model.onnx"]
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="outside"):
        write_triton_repository(copy, tmp_path / "repo")
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


def test_symlink_escaping_the_artifact_is_refused(artifacts, tmp_path):
    copy = tmp_path / "art"
    shutil.copytree(artifacts[("onnx", False)], copy)
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"secret")
    (copy / "extra.bin").symlink_to(secret)
    from danet_deploy.util.files import sha256_file

    data = json.loads((copy / "manifest.json").read_text())
    data["files"]["extra.bin"] = sha256_file(secret)
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="outside"):
        write_triton_repository(copy, tmp_path / "repo")


@pytest.mark.parametrize(
    "key, options, message",
    [
        ("onnx", dict(max_batch_size=4), "static batch"),
        ("openvino", dict(max_batch_size=5), "exceeds the artifact's batch bound"),
        ("tensorrt", dict(threads=2), "threads does not apply"),
        ("tensorrt", dict(kind="cpu"), "GPU instances only"),
        ("onnx", dict(streams=2), "OpenVINO backend only"),
        ("openvino", dict(kind="gpu"), "CPU instances"),
        ("openvino", dict(ort_tensorrt=True), "onnxruntime platform"),
        ("onnx", dict(platform="openvino"), "not openvino"),
        ("openvino", dict(preferred_batch_sizes=(8,)), "exceeds max_batch_size"),
    ],
)
def test_invalid_combinations_are_config_errors(artifacts, tmp_path, key, options, message):
    dynamic = key == "openvino" or key == "tensorrt"
    with pytest.raises(ConfigError, match=message):
        write_triton_repository(artifacts[(key, dynamic)], tmp_path / "repo", **options)
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


@pytest.mark.parametrize(
    "fields",
    [
        dict(version=0),
        dict(instances=0),
        dict(name="../x"),
        dict(name=".hidden"),
        dict(kind="tpu"),
        dict(gpus=(-1,)),
        dict(max_queue_delay_us=-1),
        dict(ort_tensorrt_fp16=True),
        dict(platform="tensorflow"),
    ],
)
def test_invalid_options_are_config_errors(fields):
    with pytest.raises(ConfigError):
        TritonOptions(**fields)


def test_options_from_strings():
    opts = TritonOptions.from_strings(
        {
            "instances": "2",
            "gpus": "0,1",
            "ort_tensorrt": "true",
            "threads": "none",
            "name": "m",
            "max_batch_size": "4",
            "kind": "gpu",
        }
    )
    assert opts == TritonOptions(
        instances=2, gpus=(0, 1), ort_tensorrt=True, threads=None, name="m", max_batch_size=4, kind="gpu"
    )
    with pytest.raises(ConfigError, match="unknown option .instance. for --target triton; did you mean .instances."):
        TritonOptions.from_strings({"instance": "2"})
    with pytest.raises(ConfigError, match="must be an integer"):
        TritonOptions.from_strings({"instances": "two"})


def test_export_cli_target_triton(artifacts, tmp_path, capsys):
    from danet_deploy.cli.export import main

    repo = tmp_path / "repo"
    args = [
        "--target",
        "triton",
        "--from",
        str(artifacts[("openvino", True)]),
        "--output",
        str(repo),
        "--option",
        "instances=2",
        "--option",
        "name=seg",
    ]
    assert main(args) == 0
    assert (repo / "seg" / "1" / "model.xml").is_file()
    assert main(args) == 2 and "already exists" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    assert main(["--target", "triton", "--output", str(repo)]) == 2
    assert "--from ARTIFACT_DIR" in capsys.readouterr().err


# -- property-based: any manifest shape and option mix gives a schema-valid config or a ConfigError ----
def _manifest(in_shape: list, out_shape: list, max_batch: int | None) -> Manifest:
    entry = {"name": "input", "shape": in_shape, "dtype": "float32"}
    if max_batch is not None:
        entry["max_shape"] = [max_batch, 3, 64, 64]
    return Manifest(
        target="onnx",
        backend="onnxruntime",
        precision="fp32",
        primary="model.onnx",
        model={"name": "danet_demo"},
        preprocessing=PREPROCESSING,
        input=entry,
        output={"name": "logits", "shape": out_shape, "dtype": "float32"},
    )


_dim = st.one_of(st.integers(1, 4096), st.sampled_from(["batch", "height", "width"]))


@needs_schema
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batch_dynamic=st.booleans(),
    hw=st.lists(_dim, min_size=2, max_size=2),
    classes=st.integers(1, 300),
    bound=st.one_of(st.none(), st.integers(1, 16)),
    max_batch=st.one_of(st.none(), st.integers(0, 20)),
    instances=st.integers(1, 8),
    threads=st.one_of(st.none(), st.integers(1, 64)),
    delay=st.integers(0, 10**6),
    preferred=st.lists(st.integers(1, 20), max_size=3),
)
def test_rendered_config_matches_manifest_or_is_refused(
    batch_dynamic, hw, classes, bound, max_batch, instances, threads, delay, preferred
):
    batch = "batch" if batch_dynamic else 1
    manifest = _manifest([batch, 3, *hw], [batch, classes, *hw], bound)
    chosen = (max_batch or bound or 8) if batch_dynamic else 0
    refused = (
        (not batch_dynamic and bool(max_batch))
        or (batch_dynamic and bound is not None and chosen > bound)
        or any(p > max(chosen, 1) for p in preferred)
    )
    options = TritonOptions(
        max_batch_size=max_batch,
        instances=instances,
        threads=threads,
        max_queue_delay_us=delay,
        preferred_batch_sizes=tuple(preferred),
    )
    if refused:
        with pytest.raises(ConfigError):
            render_config(manifest, options)
        return
    text = render_config(manifest, options)
    config = parse_config(text)
    expect_hw = [d if isinstance(d, int) else -1 for d in hw]
    if batch_dynamic:
        assert config.max_batch_size == (max_batch or bound or 8)
        assert list(config.input[0].dims) == [3, *expect_hw]
        assert list(config.output[0].dims) == [classes, *expect_hw]
        if config.max_batch_size > 1:
            assert config.dynamic_batching.max_queue_delay_microseconds == delay
            assert list(config.dynamic_batching.preferred_batch_size) == preferred
        else:  # bounded to batch 1: a batcher that cannot batch is left out
            assert not config.HasField("dynamic_batching")
    else:
        assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
        assert list(config.input[0].dims) == [1, 3, *expect_hw]
    assert config.instance_group[0].count == instances
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert params == ({} if threads is None else {"intra_op_thread_count": str(threads)})


def test_render_is_pure_and_options_are_immutable():
    manifest = _manifest(["batch", 3, "height", "width"], ["batch", 8, "height", "width"], 4)
    options = TritonOptions(instances=2)
    assert render_config(manifest, options) == render_config(manifest, options)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.instances = 3  # type: ignore[misc]


@needs_schema
def test_mask_output_artifacts_get_every_output_in_the_config(tmp_path):
    """An --emit mask / both artifact: Triton sees the uint8 mask (and the logits), so clients need not move
    logits to arg-max them."""
    from danet_deploy.export import ExportRequest, export

    for emit, expected in (
        ("mask", [("mask", "TYPE_UINT8", [64, 64])]),
        ("both", [("mask", "TYPE_UINT8", [64, 64]), ("logits", "TYPE_FP32", [8, 64, 64])]),
    ):
        art, _ = export(
            ExportRequest(
                model="danet_demo", input_size=(64, 64), emit=emit, dynamic=False, batch=1, output=tmp_path / emit
            ),
            log=lambda _: None,
        )
        result = write_triton_repository(art, tmp_path / "repo", name=f"seg_{emit}")
        config = parse_config(result.config)
        from tritonclient.grpc import model_config_pb2

        got = [(o.name, model_config_pb2.DataType.Name(o.data_type), list(o.dims)) for o in config.output]
        assert got == [(n, t, [1, *d]) for n, t, d in expected]  # static batch: dims carry it (max_batch_size 0)


def test_a_registered_engine_is_served_from_its_triton_declaration(artifacts):
    """Serving knowledge lives on the engine's registry entry: a new engine with a Triton
    declaration gets repositories without a change to the repository code."""
    from danet_deploy.serve.repository import plan_model, platforms
    from danet_deploy.targets import Engine, TritonPlatform, register_engine, unregister

    register_engine(
        Engine(
            "fake-engine",
            "Fake Engine",
            "tests.nowhere:Backend",
            suffixes=(".fake",),
            weights_suffix=".weights",
            triton=TritonPlatform(
                "backend", "fake_backend", "model.fake", instance_kind="cpu", threads_parameter="FAKE_THREADS"
            ),
        )
    )
    try:
        assert "fake-engine" in platforms()
        manifest = dataclasses.replace(
            read_manifest(artifacts[("onnx", False)]), backend="fake-engine", primary="net.onnx"
        )
        plan = plan_model(manifest, TritonOptions(threads=3))
        assert plan.platform == "fake-engine" and plan.config["backend"] == "fake_backend"
        assert plan.config["parameters"] == [{"key": "FAKE_THREADS", "value": {"string_value": "3"}}]
        assert plan.renames == {"net.onnx": "model.fake", "net.weights": "model.weights"}
        with pytest.raises(ConfigError, match="Fake Engine backend runs CPU instances only"):
            plan_model(manifest, TritonOptions(kind="gpu"))
        with pytest.raises(ConfigError, match="streams applies to the OpenVINO backend only"):
            plan_model(manifest, TritonOptions(streams=2))
    finally:
        unregister("fake-engine")
    assert "fake-engine" not in platforms()


def test_one_model_exported_two_ways_gets_two_default_names(artifacts, tmp_path):
    """Static and dynamic exports (and --emit variants) of one model wrote the same
    <model>_<target>_<precision> folder: the second was refused, or replaced the first with --force."""
    repo = tmp_path / "repo"
    static = write_triton_repository(artifacts[("onnx", False)], repo)
    dynamic = write_triton_repository(artifacts[("onnx", True)], repo)
    assert (static.name, dynamic.name) == ("danet_demo_onnx_fp32", "danet_demo_onnx_fp32_dynamic")
    manifest = read_manifest(artifacts[("onnx", False)])
    masked = dataclasses.replace(
        manifest,
        output={
            **manifest.output,
            "emit": "mask-lowres",
            "tensors": [
                {"name": "mask", "shape": [1, 64, 64], "dtype": "uint8"},
                {"name": "logits_lowres", "shape": [1, 8, 8, 8], "dtype": "float32"},
            ],
        },
    )
    assert plan_model(masked, TritonOptions()).name == "danet_demo_onnx_fp32_mask_lowres"


def test_a_batch_bound_of_one_is_said_and_gets_no_batcher():
    """A dynamic export bounded to batch 1 (--max-batch's default) got max_batch_size 1 and a
    dynamic_batching block, silently, although Triton's default of 8 was documented."""
    plan = plan_model(_manifest(["batch", 3, 64, 64], ["batch", 8, 64, 64], 1), TritonOptions())
    assert plan.config["max_batch_size"] == 1 and "dynamic_batching" not in plan.config
    assert any("--max-batch 8" in note for note in plan.notes)
    manifest = _manifest(["batch", 3, 64, 64], ["batch", 8, 64, 64], None)
    plan = plan_model(manifest, TritonOptions())
    assert plan.config["max_batch_size"] == 8 and "dynamic_batching" in plan.config
    assert plan.notes == [contract_note(manifest.input)]  # the input contract's note only, nothing about the batch
