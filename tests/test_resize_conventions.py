"""The host's logits resize follows both bilinear conventions exactly as torch does.

danet-eval brings logits back to each label's size the way the release's test does: mmseg's
769x769 configs and the official DANet resize with ``align_corners=True``, the others with half-pixel
centres. A half-pixel resize where the release used align_corners shifts every boundary by up to
half a pixel, so both are checked against ``F.interpolate`` and the tiled mask against the whole one.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from danet_deploy.runtime.preprocess import logits_to_mask, mask_at_size, resize_logits

torch = pytest.importorskip("torch")


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    out_h=st.integers(1, 23),
    out_w=st.integers(1, 23),
    align_corners=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_resize_matches_torch_interpolate(h, w, out_h, out_w, align_corners, seed):
    logits = np.random.default_rng(seed).standard_normal((3, h, w)).astype(np.float32)
    ours = resize_logits(logits, (out_h, out_w), align_corners=align_corners)
    theirs = torch.nn.functional.interpolate(
        torch.from_numpy(logits)[None], size=(out_h, out_w), mode="bilinear", align_corners=align_corners
    )[0].numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("align_corners", [False, True])
def test_tiled_mask_equals_the_whole_resize(align_corners):
    logits = np.random.default_rng(0).standard_normal((5, 17, 29)).astype(np.float32)
    whole = logits_to_mask(resize_logits(logits, (70, 113), align_corners=align_corners))
    tiled = mask_at_size(logits, (70, 113), band_bytes=5 * 4 * 64, align_corners=align_corners)
    np.testing.assert_array_equal(tiled, whole)


def test_the_two_conventions_differ_where_it_matters():
    """Guards the test above: on a ramp, the two conventions give different values off the corners."""
    ramp = np.arange(4, dtype=np.float32).reshape(1, 1, 4)
    half = resize_logits(ramp, (1, 7))
    corners = resize_logits(ramp, (1, 7), align_corners=True)
    assert corners[0, 0, 0] == 0 and corners[0, 0, -1] == 3
    assert not np.allclose(half, corners)
