"""ONNX Runtime backend: CPU by default; CUDA, TensorRT and OpenVINO execution providers by name."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ArtifactError, ConfigError, summarize_exception
from ...inputs import bare_input_entry
from ...manifest import Manifest, manifest_from_metadata
from .base import Backend, InputSpec, as_output, bare_output_entry, require

_ORT_TYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8", "tensor(int32)": "int32",
              "tensor(int64)": "int64", "tensor(float16)": "float16"}

_PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider", "openvino": "OpenVINOExecutionProvider", "coreml": "CoreMLExecutionProvider",
}


def resolve_providers(providers: Sequence[str] | str | None, available: Sequence[str]) -> list[str]:
    """Map short names (``cpu``, ``cuda``, ``tensorrt``, ``openvino``) to ORT provider names."""
    if providers is None:
        return ["CPUExecutionProvider"]
    if isinstance(providers, str):
        providers = [p for p in providers.split(",") if p]
    if not isinstance(providers, (list, tuple)) or not providers or not all(isinstance(p, str) for p in providers):
        raise ConfigError(f"providers must be provider names (a list, or a comma-separated string such as "
                          f"'cpu' or 'cuda,cpu'), got {providers!r:.60}")
    names = [_PROVIDER_ALIASES.get(str(p).lower(), str(p)) for p in providers]  # all str: checked above
    missing = [p for p in names if p not in available]
    if missing:
        raise ConfigError(f"ONNX Runtime provider(s) {missing} are not available in this onnxruntime build "
                          f"(available: {list(available)}); install onnxruntime-gpu / onnxruntime-openvino or "
                          "choose another provider")
    return names


class OnnxRuntimeBackend(Backend):
    """Options: ``threads`` (intra-op), ``providers`` (list or comma string), ``arena`` (CPU memory
    arena, on by default; off lowers peak memory at some latency cost), ``optimization``
    (``all``/``extended``/``basic``/``disabled``)."""

    name = "onnxruntime"

    def __init__(self, model_file: Path | None, manifest: Manifest | None, threads: int | None = None,
                 providers: Sequence[str] | str | None = None, arena: bool = True, optimization: str = "all",
                 ) -> None:
        ort = require("onnxruntime", "onnxruntime", "onnxruntime")
        if model_file is None:
            raise ConfigError("the onnxruntime backend needs an .onnx file or an artifact folder")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = bool(arena)
        levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
        if optimization not in levels:
            raise ConfigError(f"optimization must be one of {', '.join(levels)}, got {optimization!r:.40}")
        options.graph_optimization_level = levels[optimization]
        options.log_severity_level = 3
        self.providers = resolve_providers(providers, ort.get_available_providers())
        self.model_file = Path(model_file)  # a profiling session (bench.profile) opens the same file
        try:
            self.session = ort.InferenceSession(str(model_file), options, providers=self.providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf types
            raise ArtifactError(f"ONNX Runtime could not load {model_file}: {summarize_exception(exc)} "
                                "(corrupt or truncated file? re-export it)") from exc
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.output_names = [o.name for o in outputs]
        if manifest is None:
            meta = self.session.get_modelmeta().custom_metadata_map
            manifest = manifest_from_metadata(
                meta, Path(model_file), target="onnx", backend="onnxruntime",
                input=bare_input_entry(inputs[0].name, list(inputs[0].shape), _ORT_TYPES.get(inputs[0].type, "float32"),
                                       meta),
                output=bare_output_entry(self.output_names, [list(o.shape) for o in outputs],
                                         [_ORT_TYPES.get(o.type, o.type) for o in outputs]))
        self.manifest = manifest
        self.input_spec = InputSpec.from_manifest({**manifest.input, "name": self.input_name,
                                                   "shape": list(inputs[0].shape)})
        self.threads = threads

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return as_output(self.session.run([self.output_name], {self.input_name: batch})[0])

    def infer_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        values = self.session.run(self.output_names, {self.input_name: batch})
        return {name: as_output(v) for name, v in zip(self.output_names, values)}

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"backend": self.name, "providers": self.providers, "threads": self.threads,
                "onnxruntime": ort.__version__}

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
