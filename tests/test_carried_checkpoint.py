"""The checkpoint copy an artifact carries: the weights only (never the optimizer, logs or a pickle), with
the original file's sha256 recorded beside the copy's."""

import json

import numpy as np
import pytest
from released_layouts import mmengine_training_checkpoint

from danet_deploy.errors import CheckpointError
from danet_deploy.model import create_model, init_for_testing
from danet_deploy.util.files import sha256_file


@pytest.fixture()
def edge(torch):
    return init_for_testing(create_model("danet_edge_r18_d8", weights=False), seed=11)


@pytest.mark.slow
def test_a_training_file_is_carried_as_its_weights_only(torch, tmp_path, edge):
    from safetensors.torch import load_file

    from danet_deploy import runtime
    from danet_deploy.cli.export import main as export_main

    path = tmp_path / "iter_100.pth"  # an mmengine training file with 16 MB of optimizer state
    mmengine_training_checkpoint(edge, path, ("c",) * 19, config=None, optimizer_mb=16)
    weights = sum(v.numel() * v.element_size() for v in edge.state_dict().values())
    assert path.stat().st_size > weights + 16 * 2**20
    out = tmp_path / "art"
    assert (
        export_main(
            ["--model", str(path), "--input-size", "64x64", "--output", str(out), "--verify", "--verify-images", "1"]
        )
        == 0
    )
    manifest = json.loads((out / "manifest.json").read_text())
    info = manifest["checkpoint"]
    carried = out / info["path"]
    assert carried.name == "checkpoint.safetensors" and carried.stat().st_size < weights + 2**16
    tensors = load_file(str(carried))  # the state dict as saved: keys, dtypes, values
    assert set(tensors) == set(edge.state_dict())
    assert all(torch.equal(tensors[k], v) for k, v in edge.state_dict().items())
    assert info["sha256"] == sha256_file(path) and info["file_name"] == "iter_100.pth"  # the original's digest
    assert manifest["files"]["checkpoint.safetensors"] == info["carried_sha256"] == sha256_file(carried)
    assert manifest["parity"]["passed"] and "message_hub" in info["ignored"]
    path.unlink()  # the artifact rebuilds its torch reference from the copy alone
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    with runtime.load(out, backend="torch") as session, torch.no_grad():
        np.testing.assert_allclose(session.infer(x), edge(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5)


def test_carried_weights_keep_their_dtype_and_a_rewritten_source_fails(torch, tmp_path, edge):
    from safetensors.torch import load_file

    from danet_deploy.export.pipeline import carry_weights

    path = tmp_path / "half.pth"
    half = {k: v.half() if v.is_floating_point() else v for k, v in edge.state_dict().items()}
    torch.save({"state_dict": half, "optimizer": {"state": {}}}, path)
    info = {"path": "checkpoint.safetensors", "sha256": sha256_file(path)}
    (tmp_path / "w").mkdir()
    carry_weights(path, info, tmp_path / "w")
    carried = load_file(str(tmp_path / "w" / "checkpoint.safetensors"))
    assert carried["head.conv8.1.weight"].dtype == torch.float16 and torch.equal(
        carried["head.conv8.1.weight"], half["head.conv8.1.weight"]
    )
    assert info["carried_sha256"] == sha256_file(tmp_path / "w" / "checkpoint.safetensors")
    with pytest.raises(CheckpointError, match="changed while it was exported"):
        carry_weights(path, {"path": "checkpoint.safetensors", "sha256": "0" * 64}, tmp_path / "w")


def test_tensors_sharing_memory_are_carried_each_whole(torch, tmp_path):
    from safetensors.torch import load_file

    from danet_deploy.model.checkpoints import save_weights

    base = torch.arange(12.0)
    save_weights({"a": base[:6], "b": base[6:], "c": base, "t": base.view(3, 4).t()}, tmp_path / "s.safetensors")
    back = load_file(str(tmp_path / "s.safetensors"))
    assert (
        torch.equal(back["b"], base[6:])
        and torch.equal(back["t"], base.view(3, 4).t())
        and torch.equal(back["c"], base)
    )
