"""ONNX Runtime backend: CPU by default; CUDA, TensorRT and OpenVINO execution providers by name."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...errors import ArtifactError, ConfigError, summarize_exception
from ...inputs import bare_input_entry
from ...manifest import Manifest, manifest_from_metadata
from ...targets.options import option
from .base import Backend, EngineOptions, InputSpec, as_output, bare_output_entry, require

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(uint8)": "uint8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(float16)": "float16",
}

_PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}


#: ONNX Runtime's graph optimisation levels by the ``optimization`` option's names
OPTIMIZATION_LEVELS = {
    "all": "ORT_ENABLE_ALL",
    "extended": "ORT_ENABLE_EXTENDED",
    "basic": "ORT_ENABLE_BASIC",
    "disabled": "ORT_DISABLE_ALL",
}


@dataclass(frozen=True)
class OnnxRuntimeEngineOptions(EngineOptions):
    """``runtime.load(..., backend="onnxruntime", **options)``."""

    providers: tuple[str, ...] | None = option(
        None,
        "execution providers in order: ORT names or cpu, cuda, tensorrt, openvino, coreml (a list or a "
        "comma-separated string; default: CPU)",
    )
    arena: bool = option(True, "CPU memory arena (off lowers peak memory at some latency cost)")
    optimization: str = option("all", "graph optimisation level", choices=tuple(OPTIMIZATION_LEVELS))


def resolve_providers(providers: Sequence[str] | str | None, available: Sequence[str]) -> list[str]:
    """Map short names (``cpu``, ``cuda``, ``tensorrt``, ``openvino``) to ORT provider names.

    The names' type was checked by :class:`OnnxRuntimeEngineOptions`; what is left to say is that
    an empty list names nothing, and which providers this onnxruntime build lacks."""
    if providers is None:
        return ["CPUExecutionProvider"]
    if isinstance(providers, str):
        providers = [p for p in providers.split(",") if p]
    if not providers:
        raise ConfigError(
            "providers must name at least one provider (a list, or a comma-separated string such as "
            "'cpu' or 'cuda,cpu'), got none"
        )
    names = [_PROVIDER_ALIASES.get(str(p).lower(), str(p)) for p in providers]
    missing = [p for p in names if p not in available]
    if missing:
        raise ConfigError(
            f"ONNX Runtime provider(s) {missing} are not available in this onnxruntime build "
            f"(available: {list(available)}); install onnxruntime-gpu / onnxruntime-openvino or "
            "choose another provider"
        )
    return names


class OnnxRuntimeBackend(Backend):
    """Runs ``.onnx`` with ONNX Runtime; options: :class:`OnnxRuntimeEngineOptions`."""

    name = "onnxruntime"
    options_class: ClassVar[type[OnnxRuntimeEngineOptions]] = OnnxRuntimeEngineOptions

    def __init__(self, model_file: Path | None, manifest: Manifest | None, **values: Any) -> None:
        opts = self.options_class.parse(values, self.name)
        ort = require("onnxruntime", "onnxruntime", "onnxruntime")
        if model_file is None:
            raise ConfigError("the onnxruntime backend needs an .onnx file or an artifact folder")
        options = ort.SessionOptions()
        if opts.threads:
            options.intra_op_num_threads = opts.threads
            options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = opts.arena
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[opts.optimization])
        options.log_severity_level = 3
        self.providers = resolve_providers(opts.providers, ort.get_available_providers())
        self.model_file = Path(model_file)  # a profiling session (bench.profile) opens the same file
        try:
            self.session = ort.InferenceSession(str(model_file), options, providers=self.providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf types
            raise ArtifactError(
                f"ONNX Runtime could not load {model_file}: {summarize_exception(exc)} "
                "(corrupt or truncated file? re-export it)"
            ) from exc
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.output_names = [o.name for o in outputs]
        if manifest is None:
            meta = self.session.get_modelmeta().custom_metadata_map
            manifest = manifest_from_metadata(
                meta,
                Path(model_file),
                target="onnx",
                backend="onnxruntime",
                input=bare_input_entry(
                    inputs[0].name, list(inputs[0].shape), _ORT_TYPES.get(inputs[0].type, "float32"), meta
                ),
                output=bare_output_entry(
                    self.output_names,
                    [list(o.shape) for o in outputs],
                    [_ORT_TYPES.get(o.type, o.type) for o in outputs],
                ),
            )
        self.manifest = manifest
        self.input_spec = InputSpec.from_manifest(manifest.input, name=self.input_name, shape=inputs[0].shape)
        self.options, self.threads = opts, opts.threads

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return as_output(self.session.run([self.output_name], {self.input_name: batch})[0])

    def infer_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        values = self.session.run(self.output_names, {self.input_name: batch})
        return {name: as_output(v) for name, v in zip(self.output_names, values)}

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            "backend": self.name,
            "providers": self.providers,
            "threads": self.threads,
            "onnxruntime": ort.__version__,
        }

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
