"""Facts from the config text mmsegmentation stores in a checkpoint's ``meta``, read without running it.

Why: the weights of mmsegmentation's 512x1024 and 769x769 Cityscapes models are alike, yet they
differ in ``align_corners`` (86% argmax agreement); building the wrong one is a silently
different network that parity cannot catch (its reference is built the same way). The file
itself says which: mmengine saves the merged config as ``meta['cfg']`` (mmseg 1.x), mmcv as
``meta['config']`` (0.x, and the model-zoo files), with the class names beside it.

The text is Python, and is never executed: :func:`ast.parse` builds its syntax tree, and only
literal values (numbers, strings, booleans, tuples, lists, ``dict(...)`` calls and ``{...}``
displays) are read from it; anything else (names, calls, operators) is an unknown value.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..eval_protocol import TestProtocol

#: Longer config text is not parsed (a real merged config is 5-20 kB).
MAX_CONFIG_CHARS = 1_000_000


class _Unknown:
    """A value of the config that is not a literal (a name, a call, an expression): never evaluated."""

    def __repr__(self) -> str:
        return "<not a literal>"


UNKNOWN = _Unknown()


@dataclass(frozen=True)
class ConfigFacts:
    """What a checkpoint's stored config says; ``None`` where it says nothing (or nothing literal)."""

    source: str  # where the text was, e.g. "meta['cfg']"
    align_corners: bool | None = None  # decode_head.align_corners
    num_classes: int | None = None  # decode_head.num_classes
    class_names: tuple[str, ...] | None = None  # meta dataset_meta.classes / CLASSES
    protocol: TestProtocol | None = None  # test_cfg + the test pipeline's Resize
    mean: tuple[float, ...] | None = None  # data preprocessor, 0..255
    std: tuple[float, ...] | None = None

    def describe(self) -> str:
        said = [
            f"{k}={v}"
            for k, v in (("align_corners", self.align_corners), ("num_classes", self.num_classes))
            if v is not None
        ]
        if self.protocol is not None:
            said.append(
                f"test mode {self.protocol.mode}"
                + (f" crop {self.protocol.crop[0]}x{self.protocol.crop[1]}" if self.protocol.crop else "")
            )
        return f"the checkpoint's config ({self.source}) says {', '.join(said) or 'nothing this needs'}"


def config_facts(meta: Mapping[str, Any] | None) -> ConfigFacts | None:
    """The facts of the config text in ``meta`` (``None`` when there is none, or it cannot be parsed)."""
    if not isinstance(meta, Mapping):
        return None
    key = next((k for k in ("cfg", "config") if isinstance(meta.get(k), str)), None)
    classes = _class_names(meta)
    if key is None:
        return ConfigFacts("meta", class_names=classes) if classes else None
    env = parse_assignments(meta[key])
    if env is None:
        return ConfigFacts(f"meta[{key!r}]", class_names=classes) if classes else None
    model = _dict(env.get("model"))
    head = _dict(model.get("decode_head"))
    preprocessor = (
        _dict(model.get("data_preprocessor")) or _dict(env.get("data_preprocessor")) or _dict(env.get("img_norm_cfg"))
    )
    align = head.get("align_corners")
    num = head.get("num_classes")
    return ConfigFacts(
        source=f"meta[{key!r}]",
        align_corners=align if isinstance(align, bool) else None,
        num_classes=num if isinstance(num, int) and not isinstance(num, bool) else None,
        class_names=classes,
        protocol=_protocol(env, model, align if isinstance(align, bool) else None, f"meta[{key!r}]"),
        mean=_numbers(preprocessor.get("mean")),
        std=_numbers(preprocessor.get("std")),
    )


def parse_assignments(text: str) -> dict[str, Any] | None:
    """``name = literal`` statements at the top level of ``text`` (values as :func:`literal`), or ``None``
    when it is too long or not Python."""
    if len(text) > MAX_CONFIG_CHARS:
        return None
    try:
        tree = ast.parse(text, mode="exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    env: dict[str, Any] = {}
    for statement in tree.body:
        if (
            isinstance(statement, ast.Assign)
            and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name)
        ):
            try:
                env[statement.targets[0].id] = literal(statement.value)
            except RecursionError:
                env[statement.targets[0].id] = UNKNOWN
    return env


def literal(node: ast.AST) -> Any:
    """The value of a literal syntax node (``dict(k=v)`` calls included); :data:`UNKNOWN` otherwise."""
    if isinstance(node, ast.Constant):
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, (int, float))
        and not isinstance(node.operand.value, bool)
    ):
        return -node.operand.value
    if isinstance(node, (ast.Tuple, ast.List)):
        values = [literal(e) for e in node.elts]
        return tuple(values) if isinstance(node, ast.Tuple) else values
    if isinstance(node, ast.Dict):
        out: dict[Any, Any] = {}
        for k, v in zip(node.keys, node.values):
            key = literal(k) if k is not None else UNKNOWN
            if isinstance(key, (str, int, float, bool)):
                out[key] = literal(v)
        return out
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {kw.arg: literal(kw.value) for kw in node.keywords if kw.arg is not None}
    return UNKNOWN


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _numbers(value: Any) -> tuple[float, ...] | None:
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        return tuple(float(v) for v in value)
    return None


def _pair(value: Any) -> tuple[int, int] | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return (value, value)
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        return (int(value[0]), int(value[1]))
    return None


def _class_names(meta: Mapping[str, Any]) -> tuple[str, ...] | None:
    dataset = meta.get("dataset_meta")
    names = dataset.get("classes") if isinstance(dataset, Mapping) else meta.get("CLASSES")
    if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names):
        return tuple(names)
    return None


def _protocol(env: dict[str, Any], model: dict[str, Any], align: bool | None, source: str) -> TestProtocol | None:
    """mmseg's test protocol: ``test_cfg`` (in ``model`` since 0.x, at the top level before) and the
    test pipeline's ``Resize(scale=...)`` (1.x) or ``MultiScaleFlipAug(img_scale=...)`` (0.x).

    mmseg's scale is ``(w, h)`` (with ``keep_ratio``: ``(long, short)``); it is stored as (H, W) like
    every size here. ``crop_size``/``stride`` are (h, w) in mmseg already. A protocol the config
    states but that does not hold together (a slide without a crop, a stride over the crop) is
    none: the release's is used instead.
    """
    test_cfg = _dict(model.get("test_cfg")) or _dict(env.get("test_cfg"))
    mode = test_cfg.get("mode")
    if mode not in ("whole", "slide") or align is None:
        return None
    resize, keep_ratio = None, True
    pipeline = env.get("test_pipeline")
    for step in pipeline if isinstance(pipeline, list) else []:
        step = _dict(step)
        if step.get("type") == "Resize" and _pair(step.get("scale")):
            resize, keep_ratio = _pair(step.get("scale")), step.get("keep_ratio") is True
        elif step.get("type") == "MultiScaleFlipAug" and _pair(step.get("img_scale")):
            resize = _pair(step.get("img_scale"))
    slide = mode == "slide"
    try:
        return TestProtocol(
            mode,
            (resize[1], resize[0]) if resize else None,
            keep_ratio,
            _pair(test_cfg.get("crop_size")) if slide else None,
            _pair(test_cfg.get("stride")) if slide else None,
            align,
            source,
        )
    except ConfigError:
        return None
