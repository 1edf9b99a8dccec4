"""Inputs the runtime must refuse or tame: decompression bombs (refused from the image header),
large JPEGs (decoded downscaled), and sizes the planner cannot fit or the network cannot resolve."""

from __future__ import annotations

import numpy as np
import pytest

from hostile_user.hostile_support import run_cli, snapshot

pytest.importorskip("onnxruntime")

from danet_deploy import runtime
from danet_deploy.errors import InputError


def test_images_above_the_pixel_limit_are_refused_from_the_header(tmp_path, capsys, artifact):
    from PIL import Image

    from danet_deploy.data.images import read_image

    big = tmp_path / "big.png"
    Image.new("1", (10000, 10000)).save(big)  # 100 MP, 12 kB on disk
    with pytest.raises(InputError, match="megapixels"):
        read_image(big)
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 10000)).save(bomb)  # beyond Pillow's own DecompressionBombError threshold
    with pytest.raises(InputError):
        read_image(bomb, max_pixels=None)
    before = snapshot(tmp_path)
    assert run_cli("run", ["--model", str(artifact), str(big), "-o", str(tmp_path / "out")]) == 2
    assert "megapixels" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_large_jpeg_is_decoded_downscaled_for_a_static_engine(tmp_path):
    from PIL import Image

    from danet_deploy.data.images import read_image

    path = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (800, 800, 3), dtype=np.uint8)).save(path)
    with pytest.raises(InputError):
        read_image(path, max_pixels=100_000)
    small = read_image(path, max_pixels=100_000, reduce_to=(64, 64))
    assert small.shape == (100, 100, 3)  # libjpeg's 1/8 scale, the smallest not below 64x64


def test_impossible_and_tiny_sizes_are_refused_with_a_valid_size(tmp_path, capsys, dynamic_artifact):
    before = snapshot(tmp_path)
    assert run_cli("export", ["--input-size", "99999x99999", "-o", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "largest input of this shape that can is" in err
    fit = err.split("that can is ")[1].split(" ")[0]
    from danet_deploy.planner import plan_attention

    assert plan_attention(tuple(int(v) for v in fit.split("x"))).chunks <= 256
    assert run_cli("export", ["--input-size", "7x7", "-o", str(tmp_path / "a")]) == 2
    assert "minimum of 32x32" in capsys.readouterr().err
    assert snapshot(tmp_path) == before
    with runtime.load(dynamic_artifact) as session:
        with pytest.raises(InputError, match="minimum"):
            session.infer(np.zeros((1, 3, 16, 16), np.float32))
        mask = session.run(np.zeros((16, 20, 3), np.uint8))  # run() upsamples to the minimum
        assert mask.shape == (16, 20)
        with pytest.raises(InputError, match="position-attention block"):  # 10000x10000: 2.2 TiB of energy
            session.infer(np.zeros((1, 3, 10000, 10000), np.float32))
        session.max_attention_bytes = 2**20
        with pytest.raises(InputError, match="--tile"):
            session.infer(np.zeros((1, 3, 256, 256), np.float32))
