"""The image-size mask of a logits artifact is computed in bounded memory for every aspect ratio.

``mask_at_size`` resizes the engine's logits to the image's size and arg-maxes them a tile at a
time; the temporaries must stay a small multiple of ``band_bytes`` whatever the shape: a
1000000x1 photo through a static 128x128 engine (logits wider than the output) once allocated
3.8 GiB, because the bands were sized from the output's width instead of the logits'.
Peak memory is read with ``tracemalloc``, which sees numpy's array allocations.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")

from hypothesis import given, settings  # noqa: E402 after importorskip
from hypothesis import strategies as st  # noqa: E402 after importorskip

from danet_deploy.runtime.preprocess import (  # noqa: E402 after importorskip
    MASK_BAND_BYTES,
    logits_to_mask,
    mask_at_size,
    resize_logits,
)

SLACK = 256 << 10  # index and weight arrays of one tile, numpy bookkeeping


def _peak_extra(logits: np.ndarray, size: tuple[int, int], band_bytes: int) -> tuple[np.ndarray, int]:
    """The mask and the peak bytes allocated while computing it, beyond the mask itself."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        mask = mask_at_size(logits, size, band_bytes=band_bytes)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return mask, peak - mask.nbytes


def test_a_megapixel_column_through_a_small_static_engine_stays_within_the_band():
    """The reported case: 16x16 logits (a static 128x128 engine) resized to 1000000x1 and 1x1000000."""
    logits = np.random.default_rng(0).standard_normal((8, 16, 16)).astype(np.float32)
    for size in ((1_000_000, 1), (1, 1_000_000), (400_000, 2)):
        mask, extra = _peak_extra(logits, size, MASK_BAND_BYTES)
        assert mask.shape == size
        assert extra <= 4 * MASK_BAND_BYTES, f"{size}: {extra / 2**20:.0f} MiB beyond the mask"


_extreme_sizes = st.one_of(
    st.tuples(st.integers(1, 3), st.integers(1, 60_000)),
    st.tuples(st.integers(1, 60_000), st.integers(1, 3)),
    st.tuples(st.integers(1, 400), st.integers(1, 400)),
)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    classes=st.integers(1, 40),
    logit_hw=st.tuples(st.integers(1, 24), st.integers(1, 24)),
    size=_extreme_sizes,
    band_bytes=st.sampled_from([1 << 12, 1 << 14, 1 << 16]),
)
def test_extreme_aspect_ratios_keep_memory_bounded_and_the_mask_exact(classes, logit_hw, size, band_bytes):
    """Any aspect ratio, either side larger: the mask equals the whole resize's arg-max bit for bit,
    and the memory beyond the mask stays a few bands (plus one tile's index arrays)."""
    logits = np.random.default_rng(classes).standard_normal((classes, *logit_hw)).astype(np.float32)
    mask, extra = _peak_extra(logits, size, band_bytes)
    np.testing.assert_array_equal(mask, logits_to_mask(resize_logits(logits, size)))
    assert extra <= 6 * band_bytes + SLACK, f"{logit_hw}->{size}, {classes} classes: {extra} bytes beyond the mask"


def _whole_overlay(image: np.ndarray, mask: np.ndarray, classes: int, alpha: float) -> np.ndarray:
    """The overlay computed over the whole picture at once in float32 (the definition)."""
    from danet_deploy.runtime.preprocess import colorize

    colors = colorize(mask, classes).astype(np.float32)
    return (image.astype(np.float32) * (1 - alpha) + colors * alpha).round().astype(np.uint8)


@pytest.mark.parametrize("alpha", [0.0, 0.35, 0.5, 1.0])
def test_the_overlay_is_blended_in_bands_with_the_same_pixels(alpha):
    """danet-run's overlay of a 49-megapixel photo peaked at ~2 GB (whole-image float32 copies): it is
    blended a band of rows at a time, pixel for pixel as before, the memory beyond the picture bounded."""
    from danet_deploy.runtime.preprocess import overlay

    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (1000, 700, 3), dtype=np.uint8)
    mask = rng.integers(0, 12, (1000, 700), dtype=np.uint8)
    want = _whole_overlay(image, mask, 12, alpha)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        got = overlay(image, mask, 12, alpha, band_bytes=1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(got, want)
    assert peak - got.nbytes <= 8 << 20, f"{peak / 2**20:.0f} MiB for a {got.nbytes / 2**20:.0f} MiB picture"
