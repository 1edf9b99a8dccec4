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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ..util.files import not_a_file_reason
from .safe_pickle import TrainingState, weights_only_globals

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


@dataclass
class CheckpointContents:
    """What a checkpoint file holds: its state dict, and what else was in the container (ignored)."""

    state: dict[str, torch.Tensor]  # the model's tensors, keys as saved (not yet mapped)
    container: str  # "safetensors", "state dict", or the wrapper key, e.g. "state_dict"
    ignored: dict[str, str] = field(default_factory=dict)  # other entries -> a short summary
    meta: Mapping[str, Any] | None = None  # the container's ``meta`` dict (mmsegmentation: config text, classes)

    def describe_ignored(self) -> str:
        return ", ".join(f"{k} ({v})" for k, v in self.ignored.items())


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a tensor dict from ``path`` without executing any pickled code."""
    return read_checkpoint(path).state


def read_checkpoint(path: str | Path) -> CheckpointContents:
    """Read ``path`` (``.safetensors``, a bare state dict, or a training container) without running code.

    Training containers are dicts holding the state dict beside bookkeeping: the official DANet
    ``.pth.tar`` (``state_dict``, ``epoch``, ``best_pred``, ``optimizer``), mmsegmentation's
    (``meta``, ``state_dict``, ``optimizer``; mmengine's also ``message_hub`` and
    ``param_schedulers``). They load with ``torch.load(weights_only=True)``, numpy values and
    mmengine's ``HistoryBuffer`` allowed as inert data (:mod:`.safe_pickle`); everything that is
    not the state dict is summarised in :attr:`CheckpointContents.ignored`, and a ``meta`` dict
    is kept (:attr:`CheckpointContents.meta`: mmsegmentation stores its config text there).
    """
    path = Path(path)
    _check_is_checkpoint_file(path)
    if path.suffix.lower() == ".safetensors" or _looks_like_safetensors(path):
        try:
            from safetensors.torch import load_file
        except ImportError as exc:  # pragma: no cover - safetensors is a core dependency
            raise CheckpointError(
                "reading .safetensors needs the 'safetensors' package: pip install safetensors"
            ) from exc
        try:
            return CheckpointContents(dict(load_file(str(path))), "safetensors")
        except Exception as exc:
            raise CheckpointError(
                f"{path} is not a readable safetensors file ({exc}); re-save or re-download it"
            ) from exc
    try:
        with weights_only_globals():
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path} is not a loadable weights-only checkpoint ({_load_failure_reason(exc)}). Only tensor state dicts are "
            "read, never pickled objects (unpickling runs code from the file); re-save it where it was made with "
            "torch.save(model.state_dict(), path), or convert it to .safetensors"
        ) from exc
    return _extract_state_dict(obj, path)


def _check_is_checkpoint_file(path: Path) -> None:
    """A missing path, a folder and an empty file each get their own message.

    Why: a folder was reported as not existing, and a zero-byte file (an interrupted download or
    save) as a failed weights-only load with only "EOFError" as the reason.
    """
    if path.is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} is a folder: pass the .pt/.pth/.safetensors file inside it")
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {str(path)!r} {not_a_file_reason(path)}: pass an existing .pt/.pth/.safetensors file"
        )
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is empty (0 bytes): its download or save was interrupted; "
            "save or download it again"
        )


def _looks_like_safetensors(path: Path) -> bool:
    """Whether ``path`` starts as a safetensors file does: a little-endian u64 header length that fits
    the file, then the header's JSON ``{``.

    Why by content: a safetensors file renamed ``.pth``/``.bin`` (or named ``.SAFETENSORS``) went to
    ``torch.load`` and failed with "Unsupported operand 112" and the advice to convert it to
    safetensors, which it already was. A torch zip starts with ``PK``, a legacy pickle with ``0x80``.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(9)
        size = path.stat().st_size
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size


def _load_failure_reason(exc: Exception) -> str:
    """The line of torch's error that names what was refused (its advice to disable the check is left out)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "Unsupported global" in line or line.startswith(("Can only build", "Unsupported operand")):
            # torch appends advice to allow-list the class or to disable the check: never pass that on
            return (
                line.split(" Please use ")[0].split(" To load")[0].replace("WeightsUnpickler error: ", "").rstrip(".")
            )
    useful = [
        line
        for line in lines
        if "weights_only" not in line and "Weights only load failed" not in line and "file an issue" not in line
    ]
    return useful[0] if useful else type(exc).__name__


def _summary(value: Any) -> str:
    """A short, printable account of one ignored checkpoint entry."""
    if isinstance(value, TrainingState):
        return value.qualified_name.rsplit(".", 1)[-1]
    if hasattr(value, "item") and getattr(value, "shape", ()) != () and not isinstance(value, torch.Tensor):
        return f"array {tuple(value.shape)}"  # numpy array
    if hasattr(value, "item") and not isinstance(value, torch.Tensor):
        value = value.item()  # numpy scalar
    if isinstance(value, torch.Tensor):
        return f"tensor {tuple(value.shape)}"
    if isinstance(value, (bool, int, float)) or value is None:
        return repr(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, Mapping):
        keys = list(value)
        shown = ", ".join(str(k) for k in keys[:6]) + (", ..." if len(keys) > 6 else "")
        return f"dict of {len(keys)}: {shown}"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of {len(value)}"
    return type(value).__name__


def save_weights(state: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Write a state dict as a safetensors file, keys and dtypes as they are.

    Tensors that share memory or are views (safetensors stores each tensor's own bytes, and
    refuses shared storage) are copied first; values are unchanged.
    """
    from safetensors.torch import save_file

    seen: set[int] = set()
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        pointer = value.untyped_storage().data_ptr()
        whole = (
            value.is_contiguous()
            and value.storage_offset() == 0
            and value.untyped_storage().nbytes() == value.numel() * value.element_size()
        )
        out[key] = value if whole and pointer not in seen else value.detach().clone().contiguous()
        seen.add(pointer)
    try:
        save_file(out, str(path))
    except OSError as exc:
        raise CheckpointError(
            f"cannot write the weights to {path} ({exc.strerror or exc}); check that the output folder has room"
        ) from exc
    except (ValueError, RuntimeError, TypeError) as exc:  # a sparse or otherwise unusual tensor
        raise CheckpointError(
            f"cannot write the weights as safetensors ({exc}); save the dense float state dict "
            "(model.state_dict()) where it was trained"
        ) from exc


def check_finite(state: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Refuse NaN/Inf weights: they export fine and then give one-class masks with no error."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(
            f"{path} has NaN or Inf values in {len(bad)} tensor(s) ({', '.join(bad[:5])}"
            f"{' ...' if len(bad) > 5 else ''}): the training diverged or the file is damaged; "
            "use an earlier checkpoint"
        )


def check_dtypes(state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """Refuse integer, boolean or complex tensors where the model holds floats, and values the cast would overflow.

    Why: the loader casts every tensor to the model's dtype, and a cast of int/bool values (a
    checkpoint saved after ``.long()``/``.bool()``, or quantized) or of complex ones (the imaginary
    part dropped) gives a network that exports and runs but whose masks are wrong, with no error.
    float16/bfloat16/float64 are cast to float32 as before (at most a rounding), unless a float64
    value is beyond float32's range: the cast would turn it into Inf after the NaN/Inf check.
    """
    bad = [
        f"{k} ({str(v.dtype).removeprefix('torch.')})"
        for k, v in state.items()
        if k in own and own[k].is_floating_point() and not v.is_floating_point()
    ]
    if bad:
        raise CheckpointError(
            f"{source} has non-floating-point weights in {len(bad)} tensor(s) ({', '.join(bad[:5])}"
            f"{' ...' if len(bad) > 5 else ''}): casting them to float32 would silently change the "
            "network; save the float state dict (model.float().state_dict()) where it was trained"
        )
    huge = [
        k
        for k, v in state.items()
        if k in own
        and own[k].is_floating_point()
        and v.numel()
        and torch.finfo(v.dtype).max > torch.finfo(own[k].dtype).max
        and bool(v.abs().max() > torch.finfo(own[k].dtype).max)
    ]
    if huge:
        raise CheckpointError(
            f"{source} has values too large for {str(own[huge[0]].dtype).removeprefix('torch.')} in "
            f"{len(huge)} tensor(s) ({', '.join(huge[:5])}{' ...' if len(huge) > 5 else ''}): they "
            "would become Inf; the training diverged or the file is damaged, use an earlier checkpoint"
        )


_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")


def _extract_state_dict(obj: object, path: Path) -> CheckpointContents:
    """The state dict in ``obj``: itself, or under the wrapper keys, nested up to four deep.

    Why nested: training frameworks wrap a wrapper (``{"model": {"state_dict": ...}}``,
    ``{"state_dict": {"model": ...}}``); such files were refused as holding no state dict. Entries
    beside the chosen one are reported as ignored, with their dotted path. When no wrapper key
    leads to tensors, the error names the entries that do hold tensors (an EMA copy, a teacher),
    since only the user can say which of them is the model.
    """
    if isinstance(obj, Mapping):
        inner: Mapping = obj
        chain: list[str] = []
        ignored: dict[str, str] = {}
        while len(chain) < 4:
            wrapper = next((k for k in _WRAPPER_KEYS if isinstance(inner.get(k), Mapping)), None)
            if wrapper is None:
                break
            prefix = "".join(f"{c}." for c in chain)
            ignored |= {f"{prefix}{k}": _summary(v) for k, v in inner.items() if k != wrapper}
            chain.append(wrapper)
            inner = inner[wrapper]
        prefix = "".join(f"{c}." for c in chain)
        ignored |= {f"{prefix}{k}": _summary(v) for k, v in inner.items() if not isinstance(v, torch.Tensor)}
        tensors = {str(k): v for k, v in inner.items() if isinstance(v, torch.Tensor)}
        if tensors:
            meta = obj.get("meta")
            return CheckpointContents(
                tensors, ".".join(chain) or "state dict", ignored, meta if isinstance(meta, Mapping) else None
            )
        holders = [
            str(k)
            for k, v in obj.items()
            if isinstance(v, Mapping) and any(isinstance(t, torch.Tensor) for t in v.values())
        ]
        if holders:
            raise CheckpointError(
                f"{path} holds tensors only under {', '.join(repr(h) for h in holders[:5])}, not under an entry read "
                f"as the state dict ({', '.join(_WRAPPER_KEYS)}): save the one that holds the model on its own, e.g. "
                f"torch.save(torch.load(path, weights_only=True)[{holders[0]!r}], 'weights.pth')"
            )
    raise CheckpointError(f"{path} holds no state dict of tensors; expected the output of model.state_dict()")


# prefixes that wrappers add in front of the model's own names: DataParallel/DDP, training
# frameworks' ``self.model``, ``torch.compile`` (its OptimizedModule keeps the model as _orig_mod)
_WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.")


def strip_wrapper_prefixes(key: str) -> str:
    """``key`` without the wrapper prefixes in front of it, however many and in whatever order.

    Why repeated: wrappers nest (a compiled model inside DDP saves ``module._orig_mod.backbone...``,
    a training framework's DDP model ``model.module.backbone...``), and stripping each prefix only
    once, in a fixed order, left such files unrecognised. The network itself has no module of
    these names (its top level is ``backbone``, ``head``, ``decoder``).
    """
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def map_state_dict(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename official-DANet / mmsegmentation keys to this project's; return (mapped, dropped keys)."""
    mapped: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in state.items():
        new = strip_wrapper_prefixes(key)
        if new.startswith("pretrained."):  # official DANet / PyTorch-Encoding
            new = "backbone." + new[len("pretrained.") :]
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


def load_checkpoint(
    model: nn.Module,
    path: str | Path,
    strict: bool = True,
    hint: Callable[[Mapping[str, torch.Tensor], list[str]], str] | None = None,
) -> dict[str, Any]:
    """Load ``path`` into ``model``; returns the report of missing/unexpected/dropped/ignored entries.

    Raises :class:`CheckpointError` naming the keys on a mismatch (strict), and on class-count
    or shape mismatches with the fix (``num_classes=``, or the presets that fit the checkpoint).
    """
    contents = read_checkpoint(path)
    state, dropped = map_state_dict(contents.state)
    report = load_state(model, state, dropped, path, strict=strict, hint=hint)
    report["ignored"] = contents.ignored
    return report


def load_state(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    dropped: list[str],
    source: str | Path,
    strict: bool = True,
    hint: Callable[[Mapping[str, torch.Tensor], list[str]], str] | None = None,
) -> dict[str, Any]:
    """Load an already mapped state dict (see :func:`map_state_dict`) into ``model``, checking it first.

    ``hint(state, dropped)`` adds to a mismatch error what the checkpoint is and which presets fit
    it (:func:`danet_deploy.model.inspect.fitting_presets_hint`, passed in by the callers that
    know the presets, so this module stays below them).
    """
    check_finite(state, source)
    own = model.state_dict()
    check_dtypes(state, own, source)
    own_keys = {k for k in own if not k.endswith("num_batches_tracked")}
    missing = sorted(own_keys - set(state))
    unexpected = sorted(set(state) - set(own))
    shape_errors = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(state) & set(own))
        if state[k].shape != own[k].shape
    ]
    if shape_errors or (strict and (missing or unexpected)):
        extra = hint(state, dropped) if hint is not None else ""
    if shape_errors:
        classifier = [e for e in shape_errors if e.startswith("head.conv8.1.weight")]
        if classifier:
            n = state["head.conv8.1.weight"].shape[0]
            extra = f" The checkpoint has {n} classes: pass --num-classes {n} (num_classes={n} in Python)." + extra
        raise CheckpointError(
            f"{source}: {len(shape_errors)} tensor shape mismatch(es): "
            + "; ".join(shape_errors[:5])
            + ("; ..." if len(shape_errors) > 5 else "")
            + extra
        )
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{source} does not match the model: {len(missing)} missing key(s) {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''}, {len(unexpected)} unexpected key(s) {unexpected[:8]}"
            f"{' ...' if len(unexpected) > 8 else ''}. Check the preset (depth, width, deep stem), "
            "or leave out --arch so danet-export reads "
            "the architecture from the checkpoint." + extra
        )
    if missing or unexpected:
        warnings.warn(f"{source}: loaded non-strictly; missing={missing[:8]} unexpected={unexpected[:8]}", stacklevel=2)
    own_dtype = {k: v.dtype for k, v in own.items()}
    cast = {k: v.to(own_dtype[k]) for k, v in state.items() if k in own}
    model.load_state_dict(cast, strict=False)
    return {"missing": missing, "unexpected": unexpected, "dropped": dropped}
