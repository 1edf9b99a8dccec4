import pytest

from danet_deploy.errors import ConfigError
from danet_deploy.planner import TENSORRT_MAX_ELEMENTS, feature_size, parse_bytes, plan_attention


def test_parse_bytes():
    assert parse_bytes("512MB") == 512 * 2**20
    assert parse_bytes("1.5GiB") == int(1.5 * 2**30)
    assert parse_bytes("800m") == 800 * 2**20
    assert parse_bytes(123) == 123
    for bad in ("lots", "12XB", "-1MB", "0"):
        with pytest.raises(ConfigError):
            parse_bytes(bad)


@pytest.mark.parametrize("size", [64, 67, 97, 224, 512, 769])
def test_feature_size_matches_the_model(torch, size):
    from danet_deploy.model import DilatedResNet

    for stride in (8, 16):
        for depth, deep in ((18, False), (50, True)):
            feat = DilatedResNet(depth, stride, deep_stem=deep, base_width=8)(torch.zeros(1, 3, size, 9 * 8))
            assert feat.shape[2] == feature_size(size, stride)


def test_small_inputs_stay_unchunked_and_full_hd_is_chunked():
    small = plan_attention((512, 1024))
    assert small.positions == 8192 and small.chunks == 1 and small.energy_bytes == 256 * 2**20
    big = plan_attention((1024, 2048))
    assert big.positions == 32768 and big.energy_bytes == 4 * 2**30
    assert big.chunks == 16 and big.chunk_bytes <= 256 * 2**20
    assert "budget" in big.reason
    assert plan_attention((1024, 2048), budget="1GB").chunks == 4
    assert plan_attention((64, 64), chunks=5).chunks == 5


def test_tensorrt_limit():
    # 2048x2048 at batch 1: N = 65536, N^2 = 2^32 elements > 2^31 - 1
    plan = plan_attention((2048, 2048), budget="64GB", tensorrt=True)
    assert plan.energy_elements == 2**32
    assert plan.chunks >= 2 and plan.chunk_elements <= TENSORRT_MAX_ELEMENTS and plan.fits_tensorrt
    assert "TensorRT" in plan.reason
    unchunked = plan_attention((2048, 2048), chunks=1)
    assert not unchunked.fits_tensorrt


def test_planner_errors():
    with pytest.raises(ConfigError):
        plan_attention((0, 10))
    with pytest.raises(ConfigError):
        plan_attention((64, 64), precision="fp8")
    with pytest.raises(ConfigError):
        plan_attention((64, 64), chunks=0)


def test_export_records_the_plan(tmp_path):
    pytest.importorskip("onnxruntime")
    from danet_deploy.export import ExportRequest, export

    _, manifest = export(
        ExportRequest("danet_edge_r18_d8", input_size=(64, 64), output=tmp_path / "a", attention_memory="4KB"),
        log=lambda _: None,
    )
    plan = manifest.export["attention_plan"]
    assert plan["positions"] == 64 and plan["chunks"] == 4 and manifest.model["attention_chunks"] == 4
