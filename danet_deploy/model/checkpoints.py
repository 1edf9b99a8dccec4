"""Loading trained checkpoints safely, from this project, the official DANet code or mmsegmentation.

* Never unpickles code: ``.pt``/``.pth`` go through ``torch.load(weights_only=True)``;
  ``.safetensors`` through safetensors. A pickle that needs arbitrary classes is refused.
* Key names of the official implementation (``pretrained.*``, ``head.*``) and of
  mmsegmentation's DANet (``backbone.stem.*``, ``decode_head.pam_in_conv.*`` ...) are mapped.
* Training-only heads (auxiliary FCN heads) are dropped and reported; any other
  missing/unexpected key fails a strict load with the full list.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ..errors import CheckpointError

# mmsegmentation DAHead / ResNetV1c -> this project's names (regex, replacement)
_MMSEG_RULES: tuple[tuple[str, str], ...] = (
    (r"^backbone\.stem\.0\.", "backbone.conv1.0."),
    (r"^backbone\.stem\.1\.", "backbone.conv1.1."),
    (r"^backbone\.stem\.3\.", "backbone.conv1.3."),
    (r"^backbone\.stem\.4\.", "backbone.conv1.4."),
    (r"^backbone\.stem\.6\.", "backbone.conv1.6."),
    (r"^backbone\.stem\.7\.", "backbone.bn1."),
    (r"^decode_head\.pam_in_conv\.conv\.", "head.conv5a.0."),
    (r"^decode_head\.pam_in_conv\.bn\.", "head.conv5a.1."),
    (r"^decode_head\.cam_in_conv\.conv\.", "head.conv5c.0."),
    (r"^decode_head\.cam_in_conv\.bn\.", "head.conv5c.1."),
    (r"^decode_head\.pam\.query_project\.", "head.sa.query_conv."),
    (r"^decode_head\.pam\.key_project\.", "head.sa.key_conv."),
    (r"^decode_head\.pam\.value_project\.", "head.sa.value_conv."),
    (r"^decode_head\.pam\.gamma\.scale$", "head.sa.gamma"),
    (r"^decode_head\.cam\.gamma\.scale$", "head.sc.gamma"),
    (r"^decode_head\.pam_out_conv\.conv\.", "head.conv51.0."),
    (r"^decode_head\.pam_out_conv\.bn\.", "head.conv51.1."),
    (r"^decode_head\.cam_out_conv\.conv\.", "head.conv52.0."),
    (r"^decode_head\.cam_out_conv\.bn\.", "head.conv52.1."),
    (r"^decode_head\.pam_conv_seg\.", "head.conv6.1."),
    (r"^decode_head\.cam_conv_seg\.", "head.conv7.1."),
    (r"^decode_head\.conv_seg\.", "head.conv8.1."),
)

# training-only parts of known checkpoints: dropped, and reported
_TRAINING_ONLY = re.compile(r"^(auxiliary_head\.|auxlayer\.|aux\.)")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a tensor dict from ``path`` without executing any pickled code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist: pass an existing .pt/.pth/.safetensors file")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:  # pragma: no cover - safetensors is a core dependency
            raise CheckpointError("reading .safetensors needs the 'safetensors' package: pip install safetensors") from exc
        try:
            return dict(load_file(str(path)))
        except Exception as exc:
            raise CheckpointError(f"{path} is not a readable safetensors file ({exc}); re-save or re-download it") from exc
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path} is not a loadable weights-only checkpoint ({_torch_reason(exc)}). Only tensor state dicts are "
            "read, never pickled objects (unpickling runs code from the file); re-save it where it was made with "
            "torch.save(model.state_dict(), path), or convert it to .safetensors") from exc
    return _extract_state_dict(obj, path)


def _torch_reason(exc: BaseException) -> str:
    """torch.load's reason without its advice to retry with ``weights_only=False`` (unsafe on untrusted files)."""
    text = str(exc).strip()
    if "weights only load failed" in text.lower() or "weights_only" in text:
        unsupported = [line.strip() for line in text.splitlines() if "Unsupported global" in line
                       or "Unsupported operand" in line]
        return (unsupported[0].split(" Please use ")[0].replace("WeightsUnpickler error: ", "").rstrip(".")
                if unsupported
                else "it holds pickled Python objects, not only tensors")
    return text.splitlines()[0] if text else type(exc).__name__


def check_finite(state: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Refuse NaN/Inf weights: they export fine and then give one-class masks with no error."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{path} has NaN or Inf values in {len(bad)} tensor(s) ({', '.join(bad[:5])}"
                              f"{' ...' if len(bad) > 5 else ''}): the training diverged or the file is damaged; "
                              "use an earlier checkpoint")


def _extract_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict", "net"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise CheckpointError(f"{path} holds no state dict of tensors; expected the output of model.state_dict()")


def map_state_dict(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename official-DANet / mmsegmentation keys to this project's; return (mapped, dropped keys)."""
    mapped: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in state.items():
        new = key
        for prefix in ("module.", "model."):
            if new.startswith(prefix):
                new = new[len(prefix):]
        if new.startswith("pretrained."):  # official DANet / PyTorch-Encoding
            new = "backbone." + new[len("pretrained."):]
        for pattern, replacement in _MMSEG_RULES:
            new, count = re.subn(pattern, replacement, new)
            if count:
                break
        if new.endswith("num_batches_tracked"):  # BN bookkeeping, unused in eval
            continue
        if _TRAINING_ONLY.match(new):
            dropped.append(key)
            continue
        if new.startswith("backbone.fc."):  # ImageNet classifier of a plain ResNet checkpoint
            dropped.append(key)
            continue
        if new in ("head.sa.gamma", "head.sc.gamma") and value.dim() == 0:
            value = value.reshape(1)
        mapped[new] = value
    return mapped, dropped


def load_checkpoint(model: nn.Module, path: str | Path, strict: bool = True) -> dict[str, list[str]]:
    """Load ``path`` into ``model``; returns the report of missing/unexpected/dropped keys.

    Raises :class:`CheckpointError` naming the keys on a mismatch (strict), and on class-count
    or shape mismatches with the fix (``num_classes=``).
    """
    state, dropped = map_state_dict(read_state_dict(path))
    check_finite(state, path)
    own = model.state_dict()
    own_keys = {k for k in own if not k.endswith("num_batches_tracked")}
    missing = sorted(own_keys - set(state))
    unexpected = sorted(set(state) - set(own))
    shape_errors = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in sorted(set(state) & set(own)) if state[k].shape != own[k].shape]
    if shape_errors:
        classifier = [e for e in shape_errors if e.startswith("head.conv8.1.weight")]
        hint = ""
        if classifier:
            n = state["head.conv8.1.weight"].shape[0]
            hint = f" The checkpoint has {n} classes: pass --num-classes {n} (num_classes={n} in Python)."
        raise CheckpointError(f"{path}: {len(shape_errors)} tensor shape mismatch(es): "
                              + "; ".join(shape_errors[:5]) + ("; ..." if len(shape_errors) > 5 else "") + hint)
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{path} does not match the model: {len(missing)} missing key(s) {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''}, {len(unexpected)} unexpected key(s) {unexpected[:8]}"
            f"{' ...' if len(unexpected) > 8 else ''}. Check that the preset (--arch) has the checkpoint's architecture "
            "(depth, width, deep stem)")
    if missing or unexpected:
        warnings.warn(f"{path}: loaded non-strictly; missing={missing[:8]} unexpected={unexpected[:8]}", stacklevel=2)
    own_dtype = {k: v.dtype for k, v in own.items()}
    cast = {k: v.to(own_dtype[k]) for k, v in state.items() if k in own}
    model.load_state_dict(cast, strict=False)
    return {"missing": missing, "unexpected": unexpected, "dropped": dropped}
