"""One image tiling every face of a frame with all its views, labelled with their angles (for viewers).

Row = one face: first its crop from the input image (labelled with its track id and source pose),
then each view (labelled with the pose it was rendered for). Built only while ~/mosaic has subscribers.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ..core.types import FaceResult

_LABEL_HEIGHT_FRACTION = 0.16
_BACKGROUND = (32, 32, 32)


def _label(tile: np.ndarray, text: str) -> None:
    """Write ``text`` on a dark strip at the bottom of ``tile`` (in place)."""
    size = tile.shape[0]
    strip = max(10, int(size * _LABEL_HEIGHT_FRACTION))
    tile[size - strip :, :] = (tile[size - strip :, :] // 4).astype(np.uint8)
    scale = strip / 30.0
    thickness = 1 if size < 200 else 2
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    if w > size - 4:
        scale *= (size - 4) / w
        (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    org = (max(2, (size - w) // 2), size - (strip - h) // 2 - 1)
    cv2.putText(tile, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def _angle(value: float | None) -> str:
    return "src" if value is None else f"{value:+.0f}"


def _fit(image: np.ndarray, size: int) -> np.ndarray:
    """Square tile of ``size`` holding ``image`` scaled to fit, centred on the background colour."""
    tile = np.empty((size, size, 3), np.uint8)
    tile[:] = _BACKGROUND
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        return tile
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp)
    y, x = (size - nh) // 2, (size - nw) // 2
    tile[y : y + nh, x : x + nw] = resized
    return tile


def build_mosaic(
    source_rgb: np.ndarray, faces: Sequence[FaceResult], track_ids: Sequence[int], tile_size: int
) -> np.ndarray:
    """(rows*tile, cols*tile, 3) uint8 RGB; a single labelled tile when the frame has no face."""
    if not faces:
        tile = _fit(source_rgb, tile_size)
        _label(tile, "no face")
        return tile
    columns = 1 + max(len(face.views) for face in faces)
    mosaic = np.empty((len(faces) * tile_size, columns * tile_size, 3), np.uint8)
    mosaic[:] = _BACKGROUND
    height, width = source_rgb.shape[:2]
    for row, (face, track_id) in enumerate(zip(faces, track_ids, strict=True)):
        x0, y0, x1, y1 = face.detection.box
        # A margin around the box, like the views' framing, so the crop is recognisable.
        mx, my = 0.25 * (x1 - x0), 0.25 * (y1 - y0)
        cx0, cy0 = max(0, int(x0 - mx)), max(0, int(y0 - my))
        cx1, cy1 = min(width, int(np.ceil(x1 + mx))), min(height, int(np.ceil(y1 + my)))
        tile = _fit(source_rgb[cy0:cy1, cx0:cx1], tile_size)
        pose = face.fit.pose if face.fit is not None else None
        text = f"#{track_id}" + (f" y{pose.yaw:+.0f} p{pose.pitch:+.0f}" if pose is not None else " no fit")
        _label(tile, text)
        top = row * tile_size
        mosaic[top : top + tile_size, 0:tile_size] = tile
        for col, view in enumerate(face.views, start=1):
            tile = _fit(view.image, tile_size)
            _label(tile, f"y{_angle(view.target.yaw)} p{_angle(view.target.pitch)}")
            mosaic[top : top + tile_size, col * tile_size : (col + 1) * tile_size] = tile
    return mosaic
