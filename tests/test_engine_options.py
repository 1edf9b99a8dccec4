"""Runtime engines' typed options (``runtime.load(path, **options)``), parsed like target options.

The contract over every registered engine is in tests/test_registry_contracts.py; these cases
pin the field types the engines use that targets did not (a mapping, a list of names) and the
values the one parser now refuses instead of turning them into something else. Only the backend
classes are imported: no engine library and no model are loaded.
"""

from __future__ import annotations

import pytest

from danet_deploy.errors import ConfigError
from danet_deploy.runtime.backends.base import backend_class


def _parse(engine: str, **values):
    return backend_class(engine).parse_options(values)


def test_openvino_config_is_a_mapping_from_python_or_json_text():
    assert _parse("openvino", config={"NUM_STREAMS": 2}).config == {"NUM_STREAMS": 2}
    assert _parse("openvino", config='{"NUM_STREAMS": 2}').config == {"NUM_STREAMS": 2}
    for bad in ([1], "NUM_STREAMS=2", {1: 2}, "[1, 2]"):
        with pytest.raises(ConfigError, match="option config must be"):
            _parse("openvino", config=bad)


def test_openvino_choices_are_case_blind_and_none_means_the_plugins_own():
    opts = _parse("openvino", hint="THROUGHPUT", inference_precision="BF16", max_shapes="3")
    assert (opts.hint, opts.inference_precision, opts.max_shapes) == ("throughput", "bf16", 3)
    assert _parse("openvino", inference_precision=None).inference_precision is None
    assert _parse("openvino", inference_precision="none").inference_precision is None
    with pytest.raises(ConfigError, match="option inference_precision must be one of auto, f32, bf16, f16"):
        _parse("openvino", inference_precision="f64")
    with pytest.raises(ConfigError, match="max_shapes must be a whole number >= 1"):
        _parse("openvino", max_shapes=0)


@pytest.mark.parametrize("device", ["", "  "])
def test_openvino_empty_device_is_refused_as_an_option(device):
    """device="" passed the availability check (every device name starts with "") and failed at
    compile time as an ArtifactError, as if the artifact were broken."""
    with pytest.raises(ConfigError, match="option device"):
        _parse("openvino", device=device)


def test_onnxruntime_providers_are_names_from_a_list_or_comma_text():
    assert _parse("onnxruntime", providers="cuda,cpu").providers == ("cuda", "cpu")
    assert _parse("onnxruntime", providers=["cpu"]).providers == ("cpu",)
    with pytest.raises(ConfigError, match="option providers must be a comma-separated string or a list"):
        _parse("onnxruntime", providers=123)
    with pytest.raises(ConfigError, match="option providers needs a value"):
        _parse("onnxruntime", providers=[None])
    with pytest.raises(ConfigError, match="option optimization must be one of all, extended, basic, disabled"):
        _parse("onnxruntime", optimization="max")


@pytest.mark.parametrize("value", [0, 257, 1.5, True, "two"])
def test_threads_out_of_range_or_not_whole_is_refused_by_every_engine(value):
    with pytest.raises(ConfigError, match="option threads"):
        _parse("onnxruntime", threads=value)


def test_tensorrt_options_check_without_tensorrt():
    """Checked before any TensorRT import: a robot without the GPU stack still gets the typo."""
    opts = _parse("tensorrt", device="1", cuda_graph="on", contexts="2", log_level="INFO", threads=4)
    assert (opts.device, opts.cuda_graph, opts.contexts, opts.log_level) == (1, True, 2, "INFO")
    with pytest.raises(ConfigError, match="unknown TensorRT log level 'loud'"):
        _parse("tensorrt", log_level="loud")
    with pytest.raises(ConfigError, match="contexts must be a positive integer"):
        _parse("tensorrt", contexts=0)
    with pytest.raises(ConfigError, match="device must be a CUDA device index"):
        _parse("tensorrt", device=-1)


def test_torch_compile_takes_the_torch_options_and_its_mode():
    opts = _parse("torch-compile", mode="max-autotune", attention_chunks="4", fused_attention="false")
    assert (opts.mode, opts.attention_chunks, opts.fused_attention) == ("max-autotune", 4, False)
    with pytest.raises(ConfigError, match="the torch backend has no option 'mode'"):
        _parse("torch", mode="default")
