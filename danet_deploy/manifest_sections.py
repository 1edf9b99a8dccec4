"""Typed records for the sections of ``manifest.json``: one small frozen dataclass per section.

Why records: the runtime, danet-parity, danet-serve and the TensorRT builder all read the same
sections; a record validates a section once, when the manifest is read or built, so a hand-edited
or hostile manifest is a :class:`~danet_deploy.errors.ManifestError` naming the key (``model.num_classes``,
``output.tensors[1].shape``) and the fix, never a ``KeyError``/``TypeError`` deep inside a backend,
and readers use attributes (``manifest.input.shape``) instead of string keys and repeated defaults.

Why each record also keeps the JSON it was read from (``raw``) and is a read-only mapping of it:
a section carries more facts than code reads (``export`` holds every option of the request, the
plans and the timings; ``model`` the whole model configuration), and those are written back exactly
as they were (:meth:`Section.to_dict`), so the JSON on disk stays what it always was: every artifact
and fixture loads, and a manifest rewritten after danet-parity or a TensorRT build keeps its keys
and their order. The mapping view serves functions that take a section's JSON (``preprocess``,
``recorded_protocol``) and code written before the records; new code reads attributes
(``InputSpec.from_manifest`` takes the :class:`InputInfo` record).

Records are built by ``from_dict`` only (a :class:`~danet_deploy.manifest.Manifest` built from plain
dicts converts them): change a section by building a new dict and reading it again.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn, TypeVar

from .errors import ManifestError
from .util.counts import MAX_CLASSES, is_count
from .util.files import weights_name_problem

#: A dimension of a shape: a positive integer, or a name for a dynamic one (``"batch"``, ``"height"``).
Dim = int | str

_S = TypeVar("_S", bound="Section")


class Fail:
    """Raises :class:`ManifestError` as ``"<source>: <what>; re-export the artifact"``: one message
    form for every section, naming the file and the key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __call__(self, what: str) -> NoReturn:
        raise ManifestError(f"{self.source}: {what}; re-export the artifact")


def section_object(data: Any, key: str, fail: Fail) -> dict[str, Any]:
    """``data`` if it is a JSON object, else the typed error naming the section ``key``."""
    if not isinstance(data, dict):
        fail(f"{key!r} must be an object, got {type(data).__name__}")
    return data


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shape(fail: Fail, where: str, shape: Any, ranks: tuple[int, ...]) -> tuple[Dim, ...]:
    """A shape of one of ``ranks`` dims, each a positive integer or a non-empty name."""
    if (
        not isinstance(shape, list)
        or len(shape) not in ranks
        or not all((isinstance(d, str) and d) or is_count(d, 1, 2**31 - 1) for d in shape)
    ):
        fail(
            f"{where} must be {' or '.join(map(str, ranks))} dims, each a positive integer or a name, got {shape!r:.80}"
        )
    return tuple(shape)


def _optional_str(fail: Fail, where: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        fail(f"{where} must be a string, got {value!r:.80}")
    return value


def _optional_object(fail: Fail, where: str, value: Any) -> Mapping[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        fail(f"{where} must be an object or null, got {type(value).__name__}")
    return value


@dataclass(frozen=True, eq=False)
class Section(Mapping[str, Any]):
    """Base of the section records: the validated JSON object (``raw``) and a read-only mapping
    view of it; equal to a dict or another section with the same JSON."""

    #: the section's key in the manifest, the start of every key path its errors name
    KEY: ClassVar[str] = ""
    raw: Mapping[str, Any] = field(repr=False)

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def to_dict(self) -> dict[str, Any]:
        """The section's JSON exactly as it was read (a copy: keys, order and values unchanged)."""
        return copy.deepcopy(dict(self.raw))

    @classmethod
    def parse(cls: type[_S], data: Any, key: str, fail: Fail) -> _S:
        """The record for ``data``, found at key path ``key``; ``fail`` raises the typed error."""
        raise NotImplementedError

    @classmethod
    def from_dict(cls: type[_S], data: Any, source: str = "manifest") -> _S:
        """The record for one section's JSON, or :class:`ManifestError` naming ``source``, the key
        path and the fix."""
        return cls.parse(data, cls.KEY, Fail(source))


@dataclass(frozen=True, eq=False)
class ModelInfo(Section):
    """``model``: the model configuration the artifact was exported from (name, classes, strides);
    the whole configuration stays in ``raw`` (the torch reference rebuilds the model from it)."""

    KEY: ClassVar[str] = "model"
    name: str = ""
    num_classes: int = 0
    class_names: tuple[str, ...] = ()
    output_stride: int = 8
    attention_chunks: int | None = None
    weights: str | None = None
    align_corners: bool | None = None

    @classmethod
    def parse(cls, data: Any, key: str, fail: Fail) -> ModelInfo:
        data = section_object(data, key, fail)
        name = data.get("name")
        if not isinstance(name, str) or not name:
            fail(f"{key}.name must be a non-empty string (the model's preset or architecture), got {name!r:.80}")
        weights = data.get("weights")
        if weights is not None:
            problem = weights_name_problem(weights)
            if problem:
                fail(
                    f"{key}.weights {weights!r:.80} {problem}: it may only name a file shipped in "
                    "danet_deploy/weights (such as 'danet_demo.safetensors'), or be null"
                )
        names = data.get("class_names", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            fail(f"{key}.class_names must be a list of strings")
        classes = data.get("num_classes", len(names))
        if not is_count(data.get("num_classes", 1), 1, MAX_CLASSES):
            fail(f"{key}.num_classes must be an integer in 1..{MAX_CLASSES}, got {data.get('num_classes')!r:.80}")
        chunks = data.get("attention_chunks")
        if chunks is not None and not is_count(chunks, 1, 2**20):
            fail(f"{key}.attention_chunks must be an integer in 1..1048576, got {chunks!r:.80}")
        stride = data.get("output_stride", 8)
        if stride not in (4, 8, 16, 32) or isinstance(stride, bool):
            fail(f"{key}.output_stride must be 4, 8, 16 or 32, got {stride!r:.80}")
        align = data.get("align_corners")
        return cls(
            raw=copy.deepcopy(data),
            name=name,
            num_classes=int(classes),
            class_names=tuple(names),
            output_stride=int(stride),
            attention_chunks=chunks,
            weights=weights,
            align_corners=align if isinstance(align, bool) else None,
        )


@dataclass(frozen=True, eq=False)
class PreprocessingInfo(Section):
    """``preprocessing``: how the runtime turns uint8 pixels into the network's input,
    ``(x / 255 - mean) / std`` in ``color_order``, NCHW."""

    KEY: ClassVar[str] = "preprocessing"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    color_order: str = "RGB"
    input_range: tuple[float, float] = (0.0, 255.0)
    layout: str = "NCHW"

    @classmethod
    def parse(cls, data: Any, key: str, fail: Fail) -> PreprocessingInfo:
        data = section_object(data, key, fail)
        for name in ("mean", "std"):
            values = data.get(name)
            if (
                not isinstance(values, list)
                or len(values) != 3
                or not all(_is_number(v) and abs(v) <= 1e4 for v in values)
            ):
                fail(f"{key}.{name} must be a list of 3 numbers within +-1e4, got {values!r:.80}")
        if not all(abs(v) >= 1e-6 for v in data["std"]):
            fail(f"{key}.std must not be 0 (values on the 0..1 scale)")
        order = data.get("color_order", "RGB")
        if not isinstance(order, str) or order.upper() not in ("RGB", "BGR"):
            fail(f"{key}.color_order must be 'RGB' or 'BGR', got {order!r:.40}")
        # the runtime feeds 0..255 pixels in NCHW and nothing else: another value would be silently ignored
        if data.get("layout", "NCHW") != "NCHW":
            fail(f"{key}.layout must be 'NCHW' (the only layout the runtime feeds), got {data.get('layout')!r:.40}")
        if data.get("input_range", [0.0, 255.0]) not in ([0, 255], [0.0, 255.0]):
            fail(
                f"{key}.input_range must be [0, 255] (the runtime scales uint8 pixels), got "
                f"{data.get('input_range')!r:.40}"
            )
        mean, std, span = data["mean"], data["std"], data.get("input_range", [0.0, 255.0])
        return cls(
            raw=copy.deepcopy(data),
            mean=(mean[0], mean[1], mean[2]),
            std=(std[0], std[1], std[2]),
            color_order=order.upper(),
            input_range=(span[0], span[1]),
        )


@dataclass(frozen=True, eq=False)
class TensorInfo(Section):
    """One tensor a graph emits (``output.tensors[i]``): its name, shape and dtype."""

    KEY: ClassVar[str] = "tensor"
    name: str = ""
    shape: tuple[Dim, ...] = ()
    dtype: str | None = None

    @classmethod
    def parse(cls, data: Any, key: str, fail: Fail) -> TensorInfo:
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            fail("output.tensors must be a list of {name, shape, dtype} objects")
        shape = _shape(fail, f"{key}.shape", data.get("shape"), (3, 4))
        return cls(
            raw=copy.deepcopy(data),
            name=data["name"],
            shape=shape,
            dtype=_optional_str(fail, f"{key}.dtype", data.get("dtype")),
        )


@dataclass(frozen=True, eq=False)
class InputInfo(Section):
    """``input``: the graph's one input. ``shape`` holds names for dynamic dims; ``min/opt/max_shape``
    bound them (dynamic exports); ``accept`` is ``float`` (normalised NCHW floats) or the uint8 image
    order an ``--accept`` graph takes (then ``layout`` is NHWC)."""

    KEY: ClassVar[str] = "input"
    name: str = "input"
    shape: tuple[Dim, ...] = ()
    dtype: str = "float32"
    layout: str = "NCHW"
    accept: str = "float"
    dynamic_axes: Mapping[str, Any] = field(default_factory=dict)
    min_shape: tuple[int, ...] | None = None
    opt_shape: tuple[int, ...] | None = None
    max_shape: tuple[int, ...] | None = None

    @classmethod
    def parse(cls, data: Any, key: str, fail: Fail) -> InputInfo:
        from .inputs import ACCEPTS, FLOAT

        data = section_object(data, key, fail)
        shape = _shape(fail, f"{key}.shape", data.get("shape"), (4,))
        name = data.get("name", "input")
        if not isinstance(name, str):
            fail(f"{key}.name must be a string")
        bounds: dict[str, tuple[int, ...] | None] = {}
        for bound_key in ("min_shape", "opt_shape", "max_shape"):
            bound = data.get(bound_key)
            if bound is not None and (
                not isinstance(bound, list) or len(bound) != 4 or not all(is_count(d, 1, 2**31 - 1) for d in bound)
            ):
                fail(f"{key}.{bound_key} must be 4 positive integers, got {bound!r:.80}")
            bounds[bound_key] = tuple(bound) if bound else None
        axes = data.get("dynamic_axes") or {}
        if not isinstance(axes, dict):
            fail(f"{key}.dynamic_axes must be an object, got {type(axes).__name__}")
        # an --accept input (absent in float artifacts and in every manifest older than it) must be the uint8
        # NHWC 3-channel image the runtime hands over unprocessed: anything else would be fed the wrong bytes
        accept = data.get("accept")
        layout = data.get("layout", "NCHW")
        if accept is None or accept == FLOAT:
            if layout != "NCHW":
                fail(f"{key}.layout {layout!r:.20} needs {key}.accept (rgb8 or bgr8)")
        elif not isinstance(accept, str) or accept not in ACCEPTS:
            fail(f"{key}.accept must be one of {', '.join(ACCEPTS)}, got {accept!r:.40}")
        elif data.get("dtype") != "uint8" or layout != "NHWC" or shape[3] != 3:
            fail(
                f"an --accept {accept} input must be uint8 NHWC with 3 channels, got {data.get('dtype')!r:.20} "
                f"{layout!r:.20} {list(shape)!r:.60}"
            )
        dtype = data.get("dtype", "float32")
        if not isinstance(dtype, str):
            fail(f"{key}.dtype must be a string, got {dtype!r:.40}")
        return cls(
            raw=copy.deepcopy(data),
            name=name,
            shape=shape,
            dtype=dtype,
            layout=layout,
            accept=accept or FLOAT,
            dynamic_axes=copy.deepcopy(axes),
            **bounds,
        )


@dataclass(frozen=True, eq=False)
class OutputInfo(Section):
    """``output``: NCHW logits or an NHW mask (``--emit``); every emitted tensor is in ``tensors``
    (manifests older than ``--emit`` list none: the one output is the logits)."""

    KEY: ClassVar[str] = "output"
    name: str | None = None
    shape: tuple[Dim, ...] = ()
    dtype: str | None = None
    emit: str | None = None
    tensors: tuple[TensorInfo, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the tensors the graph emits, in order (older manifests: the one output)."""
        return tuple(t.name for t in self.emitted_tensors)

    @property
    def emitted_tensors(self) -> tuple[TensorInfo, ...]:
        """Each emitted tensor (``tensors``; older manifests: the output entry itself, named logits
        when it names nothing)."""
        from .outputs import LOGITS

        return self.tensors or (TensorInfo(raw=self.raw, name=self.name or LOGITS, shape=self.shape, dtype=self.dtype),)

    @classmethod
    def parse(cls, data: Any, key: str, fail: Fail) -> OutputInfo:
        data = section_object(data, key, fail)
        shape = _shape(fail, f"{key}.shape", data.get("shape"), (3, 4))
        tensors = data.get("tensors", [])
        if not isinstance(tensors, list):
            fail(f"{key}.tensors must be a list of {{name, shape, dtype}} objects")
        records = tuple(TensorInfo.parse(t, f"{key}.tensors[{i}]", fail) for i, t in enumerate(tensors))
        name = data.get("name", "")
        if not isinstance(name, str):
            fail(f"{key}.name must be a string")
        return cls(
            raw=copy.deepcopy(data),
            name=name or None,
            shape=shape,
            dtype=_optional_str(fail, f"{key}.dtype", data.get("dtype")),
            emit=_optional_str(fail, f"{key}.emit", data.get("emit")),
            tensors=records,
        )


@dataclass(frozen=True, eq=False)
class ExportInfo(Section):
    """``export``: how the artifact was made. Open-ended: every option of the export request, the
    attention and memory plans, exporter facts and timings, for people and for danet-bench's
    comparison of a request with an artifact; typed here are the keys the package reads."""

    KEY: ClassVar[str] = "export"
    input_size: tuple[int, int] | None = None
    num_classes: int | None = None
    model_options: Mapping[str, Any] = field(default_factory=dict)
    attention_plan: Mapping[str, Any] | None = None
    test_protocol: Mapping[str, Any] | None = None
    accept: str | None = None
    weights_sha256: str | None = None
    opset: int | None = None
    exporter: str | None = None

    @classmethod
    def parse(cls, data: Any, key: str, fail: Fail) -> ExportInfo:
        data = section_object(data, key, fail)
        size = data.get("input_size")
        if size is not None and (
            not isinstance(size, list) or len(size) != 2 or not all(is_count(d, 1, 2**31 - 1) for d in size)
        ):
            fail(f"{key}.input_size must be 2 positive integers (height, width), got {size!r:.80}")
        classes = data.get("num_classes")
        if classes is not None and not is_count(classes, 1, MAX_CLASSES):
            fail(f"{key}.num_classes must be null or an integer in 1..{MAX_CLASSES}, got {classes!r:.80}")
        opset = data.get("opset")
        if opset is not None and not is_count(opset, 1, 1000):
            fail(f"{key}.opset must be null or a positive integer, got {opset!r:.40}")
        options = data.get("model_options") or {}
        if not isinstance(options, dict):
            fail(f"{key}.model_options must be an object, got {type(options).__name__}")
        raw = copy.deepcopy(data)
        return cls(
            raw=raw,
            input_size=(size[0], size[1]) if size else None,
            num_classes=classes,
            model_options=raw.get("model_options") or {},
            attention_plan=_optional_object(fail, f"{key}.attention_plan", raw.get("attention_plan")),
            test_protocol=_optional_object(fail, f"{key}.test_protocol", raw.get("test_protocol")),
            accept=_optional_str(fail, f"{key}.accept", data.get("accept")),
            weights_sha256=_optional_str(fail, f"{key}.weights_sha256", data.get("weights_sha256")),
            opset=opset,
            exporter=_optional_str(fail, f"{key}.exporter", data.get("exporter")),
        )


@dataclass(frozen=True, eq=False)
class CheckpointInfo(Section):
    """``checkpoint``: the checkpoint an artifact was exported from. ``sha256`` is the user's original
    file, ``carried_sha256`` the weights-only copy the artifact carries as ``path``
    (:data:`~danet_deploy.manifest.CARRIED_CHECKPOINT`); the torch reference records the path it loaded."""

    KEY: ClassVar[str] = "checkpoint"
    path: str | None = None
    sha256: str | None = None
    carried_sha256: str | None = None
    test_protocol: Mapping[str, Any] | None = None

    @property
    def carried_digest(self) -> str | None:
        """The sha256 of the checkpoint copy an artifact carries.

        Why two digests: ``sha256`` is the user's original file (what danet-bench and danet-parity
        compare a checkpoint with); the copy holds its weights only, so it has its own,
        ``carried_sha256``. Artifacts written before the copy was trimmed carry the whole file, whose
        digest is ``sha256``.
        """
        return self.carried_sha256 or self.sha256

    @classmethod
    def parse(cls, data: Any, key: str, fail: Fail) -> CheckpointInfo:
        data = section_object(data, key, fail)
        raw = copy.deepcopy(data)
        protocol = raw.get("test_protocol")
        return cls(
            raw=raw,
            path=_optional_str(fail, f"{key}.path", data.get("path")),
            sha256=_optional_str(fail, f"{key}.sha256", data.get("sha256")),
            carried_sha256=_optional_str(fail, f"{key}.carried_sha256", data.get("carried_sha256")),
            test_protocol=protocol if isinstance(protocol, dict) else None,
        )
