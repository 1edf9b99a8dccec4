"""Released checkpoints: stem widths, release presets, architecture from tensors, containers, --model-option."""

import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from danet_deploy.errors import CheckpointError, ConfigError, UnknownModelError
from danet_deploy.model import create_model, get_config, list_models
from danet_deploy.model.inspect import (
    CheckpointArchitecture,
    infer_architecture,
    matching_presets,
    resolve,
    suggest_flags,
)
from danet_deploy.model.options import (
    ARCH_FIELDS,
    DEPTHS,
    OUTPUT_STRIDES,
    coerce_model_options,
    format_option,
    parse_option_pairs,
)

RELEASES = [n for n in list_models() if n.startswith(("danet_official_", "danet_mmseg_"))]


def _meta_state(torch, **config):
    """A DANet state dict with real key names and shapes but no data (meta tensors): instant at any depth."""
    from danet_deploy.model.danet import DANet

    with torch.device("meta"):
        return DANet(**config).state_dict()


def _arch(**kw):
    base = dict(
        depth=50, block="bottleneck", blocks=(3, 4, 6, 3), deep_stem=True, stem_width=32, base_width=64, num_classes=19
    )
    base.update(kw)
    return CheckpointArchitecture(**base)


# --- stem widths and release presets ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name,convs",
    [
        ("danet_r50_d8", [(64, 3), (64, 64), (128, 64)]),  # official deep stem
        ("danet_mmseg_r50_d8_cityscapes", [(32, 3), (32, 32), (64, 32)]),  # ResNetV1c stem_channels=64
        ("danet_official_r101_cityscapes", [(64, 3)]),  # 7x7 stem
    ],
)
def test_stem_widths(torch, name, convs):
    state = _meta_state(
        torch,
        **{
            k: getattr(get_config(name), k)
            for k in ("depth", "deep_stem", "stem_width", "base_width", "multi_grid", "num_classes")
        },
    )
    keys = (
        ["backbone.conv1.0.weight", "backbone.conv1.3.weight", "backbone.conv1.6.weight"]
        if len(convs) == 3
        else ["backbone.conv1.weight"]
    )
    assert [tuple(state[k].shape[:2]) for k in keys] == convs
    assert state["backbone.bn1.weight"].shape[0] == convs[-1][0]
    assert state["backbone.layer1.0.conv1.weight"].shape[1] == convs[-1][0]  # layer1 takes the stem's output
    assert state["backbone.layer1.0.downsample.0.weight"].shape[1] == convs[-1][0]
    if len(convs) == 1:
        assert tuple(state["backbone.conv1.weight"].shape[2:]) == (7, 7)


def _dilations(torch, name):
    from danet_deploy.model.registry import build_model

    with torch.device("meta"):
        backbone = build_model(get_config(name)).backbone
    return {stage: [b.conv2.dilation[0] for b in getattr(backbone, stage)] for stage in ("layer3", "layer4")}


def test_dilation_schedules_of_the_releases(torch):
    # official test script: --multi-grid --multi-dilation 4 8 16 (absolute dilations of layer4's blocks)
    official = _dilations(torch, "danet_official_r101_cityscapes")
    assert official["layer4"] == [4, 8, 16] and official["layer3"] == [1] + [2] * 22
    # mmseg ResNetV1c, dilations (1, 1, 2, 4), contract_dilation: first block of a stage uses half
    mmseg = _dilations(torch, "danet_mmseg_r101_d8_ade20k")
    assert mmseg["layer4"] == [2, 4, 4] and mmseg["layer3"] == [1] + [2] * 22


def test_release_presets_say_what_they_reproduce():
    assert len(RELEASES) == 9
    for name in RELEASES:
        config = get_config(name)
        assert (
            config.num_classes
            == len(config.class_names)
            == {"cityscapes": 19, "ade20k": 150, "voc12aug": 21}[
                re.search(r"(cityscapes|ade20k|voc12aug)", name).group(1)
            ]
        )
        assert re.search(r"mIoU \d\d\.\d\d", config.description), name
        assert config.preprocessing.mean == pytest.approx((0.485, 0.456, 0.406))  # mmseg 123.675/255, ...
        assert config.preprocessing.std == pytest.approx((0.229, 0.224, 0.225))
        assert config.output_stride == 8
    official = get_config("danet_official_r101_cityscapes")
    assert (official.depth, official.deep_stem, official.multi_grid, official.align_corners) == (
        101,
        False,
        (1, 2, 4),
        True,
    )
    for name in RELEASES[1:] if RELEASES[0].startswith("danet_official") else RELEASES:
        config = get_config(name)
        if name.startswith("danet_mmseg_"):
            assert (config.deep_stem, config.stem_width, config.multi_grid) == (True, 32, None)
            assert config.align_corners is name.endswith("_769"), name  # only the 769x769 configs use True
    assert get_config("danet_mmseg_r50_d8_ade20k").class_names[:3] == ("wall", "building", "sky")
    assert get_config("danet_mmseg_r50_d8_voc12aug").class_names[0] == "background"


# --- architecture from tensors -----------------------------------------------------------------------

_CONFIGS = st.fixed_dictionaries(
    {
        "depth": st.sampled_from(DEPTHS),
        "deep_stem": st.booleans(),
        "stem_width": st.sampled_from([8, 16, 24, 32, 64]),
        "base_width": st.sampled_from([8, 16, 32, 64]),
        "num_classes": st.integers(1, 200),
        "output_stride": st.sampled_from(OUTPUT_STRIDES),
        "multi_grid": st.sampled_from([None, (1, 2, 4), (1, 1)]),
        "decoder_channels": st.sampled_from([0, 0, 16, 64]),
    }
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=_CONFIGS)
def test_inference_reads_back_any_buildable_architecture(torch, config):
    from danet_deploy.model import map_state_dict

    state, dropped = map_state_dict(_meta_state(torch, **config))
    arch = infer_architecture(state, dropped)
    assert arch.fields() == {
        k: config[k] for k in ("depth", "deep_stem", "stem_width", "base_width", "num_classes", "decoder_channels")
    }
    # whatever it is, the suggested flags describe it exactly
    name, flags = suggest_flags(arch)
    args = " ".join(flags).split()
    num_classes = int(args[args.index("--num-classes") + 1]) if "--num-classes" in args else None
    options = parse_option_pairs(args[i + 1] for i, a in enumerate(args) if a == "--model-option")
    resolved = resolve(arch, "ckpt.pth", name, num_classes, options)
    assert resolved.preset == name and resolved.config.depth == config["depth"]


def test_each_preset_is_recognised(torch):
    from danet_deploy.model import map_state_dict

    for name in list_models():
        c = get_config(name)
        state = _meta_state(
            torch,
            depth=c.depth,
            deep_stem=c.deep_stem,
            stem_width=c.stem_width,
            base_width=c.base_width,
            num_classes=c.num_classes,
            decoder_channels=c.decoder_channels,
        )
        fits = matching_presets(infer_architecture(*map_state_dict(state)))
        assert name in fits, name
        if name.startswith("danet_mmseg_") and "_cityscapes" in name:  # only align_corners tells them apart
            assert len(fits) == 2
        else:
            assert fits == [name]


def test_not_a_danet_and_unsupported_depth(torch):
    with pytest.raises(CheckpointError, match="do not look like a DANet"):
        infer_architecture({"fc.weight": torch.zeros(2, 2), "conv1.weight": torch.zeros(1)})
    state = _meta_state(torch, depth=50)
    state = {
        **state,
        **{f"backbone.layer3.{i}.conv1.weight": state["backbone.layer3.1.conv1.weight"] for i in range(6, 36)},
    }  # ResNet-152's 36 blocks
    with pytest.raises(CheckpointError, match=r"3/4/36/3.*ResNet-101"):
        infer_architecture(state)


# --- choosing the preset -----------------------------------------------------------------------------


def test_issue_command_names_the_fitting_preset():
    # danet-export --model DANet101.pth.tar --arch danet_r101_d8 (the official release)
    official = _arch(depth=101, blocks=(3, 4, 23, 3), deep_stem=False, stem_width=64)
    with pytest.raises(CheckpointError) as info:
        resolve(official, "DANet101.pth.tar", "danet_r101_d8")
    message = str(info.value)
    assert "deep_stem: preset deep stem 3->64->64->128 vs checkpoint 7x7 stem 3->64" in message
    assert "--arch danet_official_r101_cityscapes" in message
    picked = resolve(official, "DANet101.pth.tar")
    assert picked.preset == "danet_official_r101_cityscapes" and picked.candidates == [picked.preset]
    assert any("multi_grid=1,2,4" in n for n in picked.notes)  # says what the weights could not


def test_mmseg_checkpoint_against_a_paper_preset_names_its_release():
    with pytest.raises(
        CheckpointError,
        match=r"stem_width: preset 3->64->64->128|deep stem 3->64->64->128 vs "
        r"checkpoint deep stem 3->32->32->64",
    ) as info:
        resolve(_arch(num_classes=150), "ade.pth", "danet_r50_d8")
    assert "danet_mmseg_r50_d8_ade20k" in str(info.value) and "num_classes: preset 19 vs checkpoint 150" in str(
        info.value
    )


def test_presets_that_build_different_networks_are_refused_unless_the_file_decides():
    from released_layouts import mmseg_config_text

    from danet_deploy.model.mmseg_config import config_facts

    # mmseg's 512x1024 and 769x769 Cityscapes weights are alike; only align_corners differs
    with pytest.raises(CheckpointError, match="fits 2 presets that build different networks") as info:
        resolve(_arch(), "city.pth", layout="mmsegmentation")
    message = str(info.value)
    assert "nothing in the file decides" in message and "it holds no config text" in message
    assert "danet_mmseg_r50_d8_cityscapes (align_corners=false)" in message
    assert "danet_mmseg_r50_d8_cityscapes_769 (align_corners=true)" in message
    assert "--arch danet_mmseg_r50_d8_cityscapes;" in message and "--arch danet_mmseg_r50_d8_cityscapes_769." in message
    # the config text mmengine stores in meta['cfg'] decides, each way
    for dataset, preset, align in [
        ("cityscapes_769", "danet_mmseg_r50_d8_cityscapes_769", True),
        ("cityscapes", "danet_mmseg_r50_d8_cityscapes", False),
    ]:
        facts = config_facts({"cfg": mmseg_config_text(50, 19, dataset)})
        picked = resolve(_arch(), "city.pth", layout="mmsegmentation", facts=facts)
        assert (picked.preset, picked.config.align_corners, picked.candidates) == (preset, align, [preset])
        assert picked.chosen_by == "inferred from the weights and the checkpoint's config"
        assert picked.test_protocol.mode == ("slide" if align else "whole")
        assert picked.test_protocol.source == "meta['cfg']" and "test_protocol" not in picked.to_dict()
    # so do --arch and --model-option align_corners (the one flag that makes the network match)
    chosen = resolve(_arch(), "city.pth", "danet_mmseg_r50_d8_cityscapes_769", layout="mmsegmentation")
    assert chosen.config.align_corners is True and chosen.chosen_by == "--arch"
    assert resolve(_arch(), "city.pth", None, None, {"align_corners": "true"}, "mmsegmentation").config.align_corners
    # a config that contradicts --arch is said
    facts = config_facts({"cfg": mmseg_config_text(50, 19, "cityscapes_769")})
    told = resolve(_arch(), "city.pth", "danet_mmseg_r50_d8_cityscapes", layout="mmsegmentation", facts=facts)
    assert any("says align_corners=True" in n and "--model-option align_corners=true" in n for n in told.notes)


def test_a_config_value_no_fitting_preset_has_is_applied():
    from released_layouts import mmseg_config_text

    from danet_deploy.model.mmseg_config import config_facts

    text = mmseg_config_text(50, 150, "ade20k").replace("align_corners=False", "align_corners=True")
    picked = resolve(_arch(num_classes=150), "ade.pth", layout="mmsegmentation", facts=config_facts({"cfg": text}))
    assert picked.preset == "danet_mmseg_r50_d8_ade20k" and picked.config.align_corners is True
    assert any("align_corners=True from the checkpoint's config" in n for n in picked.notes)


def test_a_config_normalising_otherwise_is_warned_about():
    from released_layouts import mmseg_config_text

    from danet_deploy.model.mmseg_config import config_facts

    text = mmseg_config_text(50, 150, "ade20k")
    quiet = resolve(_arch(num_classes=150), "ade.pth", layout="mmsegmentation", facts=config_facts({"cfg": text}))
    assert not any("normalises" in n for n in quiet.notes)
    other = config_facts({"cfg": text.replace("123.675", "127.5")})
    told = resolve(_arch(num_classes=150), "ade.pth", layout="mmsegmentation", facts=other)
    assert any(n.startswith("warning:") and "mean=[127.5, 116.28, 103.53]" in n for n in told.notes)


def test_official_layout_with_a_class_count_no_preset_has_keeps_its_conventions():
    # the official train.py's default: ResNet-50, deep stem 3->64->64->128, ADE20K's 150 classes
    official = _arch(stem_width=64, num_classes=150)
    picked = resolve(official, "checkpoint.pth.tar", layout="official DANet")
    assert picked.preset == "danet_r50_d8" and picked.config.num_classes == 150
    assert picked.config.align_corners is True and picked.config.class_names[:2] == ("wall", "building")
    assert any("150 classes read from the classifier" in n for n in picked.notes)
    # a count of no known dataset gets generic names
    assert (
        resolve(_arch(stem_width=64, num_classes=7), "x.pth", layout="official DANet").config.class_names[-1]
        == "class_6"
    )
    # no official preset fits even so (a narrow stem): the flags name an official-layout preset only
    with pytest.raises(CheckpointError, match="no preset fits") as info:
        resolve(_arch(stem_width=48, num_classes=150), "y.pth", layout="official DANet")
    assert "danet_mmseg" not in str(info.value) and "--arch danet_r50_d8" in str(info.value)
    # mmsegmentation's file of the same count still gets its own preset, never an official one
    assert resolve(_arch(num_classes=150), "z.pth", layout="mmsegmentation").preset == "danet_mmseg_r50_d8_ade20k"


def test_no_preset_fits_gives_the_flags():
    custom = _arch(deep_stem=False, stem_width=64, num_classes=5)
    with pytest.raises(CheckpointError, match="no preset fits") as info:
        resolve(custom, "mine.pth")
    assert "--arch danet_r50_d8 --num-classes 5 --model-option deep_stem=false" in str(info.value)
    done = resolve(custom, "mine.pth", "danet_r50_d8", 5, {"deep_stem": "false"})
    assert done.config.deep_stem is False and done.config.num_classes == 5
    # options apply to inference too: with them the checkpoint is recognised without --arch
    assert resolve(custom, "mine.pth", None, 5, {"deep_stem": "false"}).preset == "danet_r50_d8"


# --- --model-option ---------------------------------------------------------------------------------


def test_model_options_typed_and_validated():
    assert coerce_model_options(
        parse_option_pairs(
            ["deep_stem=False", "multi_grid=1,2,4", "stem_width=32", "align_corners=0", "class_names=road, car"]
        )
    ) == {
        "deep_stem": False,
        "multi_grid": (1, 2, 4),
        "stem_width": 32,
        "align_corners": False,
        "class_names": ("road", "car"),
    }
    assert coerce_model_options({"multi_grid": "none"}) == {"multi_grid": None}
    for bad, match in [
        ({"deep_stem": "maybe"}, "boolean"),
        ({"depth": "152"}, "18, 34, 50, 101"),
        ({"output_stride": "4"}, "8, 16, 32"),
        ({"multi_grid": "1,,2"}, "comma-separated"),
        ({"stem_width": "0"}, "between 1"),
        ({"base_width": "3.5"}, "integer"),
        ({"num_classes": "3"}, "--num-classes"),
        ({"weights": "x"}, "--model"),
        ({"dropout": "0.1"}, "unknown model option"),
    ]:
        with pytest.raises(ConfigError, match=match):
            coerce_model_options(bad)
    for pairs, match in [(["deep_stem"], "KEY=VALUE"), (["=1"], "KEY=VALUE"), (["depth=50", "depth=101"], "twice")]:
        with pytest.raises(ConfigError, match=match):
            parse_option_pairs(pairs)


_VALUES = {
    "depth": st.sampled_from(DEPTHS),
    "output_stride": st.sampled_from(OUTPUT_STRIDES),
    "deep_stem": st.booleans(),
    "align_corners": st.booleans(),
    "stem_width": st.integers(1, 4096),
    "base_width": st.integers(1, 4096),
    "decoder_channels": st.integers(0, 4096),
    "multi_grid": st.none() | st.lists(st.integers(1, 64), min_size=1, max_size=6).map(tuple),
    "class_names": st.lists(
        st.text(st.characters(blacklist_characters=",", blacklist_categories=("Cs",)), min_size=1)
        .map(str.strip)
        .filter(bool),
        min_size=1,
        max_size=5,
    ).map(tuple),
}


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_model_option_text_round_trips(data):
    key = data.draw(st.sampled_from(ARCH_FIELDS))
    value = data.draw(_VALUES[key])
    assert coerce_model_options(parse_option_pairs([format_option(key, value)])) == {key: value}


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from((*ARCH_FIELDS, "num_classes", "nope")), text=st.text(max_size=20))
def test_model_option_garbage_is_a_config_error(key, text):
    try:
        typed = coerce_model_options({key: text})
    except ConfigError:
        return
    assert set(typed) == {key}  # accepted values are typed, never passed through as text
    assert not isinstance(typed[key], str)


def test_options_tables_match_the_backbone():
    from danet_deploy.model.backbone import _DEPTHS, _OUTPUT_STRIDES

    assert tuple(sorted(_DEPTHS)) == DEPTHS and tuple(sorted(_OUTPUT_STRIDES)) == OUTPUT_STRIDES


def test_model_options_build_and_apply_to_presets(torch):
    model = create_model("danet_edge_r18_d8", weights=False, stem_width=16, multi_grid=(1, 2), align_corners=False)
    assert model.backbone.conv1.weight.shape[0] == 16 and model.align_corners is False
    assert [b.conv2.dilation[0] for b in model.backbone.layer4] == [4, 8]
    assert create_model("danet_edge_r18_d8", weights=False, class_names=("a", "b")).num_classes == 2


def test_cli_rejects_bad_model_options(tmp_path):
    for option, match in [("depth=152", "18, 34, 50, 101"), ("deep_stem", "KEY=VALUE"), ("colour=red", "unknown")]:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "danet_deploy.cli.export",
                "--model",
                "danet_edge_r18_d8",
                "--model-option",
                option,
                "--output",
                str(tmp_path / "x"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 2 and match in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists()


def test_unknown_arch_for_a_checkpoint(tmp_path, torch):
    from danet_deploy.model import model_from_checkpoint

    path = tmp_path / "m.pth"
    torch.save(create_model("danet_edge_r18_d8", weights=False).state_dict(), path)
    with pytest.raises(UnknownModelError, match="leave --arch out"):
        model_from_checkpoint(path, arch="danet_r1000")


# --- containers ----------------------------------------------------------------------------------------


def test_official_container_loads_weights_only_and_reports_extras(torch, tmp_path):
    from released_layouts import official_container, official_state, save_legacy_with_numpy1_names

    from danet_deploy.model import init_for_testing, model_from_checkpoint, read_checkpoint

    model = init_for_testing(create_model("danet_edge_r18_d8", weights=False), seed=4)
    path = tmp_path / "DANetEdge.pth.tar"
    save_legacy_with_numpy1_names(official_container(official_state(model.state_dict(), 19, module_prefix=True)), path)
    contents = read_checkpoint(path)
    assert contents.container == "state_dict"
    assert contents.ignored["epoch"] == "240" and contents.ignored["best_pred"] == "0.8769"
    assert contents.ignored["optimizer"].startswith("dict of 2")
    notes = []
    loaded, info = model_from_checkpoint(path, log=notes.append)
    assert info["preset"] == "danet_edge_r18_d8" and info["layout"] == "official DANet" and info["dropped"] == 7
    assert any("best_pred (0.8769)" in n for n in notes) and any("auxlayer" in n for n in notes)
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_numeric_numpy_values_load_and_objects_and_code_stay_refused(torch, tmp_path):
    from danet_deploy.model import read_checkpoint

    state = create_model("danet_edge_r18_d8", weights=False).state_dict()
    path = tmp_path / "array.pth"
    torch.save({"state_dict": state, "confusion": np.zeros((2, 2)), "miou": np.float32(0.5)}, path)
    contents = read_checkpoint(path)
    assert contents.ignored["confusion"] == "array (2, 2)" and contents.ignored["miou"] == "0.5"
    for name, value in [("objects", np.array([{"a": 1}], dtype=object)), ("strings", np.array(["a", "b"]))]:
        torch.save({"state_dict": state, name: value}, tmp_path / f"{name}.pth")
        with pytest.raises(CheckpointError, match="weights-only"):
            read_checkpoint(tmp_path / f"{name}.pth")


class _RunsCode:
    """A pickle that runs a command when loaded (what weights_only exists to stop)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_mmengine_training_checkpoint_loads_without_mmengine(torch, tmp_path):
    import sys

    from released_layouts import mmengine_training_checkpoint

    from danet_deploy.model import init_for_testing, model_from_checkpoint, read_checkpoint

    model = init_for_testing(create_model("danet_edge_r18_d8", weights=False), seed=6)
    path = tmp_path / "iter_40000.pth"
    mmengine_training_checkpoint(model, path, ("a",) * 19, config=None)
    assert "mmengine" not in sys.modules  # read with nothing of mmengine importable
    contents = read_checkpoint(path)
    assert contents.container == "state_dict" and len(contents.state) == len(model.state_dict())
    assert set(contents.ignored) == {"meta", "message_hub", "optimizer", "param_schedulers"}
    assert contents.meta["dataset_meta"]["classes"][0] == "a" and "cfg" not in contents.meta
    loaded, info = model_from_checkpoint(path)
    assert info["preset"] == "danet_edge_r18_d8" and "message_hub" in info["ignored"]
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_a_pickle_that_runs_code_is_refused_even_beside_training_state(torch, tmp_path):
    from danet_deploy.model import read_checkpoint

    marker = tmp_path / "ran"
    state = create_model("danet_edge_r18_d8", weights=False).state_dict()
    torch.save({"state_dict": state, "message_hub": {"x": _RunsCode(marker)}}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="weights-only") as caught:
        read_checkpoint(tmp_path / "evil.pth")
    assert not marker.exists() and "weights_only=False" not in str(caught.value)


class _CallsTheStandIn:
    """Pickles as a call of mmengine's class name with arguments, then state (REDUCE + BUILD)."""

    def __reduce__(self):
        from released_layouts import FakeHistoryBuffer

        return FakeHistoryBuffer, ("rm -rf ~",), {"k": True}


def test_the_training_state_stand_in_is_inert(torch, tmp_path):
    import pickle

    from released_layouts import pickled_as_mmengine

    from danet_deploy.model.safe_pickle import TrainingState, weights_only_globals

    path = tmp_path / "called.pth"
    with pickled_as_mmengine():
        torch.save({"hub": _CallsTheStandIn()}, path)
    with weights_only_globals():
        value = torch.load(path, weights_only=True)["hub"]
    # the allow-listed name called with arguments gives a stand-in holding them as data, nothing more
    assert isinstance(value, TrainingState) and value.args == ("rm -rf ~",) and value.state == {"k": True}
    assert "HistoryBuffer" in repr(value)
    with pytest.raises(pickle.UnpicklingError, match="HistoryBuffer"):  # outside the context: unknown again
        torch.load(path, weights_only=True)


def test_torch_runtime_reads_a_checkpoint_without_a_preset(torch, tmp_path):
    from danet_deploy import runtime
    from danet_deploy.model import init_for_testing

    model = init_for_testing(create_model("danet_edge_r18_d8", weights=False, num_classes=6), seed=3)
    path = tmp_path / "six.pth"
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, path)
    with pytest.raises(CheckpointError, match="no preset fits"):  # 6 classes: say so, do not guess names
        runtime.load(path, backend="torch")
    with runtime.load(path, backend="torch", model="danet_edge_r18_d8", num_classes=6, attention_chunks=2) as session:
        x = np.random.default_rng(0).standard_normal((1, 3, 40, 48)).astype(np.float32)
        with torch.no_grad():
            np.testing.assert_allclose(session.infer(x), model(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-4)
    with pytest.raises(CheckpointError, match="does not fit --arch danet_r18_d8"):
        runtime.load(path, backend="torch", model="danet_r18_d8", num_classes=6)
    torch.save(create_model("danet_edge_r18_d8", weights=False).state_dict(), path)
    with runtime.load(path, backend="torch") as session:
        assert session.manifest.model["name"] == "danet_edge_r18_d8"


# --- damaged or unusual tensors --------------------------------------------------------------------------


def _edge_state(torch):
    return create_model("danet_edge_r18_d8", weights=False).state_dict()


@pytest.mark.parametrize("dtype", ["int64", "bool", "complex64"])
def test_non_float_weights_are_refused_not_cast(torch, tmp_path, dtype):
    from danet_deploy.model import model_from_checkpoint

    state = {k: v.to(getattr(torch, dtype)) if v.is_floating_point() else v for k, v in _edge_state(torch).items()}
    path = tmp_path / "cast.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=f"non-floating-point weights .*\\({dtype}\\)"):
        model_from_checkpoint(path)


@pytest.mark.slow  # over 5 s: make test-slow (CI)
def test_float64_values_beyond_float32_are_refused_and_other_floats_load(torch, tmp_path):
    from danet_deploy.model import model_from_checkpoint

    for dtype in (torch.float64, torch.bfloat16, torch.float16):
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in _edge_state(torch).items()}
        torch.save(state, tmp_path / "ok.pth")
        assert model_from_checkpoint(tmp_path / "ok.pth")[1]["preset"] == "danet_edge_r18_d8"
    state["head.conv8.1.bias"] = state["head.conv8.1.bias"].double()
    state["head.conv8.1.bias"][0] = 1e300  # finite in float64, Inf once cast
    torch.save(state, tmp_path / "huge.pth")
    with pytest.raises(CheckpointError, match="too large for float32 .*head.conv8.1.bias"):
        model_from_checkpoint(tmp_path / "huge.pth")


@pytest.mark.parametrize(
    "key,shape",
    [
        ("head.conv8.1.weight", ()),
        ("head.conv8.1.weight", (0, 64, 1, 1)),
        ("backbone.layer1.0.conv1.weight", (32,)),
        ("decoder.fuse.0.0.weight", (0, 96, 3, 3)),
    ],
)
def test_damaged_width_tensors_are_a_checkpoint_error_not_a_flag_to_pass(torch, key, shape):
    state = _meta_state(torch, depth=18, deep_stem=False, base_width=32, decoder_channels=64)
    state[key] = torch.empty(shape, device="meta")
    with pytest.raises(CheckpointError, match=f"{re.escape(key)} has shape .*damaged") as caught:
        infer_architecture(state)
    assert "--num-classes 0" not in str(caught.value)


@pytest.mark.parametrize("prefix", ["_orig_mod.", "module._orig_mod.", "model.module."])
def test_nested_wrapper_prefixes_are_stripped(torch, tmp_path, prefix):
    from danet_deploy.model import init_for_testing, model_from_checkpoint

    model = init_for_testing(create_model("danet_edge_r18_d8", weights=False), seed=5)
    path = tmp_path / "wrapped.pth"
    torch.save({prefix + k: v for k, v in model.state_dict().items()}, path)
    loaded, info = model_from_checkpoint(path)
    assert info["preset"] == "danet_edge_r18_d8" and info["layout"] == "danet-deploy"
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_nested_training_containers_are_unwrapped_and_unknown_ones_named(torch, tmp_path):
    from danet_deploy.model import model_from_checkpoint, read_checkpoint

    state = _edge_state(torch)
    path = tmp_path / "nested.pth"
    torch.save({"model": {"state_dict": state, "step": 7}, "epoch": 3}, path)
    contents = read_checkpoint(path)
    assert contents.container == "model.state_dict" and len(contents.state) == len(state)
    assert contents.ignored == {"epoch": "3", "model.step": "7"}
    torch.save({"state_dict": {"model": state}}, path)
    assert model_from_checkpoint(path)[1]["preset"] == "danet_edge_r18_d8"
    torch.save({"ema": state, "epoch": 3}, path)  # only the user can tell which copy is the model
    with pytest.raises(CheckpointError, match=r"only under 'ema'.*weights_only=True\)\['ema'\]") as caught:
        read_checkpoint(path)
    assert "weights_only=False" not in str(caught.value)


@pytest.mark.parametrize("name", ["weights.SAFETENSORS", "renamed.pth", "model.bin"])
def test_safetensors_are_read_by_content_whatever_the_suffix(torch, tmp_path, name):
    from safetensors.torch import save_file

    from danet_deploy.model import model_from_checkpoint

    path = tmp_path / name
    save_file({k: v.contiguous() for k, v in _edge_state(torch).items()}, str(path))
    assert model_from_checkpoint(path)[1]["container"] == "safetensors"


def test_widths_in_range_that_multiply_to_a_huge_network_are_refused_before_allocating(torch):
    with pytest.raises(ConfigError, match=r"base_width 4096, .* make 51\.8e9 parameters .*lower the widths"):
        create_model("danet_edge_r18_d8", weights=False, base_width=4096)  # 193 GiB of float32 weights
    assert create_model("danet_edge_r18_d8", weights=False, stem_width=4096).backbone.conv1.weight.shape[0] == 4096


def test_class_counts_beyond_any_dataset_are_refused_before_names_are_made(torch, tmp_path, capsys):
    from danet_deploy.cli.export import main

    with pytest.raises(ConfigError, match="from 1 to 65536, got 1000000000"):
        get_config("danet_edge_r18_d8", num_classes=10**9)  # a billion generated class names before
    assert get_config("danet_edge_r18_d8", num_classes=np.int64(7)).num_classes == 7
    assert main(["--model", "danet_edge_r18_d8", "--num-classes", "100000000", "-o", str(tmp_path / "a")]) == 2
    assert "--num-classes must be a whole number from 1 to 65536" in capsys.readouterr().err
    state = _meta_state(torch, depth=18, deep_stem=False, base_width=32)
    state["head.conv8.1.weight"] = torch.empty(100000, 128, 1, 1, device="meta")
    with pytest.raises(CheckpointError, match="100000 output channels, more classes than the 65536"):
        infer_architecture(state)  # advised --num-classes 100000 before


def test_a_folder_and_an_empty_file_are_named_as_such(tmp_path, capsys):
    from danet_deploy.cli.train import main
    from danet_deploy.model import read_checkpoint

    (tmp_path / "weights.pth").mkdir()
    with pytest.raises(CheckpointError, match="is a folder: pass the .pt/.pth/.safetensors file inside it"):
        read_checkpoint(tmp_path / "weights.pth")
    for name in ("empty.pth", "empty.safetensors"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(CheckpointError, match=r"is empty \(0 bytes\)"):
            read_checkpoint(tmp_path / name)
    assert main(["--evaluate-only", "--weights", str(tmp_path / "weights.pth"), "--no-progress"]) == 2
    assert "is a folder" in capsys.readouterr().err
