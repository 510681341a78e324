"""sensor_msgs Image / CompressedImage <-> numpy RGB, with a clear reason for every input refused.

ROS's cv_bridge is used for the raw-buffer decoding when it is importable (ROS machines); the pip
set-up has no ROS 2 cv_bridge (PyPI's `cv-bridge` is ROS 1's), so an equivalent conversion is
implemented here. Colour handling is shared by both paths, so both give identical arrays (tested).
The node runs this in its worker thread, never in a subscription callback.
"""

from __future__ import annotations

import struct
import sys
from typing import Any

import cv2
import numpy as np

# encoding -> (channels, numpy dtype, cv2 code to RGB or None when already RGB / mono)
_RAW_ENCODINGS: dict[str, tuple[int, np.dtype, int | None]] = {
    "rgb8": (3, np.dtype(np.uint8), None),
    "bgr8": (3, np.dtype(np.uint8), cv2.COLOR_BGR2RGB),
    "rgba8": (4, np.dtype(np.uint8), cv2.COLOR_RGBA2RGB),
    "bgra8": (4, np.dtype(np.uint8), cv2.COLOR_BGRA2RGB),
    "mono8": (1, np.dtype(np.uint8), cv2.COLOR_GRAY2RGB),
    "mono16": (1, np.dtype(np.uint16), cv2.COLOR_GRAY2RGB),
}
SUPPORTED_ENCODINGS = tuple(_RAW_ENCODINGS)
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class ImageConversionError(ValueError):
    """An input image that cannot be used; ``kind`` groups reasons (for log throttling and counters)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


def _cv_bridge() -> Any | None:
    """ROS 2's CvBridge if this machine has it, else None (imported lazily: never at import time)."""
    try:
        from cv_bridge import CvBridge
    except ImportError:
        return None
    return CvBridge()


def check_image_header(msg: Any, max_pixels: int) -> None:
    """Cheap checks on a sensor_msgs/Image that need no pixel access (the node calls it first)."""
    enc = msg.encoding.strip().lower()
    if enc not in _RAW_ENCODINGS:
        raise ImageConversionError(
            "encoding", f"unsupported encoding {msg.encoding!r} (supported: {', '.join(SUPPORTED_ENCODINGS)})"
        )
    if msg.width == 0 or msg.height == 0:
        raise ImageConversionError("empty", f"zero-size image ({msg.width}x{msg.height})")
    if msg.width * msg.height > max_pixels:
        raise ImageConversionError(
            "too_large", f"image {msg.width}x{msg.height} has more than max_input_pixels={max_pixels} pixels"
        )
    channels, dtype, _ = _RAW_ENCODINGS[enc]
    min_step = msg.width * channels * dtype.itemsize
    if msg.step < min_step:
        raise ImageConversionError(
            "layout", f"step {msg.step} is smaller than width x bytes per pixel = {min_step} ({enc})"
        )
    if len(msg.data) != msg.step * msg.height:
        raise ImageConversionError(
            "layout",
            f"data length {len(msg.data)} does not match step x height = {msg.step} x {msg.height} "
            f"= {msg.step * msg.height}",
        )


def _raw_to_array(msg: Any, enc: str) -> np.ndarray:
    """The pixel buffer as (H, W) or (H, W, C) in the encoding's own channel order and native byte order."""
    channels, dtype, _ = _RAW_ENCODINGS[enc]
    rows = np.frombuffer(memoryview(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)
    rows = rows[:, : msg.width * channels * dtype.itemsize]
    wire = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    array = np.ascontiguousarray(rows).view(wire).astype(dtype, copy=False)  # native byte order
    if channels > 1:
        return array.reshape(msg.height, msg.width, channels)
    return array.reshape(msg.height, msg.width)
    return array


def _to_rgb8(array: np.ndarray, enc: str) -> np.ndarray:
    """Colour conversion shared by the cv_bridge and the own path: any supported encoding -> RGB uint8."""
    _, _, code = _RAW_ENCODINGS[enc]
    if enc == "mono16":
        # The full 16-bit range onto 8 bits (65535 -> 255); documented in docs/ros.md.
        array = (array.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    if code is None:
        return np.ascontiguousarray(array)
    return cv2.cvtColor(np.ascontiguousarray(array), code)


def image_to_rgb(msg: Any, max_pixels: int = 1 << 28, use_cv_bridge: bool | None = None) -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB. Raises ImageConversionError with the reason.

    ``use_cv_bridge``: None = when importable, True = require it, False = never (the own conversion).
    """
    check_image_header(msg, max_pixels)
    enc = msg.encoding.strip().lower()
    bridge = None if use_cv_bridge is False else _cv_bridge()
    if use_cv_bridge and bridge is None:
        raise RuntimeError("cv_bridge was requested but is not importable")
    if bridge is not None:
        array = bridge.imgmsg_to_cv2(msg, desired_encoding="passthrough")
    else:
        array = _raw_to_array(msg, enc)
    return _to_rgb8(array, enc)


def _compressed_kind(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return "unknown"


def compressed_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) read from a JPEG SOF or PNG IHDR header without decoding; None if not found."""
    kind = _compressed_kind(data)
    if kind == "png" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return height, width
    if kind == "jpeg":
        pos = 2
        while pos + 4 <= len(data):
            if data[pos] != 0xFF:
                return None
            marker = data[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                pos += 2
                continue
            (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
            if marker in _JPEG_SOF and pos + 9 <= len(data):
                height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
                return height, width
            pos += 2 + length
    return None


def compressed_to_rgb(msg: Any, max_pixels: int = 1 << 28) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG or PNG, as image_transport's `compressed` writes) -> RGB uint8."""
    data = bytes(msg.data)
    if not data:
        raise ImageConversionError("empty", "empty CompressedImage")
    kind = _compressed_kind(data)
    if kind == "unknown":
        raise ImageConversionError("decode", f"CompressedImage (format {msg.format!r}) is neither JPEG nor PNG")
    size = compressed_size(data)
    if size is None:
        raise ImageConversionError("decode", f"corrupt {kind.upper()}: no image size in its header")
    if size[0] == 0 or size[1] == 0:
        raise ImageConversionError("empty", f"zero-size {kind.upper()} ({size[1]}x{size[0]})")
    if size[0] * size[1] > max_pixels:
        raise ImageConversionError(
            "too_large", f"{kind.upper()} {size[1]}x{size[0]} has more than max_input_pixels={max_pixels} pixels"
        )
    if kind == "jpeg" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise ImageConversionError("decode", "corrupt JPEG: truncated (no end-of-image marker)")
    decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.size == 0:
        raise ImageConversionError("decode", f"corrupt {kind.upper()}: OpenCV could not decode it")
    if decoded.dtype == np.uint16:
        decoded = (decoded.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    if decoded.ndim == 2:
        return cv2.cvtColor(decoded, cv2.COLOR_GRAY2RGB)
    if decoded.shape[2] == 4:
        return cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def rgb_to_image(rgb: np.ndarray, header: Any | None = None, encoding: str = "rgb8") -> Any:
    """(H, W, 3) uint8 RGB (or (H, W) mono8) -> sensor_msgs/Image; the header is copied when given."""
    from sensor_msgs.msg import Image

    msg = Image()
    if header is not None:
        msg.header = header
    array = np.ascontiguousarray(rgb)
    if encoding == "mono8":
        if array.ndim != 2:
            raise ValueError(f"mono8 needs an (H, W) array, got {array.shape}")
        channels = 1
    elif encoding in ("rgb8", "bgr8"):
        if array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(f"{encoding} needs an (H, W, 3) array, got {array.shape}")
        if encoding == "bgr8":
            array = np.ascontiguousarray(array[:, :, ::-1])
        channels = 3
    else:
        raise ValueError(f"rgb_to_image: unsupported output encoding {encoding!r}")
    if array.dtype != np.uint8:
        raise ValueError(f"rgb_to_image needs uint8, got {array.dtype}")
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * channels
    msg.data = array.tobytes()
    return msg


def array_to_image(array: np.ndarray, encoding: str, header: Any | None = None, step: int | None = None) -> Any:
    """Any supported encoding's array -> sensor_msgs/Image (for publishers and tests of every encoding)."""
    from sensor_msgs.msg import Image

    enc = encoding.lower()
    if enc not in _RAW_ENCODINGS:
        raise ValueError(f"unsupported encoding {encoding!r}")
    channels, dtype, _ = _RAW_ENCODINGS[enc]
    array = np.ascontiguousarray(array, dtype=dtype)
    expected = (array.shape[0], array.shape[1], channels) if channels > 1 else array.shape[:2]
    if array.shape != tuple(expected):
        raise ValueError(f"{encoding} needs shape {expected}, got {array.shape}")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = enc
    msg.is_bigendian = 1 if sys.byteorder == "big" else 0
    row = msg.width * channels * dtype.itemsize
    msg.step = row if step is None else step
    if msg.step < row:
        raise ValueError(f"step {msg.step} < row size {row}")
    rows = array.view(np.uint8).reshape(msg.height, row)
    if msg.step > row:
        rows = np.concatenate([rows, np.zeros((msg.height, msg.step - row), np.uint8)], axis=1)
    msg.data = rows.tobytes()
    return msg
