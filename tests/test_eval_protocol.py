"""The test protocol: one class and one table of the releases' protocols (torch-free), which one an
artifact records, and how danet-eval reads it back (from older manifests too)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from danet_deploy.errors import ConfigError, ManifestError
from danet_deploy.eval_protocol import (
    DEFAULT_PROTOCOL,
    TestProtocol,
    artifact_protocol,
    recorded_protocol,
    release_protocol,
)
from danet_deploy.verify.evaluate import EvalRequest, model_protocol

C769 = "danet_mmseg_r50_d8_cityscapes_769"


class _Manifest:
    """What :func:`model_protocol` reads of a manifest."""

    def __init__(self, model, export=None, checkpoint=None):
        self.model, self.export, self.checkpoint = model, export or {}, checkpoint


def test_release_protocols_are_mmsegs():
    p = release_protocol(C769)
    assert (p.mode, p.resize, p.crop, p.stride, p.align_corners) == (
        "slide",
        (1025, 2049),
        (769, 769),
        (513, 513),
        True,
    )
    p = release_protocol("danet_mmseg_r101_d8_cityscapes")
    assert (p.mode, p.resize, p.align_corners) == ("whole", (1024, 2048), False)
    assert p.scaled_size(1024, 2048) == (1024, 2048) and p.scaled_size(512, 1024) == (1024, 2048)
    assert release_protocol("danet_mmseg_r50_d8_ade20k").scaled_size(400, 600) == (512, 768)
    assert release_protocol("danet_demo") is None and artifact_protocol("danet_demo").resize is None


@settings(max_examples=100, deadline=None)
@given(h=st.integers(1, 4000), w=st.integers(1, 4000), a=st.integers(1, 3000), b=st.integers(1, 3000))
def test_keep_ratio_resize_does_not_depend_on_the_order_of_the_box(h, w, a, b):
    assert TestProtocol(resize=(a, b)).scaled_size(h, w) == TestProtocol(resize=(b, a)).scaled_size(h, w)


def test_bad_protocols_are_refused_naming_the_flag():
    for kwargs, said in [
        ({"mode": "tiles"}, "--mode"),
        ({"mode": "slide"}, "--crop"),
        ({"crop": (64, 64)}, "--mode slide only"),
        ({"mode": "slide", "crop": (64, 64), "stride": (65, 8)}, "must not exceed"),
        ({"resize": (0, 512)}, "--resize"),
        ({"resize": (512,)}, "--resize"),
    ]:
        with pytest.raises(ConfigError, match=said):
            TestProtocol(**kwargs)


def test_overrides_change_only_what_is_given():
    p = release_protocol(C769)
    assert p.with_overrides(mode=None, resize=None) is p
    whole = p.with_overrides(mode="whole")
    assert (whole.mode, whole.crop, whole.stride, whole.resize) == ("whole", None, None, (1025, 2049))
    assert whole.source.endswith("+ overrides") and whole.align_corners is True
    exact = TestProtocol(resize=(480, 640), keep_ratio=False)
    assert exact.with_overrides(resize=(100, 200)).keep_ratio  # --resize keeps the aspect ratio, as it says


def test_the_artifact_protocol_is_the_checkpoints_else_the_releases_else_the_default():
    own = TestProtocol("slide", (10, 20), crop=(8, 8), stride=(4, 4), align_corners=True, source="meta['cfg']")
    assert artifact_protocol(C769, own) is own
    assert artifact_protocol(C769) is release_protocol(C769)
    assert artifact_protocol("danet_demo") is DEFAULT_PROTOCOL
    # align_corners as the network was built (an --arch or --model-option may differ from the release)
    built = artifact_protocol(C769, align_corners=False)
    assert built.align_corners is False and built.source.endswith("align_corners as built") and built.crop == (769, 769)
    assert artifact_protocol("danet_demo", align_corners=True).source == DEFAULT_PROTOCOL.source


def test_round_trip_through_the_manifest():
    for p in (release_protocol(C769), DEFAULT_PROTOCOL, TestProtocol(resize=(480, 640), keep_ratio=False)):
        assert TestProtocol.from_dict(p.to_dict()) == p
    assert release_protocol(C769).to_dict()["crop"] == [769, 769]  # JSON-ready


@pytest.mark.parametrize(
    "bad", [{"mode": "tiles"}, {"resize": "big"}, {"crop": [1, 2, 3], "mode": "slide"}, {"resize": [True, 2]}]
)
def test_a_malformed_recorded_protocol_is_a_manifest_error(bad):
    with pytest.raises(ManifestError, match="re-export the artifact"):
        recorded_protocol({"name": "danet_demo"}, {"test_protocol": bad})


def test_danet_eval_uses_the_recorded_protocol_with_no_override():
    recorded = release_protocol(C769).to_dict()
    manifest = _Manifest({"name": C769, "align_corners": True}, {"test_protocol": recorded})
    p = model_protocol(manifest, EvalRequest(models=("x",), data="folder:x"))
    assert (p.mode, p.crop, p.stride, p.align_corners) == ("slide", (769, 769), (513, 513), True)
    p = model_protocol(manifest, EvalRequest(models=("x",), data="folder:x", mode="whole"))
    assert (p.mode, p.crop) == ("whole", None)


def test_older_manifests_are_read_from_either_key():
    release = {"name": C769, "align_corners": True}
    # before the protocol had one place: checkpoint.test_protocol (resize as mmseg's (w, h)) beside an
    # export.test_protocol that ignored the checkpoint's config; the checkpoint's is the right one
    old_ckpt = {
        "mode": "slide",
        "resize": [2049, 1025],
        "keep_ratio": True,
        "crop": [769, 769],
        "stride": [513, 513],
        "align_corners": True,
        "source": "meta['cfg']",
    }
    old_export = {
        "mode": "whole",
        "resize": None,
        "crop": None,
        "stride": None,
        "align_corners": False,
        "source": "default for a generated preset",
    }
    p = recorded_protocol(
        release, {"test_protocol": old_export}, {"path": "checkpoint.safetensors", "test_protocol": old_ckpt}
    )
    assert (p.mode, p.resize, p.crop, p.align_corners) == ("slide", (1025, 2049), (769, 769), True)
    exact = recorded_protocol(release, {}, {"test_protocol": {**old_ckpt, "keep_ratio": False}})
    assert exact.scaled_size(1024, 2048) == (1025, 2049)
    # export.test_protocol only (no keep_ratio then: every protocol kept the ratio)
    p = recorded_protocol(release, {"test_protocol": {k: v for k, v in old_export.items()}})
    assert (p.mode, p.keep_ratio) == ("whole", True)
    # nothing recorded (a bare model file, the torch reference of a preset): the release's, as built
    assert recorded_protocol(release, {}, None) == release_protocol(C769)
    assert recorded_protocol({"name": "danet_demo", "align_corners": True}, {}).align_corners is True
