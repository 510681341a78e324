"""Contact sheets: one PNG per person to eyeball a generated dataset without opening hundreds of files.

Layout: one row per face (per source image), the source face crop in the first column and then one
column per view, each tile with a label band under it giving its angles. Tiles are shrunk to ``tile``
pixels as rows arrive, and a sheet keeps at most ``max_rows`` rows, so memory stays bounded for
people with thousands of photos (metadata.csv lists everything; the sheet is a preview).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..core.types import FaceDetection, HeadPose, View

BACKGROUND = 32  # gray level of the sheet and of empty cells
LABEL_LINES = 2
_FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass
class Cell:
    """One tile (tile x tile x 3 RGB uint8, or None for an empty cell) and its label lines."""

    image: np.ndarray | None
    lines: tuple[str, ...] = ()


@dataclass
class ContactSheet:
    """Rows of cells collected for one person; ``render()`` draws the PNG."""

    tile: int = 128
    max_rows: int = 24
    rows: list[list[Cell]] = field(default_factory=list)
    dropped_rows: int = 0  # rows past max_rows (not drawn)

    def add_face(
        self,
        source_rgb: np.ndarray,
        detection: FaceDetection,
        name: str,
        face_index: int,
        source_pose: HeadPose | None,
        views: list[View],
        error: str | None = None,
    ) -> None:
        """Add one face: its crop from the source photo, then its views (or one cell saying why none)."""
        if len(self.rows) >= self.max_rows:
            self.dropped_rows += 1
            return
        src_label = "src" if source_pose is None else f"src y{_tag(source_pose.yaw)} p{_tag(source_pose.pitch)}"
        row = [Cell(face_crop(source_rgb, detection.box, self.tile), (f"{name} f{face_index}", src_label))]
        for view in views:
            row.append(Cell(fit_tile(view.image, self.tile), view_label(view)))
        if not views:
            row.append(Cell(None, ("no views", (error or "")[:40])))
        self.rows.append(row)

    def render(self, labels: bool = True) -> np.ndarray | None:
        """The sheet as (H, W, 3) uint8 RGB, or None when no row was added."""
        return render_cells(self.rows, self.tile, labels=labels)


def label_height(tile: int) -> int:
    """Height in pixels of the label band under each tile."""
    return LABEL_LINES * _line_height(tile) + 4


def render_cells(rows: list[list[Cell]], tile: int, labels: bool = True) -> np.ndarray | None:
    """Draw rows of cells: width = max row length x tile, height = rows x (tile + label band)."""
    if not rows:
        return None
    cols = max(len(row) for row in rows)
    cell_h = tile + label_height(tile)
    sheet = np.full((len(rows) * cell_h, cols * tile, 3), BACKGROUND, np.uint8)
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            y, x = r * cell_h, c * tile
            if cell.image is not None:
                sheet[y : y + tile, x : x + tile] = cell.image
            if labels:
                _draw_label(sheet, cell.lines, x, y + tile, tile)
    return sheet


def view_label(view: View) -> tuple[str, str]:
    """'req y+30 p src' / 'got y+29 p-02': what was asked and what the rendered face shows."""
    req = view.request
    req_yaw = " src" if req.yaw is None else _tag(req.yaw)
    req_pitch = " src" if req.pitch is None else _tag(req.pitch)
    got = view.achieved or view.target
    return f"req y{req_yaw} p{req_pitch}", f"got y{_tag(got.yaw)} p{_tag(got.pitch)}"


def fit_tile(image: np.ndarray, tile: int) -> np.ndarray:
    """Letterbox an RGB image into a tile x tile square (views are square already; crops may not be)."""
    h, w = image.shape[:2]
    scale = tile / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(np.ascontiguousarray(image), (nw, nh), interpolation=interp)
    out = np.full((tile, tile, 3), BACKGROUND, np.uint8)
    y0, x0 = (tile - nh) // 2, (tile - nw) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = small
    return out


def face_crop(image: np.ndarray, box: tuple[float, float, float, float], tile: int, margin: float = 0.3) -> np.ndarray:
    """Square crop centred on ``box``, ``margin`` of its size added on each side, padded where it leaves the image."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    left, top = round(cx - side / 2.0), round(cy - side / 2.0)
    size = max(1, round(side))
    h, w = image.shape[:2]
    crop = np.full((size, size, 3), BACKGROUND, np.uint8)
    sx0, sy0 = max(0, left), max(0, top)
    sx1, sy1 = min(w, left + size), min(h, top + size)
    if sx1 > sx0 and sy1 > sy0:
        crop[sy0 - top : sy1 - top, sx0 - left : sx1 - left] = image[sy0:sy1, sx0:sx1]
    return fit_tile(crop, tile)


def _tag(angle: float) -> str:
    return f"{round(angle):+03d}"


def _line_height(tile: int) -> int:
    return max(10, round(tile * 0.11))


def _draw_label(sheet: np.ndarray, lines: tuple[str, ...], x: int, y: int, tile: int) -> None:
    """White text in the band under a tile, shortened until it fits the tile's width."""
    line_h = _line_height(tile)
    scale = line_h / 36.0
    for i, text in enumerate(lines[:LABEL_LINES]):
        while text and cv2.getTextSize(text, _FONT, scale, 1)[0][0] > tile - 4:
            text = text[:-1]
        baseline_y = y + 2 + (i + 1) * line_h - max(1, line_h // 5)
        cv2.putText(sheet, text, (x + 2, baseline_y), _FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
