import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from oracle import cam, pam

from danet_deploy.errors import CheckpointError, ConfigError, UnknownModelError
from danet_deploy.model import (
    ChannelAttention,
    PositionAttention,
    create_model,
    init_for_testing,
    list_models,
    map_state_dict,
)


def _pam_params(module):
    p = {k: v.detach().double().numpy() for k, v in module.state_dict().items()}
    return (
        p["query_conv.weight"],
        p["query_conv.bias"],
        p["key_conv.weight"],
        p["key_conv.bias"],
        p["value_conv.weight"],
        p["value_conv.bias"],
        float(p["gamma"][0]),
    )


@pytest.mark.parametrize("chunks", [1, 3, 7])
def test_position_attention_matches_numpy_oracle(torch, chunks):
    torch.manual_seed(0)
    module = PositionAttention(32, chunks=chunks)
    with torch.no_grad():
        module.gamma.fill_(0.7)
    x = torch.randn(2, 32, 9, 11)
    with torch.no_grad():
        out = module(x).numpy()
    for b in range(2):
        ref = pam(x[b].numpy(), *_pam_params(module))
        np.testing.assert_allclose(out[b].reshape(32, -1), ref, rtol=1e-4, atol=1e-5)


def test_channel_attention_matches_numpy_oracle(torch):
    torch.manual_seed(1)
    module = ChannelAttention()
    with torch.no_grad():
        module.gamma.fill_(-0.4)
    x = torch.randn(2, 16, 7, 13) * 0.3
    with torch.no_grad():
        out = module(x).numpy()
    for b in range(2):
        np.testing.assert_allclose(out[b].reshape(16, -1), cam(x[b].numpy(), -0.4), rtol=1e-4, atol=1e-5)


def test_gamma_starts_at_zero_so_attention_is_identity(torch):
    x = torch.randn(1, 16, 5, 5)
    assert torch.equal(PositionAttention(16).eval()(x), x)
    assert torch.equal(ChannelAttention().eval()(x), x)
    assert PositionAttention(64).key_channels == 8


def test_chunked_attention_is_exact(torch):
    torch.manual_seed(2)
    module = PositionAttention(24)
    with torch.no_grad():
        module.gamma.fill_(1.0)
    x = torch.randn(1, 24, 13, 17)  # N = 221, not a multiple of any chunk count used
    with torch.no_grad():
        ref = module(x)
        for chunks in (2, 5, 16, 221):
            module.chunks = chunks
            torch.testing.assert_close(module(x), ref, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError):
        module.chunks = 0


SEED_CASE = r"""
import sys, numpy as np, torch
sys.path.insert(0, sys.argv[1])
from oracle import pam, cam
from danet_deploy.bench.memory import peak_rss_mb
from danet_deploy.model import PositionAttention, ChannelAttention
torch.manual_seed(0); torch.set_num_threads(2)
p, c = PositionAttention(40, chunks=int(sys.argv[2])), ChannelAttention()
with torch.no_grad():
    for m in p.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.weight.mul_(0.3)
    p.gamma.fill_(0.5); c.gamma.fill_(0.5)
    x = torch.randn(1, 40, 224, 224) * 0.1
    out = (p(x) + c(x))[0].reshape(40, -1).double().numpy()
params = {k: v.detach().double().numpy() for k, v in p.state_dict().items()}
rows = np.random.default_rng(0).choice(224 * 224, 24, replace=False)
ref = pam(x[0].numpy(), params["query_conv.weight"], params["query_conv.bias"], params["key_conv.weight"],
          params["key_conv.bias"], params["value_conv.weight"], params["value_conv.bias"], 0.5, rows)
ref = ref + cam(x[0].numpy(), 0.5)[:, rows]
err = float(np.abs(out[:, rows] - ref).max())
# VmHWM, not ru_maxrss: the latter inherits the parent's peak through fork+exec (a large pytest
# process made this 224 px case read 2.6 GiB)
print(err, int(peak_rss_mb() * 2**20))
"""


@pytest.mark.slow  # over 5 s: make test-slow (CI)
def test_seed_case_dual_attention_224(tmp_path):
    """The dual attention block on 1x40x224x224 (N = 50176; naive energy ~10 GiB) vs the oracle."""
    result = subprocess.run(
        [sys.executable, "-c", SEED_CASE, str(Path(__file__).parent), "48"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    err, peak = result.stdout.split()
    assert float(err) < 1e-4
    # 48 query chunks of ~1045 x 50176 energies: far below the ~10 GiB of the naive form
    assert int(peak) < 2 * 1024**3, f"peak RSS {int(peak) / 2**30:.2f} GiB"


def test_presets_shapes_and_modes(torch):
    assert {"danet_r101_d8", "danet_r50_d8", "danet_r18_d8", "danet_edge_r18_d8", "danet_demo"} <= set(list_models())
    x = torch.randn(2, 3, 67, 45)  # odd sizes, not multiples of 8
    for name in list_models():
        if name.startswith(("danet_official_", "danet_mmseg_")):  # release presets: shapes only (meta tensors)
            from danet_deploy.model import get_config
            from danet_deploy.model.registry import build_model

            with torch.device("meta"):
                out = build_model(get_config(name)).eval()(torch.empty(2, 3, 67, 45))
            assert out.shape == (2, get_config(name).num_classes, 67, 45), name
            continue
        model = create_model(name, weights=False)
        with torch.no_grad():
            out = model(x)
        assert out.shape == (2, model.num_classes, 67, 45), name
    model = create_model("danet_edge_r18_d8", weights=False, eval_mode=False)
    outs = model(torch.randn(2, 3, 64, 64))
    assert isinstance(outs, tuple) and len(outs) == 3
    assert all(o.shape == (2, 19, 64, 64) for o in outs)


def test_parameter_counts():
    counts = {
        name: sum(p.numel() for p in create_model(name, weights=False).parameters())
        for name in ("danet_r50_d8", "danet_r101_d8")
    }
    assert abs(counts["danet_r50_d8"] / 1e6 - 47.5) < 0.5
    assert abs(counts["danet_r101_d8"] / 1e6 - 66.5) < 0.5


@pytest.mark.parametrize("stride,expected", [(8, 8), (16, 4), (32, 2)])
def test_output_strides(torch, stride, expected):
    from danet_deploy.model import DilatedResNet

    for depth in (18, 50):
        feat = DilatedResNet(depth=depth, output_stride=stride, base_width=16)(torch.randn(1, 3, 64, 64))
        assert feat.shape[-1] == expected


def test_checkpoint_round_trip(torch, tmp_path):
    model = init_for_testing(create_model("danet_edge_r18_d8", weights=False, num_classes=5), seed=3)
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {"epoch": 3}}, path)
    loaded = create_model("danet_edge_r18_d8", num_classes=5, weights=path)
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    loaded = create_model("danet_edge_r18_d8", num_classes=5, weights=tmp_path / "w.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def _official_names(state):
    return {k.replace("backbone.", "pretrained.", 1): v for k, v in state.items()}


def _mmseg_names(state):
    rename = {
        "backbone.conv1.0.": "backbone.stem.0.",
        "backbone.conv1.1.": "backbone.stem.1.",
        "backbone.conv1.3.": "backbone.stem.3.",
        "backbone.conv1.4.": "backbone.stem.4.",
        "backbone.conv1.6.": "backbone.stem.6.",
        "backbone.bn1.": "backbone.stem.7.",
        "head.conv5a.0.": "decode_head.pam_in_conv.conv.",
        "head.conv5a.1.": "decode_head.pam_in_conv.bn.",
        "head.conv5c.0.": "decode_head.cam_in_conv.conv.",
        "head.conv5c.1.": "decode_head.cam_in_conv.bn.",
        "head.sa.query_conv.": "decode_head.pam.query_project.",
        "head.sa.key_conv.": "decode_head.pam.key_project.",
        "head.sa.value_conv.": "decode_head.pam.value_project.",
        "head.conv51.0.": "decode_head.pam_out_conv.conv.",
        "head.conv51.1.": "decode_head.pam_out_conv.bn.",
        "head.conv52.0.": "decode_head.cam_out_conv.conv.",
        "head.conv52.1.": "decode_head.cam_out_conv.bn.",
        "head.conv6.1.": "decode_head.pam_conv_seg.",
        "head.conv7.1.": "decode_head.cam_conv_seg.",
        "head.conv8.1.": "decode_head.conv_seg.",
    }
    out = {}
    for k, v in state.items():
        if k == "head.sa.gamma":
            out["decode_head.pam.gamma.scale"] = v
            continue
        if k == "head.sc.gamma":
            out["decode_head.cam.gamma.scale"] = v
            continue
        for old, new in rename.items():
            if k.startswith(old):
                k = new + k[len(old) :]
                break
        out[k] = v
    out["auxiliary_head.conv_seg.weight"] = out["decode_head.conv_seg.weight"].clone()
    return out


@pytest.mark.parametrize("convert", [_official_names, _mmseg_names])
def test_official_and_mmseg_key_mapping(torch, tmp_path, convert):
    model = init_for_testing(create_model("danet_r18_d8", weights=False, num_classes=4), seed=5)
    path = tmp_path / "foreign.pth"
    torch.save({"state_dict": convert(model.state_dict())}, path)
    loaded = create_model("danet_r18_d8", num_classes=4, weights=path)
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    _mapped, dropped = map_state_dict(convert(model.state_dict()))
    if convert is _mmseg_names:
        assert dropped == ["auxiliary_head.conv_seg.weight"]


def test_checkpoint_errors(torch, tmp_path):
    model = create_model("danet_edge_r18_d8", weights=False, num_classes=5)
    path = tmp_path / "five.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(CheckpointError, match="num_classes=5"):
        create_model("danet_edge_r18_d8", weights=path)  # 19 classes by default
    with pytest.raises(CheckpointError, match="does not exist"):
        create_model("danet_edge_r18_d8", weights=tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="weights-only"):
        create_model("danet_edge_r18_d8", weights=junk)
    text = tmp_path / "list.pth"
    torch.save([1, 2, 3], text)
    with pytest.raises(CheckpointError, match="no state dict"):
        create_model("danet_edge_r18_d8", weights=text)
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in model.state_dict().items() if not k.startswith("head.")}, partial)
    with pytest.raises(CheckpointError, match="missing key"):
        create_model("danet_edge_r18_d8", num_classes=5, weights=partial)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_is_refused(torch, tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        create_model("danet_edge_r18_d8", weights=path)


def test_unknown_model_and_bad_options():
    with pytest.raises(UnknownModelError, match="danet_r50_d8"):
        create_model("danet_r1000")
    with pytest.raises(ConfigError):
        create_model("danet_edge_r18_d8", weights=False, not_an_option=1)
    with pytest.raises(ValueError):
        create_model("danet_edge_r18_d8", weights=False, num_classes=0)


def test_package_import_is_torch_free():
    code = "import sys, danet_deploy; danet_deploy.list_models(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
