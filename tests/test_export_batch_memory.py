"""``danet-export --batch`` is bounded and planned before the network is traced.

``--batch 100000`` ran until the kernel killed it at 22.5 GB: tracing holds the whole batch's
activations. A batch above ``MAX_BATCH`` is refused at once; a smaller one whose planned peak
exceeds the memory available is refused before tracing, naming the largest batch that fits.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from danet_deploy.errors import ConfigError
from danet_deploy.export import (
    ExportRequest,
    batch_memory,
    export,
)


def _quiet(_: str) -> None:
    pass


def _cli(argv: list[str]) -> int:
    from danet_deploy.cli.export import main

    return main(argv)


@pytest.mark.parametrize("batch", ["100000", "1025", "0", "-3"])
def test_a_batch_out_of_range_is_refused_before_anything_loads(tmp_path, capsys, batch):
    assert _cli(["--input-size", "64x64", "--batch", batch, "-o", str(tmp_path / "art")]) == 2
    err = capsys.readouterr().err
    assert "--batch" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_batch_that_cannot_fit_is_refused_before_tracing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(batch_memory, "available_bytes", lambda: batch_memory.BASE_BYTES + 40 * 2**20)
    traced = []
    import danet_deploy.export.onnx as onnx_export

    real = onnx_export.export_onnx
    monkeypatch.setattr(onnx_export, "export_onnx", lambda *a, **k: traced.append(1) or real(*a, **k))
    assert _cli(["--input-size", "128x128", "--batch", "256", "-o", str(tmp_path / "art")]) == 2
    err = capsys.readouterr().err
    assert "--batch 256" in err and "available" in err and "--dynamic --batch 1" in err
    assert "pass --batch" in err  # the largest batch that fits is named
    assert not traced and list(tmp_path.iterdir()) == []


@pytest.mark.slow  # over 5 s: make test-slow (CI)
def test_the_plan_scales_with_batch_and_size_and_is_recorded(tmp_path):
    from danet_deploy.model import create_model
    from danet_deploy.planner import plan_attention

    model = create_model("danet_demo")
    small = batch_memory.activations_per_image(model, (64, 64))
    large = batch_memory.activations_per_image(model, (128, 128))
    assert 3.5 < large / small < 4.5  # linear in the pixel count
    plan = plan_attention((64, 64), 2, output_stride=8)
    one = batch_memory.plan_batch_memory(model, (64, 64), 1, plan, available=2**40)
    four = batch_memory.plan_batch_memory(model, (64, 64), 4, plan, available=2**40)
    assert four.expected_peak_bytes - one.expected_peak_bytes == 3 * one.per_image_bytes
    with pytest.raises(ConfigError, match="pass --batch 3 or less"):
        batch_memory.plan_batch_memory(
            model, (64, 64), 8, plan, available=batch_memory.BASE_BYTES + one.weights_bytes + 3 * one.per_image_bytes
        )
    path, _ = export(ExportRequest("danet_demo", input_size=(64, 64), batch=2, output=tmp_path / "art"), log=_quiet)
    recorded = json.loads((path / "manifest.json").read_text())["export"]["memory_plan"]
    assert recorded["batch"] == 2 and recorded["per_image_bytes"] > 0
