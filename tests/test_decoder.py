"""The stride-4 skip decoder (``decoder_channels``), its checkpoint inference, and the multi-resolution loss."""

from __future__ import annotations

import pytest

from danet_deploy.errors import ConfigError
from danet_deploy.model import create_model, get_config


def test_decoder_model_shapes_in_eval_and_training(torch):
    model = create_model("danet_demo", weights=False)
    assert model.decoder is not None and get_config("danet_demo").logits_stride == 4
    x = torch.randn(2, 3, 67, 45)  # odd sizes: the skip and the head's output must still line up
    with torch.no_grad():
        assert model(x).shape == (2, 8, 67, 45)
        assert model.forward_lowres(x).shape == (2, 8, 17, 12)  # ceil(67 / 4), ceil(45 / 4)
    model.train()
    outs = model(torch.randn(2, 3, 64, 96))
    assert len(outs) == 4 and all(o.shape == (2, 8, 64, 96) for o in outs)
    low = model.forward_lowres(torch.randn(2, 3, 64, 96))
    assert [tuple(o.shape[-2:]) for o in low] == [(16, 24), (8, 12), (8, 12), (8, 12)]


def test_no_decoder_is_the_papers_head_unchanged(torch):
    plain = create_model("danet_demo", weights=False, decoder_channels=0)
    assert plain.decoder is None and get_config("danet_demo", decoder_channels=0).logits_stride == 8
    assert not any(k.startswith("decoder.") for k in plain.state_dict())
    edge = create_model("danet_edge_r18_d8", weights=False, num_classes=8)
    assert set(plain.state_dict()) == set(edge.state_dict())


def test_decoder_option_is_typed_and_range_checked():
    from danet_deploy.model.options import coerce_model_options

    assert coerce_model_options({"decoder_channels": "32"}) == {"decoder_channels": 32}
    with pytest.raises(ConfigError, match="decoder_channels=-1"):
        coerce_model_options({"decoder_channels": "-1"})
    with pytest.raises(ConfigError, match="integer"):
        coerce_model_options({"decoder_channels": "wide"})


def test_checkpoint_with_a_decoder_is_recognised(torch, tmp_path):
    from danet_deploy.model.inspect import infer_architecture, matching_presets, model_from_checkpoint

    model = create_model("danet_demo", weights=False, decoder_channels=32)
    arch = infer_architecture(model.state_dict())
    assert arch.decoder_channels == 32 and "stride-4 decoder of 32 channels" in arch.describe()
    assert matching_presets(arch) == []  # the demo preset's decoder is 64 wide
    assert matching_presets(arch, {"decoder_channels": 32}) == ["danet_demo"]
    path = tmp_path / "w.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(Exception, match="decoder_channels=32"):  # the fix is named
        model_from_checkpoint(path)
    loaded, info = model_from_checkpoint(path, options={"decoder_channels": "32"})
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert info["preset"] == "danet_demo"


def test_labels_at_samples_cell_centres(torch):
    from danet_deploy.training.loss import labels_at

    target = torch.arange(8 * 16).reshape(1, 8, 16)
    assert labels_at(target, (8, 16)) is target
    coarse = labels_at(target, (2, 4))
    assert coarse.tolist() == [
        [[2 * 16 + 2, 2 * 16 + 6, 2 * 16 + 10, 2 * 16 + 14], [6 * 16 + 2, 6 * 16 + 6, 6 * 16 + 10, 6 * 16 + 14]]
    ]
    assert labels_at(target, (3, 5)).tolist() == [[[16 * r + c for c in (1, 4, 8, 11, 14)] for r in (1, 4, 6)]]


def test_loss_upsamples_the_prediction_and_scores_auxiliary_outputs_coarse(torch):
    import torch.nn.functional as F

    from danet_deploy.training.loss import danet_loss, labels_at

    torch.manual_seed(0)
    target = torch.randint(0, 4, (2, 16, 24))
    pred, aux = torch.randn(2, 4, 4, 6), torch.randn(2, 4, 2, 3)
    full = F.interpolate(pred, size=(16, 24), mode="bilinear", align_corners=False)
    expected = F.cross_entropy(full, target) + F.cross_entropy(aux, labels_at(target, (2, 3)))
    torch.testing.assert_close(danet_loss((pred, aux), target, align_corners=False), expected)


def test_fix_for_a_pre_decoder_demo_checkpoint_is_named_relative_to_the_users_preset(torch, tmp_path):
    from danet_deploy.model.inspect import model_from_checkpoint

    old = create_model("danet_demo", weights=False, decoder_channels=0)
    path = tmp_path / "old_demo.pt"
    torch.save(old.state_dict(), path)
    with pytest.raises(Exception, match="--arch danet_demo --model-option decoder_channels=0"):
        model_from_checkpoint(path, arch="danet_demo")


def test_evaluate_only_rebuilds_the_architecture_from_the_weights(torch, tmp_path):
    from safetensors.torch import save_file

    from danet_deploy.training.loop import evaluate_weights

    old = create_model("danet_demo", weights=False, decoder_channels=0)  # trained before the decoder: no metadata
    path = tmp_path / "old.safetensors"
    save_file({k: v.contiguous() for k, v in old.state_dict().items()}, str(path))
    (result,) = evaluate_weights(path, count=1, sizes=((64, 64),), progress=False)
    assert result["images"] == 1


def test_training_refuses_other_class_names(tmp_path):
    from danet_deploy.training.loop import TrainConfig

    with pytest.raises(ConfigError, match="class_names cannot be trained"):
        TrainConfig(model_options={"class_names": "a,b"}, output=str(tmp_path / "w.safetensors")).validate()
