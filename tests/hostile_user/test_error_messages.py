"""Error messages that used to mislead: they name the real problem and never advise unsafe
loading (``weights_only=False``, ``strict=False``)."""

from __future__ import annotations

import pytest

from hostile_user.hostile_support import MODEL, quiet, run_cli

pytest.importorskip("onnxruntime")

from danet_deploy.errors import CalibrationError, CheckpointError


def test_run_on_a_folder_and_unreadable_calibration_images_name_the_real_problem(tmp_path, capsys, artifact):
    folder = tmp_path / "imgs"
    folder.mkdir()
    assert run_cli("run", ["--model", str(artifact), str(folder), "-o", str(tmp_path / "o")]) == 2
    assert "is a folder" in capsys.readouterr().err

    from danet_deploy.data.calibration import load_calibration

    (folder / "broken.png").write_bytes(b"not a png")
    with pytest.raises(CalibrationError) as empty:
        load_calibration(
            str(folder), count=4, size=(64, 64), preprocessing={"mean": [0] * 3, "std": [1] * 3}, log=quiet
        )
    assert "--calib-count" not in str(empty.value) and "no readable image" in str(empty.value)
    with pytest.raises(CalibrationError) as missing:
        load_calibration(
            str(tmp_path / "nope"), count=4, size=(64, 64), preprocessing={"mean": [0] * 3, "std": [1] * 3}, log=quiet
        )
    assert "--calib-dir" in str(missing.value) and "does not exist" in str(missing.value)


def test_checkpoint_errors_never_advise_unsafe_loading(tmp_path):
    torch = pytest.importorskip("torch")
    from danet_deploy.model import create_model
    from danet_deploy.model.checkpoints import read_state_dict

    class Payload:
        def __reduce__(self):
            return (print, ("unpickled!",))

    evil = tmp_path / "evil.pt"
    torch.save({"weight": Payload()}, evil)
    with pytest.raises(CheckpointError) as info:
        read_state_dict(evil)
    text = str(info.value)
    assert "weights_only=False" not in text and "add_safe_globals" not in text and "print" in text
    partial = tmp_path / "partial.pt"
    torch.save({"backbone.conv1.weight": torch.zeros(1)}, partial)
    with pytest.raises(CheckpointError) as mismatch:
        create_model(MODEL, weights=partial)
    assert "strict=False" not in str(mismatch.value)
