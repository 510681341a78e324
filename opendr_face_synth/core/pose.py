"""Angle conventions, rotation matrices, head-pose estimation and five-point alignment.

Two frames appear here:

* the *seed frame* of 3DDFA / Rotate-and-Render: x to image-right, y up, z toward the camera;
* our *camera frame* (core/types.py): x to image-right, y down, z away from the camera.

``F = diag(1, -1, -1)`` maps one to the other. The seed builds a head rotation as
``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` in its frame (seed-spec §5), so that yaw > 0 turns the nose to
image-right, pitch > 0 tilts the head down, and roll > 0 moves the top of the head toward image-left.
All public functions take and return degrees.
"""

from __future__ import annotations

import numpy as np

from .types import HeadPose

_FLIP = np.diag([1.0, -1.0, -1.0])

# Five-point template of the seed for a 256x256 crop (seed-spec §6.1): image-left eye, image-right eye,
# nose tip, image-left mouth corner, image-right mouth corner. Derived from the ArcFace 112 template as
# T400 = T112 * 290/112 + (50, 60), then scaled by size/400.
_ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)


def five_point_template(size: int) -> np.ndarray:
    """The seed's 5-point template for a size x size output, in pixel coordinates (5, 2)."""
    t400 = _ARCFACE_112 * 290.0 / 112.0 + np.array([50.0, 60.0])
    return t400 * (size / 400.0)


def rotation_seed(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rz(roll) @ Ry(yaw) @ Rx(pitch) in the seed frame; angles in degrees."""
    return rotation_seed_batch(np.array([[yaw, pitch, roll]], dtype=np.float64))[0]


def rotation_seed_batch(angles: np.ndarray) -> np.ndarray:
    """:func:`rotation_seed` of (N, 3) [yaw, pitch, roll] rows (degrees) -> (N, 3, 3)."""
    y, p, r = np.radians(np.asarray(angles, dtype=np.float64)).T
    cy, sy, cp, sp, cr, sr = np.cos(y), np.sin(y), np.cos(p), np.sin(p), np.cos(r), np.sin(r)
    rot = np.empty((len(y), 3, 3))
    # Rz(r) @ Ry(y) @ Rx(p), multiplied out.
    rot[:, 0, 0] = cr * cy
    rot[:, 0, 1] = cr * sy * sp - sr * cp
    rot[:, 0, 2] = cr * sy * cp + sr * sp
    rot[:, 1, 0] = sr * cy
    rot[:, 1, 1] = sr * sy * sp + cr * cp
    rot[:, 1, 2] = sr * sy * cp - cr * sp
    rot[:, 2, 0] = -sy
    rot[:, 2, 1] = cy * sp
    rot[:, 2, 2] = cy * cp
    return rot


def angles_from_rotation_seed(rot: np.ndarray) -> HeadPose:
    """Inverse of :func:`rotation_seed` (the seed's ``matrix2angle``), degrees."""
    return HeadPose(*(float(v) for v in angles_from_rotation_seed_batch(np.asarray(rot)[None])[0]))


def angles_from_rotation_seed_batch(rot: np.ndarray) -> np.ndarray:
    """:func:`angles_from_rotation_seed` of (N, 3, 3) matrices -> (N, 3) [yaw, pitch, roll] degrees."""
    rot = np.asarray(rot, dtype=np.float64)
    r20 = np.clip(rot[:, 2, 0], -1.0, 1.0)
    yaw = -np.arcsin(r20)
    cy = np.cos(yaw)
    regular = np.abs(r20) < 1.0 - 1e-9
    safe_cy = np.where(regular, cy, 1.0)
    pitch = np.arctan2(rot[:, 2, 1] / safe_cy, rot[:, 2, 2] / safe_cy)
    roll = np.arctan2(rot[:, 1, 0] / safe_cy, rot[:, 0, 0] / safe_cy)
    # Gimbal lock: roll is not observable, put everything in pitch.
    sign = np.where(r20 < 0, 1.0, -1.0)
    yaw = np.where(regular, yaw, sign * np.pi / 2)
    pitch = np.where(regular, pitch, np.arctan2(sign * rot[:, 0, 1], sign * rot[:, 0, 2]))
    roll = np.where(regular, roll, 0.0)
    return np.degrees(np.stack([yaw, pitch, roll], axis=-1))


def rotation_camera(pose: HeadPose) -> np.ndarray:
    """Head rotation in our camera frame: columns are the head's axes (right, down, back)."""
    return _FLIP @ rotation_seed(pose.yaw, pose.pitch, pose.roll) @ _FLIP


def rotation_camera_batch(angles: np.ndarray) -> np.ndarray:
    """:func:`rotation_camera` of (N, 3) [yaw, pitch, roll] rows (degrees) -> (N, 3, 3)."""
    return _FLIP @ rotation_seed_batch(angles) @ _FLIP


def pose_from_rotation_camera_batch(rot: np.ndarray) -> np.ndarray:
    """(N, 3, 3) camera-frame head rotations -> (N, 3) [yaw, pitch, roll] degrees."""
    return angles_from_rotation_seed_batch(_FLIP @ np.asarray(rot) @ _FLIP)


def pose_from_rotation_camera(rot: np.ndarray) -> HeadPose:
    return angles_from_rotation_seed(_FLIP @ rot @ _FLIP)


def orthonormalize(rot: np.ndarray) -> np.ndarray:
    """Nearest proper rotation (SVD)."""
    u, _, vt = np.linalg.svd(rot)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def head_axes(left_points: np.ndarray, right_points: np.ndarray, upper: np.ndarray,
              lower: np.ndarray) -> np.ndarray:
    """Head rotation (camera frame) from symmetric landmark pairs and an upper/lower point set.

    ``left_points``/``right_points`` (K, 3) are mirror pairs (image-left / image-right on a frontal
    face); ``upper``/``lower`` are points on the vertical mid-line (e.g. eyes' and mouth's midpoints).
    The head's right axis is the mean pair direction, its down axis the upper->lower direction made
    orthogonal to it, and its back axis completes a right-handed frame.
    """
    x_axis = (right_points - left_points).sum(axis=0)
    x_axis /= np.linalg.norm(x_axis)
    y_axis = lower.mean(axis=0) - upper.mean(axis=0)
    y_axis -= x_axis * float(x_axis @ y_axis)
    y_axis /= np.linalg.norm(y_axis)
    z_axis = np.cross(x_axis, y_axis)
    return np.stack([x_axis, y_axis, z_axis], axis=1)


def relative_rotation(source: HeadPose, target: HeadPose) -> np.ndarray:
    """Camera-frame rotation that turns a head at ``source`` pose into ``target`` pose."""
    return rotation_camera(target) @ rotation_camera(source).T


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama) mapping 2D points src -> dst, as a 2x3 matrix."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - mu_s, dst - mu_d
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    var_s = (src_c**2).sum() / len(src)
    scale = float((s * d).sum() / var_s) if var_s > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def rotation_about_axis(axis_angle: np.ndarray) -> np.ndarray:
    """Rodrigues: rotation matrix from an axis-angle vector (radians)."""
    theta = float(np.linalg.norm(axis_angle))
    if theta < 1e-12:
        return np.eye(3)
    k = axis_angle / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * kx @ kx


def axis_angle(rot: np.ndarray) -> np.ndarray:
    """Axis-angle vector (radians) of a rotation matrix."""
    return axis_angle_batch(np.asarray(rot)[None])[0]


def axis_angle_batch(rot: np.ndarray) -> np.ndarray:
    """Axis-angle vectors (N, 3) (radians) of (N, 3, 3) rotation matrices."""
    rot = np.asarray(rot, dtype=np.float64)
    cos_t = np.clip((np.trace(rot, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    theta = np.arccos(cos_t)
    vec = np.stack([rot[:, 2, 1] - rot[:, 1, 2], rot[:, 0, 2] - rot[:, 2, 0], rot[:, 1, 0] - rot[:, 0, 1]], -1)
    sin_t = np.sin(theta)
    out = vec / np.where(sin_t > 0, 2.0 * sin_t, 1.0)[:, None] * theta[:, None]
    out[theta < 1e-9] = 0.0
    for i in np.flatnonzero(np.pi - theta < 1e-6):  # near 180 degrees: axis from the symmetric part
        w, v = np.linalg.eigh((rot[i] + rot[i].T) / 2.0)
        out[i] = v[:, np.argmax(w)] * theta[i]
    return out
