"""sensor_msgs Image / CompressedImage <-> numpy: every supported encoding, row padding, byte order,
and a clear rejection of every malformed input. cv_bridge (ROS machines) must give the same arrays."""

from __future__ import annotations

import importlib.util
import sys

import cv2
import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="ROS 2 sensor_msgs is not importable (install requirements-ros.txt)")

from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from opendr_face_synth.ros.image_conversion import (  # noqa: E402
    ImageConversionError,
    array_to_image,
    compressed_size,
    compressed_to_rgb,
    image_to_rgb,
    rgb_to_image,
)

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)  # odd sizes catch stride mistakes


def _gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


@pytest.mark.parametrize("padding", [0, 7])
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_colour_encodings_give_rgb(rgb: np.ndarray, encoding: str, padding: int) -> None:
    order = {"rgb8": [0, 1, 2], "bgr8": [2, 1, 0], "rgba8": [0, 1, 2], "bgra8": [2, 1, 0]}[encoding]
    pixels = rgb[:, :, order]
    if encoding.endswith("a8"):
        pixels = np.dstack([pixels, np.full(rgb.shape[:2], 200, np.uint8)])
    msg = array_to_image(pixels, encoding, step=pixels.shape[1] * pixels.shape[2] + padding)
    out = image_to_rgb(msg, use_cv_bridge=False)
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    np.testing.assert_array_equal(out, rgb)


def test_mono8_and_mono16_both_byte_orders(rgb: np.ndarray) -> None:
    gray = _gray(rgb)
    out = image_to_rgb(array_to_image(gray, "mono8", step=gray.shape[1] + 3), use_cv_bridge=False)
    np.testing.assert_array_equal(out, np.dstack([gray] * 3))

    deep = gray.astype(np.uint16) * 257  # full 16-bit range: 255 -> 65535
    msg = array_to_image(deep, "mono16")
    np.testing.assert_array_equal(image_to_rgb(msg, use_cv_bridge=False)[:, :, 0], gray)
    # The same pixels sent by a big-endian machine.
    big = Image(
        height=msg.height, width=msg.width, encoding="mono16", is_bigendian=1, step=msg.step,
        data=deep.astype(">u2").tobytes(),
    )  # fmt: skip
    np.testing.assert_array_equal(image_to_rgb(big, use_cv_bridge=False)[:, :, 0], gray)
    little = Image(
        height=msg.height, width=msg.width, encoding="mono16", is_bigendian=0, step=msg.step,
        data=deep.astype("<u2").tobytes(),
    )  # fmt: skip
    np.testing.assert_array_equal(image_to_rgb(little, use_cv_bridge=False)[:, :, 0], gray)
    assert sys.byteorder in ("little", "big")


def test_rgb_to_image_round_trip_and_header(rgb: np.ndarray) -> None:
    src = Image()
    src.header.frame_id = "cam"
    src.header.stamp.sec, src.header.stamp.nanosec = 12, 345
    msg = rgb_to_image(rgb, src.header)
    assert (msg.encoding, msg.width, msg.height, msg.step) == ("rgb8", 53, 37, 53 * 3)
    assert msg.header.frame_id == "cam" and msg.header.stamp.nanosec == 345
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)
    mask = rgb_to_image(_gray(rgb), None, "mono8")
    assert (mask.encoding, mask.step) == ("mono8", 53)
    with pytest.raises(ValueError, match="mono8 needs"):
        rgb_to_image(rgb, None, "mono8")


@pytest.mark.parametrize(
    ("change", "kind", "reason"),
    [
        ({"encoding": "yuv422"}, "encoding", "unsupported encoding 'yuv422'"),
        ({"encoding": "32FC1"}, "encoding", "unsupported encoding"),
        ({"width": 0}, "empty", "zero-size image"),
        ({"height": 0, "data": b""}, "empty", "zero-size image"),
        ({"data": b"\x00" * 100}, "layout", "data length 100 does not match step x height"),
        ({"step": 10}, "layout", "step 10 is smaller than width x bytes per pixel"),
        ({"width": 8000, "height": 8000, "step": 24000}, "too_large", "8000x8000 has more than max_input_pixels"),
    ],
)
def test_malformed_images_are_rejected_with_a_reason(rgb: np.ndarray, change: dict, kind: str, reason: str) -> None:
    msg = array_to_image(rgb, "rgb8")
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ImageConversionError, match=reason) as info:
        image_to_rgb(msg, max_pixels=4096 * 4096, use_cv_bridge=False)
    assert info.value.kind == kind


def _compressed(data: bytes, fmt: str = "jpeg") -> CompressedImage:
    return CompressedImage(format=fmt, data=data)


def test_compressed_jpeg_and_png(rgb: np.ndarray) -> None:
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    ok, png = cv2.imencode(".png", bgr)
    assert ok
    np.testing.assert_array_equal(compressed_to_rgb(_compressed(png.tobytes(), "png")), rgb)
    smooth = cv2.GaussianBlur(bgr, (0, 0), 3)
    ok, jpeg = cv2.imencode(".jpg", smooth, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    out = compressed_to_rgb(_compressed(jpeg.tobytes(), "rgb8; jpeg compressed bgr8"))
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - smooth[:, :, ::-1].astype(int)).mean() < 3.0  # lossy, but the right channels
    assert compressed_size(jpeg.tobytes()) == (37, 53)
    assert compressed_size(png.tobytes()) == (37, 53)
    gray16 = _gray(rgb).astype(np.uint16) * 257
    ok, png16 = cv2.imencode(".png", gray16)
    np.testing.assert_array_equal(compressed_to_rgb(_compressed(png16.tobytes(), "png"))[:, :, 1], _gray(rgb))


def test_corrupt_compressed_images_are_rejected(rgb: np.ndarray) -> None:
    ok, jpeg = cv2.imencode(".jpg", rgb)
    data = jpeg.tobytes()
    cases = [
        (b"", "empty CompressedImage"),
        (b"not an image at all", "neither JPEG nor PNG"),
        (data[: len(data) // 2], "truncated"),
        (data[:2] + b"\xff\xd9", "no image size"),
        (data[:300] + bytes(200) + b"\xff\xd9", "corrupt JPEG"),
    ]
    for payload, reason in cases:
        with pytest.raises(ImageConversionError, match=reason):
            compressed_to_rgb(_compressed(payload))
    # A huge JPEG is refused from its header, before any decoding.
    header = bytearray(data)
    sof = header.find(b"\xff\xc0")
    header[sof + 5 : sof + 9] = (8000).to_bytes(2, "big") + (8000).to_bytes(2, "big")
    with pytest.raises(ImageConversionError, match="8000x8000 has more than") as info:
        compressed_to_rgb(_compressed(bytes(header)), max_pixels=4096 * 4096)
    assert info.value.kind == "too_large"


@pytest.mark.skipif(importlib.util.find_spec("cv_bridge") is None, reason="ROS 2 cv_bridge is not installed here")
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16"])
def test_cv_bridge_and_own_conversion_agree(rgb: np.ndarray, encoding: str) -> None:
    if encoding.startswith("mono"):
        pixels = _gray(rgb).astype(np.uint16) * 257 if encoding == "mono16" else _gray(rgb)
    elif encoding.endswith("a8"):
        pixels = np.dstack([rgb, np.full(rgb.shape[:2], 9, np.uint8)])
    else:
        pixels = rgb
    msg = array_to_image(pixels, encoding, step=None)
    np.testing.assert_array_equal(image_to_rgb(msg, use_cv_bridge=True), image_to_rgb(msg, use_cv_bridge=False))
