"""Face detection with mediapipe's full-range detector (the model ships inside the mediapipe wheel)."""

from __future__ import annotations

import cv2
import numpy as np

from .types import FaceDetection

# The full-range model sees a 192x192 view of the whole image; detecting on a larger copy only costs
# conversion time, so big photos are downscaled first and boxes are scaled back to full resolution.
DETECTION_MAX_SIDE = 1280


class FaceDetector:
    """All faces above a minimum size, best score first."""

    def __init__(self, min_confidence: float = 0.5, min_face_size: int = 32, max_faces: int = 0) -> None:
        from mediapipe.python.solutions import face_detection

        self._detector = face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_confidence)
        # The short-range model finds large, close-up faces (tightly cropped portraits, faces looking
        # down) that the full-range model sometimes misses; it is only consulted when that one finds none.
        self._close_up = face_detection.FaceDetection(model_selection=0, min_detection_confidence=min_confidence)
        self.min_face_size = min_face_size
        self.max_faces = max_faces

    def detect(self, image_rgb: np.ndarray) -> list[FaceDetection]:
        height, width = image_rgb.shape[:2]
        scale = min(1.0, DETECTION_MAX_SIDE / max(height, width))
        small = image_rgb
        if scale < 1.0:
            small = cv2.resize(image_rgb, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        small = np.ascontiguousarray(small)
        found = self._detector.process(small).detections or self._close_up.process(small).detections or []
        faces: list[FaceDetection] = []
        for det in found:
            rel = det.location_data.relative_bounding_box
            x0 = max(0.0, rel.xmin * width)
            y0 = max(0.0, rel.ymin * height)
            x1 = min(float(width), (rel.xmin + rel.width) * width)
            y1 = min(float(height), (rel.ymin + rel.height) * height)
            if min(x1 - x0, y1 - y0) < self.min_face_size:
                continue
            keypoints = np.array(
                [[kp.x * width, kp.y * height] for kp in det.location_data.relative_keypoints], dtype=np.float32
            )
            faces.append(FaceDetection(box=(x0, y0, x1, y1), score=float(det.score[0]), keypoints=keypoints))
        faces.sort(key=lambda f: -f.score)
        if self.max_faces > 0:
            faces = faces[: self.max_faces]
        # Stable left-to-right order so face indices are predictable for users.
        faces.sort(key=lambda f: (f.box[0], f.box[1]))
        return faces

    def close(self) -> None:
        self._detector.close()
        self._close_up.close()
