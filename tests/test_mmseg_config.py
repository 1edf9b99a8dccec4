"""The config text a checkpoint's ``meta`` holds: read as literals, never run; and the releases' test protocols."""

from hypothesis import given, settings
from hypothesis import strategies as st
from released_layouts import mmseg_config_text

from danet_deploy.eval_protocol import RELEASE_PROTOCOLS, release_protocol
from danet_deploy.model import list_models
from danet_deploy.model.mmseg_config import MAX_CONFIG_CHARS, config_facts

# mmsegmentation 0.x (mmcv) as the model-zoo files store it: meta['config'] and meta['CLASSES'],
# test_cfg at the top level, the test pipeline's MultiScaleFlipAug
MMSEG0_TEXT = """norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    type='EncoderDecoder',
    pretrained='open-mmlab://resnet50_v1c',
    decode_head=dict(type='DAHead', num_classes=19, norm_cfg=norm_cfg, align_corners=True))
train_cfg = dict()
test_cfg = dict(mode='slide', crop_size=(769, 769), stride=(513, 513))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiScaleFlipAug', img_scale=(2049, 1025), flip=False,
         transforms=[dict(type='Resize', keep_ratio=True)])
]
"""


def test_mmengine_config_text():
    facts = config_facts(
        {"cfg": mmseg_config_text(101, 19, "cityscapes_769"), "dataset_meta": {"classes": ("road",) * 19}}
    )
    assert facts.source == "meta['cfg']" and facts.align_corners is True and facts.num_classes == 19
    assert facts.class_names == ("road",) * 19 and facts.mean == (123.675, 116.28, 103.53)
    p = facts.protocol
    # mmseg's Resize(scale=(2049, 1025)) is (w, h): stored as (H, W) like every size
    assert (p.mode, p.resize, p.crop, p.stride, p.align_corners) == (
        "slide",
        (1025, 2049),
        (769, 769),
        (513, 513),
        True,
    )
    whole = config_facts({"cfg": mmseg_config_text(50, 19, "cityscapes")}).protocol
    assert (whole.mode, whole.crop, whole.align_corners) == ("whole", None, False)
    assert "align_corners=True" in facts.describe() and "slide crop 769x769" in facts.describe()


def test_mmcv_config_text_of_model_zoo_files():
    facts = config_facts({"config": MMSEG0_TEXT, "CLASSES": ["a", "b"]})
    assert facts.source == "meta['config']" and facts.align_corners is True and facts.class_names == ("a", "b")
    assert (facts.protocol.mode, facts.protocol.resize, facts.protocol.stride) == ("slide", (1025, 2049), (513, 513))


def test_config_text_is_never_run(tmp_path):
    marker = tmp_path / "ran"
    text = (
        f"import os\nos.system('touch {marker}')\nmodel = dict(decode_head=dict(align_corners="
        f"__import__('os').system('touch {marker}'), num_classes=eval('19')))\n"
        f"test_cfg = dict(mode=open('{marker}', 'w'))\n"
    )
    facts = config_facts({"cfg": text})
    assert not marker.exists()
    assert facts.align_corners is None and facts.num_classes is None and facts.protocol is None


def test_unusable_meta_says_nothing():
    assert config_facts(None) is None and config_facts({"epoch": 3}) is None and config_facts("cfg") is None
    assert config_facts({"cfg": "model = dict(("}) is None  # not Python
    assert config_facts({"cfg": "x = 1\n" * (MAX_CONFIG_CHARS // 6 + 1)}) is None  # too long to parse
    assert config_facts({"cfg": "(" * 500}) is None  # nested beyond the parser
    assert config_facts({"cfg": 5, "dataset_meta": {"classes": ("a", "b")}}).class_names == ("a", "b")
    odd = config_facts(
        {"cfg": "model = dict(decode_head=dict(align_corners=1, num_classes=True))\ntest_cfg = dict(mode='whole')"}
    )
    assert odd.align_corners is None and odd.num_classes is None and odd.protocol is None


_LITERALS = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(
            st.sampled_from(
                ["mode", "crop_size", "stride", "align_corners", "decode_head", "test_cfg", "scale", "type"]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(model=_LITERALS, test_cfg=_LITERALS, pipeline=_LITERALS, meta_extra=_LITERALS)
def test_any_literal_config_gives_facts_or_nothing_never_an_error(model, test_cfg, pipeline, meta_extra):
    text = f"model = {model!r}\ntest_cfg = {test_cfg!r}\ntest_pipeline = {pipeline!r}\n"
    facts = config_facts({"cfg": text, "dataset_meta": meta_extra, "CLASSES": meta_extra})
    if facts is not None and facts.protocol is not None:
        assert facts.protocol.mode in ("whole", "slide") and isinstance(facts.protocol.align_corners, bool)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_any_text_gives_facts_or_nothing(text):
    config_facts({"cfg": text})
    config_facts({"config": text})


def test_each_release_has_its_test_protocol():
    releases = [n for n in list_models() if n.startswith(("danet_official_", "danet_mmseg_"))]
    assert sorted(RELEASE_PROTOCOLS) == sorted(releases)
    city = release_protocol("danet_mmseg_r50_d8_cityscapes")
    c769 = release_protocol("danet_mmseg_r101_d8_cityscapes_769")
    assert (city.mode, city.resize, city.align_corners) == ("whole", (1024, 2048), False)
    assert (c769.mode, c769.crop, c769.stride, c769.align_corners) == ("slide", (769, 769), (513, 513), True)
    assert release_protocol("danet_official_r101_cityscapes").to_dict()["resize"] is None
    assert release_protocol("danet_demo") is None
    from danet_deploy.model import get_config

    for name, protocol in RELEASE_PROTOCOLS.items():  # the protocol and the preset agree on the network
        assert protocol.align_corners is get_config(name).align_corners, name


def test_stored_configs_state_the_release_protocols():
    """What the reader takes from each release's stored config is the table's protocol (but its source)."""
    for dataset in ("cityscapes", "cityscapes_769", "ade20k", "voc12aug"):
        read = config_facts({"cfg": mmseg_config_text(50, 19, dataset)}).protocol
        table = release_protocol(f"danet_mmseg_r50_d8_{dataset}")
        assert {**read.to_dict(), "source": ""} == {**table.to_dict(), "source": ""}, dataset


def test_an_exact_resize_is_turned_to_height_width():
    text = MMSEG0_TEXT.replace(
        "test_cfg = dict(mode='slide', crop_size=(769, 769), stride=(513, 513))", "test_cfg = dict(mode='whole')"
    )
    text = text.replace(
        "test_pipeline = [", "test_pipeline = [dict(type='Resize', scale=(640, 480), keep_ratio=False),"
    )
    text = text.replace(
        "dict(type='MultiScaleFlipAug', img_scale=(2049, 1025), flip=False,\n"
        "         transforms=[dict(type='Resize', keep_ratio=True)])",
        "",
    )
    p = config_facts({"config": text}).protocol
    assert (p.mode, p.resize, p.keep_ratio) == ("whole", (480, 640), False)  # mmseg's scale is (w, h)
    assert p.scaled_size(1024, 2048) == (480, 640) and "resize to 480x640" in p.describe()


def test_a_protocol_that_does_not_hold_together_is_none():
    # a slide without a crop, a stride over the crop: not this file's protocol (the release's is used)
    for test_cfg in ("dict(mode='slide')", "dict(mode='slide', crop_size=(64, 64), stride=(96, 96))"):
        text = MMSEG0_TEXT.replace(
            "test_cfg = dict(mode='slide', crop_size=(769, 769), stride=(513, 513))", f"test_cfg = {test_cfg}"
        )
        facts = config_facts({"config": text})
        assert facts.align_corners is True and facts.protocol is None
