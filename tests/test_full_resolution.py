"""Full-resolution DANet: chunked attention exports exactly; FP16 stays finite at 1024x2048."""

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from danet_deploy import runtime
from danet_deploy.export import ExportRequest, export
from danet_deploy.verify.parity import compare_logits


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def chunked_and_plain(tmp_path_factory):
    root = tmp_path_factory.mktemp("chunks")
    chunked, _ = export(
        ExportRequest(
            "danet_edge_r18_d8", input_size=(64, 64), dynamic=True, attention_chunks=5, output=root / "chunked"
        ),
        log=_quiet,
    )
    plain, _ = export(
        ExportRequest("danet_edge_r18_d8", input_size=(64, 64), dynamic=True, output=root / "plain"), log=_quiet
    )
    return chunked, plain


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_chunked_dynamic_export_is_exact_at_unseen_sizes(chunked_and_plain, backend):
    """Chunk bounds follow the symbolic N: sizes larger than the export size and N % 5 != 0 stay exact."""
    if backend == "openvino":
        pytest.importorskip("openvino")
    chunked, plain = chunked_and_plain
    rng = np.random.default_rng(0)
    with runtime.load(chunked, backend=backend, threads=2) as a, runtime.load(plain, backend=backend, threads=2) as b:
        for shape in ((1, 3, 64, 64), (1, 3, 136, 200), (2, 3, 97, 61)):
            x = rng.standard_normal(shape).astype(np.float32)
            ya, yb = a.infer(x), b.infer(x)
            assert np.abs(ya - yb).max() <= 1e-5 * np.abs(yb).max()
            assert (ya.argmax(1) == yb.argmax(1)).all()


@pytest.mark.slow
@pytest.mark.parametrize("target", ["onnxruntime", "tensorrt"])
def test_fp16_at_1024x2048_is_finite_and_accurate(tmp_path, target):
    """CAM's energy sums over N = 32768 positions and PAM's weights are ~1/N: FP16 must not overflow."""
    from danet_deploy.data.scenes import generate_scene
    from danet_deploy.model import get_config
    from danet_deploy.runtime.preprocess import preprocess

    size = (1024, 2048)
    path, manifest = export(
        ExportRequest(
            "danet_demo", target=target, precision="fp16", input_size=size, output=tmp_path / target, calib_count=2
        ),
        log=_quiet,
    )
    assert manifest.export["attention_plan"]["chunks"] == 16
    x = preprocess([generate_scene(1_000_000, *size)[0]], get_config("danet_demo").preprocessing.to_dict())
    with runtime.load("danet_demo", threads=2) as ref, runtime.load(path, threads=2) as art:
        reference, out = ref.infer(x), art.infer(x)
    assert np.isfinite(out).all()
    report = compare_logits(reference, out, precision="fp16")
    assert report.argmax_agreement >= 0.995, report.table()
