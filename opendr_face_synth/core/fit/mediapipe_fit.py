"""Default fitter: mediapipe's 478-point face mesh (model shipped in the mediapipe wheel)."""

from __future__ import annotations

import cv2
import numpy as np

from ..pose import head_axes, pose_from_rotation_camera
from ..types import FaceDetection, FaceFit
from . import mediapipe_mesh as mm
from .base import FitError
from .mediapipe_mirror import MIRROR_IDS

# FaceMesh runs on a square crop around each detection: the margin keeps the whole face (chin, forehead)
# inside, and the fixed crop size keeps landmark precision independent of the source resolution.
CROP_MARGIN = 1.8
CROP_SIZE = 384
# The head's centre of rotation lies behind the cheek edges by this fraction of the face width:
# cheek-edge landmarks sit a little in front of the ears, and the head turns about the neck axis,
# roughly at ear depth.
HEAD_CENTRE_BEHIND = 0.25
# mediapipe's z is flatter than real faces ("roughly the x scale"): its source yaws on the seed's LFW examples
# come out ~10% below 3DDFA's, and rotated views under-rotate. This factor restores the depth relief; 1.15
# gave the smallest pose error on rotated views of the shared photos (see BENCHMARKS.md, pose accuracy).
DEPTH_SCALE = 1.15


class MediapipeFitter:
    name = "mediapipe"

    def __init__(self, depth_scale: float = DEPTH_SCALE) -> None:
        from ..mediapipe_support import solutions

        face_mesh = solutions().face_mesh

        self.depth_scale = depth_scale
        self._mesh = face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.3
        )
        self._triangles = mm.face_mesh_triangles()
        self._ids5 = mm.landmark_ids5()
        # A fixed table: matching a turned face's (inaccurate) far side to its near side per photo is not
        # reliable, and the mesh topology is the same for every face.
        self._mirror_ids = np.asarray(MIRROR_IDS, dtype=np.int64)

    def fit(self, image_rgb: np.ndarray, detections: list[FaceDetection]) -> list[FaceFit | FitError]:
        return [self._fit_one(image_rgb, det) for det in detections]

    def _fit_one(self, image_rgb: np.ndarray, det: FaceDetection) -> FaceFit | FitError:
        x0, y0, x1, y1 = det.box
        side = max(x1 - x0, y1 - y0) * CROP_MARGIN
        cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        scale = CROP_SIZE / side
        # Affine crop (handles borders by padding) straight from full resolution.
        m = np.array([[scale, 0, CROP_SIZE / 2 - cx * scale], [0, scale, CROP_SIZE / 2 - cy * scale]])
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        crop = cv2.warpAffine(image_rgb, m, (CROP_SIZE, CROP_SIZE), flags=interp, borderMode=cv2.BORDER_REPLICATE)
        result = self._mesh.process(crop)
        if not result.multi_face_landmarks:
            return FitError("the face mesh found no face in the detected box")
        lm = result.multi_face_landmarks[0].landmark
        pts = np.array([[p.x, p.y, p.z] for p in lm], dtype=np.float64) * CROP_SIZE
        # Back to source pixels; mediapipe's z is on the x scale of the crop, negative toward the camera,
        # which is already our "depth away from the camera".
        vertices = np.empty_like(pts)
        vertices[:, 0] = (pts[:, 0] - m[0, 2]) / scale
        vertices[:, 1] = (pts[:, 1] - m[1, 2]) / scale
        vertices[:, 2] = pts[:, 2] / scale * self.depth_scale
        return self._make_fit(vertices.astype(np.float32))

    def _make_fit(self, vertices: np.ndarray) -> FaceFit:
        v = vertices.astype(np.float64)
        left = v[list(mm.PAIRS_IMAGE_LEFT)]
        right = v[list(mm.PAIRS_IMAGE_RIGHT)]
        eyes = v[list(mm.EYE_IMAGE_LEFT) + list(mm.EYE_IMAGE_RIGHT)]
        mouth = v[[mm.MOUTH_IMAGE_LEFT, mm.MOUTH_IMAGE_RIGHT]]
        rot = head_axes(left, right, eyes, mouth)
        pose = pose_from_rotation_camera(rot)
        face_width = float(np.linalg.norm(v[mm.CHEEK_EDGES[1]] - v[mm.CHEEK_EDGES[0]]))
        head_centre = v[list(mm.CHEEK_EDGES)].mean(axis=0) + rot[:, 2] * HEAD_CENTRE_BEHIND * face_width
        return FaceFit(
            vertices=vertices,
            triangles=self._triangles,
            pose=pose,
            landmarks5=mm.five_points(v, self._ids5)[:, :2].astype(np.float32),
            landmark_ids5=self._ids5,
            head_centre=head_centre.astype(np.float32),
            mirror_ids=self._mirror_ids,
            params={"rotation": rot, "face_width": face_width, "rim_ids": np.array(mm.FACE_OVAL)},
        )

    def close(self) -> None:
        self._mesh.close()
