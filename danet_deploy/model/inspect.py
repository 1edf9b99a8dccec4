"""The architecture of a checkpoint, read from its tensors, and the preset(s) that fit it.

Users have files, not preset names: ``DANet101.pth.tar`` from the official release, or
``danet_r50-d8_512x1024_40k_cityscapes_*.pth`` from mmsegmentation. After the key mapping of
:mod:`.checkpoints`, the tensor names and shapes say:

* **depth**: the block type (a ``conv3`` means bottleneck) and the block count of each stage;
* **stem**: ``backbone.conv1.0`` (three 3x3 convs) or ``backbone.conv1`` (one 7x7), and its width;
* **base width** (first stage's planes) and **class count** (the fused classifier ``head.conv8``);
* **decoder**: this project's stride-4 ``decoder.*`` (``danet_demo``), and its width;
* **training-only heads** (auxiliary FCN heads), which were dropped.

They cannot say the output stride, the multi-grid dilations, ``align_corners``, the
preprocessing or the class names: those come from the preset, and when several presets differ
only there, every one of them is named so the user can choose with ``--arch``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, UnknownModelError
from ..eval_protocol import TestProtocol, artifact_protocol
from .conventions import (
    behaviour,
    class_overrides,
    file_class_names,
    file_decisions,
    has_conventions,
    layout_presets,
    normalisation_warning,
)
from .mmseg_config import ConfigFacts, config_facts
from .options import coerce_model_options, format_option
from .registry import MAX_CLASSES, ModelConfig, build_model, get_config, preset_order

# what the weights determine, as ModelConfig fields
INFERRED_FIELDS = ("depth", "deep_stem", "stem_width", "base_width", "num_classes", "decoder_channels")
# what they cannot tell, and so comes from the preset
UNDETERMINED_FIELDS = ("output_stride", "multi_grid", "align_corners", "preprocessing", "class_names")

_REQUIRED = ("backbone.layer1.0.conv1.weight", "head.conv5a.0.weight", "head.conv8.1.weight")
DECODER_WIDTH_KEY = "decoder.fuse.0.0.weight"  # its first dim is decoder_channels (absent: no decoder)
_BLOCK = re.compile(r"^backbone\.layer([1-4])\.(\d+)\.conv1\.weight$")


@dataclass(frozen=True)
class CheckpointArchitecture:
    """What the tensors of a (mapped) DANet state dict say about its architecture."""

    depth: int
    block: str  # "basic" or "bottleneck"
    blocks: tuple[int, int, int, int]  # blocks per stage
    deep_stem: bool
    stem_width: int  # first stem conv's output channels
    base_width: int  # first stage's planes
    num_classes: int
    training_heads: tuple[str, ...] = ()  # prefixes of dropped training-only heads, e.g. ("auxiliary_head",)
    decoder_channels: int = 0  # width of the stride-4 decoder; 0 = none (the paper's head)

    def fields(self) -> dict[str, Any]:
        """The :class:`ModelConfig` fields these tensors determine."""
        return {k: getattr(self, k) for k in INFERRED_FIELDS}

    def stem_text(self) -> str:
        w = self.stem_width
        return f"deep stem 3->{w}->{w}->{2 * w}" if self.deep_stem else f"7x7 stem 3->{w}"

    def describe(self) -> str:
        counts = "/".join(str(b) for b in self.blocks)
        text = (
            f"ResNet-{self.depth} ({self.block} blocks {counts}), {self.stem_text()}, base width "
            f"{self.base_width}, {self.num_classes} classes"
        )
        if self.decoder_channels:
            text += f", stride-4 decoder of {self.decoder_channels} channels"
        if self.training_heads:
            text += f", training-only heads dropped: {', '.join(self.training_heads)}"
        return text

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["blocks"] = list(self.blocks)
        data["training_heads"] = list(self.training_heads)
        return data


def _depth_table() -> dict[tuple[str, tuple[int, ...]], int]:
    from .backbone import _DEPTHS

    return {
        ("bottleneck" if block.expansion == 4 else "basic", tuple(layers)): depth
        for depth, (block, layers) in _DEPTHS.items()
    }


def infer_architecture(state: Mapping[str, Any], dropped: list[str] | tuple[str, ...] = ()) -> CheckpointArchitecture:
    """Read depth, stem, widths and class count from a state dict already renamed by ``map_state_dict``.

    Raises :class:`CheckpointError` when the tensors are not a DANet this project can build.
    """
    absent = [k for k in _REQUIRED if k not in state]
    if absent:
        sample = ", ".join(sorted(state)[:5])
        raise CheckpointError(
            f"the tensors do not look like a DANet (no {', '.join(absent)}; keys start {sample} ...): expected a "
            "state dict of this project, the official DANet code (pretrained.*, head.*) or mmsegmentation's "
            "DANet (backbone.*, decode_head.*)"
        )
    counts = [0, 0, 0, 0]
    for key in state:
        m = _BLOCK.match(key)
        if m:
            stage, index = int(m.group(1)) - 1, int(m.group(2))
            counts[stage] = max(counts[stage], index + 1)
    block = "bottleneck" if "backbone.layer1.0.conv3.weight" in state else "basic"
    blocks = (counts[0], counts[1], counts[2], counts[3])
    depth = _depth_table().get((block, blocks))
    if depth is None:
        supported = ", ".join(
            f"ResNet-{d} ({b} {'/'.join(map(str, c))})"
            for (b, c), d in sorted(_depth_table().items(), key=lambda item: item[1])
        )
        raise CheckpointError(
            f"the backbone has {block} blocks {'/'.join(map(str, blocks))} per stage, which is no "
            f"supported ResNet: {supported}"
        )
    if "backbone.conv1.0.weight" in state:
        deep_stem = True
        stem_width = _out_channels(state, "backbone.conv1.0.weight")
        last = state.get("backbone.conv1.6.weight")
        if last is None or tuple(last.shape[:2]) != (2 * stem_width, stem_width):
            raise CheckpointError(
                f"the deep stem is not 3->{stem_width}->{stem_width}->{2 * stem_width} "
                f"(backbone.conv1.6.weight {None if last is None else tuple(last.shape)}); "
                "only that layout is supported"
            )
    elif "backbone.conv1.weight" in state:
        deep_stem = False
        stem_width = _out_channels(state, "backbone.conv1.weight")
    else:
        raise CheckpointError("the backbone has no stem conv (backbone.conv1.weight or backbone.conv1.0.weight)")
    base_width = _out_channels(state, "backbone.layer1.0.conv1.weight")
    expansion = 4 if block == "bottleneck" else 1
    head = _out_channels(state, "head.conv5a.0.weight")
    if head != base_width * 8 * expansion // 4:
        raise CheckpointError(
            f"the head's inner width is {head}, not a quarter of the backbone's "
            f"{base_width * 8 * expansion} channels as in DANet's head; only that layout is "
            "supported"
        )
    from .checkpoints import strip_wrapper_prefixes

    roots = {strip_wrapper_prefixes(k).split(".")[0] for k in dropped}
    prefixes = sorted(roots - {"backbone", "pretrained"})  # not the ImageNet classifier of a plain ResNet
    num_classes = _out_channels(state, "head.conv8.1.weight")
    if num_classes > MAX_CLASSES:
        raise CheckpointError(
            f"head.conv8.1.weight has {num_classes} output channels, more classes than the "
            f"{MAX_CLASSES} a model may have: the checkpoint is damaged or not a segmentation DANet"
        )
    return CheckpointArchitecture(
        depth,
        block,
        blocks,
        deep_stem,
        stem_width,
        base_width,
        num_classes,
        tuple(prefixes),
        _out_channels(state, DECODER_WIDTH_KEY) if DECODER_WIDTH_KEY in state else 0,
    )


def _out_channels(state: Mapping[str, Any], key: str) -> int:
    """The output channels of the conv weight ``key``: a 4-d tensor with at least one filter.

    Why checked: the widths read here become flags the user is told to pass (``--num-classes N``,
    ``--model-option base_width=N``); a damaged file with a 0-d or empty tensor there raised an
    IndexError, or was described as a model of 0 classes with ``--num-classes 0`` as the fix.
    """
    shape = tuple(getattr(state[key], "shape", ()))
    if len(shape) != 4 or 0 in shape:
        raise CheckpointError(
            f"{key} has shape {shape}, not that of a conv weight (out, in, kh, kw) with at least "
            "one filter: the checkpoint is damaged or not a DANet; re-save or re-download it"
        )
    return int(shape[0])


def differences(config: ModelConfig, arch: CheckpointArchitecture) -> list[str]:
    """``field: preset X vs checkpoint Y`` for each determined field where ``config`` and the weights differ."""
    ours = _config_fields(config)
    theirs = arch.fields()
    out = []
    for key in INFERRED_FIELDS:
        if ours[key] != theirs[key]:
            if key == "stem_width" and ours["deep_stem"] != theirs["deep_stem"]:
                continue  # already said by deep_stem
            out.append(f"{key}: preset {_show(key, ours)} vs checkpoint {_show(key, theirs)}")
    return out


def _config_fields(config: ModelConfig) -> dict[str, Any]:
    fields = {k: getattr(config, k) for k in INFERRED_FIELDS}
    fields["stem_width"] = config.stem_width if config.stem_width is not None else config.base_width
    return fields


def _show(key: str, fields: Mapping[str, Any]) -> str:
    if key in ("deep_stem", "stem_width"):
        w = fields["stem_width"]
        return f"{'deep stem' if fields['deep_stem'] else '7x7 stem'} " + (
            f"3->{w}->{w}->{2 * w}" if fields["deep_stem"] else f"3->{w}"
        )
    return str(fields[key])


def matching_presets(arch: CheckpointArchitecture, overrides: Mapping[str, Any] | None = None) -> list[str]:
    """Presets (with ``overrides`` applied) whose determined fields all equal the checkpoint's, in preference order."""
    fits = []
    for name in preset_order():
        if not differences(get_config(name, **dict(overrides or {})), arch):
            fits.append(name)
    return fits


def undetermined_text(config: ModelConfig) -> str:
    """The settings a preset supplies that the weights cannot confirm."""
    grid = ",".join(map(str, config.multi_grid)) if config.multi_grid else "none"
    mean = ", ".join(f"{v:.3f}" for v in config.preprocessing.mean)
    std = ", ".join(f"{v:.3f}" for v in config.preprocessing.std)
    return (
        f"output_stride={config.output_stride}, multi_grid={grid}, align_corners={config.align_corners}, "
        f"mean=({mean}), std=({std}), class names of {config.name}"
    )


def _distinguish(names: list[str], overrides: Mapping[str, Any]) -> list[str]:
    """``name (field=value, ...)`` for each candidate, showing only the fields in which they differ."""
    configs = {n: get_config(n, **dict(overrides)) for n in names}
    keys = [
        k
        for k in ("output_stride", "multi_grid", "align_corners", "preprocessing")
        if len({repr(getattr(c, k)) for c in configs.values()}) > 1
    ]
    if len({c.class_names for c in configs.values()}) > 1:
        keys.append("class_names")
    out = []
    for name, config in configs.items():
        shown = [
            (
                "class names differ"
                if k == "class_names"
                else "preprocessing differs"
                if k == "preprocessing"
                else format_option(k, getattr(config, k))
            )
            for k in keys
        ]
        out.append(f"{name} ({', '.join(shown)})" if shown else name)
    return out


def suggest_flags(
    arch: CheckpointArchitecture,
    overrides: Mapping[str, Any] | None = None,
    preset: str | None = None,
    candidates: Sequence[str] | None = None,
) -> tuple[str, list[str]]:
    """The closest preset and the ``--arch``/``--num-classes``/``--model-option`` flags that make it fit.

    Closest = fewest differing determined fields; among equals, one whose class count already
    matches (its class names are then the checkpoint's, not ``class_7``s or another dataset's),
    then registration order. ``preset`` (the user's ``--arch``) is the only candidate when given:
    the flags then say what to add to the user's own choice; ``candidates`` limits the search (the
    presets of the checkpoint's layout: never one of another code base). The flags are checked: the preset
    with them applied has no differences left.
    """
    overrides = dict(overrides or {})
    best: tuple[tuple[int, bool], str, dict[str, Any]] | None = None
    for name in [preset] if preset else list(candidates or preset_order()):
        base = get_config(name, **overrides)
        changes: dict[str, Any] = {}
        for key in ("depth", "deep_stem", "base_width", "num_classes", "decoder_channels"):
            if getattr(base, key) != getattr(arch, key):
                changes[key] = getattr(arch, key)
        stem = base.stem_width if base.stem_width is not None else changes.get("base_width", base.base_width)
        if stem != arch.stem_width:
            changes["stem_width"] = arch.stem_width
        rank = (len(changes), "num_classes" in changes)
        if best is None or rank < best[0]:
            best = (rank, name, changes)
    assert best is not None
    _, name, changes = best
    flags = [f"--arch {name}"]
    if "num_classes" in changes:
        flags.append(f"--num-classes {changes.pop('num_classes')}")
    flags += [f"--model-option {format_option(k, v)}" for k, v in changes.items()]
    return name, flags


@dataclass
class Resolution:
    """The config a checkpoint is built with, and how it was chosen (recorded in the manifest)."""

    config: ModelConfig
    arch: CheckpointArchitecture
    preset: str
    chosen_by: str  # "--arch" or "inferred from the weights"
    candidates: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    facts: ConfigFacts | None = None  # what the checkpoint's stored config says

    def to_dict(self) -> dict[str, Any]:
        data = {
            "preset": self.preset,
            "chosen_by": self.chosen_by,
            "candidates": self.candidates,
            "inferred": self.arch.to_dict(),
        }
        if self.facts is not None:
            data["config"] = {
                "source": self.facts.source,
                "align_corners": self.facts.align_corners,
                "num_classes": self.facts.num_classes,
            }
        return data

    @property
    def test_protocol(self) -> TestProtocol:
        """The protocol the checkpoint is evaluated with: the file's own when its stored config states
        one, else the release's, else the default; ``align_corners`` as built, not as released.
        Recorded once, in the manifest's ``export.test_protocol`` (not in this entry)."""
        own = self.facts.protocol if self.facts is not None else None
        return artifact_protocol(self.preset, own, self.config.align_corners)


def resolve(
    arch: CheckpointArchitecture,
    source: str | Path,
    arch_name: str | None = None,
    num_classes: int | None = None,
    options: Mapping[str, Any] | None = None,
    layout: str | None = None,
    facts: ConfigFacts | None = None,
) -> Resolution:
    """Pick the config for a checkpoint of architecture ``arch``: ``--arch`` checked, or inferred.

    ``layout`` (:func:`key_layout`) limits the candidates to the presets of that code base
    (:func:`.conventions.layout_presets`); ``facts`` (the config text stored in the file) decide
    among candidates and supply ``align_corners`` and class names. Raises :class:`CheckpointError`
    when the given preset does not fit (naming those that do), when no preset fits (naming the
    flags that describe the checkpoint), and when presets that build different networks fit and
    nothing in the file decides (naming the ``--arch`` of each).
    """
    overrides = coerce_model_options(options)
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    family = layout_presets(layout)
    fits = [n for n in matching_presets(arch, overrides) if n in family]
    undetermined = "the weights cannot tell " + ", ".join(UNDETERMINED_FIELDS[:3]) + ", preprocessing or class names"
    if arch_name:
        return _check_arch(arch, source, arch_name, overrides, fits, facts)
    notes: list[str] = []
    if not fits and "num_classes" not in overrides and has_conventions(layout):
        counted, names_from = class_overrides(arch.num_classes, facts)
        fits = [n for n in matching_presets(arch, {**overrides, **counted}) if n in family]
        if fits:  # a class count no preset has: read from the classifier, the layout's conventions kept
            overrides |= counted
            notes.append(
                f"{arch.num_classes} classes read from the classifier (no {layout} preset has "
                f"{arch.num_classes}); {names_from}"
            )
    if not fits:
        _, flags = suggest_flags(arch, overrides, candidates=family)
        raise CheckpointError(
            f"no preset fits {source}: it is {arch.describe()}. Describe it with: {' '.join(flags)} "
            f"(and check that preset's output_stride, multi_grid, align_corners and preprocessing against how "
            f"the model was trained: {undetermined})."
        )
    decided = file_decisions(facts, overrides)
    decisive = False
    if decided:
        agree = [n for n in fits if all(getattr(get_config(n, **overrides), k) == v for k, v in decided.items())]
        decisive = not agree or len(agree) < len(fits)
        fits = agree or fits
        overrides |= decided  # when no candidate agrees, the file's value is applied to it
    overrides |= file_class_names(facts, arch.num_classes, overrides)
    if len({behaviour(get_config(n, **overrides)) for n in fits}) > 1:
        raise CheckpointError(_ambiguity(source, fits, overrides, facts))
    config = get_config(fits[0], **overrides)
    chosen_by = "inferred from the weights" + (" and the checkpoint's config" if decisive else "")
    notes[:0] = [f"{source}: {arch.describe()} -> preset {fits[0]} ({chosen_by})"]
    if facts is not None:
        notes.append(facts.describe())
        warning = normalisation_warning(facts, config)
        if warning:
            notes.append(warning)
    preset_config = get_config(fits[0])
    notes += [
        f"{key}={value} from the checkpoint's config ({fits[0]} has {getattr(preset_config, key)})"
        for key, value in decided.items()
        if getattr(preset_config, key) != value
    ]
    notes.append(f"from the preset, as {undetermined}: {undetermined_text(config)}")
    if len(fits) > 1:
        notes.append(
            f"{len(fits)} presets fit these weights and build the same network: "
            f"{', '.join(_distinguish(fits, overrides))}; using {fits[0]}: pass --arch NAME to choose another"
        )
    return Resolution(config, arch, fits[0], chosen_by, fits, notes, facts)


def _check_arch(
    arch: CheckpointArchitecture,
    source: str | Path,
    arch_name: str,
    overrides: dict[str, Any],
    fits: list[str],
    facts: ConfigFacts | None,
) -> Resolution:
    """``--arch`` given: it must fit the weights; a setting the file's config contradicts is said."""
    config = get_config(arch_name, **overrides)
    diffs = differences(config, arch)
    if diffs:
        if fits:
            fix = (
                f"Preset(s) that fit it: {', '.join(_distinguish(fits, overrides))}; pass --arch "
                f"{fits[0]}, or leave --arch out to pick it from the weights."
            )
        else:
            fix = (
                f"No preset fits it as is; describe it with: {' '.join(suggest_flags(arch, overrides, arch_name)[1])}."
            )
        raise CheckpointError(
            f"{source} does not fit --arch {arch_name} ({'; '.join(diffs)}). The checkpoint is {arch.describe()}. {fix}"
        )
    notes = [f"{source}: {arch.describe()}; fits --arch {arch_name}"]
    for key, value in file_decisions(facts, overrides).items():
        if getattr(config, key) != value:
            notes.append(
                f"warning: {facts.source if facts else 'its config'} says {key}={value}, but --arch "
                f"{arch_name} has {getattr(config, key)}: the export will differ from the trained model "
                f"unless you meant it (--model-option {format_option(key, value)} to follow the file)"
            )
    return Resolution(config, arch, arch_name, "--arch", fits, notes, facts)


def _ambiguity(source: str | Path, fits: list[str], overrides: Mapping[str, Any], facts: ConfigFacts | None) -> str:
    """The refusal when presets that build different networks fit: each with what differs and its flag."""
    why = "it holds no config text" if facts is None else f"{facts.describe()}, which does not decide"
    listed = "; ".join(
        f"{shown} [{get_config(name).description.split(' (')[0]}]: --arch {name}"
        for name, shown in zip(fits, _distinguish(fits, overrides))
    )
    return (
        f"{source} fits {len(fits)} presets that build different networks, and nothing in the file decides "
        f"between them ({why}): {listed}. Pass the --arch of the configuration it was trained with; a wrong "
        "choice exports a network whose masks differ, which parity cannot detect"
    )


def model_from_checkpoint(
    path: str | Path,
    arch: str | None = None,
    num_classes: int | None = None,
    options: Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Build and load the DANet a checkpoint file holds; returns ``(model, info)`` for the manifest.

    ``arch`` names the preset (checked against the weights); without it the preset is inferred.
    ``options`` are ``--model-option`` overrides. The file is read once, weights-only.
    """
    from .checkpoints import load_state, map_state_dict, read_checkpoint

    if arch is not None and arch not in preset_order():
        raise UnknownModelError(
            f"unknown --arch {arch!r}: choose one of {', '.join(sorted(preset_order()))}, "
            "or leave --arch out to pick it from the checkpoint"
        )
    contents = read_checkpoint(path)
    state, dropped = map_state_dict(contents.state)
    architecture = infer_architecture(state, dropped)
    layout = key_layout(contents.state)
    resolution = resolve(architecture, path, arch, num_classes, options, layout, config_facts(contents.meta))
    model = build_model(resolution.config)
    load_state(model, state, dropped, path, strict=True, hint=fitting_presets_hint)
    model.config = resolution.config  # type: ignore[attr-defined]
    model.test_protocol = resolution.test_protocol  # type: ignore[attr-defined]
    model.eval()
    notes = list(resolution.notes)
    if contents.ignored:
        notes.append(f"ignored checkpoint entries (not weights): {contents.describe_ignored()}")
    if dropped:
        notes.append(f"dropped {len(dropped)} training-only tensor(s) ({', '.join(architecture.training_heads)})")
    for note in notes:
        (log or _no_log)(note)
    info = {
        "layout": layout,
        "container": contents.container,
        "ignored": contents.ignored,
        "dropped": len(dropped),
        **resolution.to_dict(),
    }
    return model, info


def key_layout(state: Mapping[str, Any]) -> str:
    """Whose naming the checkpoint's keys follow (for reports)."""
    from .checkpoints import strip_wrapper_prefixes

    keys = [strip_wrapper_prefixes(k) for k in state]
    if any(k.startswith("pretrained.") for k in keys):
        return "official DANet"
    if any(k.startswith("decode_head.") for k in keys):
        return "mmsegmentation"
    return "danet-deploy"


def _no_log(_: str) -> None:
    pass


def fitting_presets_hint(state: Mapping[str, Any], dropped: list[str]) -> str:
    """`` It is <architecture>; presets that fit: ...`` for error messages ('' when not a DANet)."""
    try:
        arch = infer_architecture(state, dropped)
    except CheckpointError:
        return ""
    fits = matching_presets(arch)
    if fits:
        return f" The checkpoint is {arch.describe()}; preset(s) that fit it: {', '.join(fits)}."
    return f" The checkpoint is {arch.describe()}; no preset fits it as is (see danet-export --model FILE)."
