"""The PyTorch reference as a runtime backend: the runtime's one door to torch and ``model``.

Every other runtime module is torch-free and never imports :mod:`danet_deploy.model` (the
layering test forbids it); this backend (and ``torch_compile``, built on it) imports torch and the
model package lazily, inside its methods, because it *is* the reference engine. On a runtime-only
install (``danet-deploy[onnxruntime]``) choosing it raises :class:`~danet_deploy.errors.MissingExtraError`
naming the ``export`` extra.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...extras import require
from ...manifest import CheckpointInfo, ExportInfo, InputInfo, Manifest, ModelInfo, OutputInfo, PreprocessingInfo
from ...targets.options import option
from .base import Backend, EngineOptions, InputSpec


@dataclass(frozen=True)
class TorchEngineOptions(EngineOptions):
    """``runtime.load(..., backend="torch", **options)``; ``threads`` sets ``torch.set_num_threads``."""

    preset: str | None = option(
        None, "the preset to build when there is no model file (runtime.load passes the name it was given)"
    )
    device: str = option("cpu", "torch device: cpu, cuda, cuda:1 ...")
    model: str | None = option(
        None, "preset architecture of a checkpoint (checked against its tensors; default: read from them)"
    )
    num_classes: int | None = option(None, "classes of a preset or checkpoint")
    attention_chunks: int | None = option(None, "position-attention query chunks (lower peak memory)")
    config: dict[str, Any] | None = option(  # noqa: RUF009 - option() returns a dataclasses.field
        None,
        "a full model config (e.g. an artifact manifest's model entry): the checkpoint is built exactly as it "
        "was exported",
    )
    fused_attention: bool = option(
        True,
        "eager inference takes F.scaled_dot_product_attention where it is the same "
        "maths and faster (see model.attention); false: the graph form",
    )


def reference_manifest(config: Any, checkpoint: str | None = None, test_protocol: Any = None) -> Manifest:
    """A manifest describing the eager reference model (dynamic N/H/W, fp32); ``test_protocol`` (a
    checkpoint's, as :func:`~danet_deploy.model.inspect.model_from_checkpoint` found it) is recorded
    where an exported artifact records it, so danet-eval of the file uses the file's own."""
    return Manifest(
        target="torch",
        backend="torch",
        precision="fp32",
        primary=checkpoint or config.name,
        model=ModelInfo.from_dict(config.to_dict()),
        preprocessing=PreprocessingInfo.from_dict(config.preprocessing.to_dict()),
        input=InputInfo.from_dict(
            {
                "name": "input",
                "shape": ["batch", 3, "height", "width"],
                "dtype": "float32",
                "dynamic_axes": {"0": "batch", "2": "height", "3": "width"},
            }
        ),
        output=OutputInfo.from_dict(
            {"name": "logits", "shape": ["batch", config.num_classes, "height", "width"], "dtype": "float32"}
        ),
        checkpoint=CheckpointInfo.from_dict({"path": checkpoint}) if checkpoint else None,
        export=ExportInfo.from_dict({"test_protocol": test_protocol.to_dict()} if test_protocol is not None else {}),
    )


class TorchBackend(Backend):
    """Eager PyTorch DANet from a preset name or a checkpoint (``model=PRESET`` names its architecture,
    checked against the checkpoint's tensors; without it the architecture is read from them).
    Options: :class:`TorchEngineOptions`.
    """

    name = "torch"
    options_class: ClassVar[type[TorchEngineOptions]] = TorchEngineOptions

    @classmethod
    def presets(cls) -> list[str]:
        """The preset names this backend builds (the model registry is torch-free: no torch needed to ask)."""
        from ...model.registry import list_models

        return list_models()

    def __init__(self, model_file: Path | None, manifest: Manifest | None, **values: Any) -> None:
        opts = self.options_class.parse(values, self.name)
        self.options = opts
        torch = require("torch", "the torch backend")
        from ...model import create_model
        from ...model.factory import create_model_from_config

        self._torch = torch
        if opts.threads:
            torch.set_num_threads(opts.threads)
        preset, model, num_classes, config = opts.preset, opts.model, opts.num_classes, opts.config
        attention_chunks = opts.attention_chunks
        overrides: dict[str, Any] = {"attention_chunks": attention_chunks} if attention_chunks else {}
        protocol = None  # a checkpoint's own test protocol, when this reads one
        if model_file is None and config is not None:
            net = create_model_from_config(dict(config, **overrides))
            checkpoint = None
        elif model_file is None:
            assert preset is not None, "runtime.load passes a preset when there is no model file or config"
            net = create_model(preset, num_classes=num_classes, **overrides)
            checkpoint = None
        elif manifest is not None:  # the manifest's full config, not its preset: it carries every model option
            from ...manifest import artifact_checkpoint

            # the checkpoint copy inside the folder, hash-checked; a manifest may name nothing outside it
            carried = artifact_checkpoint(Path(model_file).parent, manifest)
            ckpt = str(carried) if carried is not None else None
            net = create_model_from_config({**manifest.model.to_dict(), **overrides}, weights=ckpt)
            checkpoint = ckpt
        elif config is not None:
            net = create_model_from_config(dict(config, **overrides), weights=model_file)
            checkpoint = str(model_file)
        else:  # a checkpoint: ``model`` is checked against its tensors, or inferred from them
            from ...model.inspect import model_from_checkpoint

            net, _ = model_from_checkpoint(model_file, model, num_classes)
            protocol = net.test_protocol
            if attention_chunks:
                net.set_attention_chunks(attention_chunks)
            checkpoint = str(model_file)
        for module in (getattr(net.head, "sa", None), getattr(net.head, "sc", None)):
            if module is not None and hasattr(module, "fused"):
                module.fused = opts.fused_attention
        self.device = torch.device(opts.device)
        self.model = net.to(self.device).eval()
        self.manifest = manifest or reference_manifest(net.config, checkpoint, protocol)
        self.input_spec = InputSpec("input", (None, 3, None, None))

    def infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            out = self.model(torch.from_numpy(batch).to(self.device))
        return out.float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "device": str(self.device),
            "threads": self._torch.get_num_threads(),
            "torch": self._torch.__version__,
        }
