"""Plain data passed between the pipeline stages.

Coordinate conventions (used by every stage):

* Image pixels: x to the right, y down, origin at the top-left corner of the top-left pixel,
  so the centre of pixel (i, j) is (j + 0.5, i + 0.5).
* 3D points of a face live in the *camera frame* of the image they were fitted on:
  x, y in that image's pixels, z = depth away from the camera in the same pixel units
  (larger z = farther). The projection is orthographic: a point (x, y, z) lands on pixel (x, y).
* Angles are degrees in the seed's convention (seed-spec §5): yaw > 0 turns the nose toward
  image-right, pitch > 0 tilts the head down, roll > 0 turns the face clockwise in the image
  seen by a viewer (the top of the head moves to image-right... see ``pose.py`` for the exact matrices).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class HeadPose:
    """Head orientation in degrees, seed convention (see module docstring)."""

    yaw: float
    pitch: float
    roll: float = 0.0


@dataclass(frozen=True)
class FaceDetection:
    """One detected face in a source image (full-resolution pixel coordinates)."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float
    keypoints: np.ndarray | None = None  # (K, 2) detector keypoints, if the detector gives any

    @property
    def size(self) -> float:
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])


@dataclass
class FaceFit:
    """A 3D face fitted to one detection, in the source image's camera frame.

    ``vertices`` (N, 3) float32: x, y in source pixels, z depth in pixels (larger = farther).
    ``triangles`` (F, 3) int64: vertex indices, counter-clockwise seen from the camera.
    ``landmarks5`` (5, 2): image-left eye centre, image-right eye centre, nose tip,
    image-left mouth corner, image-right mouth corner (seed-spec §2 order), source pixels.
    ``landmark_ids5`` (5,) or (5, k): vertex ids whose (mean) positions give those five points after
    any rotation; used to re-align rotated faces on the output template.
    ``mirror_ids`` (N,) int64 or None: for each vertex, the vertex at the mirror-symmetric place
    of the face (for filling texture hidden in the source view).
    ``head_centre`` (3,): centre of rotation, an estimated point inside the head behind the face.
    ``landmarks68`` (68, 3) or None: iBUG-68 points in the same frame, when the fitter gives them.
    ``params`` : fitter-specific data (e.g. 3DDFA's 62 parameters), never needed by other stages.
    """

    vertices: np.ndarray
    triangles: np.ndarray
    pose: HeadPose
    landmarks5: np.ndarray
    landmark_ids5: np.ndarray
    head_centre: np.ndarray
    mirror_ids: np.ndarray | None = None
    landmarks68: np.ndarray | None = None
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ViewRequest:
    """One requested output view: absolute target pose in degrees (seed semantics).

    ``None`` keeps the source face's own angle (a yaw-only request keeps the fitted pitch, as in
    OpenDR's fixed tool; a pitch-only request keeps the fitted yaw).
    """

    yaw: float | None = None
    pitch: float | None = None

    def label(self) -> str:
        yaw = "src" if self.yaw is None else f"{self.yaw:+03.0f}"
        pitch = "src" if self.pitch is None else f"{self.pitch:+03.0f}"
        return f"yaw{yaw}_pitch{pitch}"


@dataclass
class View:
    """One rendered view of one face.

    ``image`` (H, W, 3) uint8 RGB. ``mask`` (H, W) uint8: 255 where the pixel was taken from
    real texture of the source photo, 0 where it is background (``background='black'``) or was
    invented (inpainted disocclusion / texture hidden in the source), see ``flags``.
    ``flags`` (H, W) uint8 bit field: 1 = face mesh, 2 = head proxy, 4 = background layer,
    8 = texture from the mirror-symmetric point, 16 = inpainted (unknown).
    ``achieved``: the pose of the rendered face (target after composition with the source roll).
    """

    request: ViewRequest
    target: HeadPose
    image: np.ndarray
    mask: np.ndarray
    flags: np.ndarray | None = None
    achieved: HeadPose | None = None


@dataclass
class FaceResult:
    detection: FaceDetection
    fit: FaceFit | None
    views: list[View]
    error: str | None = None  # why this face gave no views (fit failed, ...)


@dataclass
class ImageResult:
    """All faces of one input image (camera frame or file)."""

    faces: list[FaceResult]
    image_size: tuple[int, int]  # (height, width) of the input
    error: str | None = None  # "no face found", ...
    timings_ms: dict[str, float] = field(default_factory=dict)
