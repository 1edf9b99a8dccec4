"""ROS image messages <-> arrays (runtime/ros_images.py), the conversions the node and bag replay share:
every encoding, padded rows, 16-bit scaling and byte order, compressed images, and refusals by cause."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from danet_deploy.errors import FrameError
from danet_deploy.runtime.ros_images import (
    ENCODINGS,
    array_to_image_fields,
    compressed_to_rgb,
    image_to_rgb,
    mask_encoding,
    mask_to_image_fields,
    message_to_rgb,
)


def encode(rgb: np.ndarray, encoding: str, pad: int, bigendian: bool, alpha: np.ndarray) -> tuple[bytes, int]:
    """What a camera driver would send for ``rgb`` (uint16 for 16-bit encodings): bytes and step."""
    channels, depth, order = ENCODINGS[encoding]
    pixels = rgb[..., ::-1] if order == "bgr" else rgb
    pixels = pixels[..., :1] if order == "mono" else pixels
    if channels == 4:
        pixels = np.concatenate([pixels, alpha[..., None].astype(pixels.dtype)], axis=2)
    dtype = np.dtype(np.uint16 if depth == 2 else np.uint8).newbyteorder(">" if bigendian else "<")
    row = pixels.astype(dtype).reshape(rgb.shape[0], -1).view(np.uint8)
    rows = np.zeros((rgb.shape[0], row.shape[1] + pad), np.uint8)
    rows[:, : row.shape[1]] = row
    return rows.tobytes(), rows.shape[1]


@settings(max_examples=60, deadline=None)
@given(
    encoding=st.sampled_from(sorted(ENCODINGS)),
    h=st.integers(1, 7),
    w=st.integers(1, 9),
    pad=st.integers(0, 5),
    bigendian=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_every_encoding_reads_back_as_rgb(encoding, h, w, pad, bigendian, seed):
    rng = np.random.default_rng(seed)
    _, depth, order = ENCODINGS[encoding]
    wide = rng.integers(0, 2 ** (8 * depth), (h, w, 3), dtype=np.uint32)
    if order == "mono":
        wide[..., 1] = wide[..., 2] = wide[..., 0]
    data, step = encode(wide, encoding, pad, bigendian, rng.integers(0, 255, (h, w)))
    got = image_to_rgb(h, w, encoding, step, data, int(bigendian))
    want = (wide >> 8 if depth == 2 else wide).astype(np.uint8)  # 16 bits scaled to 8 by their full range
    assert got.dtype == np.uint8 and got.shape == (h, w, 3) and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "args, cause",
    [
        ((2, 2, "yuv422", 4, bytes(8)), "encoding"),
        ((4, 4, "rgb8", 12, bytes(10)), "size"),
        ((4, 4, "rgb8", 11, bytes(48)), "size"),  # step shorter than a row
        ((0, 4, "mono8", 4, b""), "size"),
        ((4, 4, "mono16", 8, bytes(31)), "size"),
    ],
)
def test_bad_images_are_refused_by_cause(args, cause):
    with pytest.raises(FrameError) as info:
        image_to_rgb(*args)
    assert info.value.cause == cause


def test_pixel_limit_and_compressed_images():
    from PIL import Image

    with pytest.raises(FrameError) as info:
        image_to_rgb(100, 100, "mono8", 100, bytes(10_000), max_pixels=9_999)
    assert info.value.cause == "pixels"
    rgb = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    png = io.BytesIO()
    Image.fromarray(rgb).save(png, format="PNG")
    np.testing.assert_array_equal(compressed_to_rgb("png", png.getvalue()), rgb)
    np.testing.assert_array_equal(compressed_to_rgb("rgb8; png compressed rgb8", memoryview(png.getvalue())), rgb)
    gray = io.BytesIO()
    Image.fromarray(rgb[..., 0]).save(gray, format="JPEG")
    assert compressed_to_rgb("jpeg", gray.getvalue()).shape == (5, 7, 3)
    for fmt, data, cause in (
        ("jpeg", b"\xff\xd8 not a jpeg", "decode"),
        ("h264", b"x", "encoding"),
        ("png", png.getvalue(), "pixels"),
    ):
        with pytest.raises(FrameError) as info:
            compressed_to_rgb(fmt, data, max_pixels=10)
        assert info.value.cause == cause


def test_messages_of_either_type_and_masks_back():
    from types import SimpleNamespace

    msg = SimpleNamespace(height=1, width=2, encoding="bgr8", step=6, is_bigendian=0, data=bytes([1, 2, 3, 4, 5, 6]))
    np.testing.assert_array_equal(message_to_rgb(msg), [[[3, 2, 1], [6, 5, 4]]])
    with pytest.raises(FrameError):
        message_to_rgb(SimpleNamespace(data=b""))
    mask = np.array([[0, 7], [255, 3]], np.uint8)
    fields = mask_to_image_fields(mask, 256)
    assert (fields["encoding"], fields["step"], fields["data"]) == ("mono8", 2, mask.tobytes())
    wide = np.array([[0, 300], [65535, 1]], np.int32)
    fields = mask_to_image_fields(wide, 1000)
    assert (fields["encoding"], fields["step"], fields["is_bigendian"]) == ("mono16", 4, 0)
    np.testing.assert_array_equal(np.frombuffer(fields["data"], "<u2").reshape(2, 2), wide)
    assert mask_encoding(256) == "mono8" and mask_encoding(257) == "mono16"
    with pytest.raises(FrameError):
        array_to_image_fields(np.array([[256]]), "mono8")
    with pytest.raises(FrameError):
        array_to_image_fields(np.zeros((2, 2)), "rgb8")
