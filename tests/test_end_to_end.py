"""The README's main job end to end on the shipped model (slow: minutes on 2 cores)."""

import json
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_demo_export_run_parity_benchmark(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "danet_deploy.cli.demo",
            "--output",
            str(out),
            "--iters",
            "3",
            "--warmup",
            "1",
            "--scenes",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    parity = json.loads((out / "parity.json").read_text())
    assert set(parity) == {"onnxruntime/fp32", "openvino/fp32", "onnxruntime/int8", "openvino/int8"}
    for name, report in parity.items():
        assert report["passed"], name
        assert report["miou_vs_labels"] > 0.75, name  # the trained model on generated val scenes
    bench = json.loads((out / "bench" / "bench.json").read_text())
    ok = [r for r in bench["rows"] if r["status"] == "ok"]
    assert {(r["engine"], r["precision"]) for r in ok} >= {
        ("torch", "fp32"),
        ("onnxruntime", "int8"),
        ("openvino", "int8"),
    }
    for name in ("overlay.png", "comparison.png", "bench/bench-latency.png", "bench/bench.md"):
        assert (out / name).stat().st_size > 0
    from PIL import Image

    overlay = np.asarray(Image.open(out / "overlay.png"))
    # the 512x512 overlay with the class legend (white strip, coloured swatches) underneath
    assert overlay.shape[1:] == (512, 3) and 512 < overlay.shape[0] < 512 + 100
    legend = overlay[512:]
    assert (legend == 255).all(axis=-1).mean() > 0.5 and len(np.unique(legend.reshape(-1, 3), axis=0)) > 8
    assert "p50" in result.stdout and "PASS" in result.stdout
