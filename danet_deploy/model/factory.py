"""Build a DANet from a preset name or a full config, with shipped, given or seeded weights.

Above ``registry`` (configs), ``checkpoints`` (reading and mapping weights) and ``inspect``
(what architecture a checkpoint holds, for error messages): none of them imports this module.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from ..extras import require
from .registry import _PRESETS, ModelConfig, build_model, get_config, shipped_weights


def create_model(
    name: str,
    num_classes: int | None = None,
    weights: str | Path | Literal[False] | None = None,
    strict: bool = True,
    eval_mode: bool = True,
    **overrides: Any,
):
    """Build a DANet preset, optionally loading a checkpoint.

    Args:
        name: a preset from :func:`list_models`.
        num_classes: override the preset's class count (a fresh classifier).
        weights: a checkpoint file (``.pt``/``.pth``/``.safetensors``; official DANet and
            mmsegmentation key names are mapped). Shipped presets load their own weights when
            this is ``None``; pass ``weights=False`` for random init.
        strict: fail on missing/unexpected keys (the default) rather than warn.
        eval_mode: return the model in ``eval()`` mode.
    """
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    config = get_config(name, **overrides)
    if weights is None and config.weights and num_classes in (None, len(_PRESETS[name].class_names)):
        weights = shipped_weights(config.weights)
    elif config.weights:  # shipped weights not used: the config must not claim them
        config = dataclasses.replace(config, weights=None)
    return create_model_from_config(config, weights=weights or False, strict=strict, eval_mode=eval_mode)


def create_model_from_config(
    config: ModelConfig | dict[str, Any],
    weights: str | Path | Literal[False] | None = None,
    strict: bool = True,
    eval_mode: bool = True,
):
    """Build the DANet a full config describes (e.g. a manifest's ``model`` entry), optionally loading weights.

    The config, not a preset name, is the truth of an exported model: it carries any
    ``--model-option`` changes, so references are rebuilt from it. ``weights=None`` loads a
    shipped preset's own weights when the config names them; ``False`` means a seeded random init.
    """
    require("torch", "building a DANet model")  # a typed error naming the extra on a runtime-only install
    from .checkpoints import load_checkpoint
    from .inspect import fitting_presets_hint

    if isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    if weights is None and config.weights:
        weights = shipped_weights(config.weights)
    model = build_model(config)
    if weights:
        load_checkpoint(model, weights, strict=strict, hint=fitting_presets_hint)
    else:
        # No trained weights: a *seeded* initialisation, so every process (exporter, reference,
        # benchmark worker) builds the same network, with non-zero attention gammas so the
        # attention branches are exercised rather than bypassed.
        from .init import init_for_testing

        init_for_testing(model, seed=0)
    model.config = config  # type: ignore[attr-defined]
    return model.eval() if eval_mode else model
