"""What a checkpoint's origin decides when its weights cannot: the layout's presets, class names,
the stored config's settings, and which preset differences change the network's output.

Why apart from the tensor reading (:mod:`.inspect`): these are rules about *where a file comes
from* (official DANet code, mmsegmentation, this project), used to choose among presets that the
weights alone fit equally well. A silently different network is the worst outcome (parity cannot
catch it: its reference is built the same way), so a choice the file does not decide is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .mmseg_config import ConfigFacts
from .registry import ModelConfig, preset_order
from .releases import DATASET_CLASSES, FOREIGN_LAYOUTS, LAYOUT_PRESETS

#: Preset settings that change the logits (class names only label them).
BEHAVIOUR_FIELDS = ("output_stride", "multi_grid", "align_corners", "preprocessing")


def layout_presets(layout: str | None) -> list[str]:
    """Presets a checkpoint of key layout ``layout`` may be built as, in preference order.

    Why: the official code and mmsegmentation each have their own conventions (the official
    ``align_corners=True`` and 3->64->64->128 stem, mmsegmentation's ``align_corners=False`` and
    3->32->32->64 stem); a preset of another layout that happens to fit after an option or two
    builds a network that differs (97.6% argmax agreement measured). This project's own files
    (``layout`` "danet-deploy" or unknown) may be any preset.
    """
    if layout in LAYOUT_PRESETS:
        return [n for n in preset_order() if n in LAYOUT_PRESETS[layout]]
    if layout in FOREIGN_LAYOUTS:  # the official layout: every preset not of another layout
        other = {n for names in LAYOUT_PRESETS.values() for n in names}
        return [n for n in preset_order() if n not in other]
    return preset_order()


def has_conventions(layout: str | None) -> bool:
    """Whether ``layout`` is a foreign code base whose conventions are known (see :data:`FOREIGN_LAYOUTS`)."""
    return layout in FOREIGN_LAYOUTS


def class_overrides(num_classes: int, facts: ConfigFacts | None) -> tuple[dict[str, Any], str]:
    """``num_classes`` and class names for a classifier of ``num_classes`` outputs, and where the names come from.

    The file's own names (mmsegmentation's ``dataset_meta``) when their count fits; else those of
    the one known dataset with that many classes (the official code's ``ade20k`` has the same 150
    classes in the same order as mmsegmentation's); else ``class_0`` ...
    """
    if facts is not None and facts.class_names and len(facts.class_names) == num_classes:
        return {"num_classes": num_classes, "class_names": facts.class_names}, f"class names from {facts.source}"
    if num_classes in DATASET_CLASSES:
        dataset, names = DATASET_CLASSES[num_classes]
        why = (
            f"class names of {dataset} (the dataset with {num_classes} classes; pass --model-option "
            "class_names=a,b,... if it was trained on another)"
        )
        return {"num_classes": num_classes, "class_names": names}, why
    return (
        {"num_classes": num_classes, "class_names": tuple(f"class_{i}" for i in range(num_classes))},
        "class names class_0 ... (pass --model-option class_names=a,b,... to name them)",
    )


def file_decisions(facts: ConfigFacts | None, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The model settings the checkpoint's stored config decides, except those the user set."""
    if facts is None:
        return {}
    decided: dict[str, Any] = {}
    if facts.align_corners is not None and "align_corners" not in overrides:
        decided["align_corners"] = facts.align_corners
    return decided


def file_class_names(facts: ConfigFacts | None, num_classes: int, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The file's own class names as an override, when it has them for this many classes and the user gave none."""
    if facts is None or not facts.class_names or len(facts.class_names) != num_classes or "class_names" in overrides:
        return {}
    return {"class_names": facts.class_names}


def behaviour(config: ModelConfig) -> tuple[str, ...]:
    """What about ``config`` changes the logits, beyond the architecture the weights fix."""
    return tuple(repr(getattr(config, k)) for k in BEHAVIOUR_FIELDS)


def normalisation_warning(facts: ConfigFacts | None, config: ModelConfig) -> str | None:
    """A warning when the file's config normalises inputs with another mean/std than ``config``.

    Why only a warning: no released DANet config differs from the ImageNet values the presets use,
    and mean/std are not a ``--model-option``; a file that differs needs the user's attention.
    """
    if facts is None or facts.mean is None or facts.std is None:
        return None
    ours = [v * 255 for v in (*config.preprocessing.mean, *config.preprocessing.std)]
    theirs = [*facts.mean, *facts.std]
    if len(theirs) == len(ours) and all(abs(a - b) < 1e-3 for a, b in zip(ours, theirs)):
        return None
    return (
        f"warning: {facts.source} normalises with mean={list(facts.mean)}, std={list(facts.std)} (0..255), but "
        f"{config.name} uses mean={[round(v, 3) for v in ours[:3]]}, std={[round(v, 3) for v in ours[3:]]}: "
        "the exported model's preprocessing differs from its training"
    )
