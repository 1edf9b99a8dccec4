"""Non-finite numbers: a checkpoint holding NaN is refused at load, non-finite logits are an error
by default, and graphs that output only the mask still flag them."""

from __future__ import annotations

import numpy as np
import pytest

from hostile_user.hostile_support import MODEL, quiet, run_cli, snapshot

pytest.importorskip("onnxruntime")

from danet_deploy import runtime
from danet_deploy.errors import InputError, NonFiniteOutputError
from danet_deploy.export import ExportRequest, export


def test_nan_checkpoint_is_refused_at_load(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file, save_file

    from danet_deploy.model.registry import weights_dir

    state = load_file(str(weights_dir() / "danet_demo.safetensors"))
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = torch.full_like(state[key], float("nan"))
    ckpt = tmp_path / "nan.safetensors"
    save_file(state, str(ckpt))
    before = snapshot(tmp_path)
    assert (
        run_cli("export", ["--model", str(ckpt), "--arch", MODEL, "--input-size", "64x64", "-o", str(tmp_path / "out")])
        == 2
    )
    err = capsys.readouterr().err
    assert "NaN or Inf" in err and key in err
    assert snapshot(tmp_path) == before


def test_non_finite_logits_are_an_error_by_default(artifact):
    with runtime.load(artifact) as session:
        huge = np.full((1, 3, 64, 64), 1e38, np.float32)
        with pytest.raises(InputError, match="far outside"):  # no preprocessing gives such values
            session.infer(huge)
        session.check_inputs = False  # let them through, to overflow the logits
        with pytest.raises(NonFiniteOutputError, match="NaN/Inf"):
            session.infer(huge)
        session.check_outputs = False
        assert not np.isfinite(session.infer(huge)).all()


@pytest.mark.parametrize("target, precision", [("onnx", "fp32"), ("onnxruntime", "fp16"), ("openvino", "fp32")])
def test_mask_only_graphs_flag_non_finite_logits(tmp_path, target, precision):
    """With --emit mask no logits leave the engine; the graph marks an image whose logits were
    NaN/Inf with the invalid value, and the session raises on it (the other images are kept)."""
    if target == "openvino":
        pytest.importorskip("openvino")
    from danet_deploy.outputs import invalid_mask_value

    art, _ = export(
        ExportRequest(
            MODEL,
            target=target,
            precision=precision,
            input_size=(64, 64),
            emit="mask",
            dynamic=True,
            output=tmp_path / "mask",
        ),
        log=quiet,
    )
    with runtime.load(art) as session:
        session.check_inputs = False  # out-of-range inputs on purpose: they overflow the logits
        normal = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
        huge = np.full((1, 3, 64, 64), 1e38, np.float32)
        mask = session.infer_outputs(normal)["mask"]
        assert mask.dtype == np.uint8 and mask.max() < session.num_classes
        with pytest.raises(NonFiniteOutputError, match="NaN/Inf"):
            session.infer_outputs(huge)
        with pytest.raises(NonFiniteOutputError):
            session.infer_outputs(np.concatenate([normal, huge]))
        session.check_outputs = False
        both = session.infer_outputs(np.concatenate([normal, huge]))["mask"]
        np.testing.assert_array_equal(both[0], mask[0])  # the finite image keeps its own mask
        assert (both[1] == invalid_mask_value(np.uint8)).all()
