"""Face detection with mediapipe's full-range detector (the model ships inside the mediapipe wheel)."""

from __future__ import annotations

import cv2
import numpy as np

from .types import FaceDetection

# The full-range model sees a 192x192 view of the whole image; detecting on a larger copy only costs
# conversion time, so big photos are downscaled first and boxes are scaled back to full resolution.
DETECTION_MAX_SIDE = 1280
TILE_ABOVE = 2  # images larger than this many DETECTION_MAX_SIDE are also searched tile by tile


class FaceDetector:
    """All faces above a minimum size, best score first."""

    def __init__(self, min_confidence: float = 0.5, min_face_size: int = 32, max_faces: int = 0) -> None:
        from .mediapipe_support import solutions

        face_detection = solutions().face_detection

        self._detector = face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_confidence)
        # The short-range model finds large, close-up faces (tightly cropped portraits, faces looking
        # down) that the full-range model sometimes misses; it is only consulted when that one finds none.
        self._close_up = face_detection.FaceDetection(model_selection=0, min_detection_confidence=min_confidence)
        self.min_face_size = min_face_size
        self.max_faces = max_faces

    def detect(self, image_rgb: np.ndarray) -> list[FaceDetection]:
        height, width = image_rgb.shape[:2]
        faces = self._detect_view(image_rgb, 0, 0, width, height, close_up_fallback=True)
        if max(height, width) > TILE_ABOVE * DETECTION_MAX_SIDE:
            # Faces that shrink below the detector's reach in the whole-image view are found in tiles
            # of DETECTION_MAX_SIDE at full resolution (overlapping, so no face is cut by every tile).
            step = DETECTION_MAX_SIDE * 3 // 4
            for y0 in range(0, max(1, height - step // 3), step):
                for x0 in range(0, max(1, width - step // 3), step):
                    x1, y1 = min(width, x0 + DETECTION_MAX_SIDE), min(height, y0 + DETECTION_MAX_SIDE)
                    faces += self._detect_view(image_rgb, x0, y0, x1, y1, close_up_fallback=False)
            faces = _non_max_suppression(faces, iou_limit=0.3)
        faces = [f for f in faces if min(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= self.min_face_size]
        faces.sort(key=lambda f: -f.score)
        if self.max_faces > 0:
            faces = faces[: self.max_faces]
        # Stable left-to-right order so face indices are predictable for users.
        faces.sort(key=lambda f: (f.box[0], f.box[1]))
        return faces

    def _detect_view(self, image_rgb: np.ndarray, x0: int, y0: int, x1: int, y1: int,
                     close_up_fallback: bool) -> list[FaceDetection]:
        """Detect in the window [x0, x1) x [y0, y1), downscaled to DETECTION_MAX_SIDE; boxes in image pixels."""
        view = image_rgb[y0:y1, x0:x1]
        width, height = x1 - x0, y1 - y0
        scale = min(1.0, DETECTION_MAX_SIDE / max(height, width))
        if scale < 1.0:
            view = cv2.resize(view, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        view = np.ascontiguousarray(view)
        found = self._detector.process(view).detections
        if not found and close_up_fallback:
            found = self._close_up.process(view).detections
        faces = []
        for det in found or []:
            rel = det.location_data.relative_bounding_box
            bx0 = x0 + max(0.0, rel.xmin * width)
            by0 = y0 + max(0.0, rel.ymin * height)
            bx1 = x0 + min(float(width), (rel.xmin + rel.width) * width)
            by1 = y0 + min(float(height), (rel.ymin + rel.height) * height)
            keypoints = np.array(
                [[x0 + kp.x * width, y0 + kp.y * height] for kp in det.location_data.relative_keypoints],
                dtype=np.float32,
            )
            faces.append(FaceDetection(box=(bx0, by0, bx1, by1), score=float(det.score[0]), keypoints=keypoints))
        return faces

    def close(self) -> None:
        self._detector.close()
        self._close_up.close()


def _non_max_suppression(faces: list[FaceDetection], iou_limit: float) -> list[FaceDetection]:
    """Keep the best-scoring box of every group of boxes that overlap by more than ``iou_limit``."""
    kept: list[FaceDetection] = []
    for face in sorted(faces, key=lambda f: -f.score):
        if all(_iou(face.box, k.box) <= iou_limit for k in kept):
            kept.append(face)
    return kept


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
