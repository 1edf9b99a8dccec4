"""``build_engine`` against a stand-in TensorRT builder: what it asks TensorRT to do and records.

The builder below implements only the calls ``build_engine`` makes, with TensorRT's names; it
does not optimise anything. These tests check the order of the CUDA/TensorRT calls (device
first), the DLA facts recorded from the engine inspector, the refusals before a build, and that
the legacy calibrator is fed whole batches and freed. The real builder runs in
tests/test_tensorrt_engine.py on a machine with TensorRT.
"""

import json
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest
from fake_cuda import FakeCudart, install_fake_cuda_python, read_floats

from danet_deploy.errors import ConfigError
from danet_deploy.tensorrt import logger as trt_logger

STATIC = {"min": [2, 3, 8, 8], "opt": [2, 3, 8, 8], "max": [2, 3, 8, 8]}


def fake_tensorrt(cudart, version="10.3.0", inspector_layers=None, input_shape=(2, 3, 8, 8)):
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.events = []

    def enum(*names):
        return SimpleNamespace(**{n: n for n in names})

    trt.BuilderFlag = enum("FP16", "INT8", "GPU_FALLBACK")
    trt.MemoryPoolType = enum("WORKSPACE")
    trt.DeviceType = enum("GPU", "DLA")
    trt.ProfilingVerbosity = enum("LAYER_NAMES_ONLY", "DETAILED")
    trt.LayerInformationFormat = enum("ONELINE", "JSON")
    trt.HardwareCompatibilityLevel = enum("NONE", "AMPERE_PLUS")
    trt.NetworkDefinitionCreationFlag = SimpleNamespace(STRONGLY_TYPED=5)

    class Logger:
        ERROR, WARNING, INFO, VERBOSE = 1, 2, 3, 4

        def __init__(self, min_severity=2):
            self.min_severity = min_severity

    class IInt8EntropyCalibrator2:
        def __init__(self):
            pass

    network = SimpleNamespace(
        num_layers=3,
        get_input=lambda i: SimpleNamespace(shape=input_shape, name="input"),
        get_layer=lambda i: f"layer{i}",
    )

    class Config:
        def __init__(self):
            self.flags, self.int8_calibrator, self.profiling_verbosity = [], None, "LAYER_NAMES_ONLY"
            self.hardware_compatibility_level = "NONE"

        def set_memory_pool_limit(self, pool, size):
            self.workspace = size

        def set_flag(self, flag):
            self.flags.append(flag)

        def can_run_on_DLA(self, layer):
            return layer != "layer2"

        def add_optimization_profile(self, profile):
            self.profile = profile

        def set_calibration_profile(self, profile):
            self.calibration_profile = profile

    class Builder:
        num_DLA_cores = 2

        def __init__(self, logger):
            trt.events.append(("Builder", cudart.current_device))
            self.logger = logger

        def create_network(self, flags):
            trt.events.append(("create_network", flags))
            return network

        def create_builder_config(self):
            trt.config = Config()
            return trt.config

        def create_optimization_profile(self):
            return SimpleNamespace(set_shape=lambda *a: None)

        def build_serialized_network(self, net, config):
            calibrator = config.int8_calibrator
            if calibrator is not None:  # TensorRT pulls batches until None
                trt.calibration = []
                while (pointers := calibrator.get_batch(["input"])) is not None:
                    trt.calibration.append(read_floats(pointers[0], input_shape))
                trt.memory_during_build = dict(cudart.memory)
            return b"serialized plan"

    class Runtime:
        def __init__(self, logger):
            self.DLA_core = -1

        def deserialize_cuda_engine(self, plan):
            trt.events.append(("deserialize for inspection", self.DLA_core))
            info = json.dumps({"Layers": inspector_layers or []})
            return SimpleNamespace(
                create_engine_inspector=lambda: SimpleNamespace(get_engine_information=lambda fmt: info)
            )

    trt.Logger, trt.Builder, trt.Runtime = Logger, Builder, Runtime
    trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    trt.OnnxParser = lambda net, logger: SimpleNamespace(parse_from_file=lambda path: True, num_errors=0)
    return trt


@pytest.fixture
def env(monkeypatch, tmp_path):
    def make(**kwargs):
        cudart = FakeCudart(devices=2, capability=kwargs.pop("capability", (8, 7)))
        install_fake_cuda_python(monkeypatch, cudart)
        trt = fake_tensorrt(cudart, **kwargs)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        trt_logger._reset_for_tests()
        onnx = tmp_path / "model.onnx"
        onnx.write_bytes(b"onnx")
        return trt, cudart, onnx

    return make


def _build(onnx, tmp_path, log, **kwargs):
    """``build_engine`` with ``kwargs`` split into its own arguments and the parsed target options."""
    from danet_deploy.export.tensorrt_build import build_engine
    from danet_deploy.targets.builtin import TensorRTOptions

    own = {k: kwargs.pop(k) for k in ("calibrator_tensors", "calibration_cache") if k in kwargs}
    precision = kwargs.pop("precision", "fp16")
    return build_engine(
        onnx,
        tmp_path / "model.engine",
        STATIC,
        precision,
        TensorRTOptions.parse(kwargs, "tensorrt"),
        log=log.append,
        **own,
    )


def test_build_runs_on_the_requested_device(env, tmp_path):
    trt, _cudart, onnx = env()
    log = []
    facts = _build(onnx, tmp_path, log, device=1)
    assert trt.events[0] == ("Builder", 1)  # cudaSetDevice(1) came before TensorRT touched a GPU
    assert (tmp_path / "model.engine").read_bytes() == b"serialized plan"
    assert facts["gpu"] == "Orin" and "dla_layers" not in facts


def test_dla_build_records_the_layers_the_inspector_places_on_dla(env, tmp_path):
    trt, _, onnx = env(
        inspector_layers=[
            {"Name": "{ForeignNode[conv1...]}", "LayerType": "DLA"},
            {"Name": "/head/pam/MatMul", "LayerType": "Myelin"},
            {"Name": "/cls/Conv", "LayerType": "CaskConvolution"},
        ]
    )
    log = []
    facts = _build(onnx, tmp_path, log, dla_core=1)
    assert facts["dla_core"] == 1 and facts["dla_layers"] == 1 and facts["engine_layers"] == 3
    assert facts["dla_capable_network_layers"] == 2
    assert trt.config.DLA_core == 1 and trt.config.default_device_type == "DLA"
    assert "GPU_FALLBACK" in trt.config.flags and trt.config.profiling_verbosity == "DETAILED"
    assert ("deserialize for inspection", 1) in trt.events
    assert any("1 of 3 engine layers run on DLA core 1" in line for line in log)
    assert not any("WARNING" in line for line in log)


def test_dla_build_that_fell_back_entirely_warns(env, tmp_path):
    _, _, onnx = env(inspector_layers=[{"Name": "/a", "LayerType": "CaskConvolution"}])
    log = []
    facts = _build(onnx, tmp_path, log, dla_core=0)
    assert facts["dla_layers"] == 0
    warning = next(line for line in log if line.startswith("WARNING"))
    assert "no layer of the engine runs on DLA core 0" in warning and "strongly_typed=false" in warning


def test_dla_refusals_happen_before_building(env, tmp_path):
    trt, _, onnx = env(version="11.2.0")
    with pytest.raises(ConfigError, match="TensorRT 11.2.0 has no DLA support"):
        _build(onnx, tmp_path, [], dla_core=0)
    with pytest.raises(ConfigError, match="FP16 and INT8 only"):
        _build(onnx, tmp_path, [], dla_core=0, precision="fp32")
    assert trt.events == []  # both refused before a TensorRT builder was created
    with pytest.raises(ConfigError, match="does not exist: this device has 2 DLA core"):
        env()  # a TensorRT 10 with two DLA cores
        _build(onnx, tmp_path, [], dla_core=2)
    assert not (tmp_path / "model.engine").exists()


def test_hardware_compatible_build_on_a_pre_ampere_gpu_is_refused(env, tmp_path):
    trt, _, onnx = env(capability=(7, 5))
    with pytest.raises(ConfigError, match=r"compute capability >= 8\.0.*7\.5"):
        _build(onnx, tmp_path, [], hardware_compatible=True)
    assert trt.events == []
    trt, _, onnx = env(capability=(8, 6))
    facts = _build(onnx, tmp_path, [], hardware_compatible=True)
    assert facts["hardware_compatibility"] == "ampere_plus"
    assert trt.config.hardware_compatibility_level == "AMPERE_PLUS"


def test_legacy_calibrator_gets_whole_batches_of_the_input_and_is_freed(env, tmp_path):
    trt, cudart, onnx = env()
    tensors = np.random.default_rng(0).standard_normal((5, 3, 8, 8)).astype(np.float32)
    facts = _build(
        onnx,
        tmp_path,
        [],
        precision="int8",
        legacy_calibrator=True,
        strongly_typed=False,
        calibrator_tensors=tensors,
        calibration_cache=tmp_path / "calibration.cache",
    )
    assert facts["legacy_int8_calibrator"] and facts["builder_flags"] == ["INT8", "FP16"]
    assert len(trt.calibration) == 2  # batches of the static input's 2 samples; the fifth is dropped
    np.testing.assert_array_equal(np.concatenate(trt.calibration), tensors[:4])
    assert trt.memory_during_build and cudart.memory == {}  # the device buffer is gone after the build


def test_weakly_typed_builds_set_the_precision_flags_and_strongly_typed_ones_none(env, tmp_path):
    trt, _, onnx = env()
    facts = _build(onnx, tmp_path, [], strongly_typed=False)
    assert facts["builder_flags"] == ["FP16"] and trt.config.flags == ["FP16"] and not facts["strongly_typed"]
    assert ("create_network", 0) in trt.events
    trt, _, onnx = env()
    facts = _build(onnx, tmp_path, [])  # the default: strongly typed, the ONNX decides every precision
    assert facts["builder_flags"] == [] and trt.config.flags == [] and facts["strongly_typed"]
    assert ("create_network", 1 << 5) in trt.events


def test_weakly_typed_and_legacy_builds_are_refused_on_tensorrt_11(env, tmp_path):
    trt, _, onnx = env(version="11.2.0")
    with pytest.raises(ConfigError, match="strongly typed networks only"):
        _build(onnx, tmp_path, [], strongly_typed=False)
    with pytest.raises(ConfigError, match="strongly typed networks only|no implicit INT8 calibrators"):
        _build(onnx, tmp_path, [], precision="int8", legacy_calibrator=True)
    assert trt.events == []


def test_the_legacy_calibrator_without_its_tensors_is_a_config_error(env, tmp_path):
    _, _, onnx = env()
    with pytest.raises(ConfigError, match="calibration tensors"):
        _build(onnx, tmp_path, [], precision="int8", legacy_calibrator=True)
    assert not (tmp_path / "model.engine").exists()


def test_workspace_and_timing_cache_reach_the_builder_config(env, tmp_path):
    trt, _, onnx = env()
    cache = tmp_path / "timing.cache"
    created = []

    def create_timing_cache(self, data):
        created.append(bytes(data))
        return SimpleNamespace(serialize=lambda: b"timings")

    config_class = type(trt.Builder(None).create_builder_config())
    config_class.create_timing_cache = create_timing_cache
    config_class.set_timing_cache = lambda self, c, ignore_mismatch: setattr(self, "cache", c) or True
    config_class.get_timing_cache = lambda self: self.cache
    facts = _build(onnx, tmp_path, [], workspace="1GB", timing_cache=cache)
    assert trt.config.workspace == 2**30 and facts["workspace"] == 2**30
    assert created == [b""] and cache.read_bytes() == b"timings" and facts["timing_cache"] == str(cache)


def test_a_bundle_build_parses_its_options_like_the_target_before_reading_the_bundle(tmp_path):
    """One name for the legacy calibrator (the documented ``legacy_calibrator``); values by name
    are typed by the target's parser, laid over a parsed options object."""
    from danet_deploy.export.tensorrt_build import build_engine_from_bundle, bundle_build_options
    from danet_deploy.targets.builtin import TensorRTOptions

    missing = tmp_path / "no-bundle"
    with pytest.raises(ConfigError, match="unknown option 'legacy_int8_calibrator'.*did you mean 'legacy_calibrator'"):
        build_engine_from_bundle(missing, legacy_int8_calibrator=True, log=lambda _: None)
    with pytest.raises(ConfigError, match="--option dla_core .*must be an integer"):
        build_engine_from_bundle(missing, dla_core="first", log=lambda _: None)
    base = TensorRTOptions.parse({"workspace": "2GB", "device": "1"}, "tensorrt")
    merged = bundle_build_options(base, dla_core="0", legacy_calibrator="yes")
    assert (merged.workspace, merged.device, merged.dla_core, merged.legacy_calibrator) == ("2GB", 1, 0, True)
    assert bundle_build_options(base) is base and bundle_build_options() == TensorRTOptions()
