"""The one path that stamps a graph with the config that produced it.

Every artifact kind describes itself the same way, so a bare ``.onnx`` or IR can be loaded
without its manifest and its facts cannot drift from the manifest's: ONNX ``metadata_props``
(the FP32 export, the ONNX Runtime INT8/FP16 graphs, TensorRT bundles) and OpenVINO ``rt_info``
carry the same dict, built by :func:`graph_metadata` from ``model.config`` *after* the attention
plan was applied (``DANet.set_attention_chunks`` keeps the config in step with the graph).
"""

from __future__ import annotations

import json
from typing import Any


def graph_metadata(config: dict[str, Any], precision: str) -> dict[str, str]:
    """``{key: text}`` describing model, classes, preprocessing, precision and attention chunks."""
    pre = config["preprocessing"]
    return {
        "danet.model": json.dumps(config),
        "danet.preprocessing": json.dumps(pre),
        "danet.precision": precision,
        "model_name": config["name"],
        "class_names": json.dumps(config["class_names"]),
        "mean": json.dumps(pre["mean"]),
        "std": json.dumps(pre["std"]),
        "input_layout": "NCHW, RGB, (x/255 - mean)/std",
    }


def stamp_onnx(model: Any, config: dict[str, Any], precision: str) -> None:
    """Write :func:`graph_metadata` into an ``onnx.ModelProto`` (replacing stale danet entries)."""
    meta = graph_metadata(config, precision)
    keep = [(p.key, p.value) for p in model.metadata_props if p.key not in meta]
    del model.metadata_props[:]
    for key, value in [*keep, *meta.items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "danet-deploy"


def stamp_openvino(model: Any, config: dict[str, Any], precision: str) -> None:
    """Write the same facts into an ``openvino.Model``'s ``rt_info`` under ``danet``."""
    meta = graph_metadata(config, precision)
    model.set_rt_info(meta["danet.model"], ["danet", "model"])
    model.set_rt_info(meta["danet.preprocessing"], ["danet", "preprocessing"])
    model.set_rt_info(precision, ["danet", "precision"])
