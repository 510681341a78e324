"""Angle conventions, rotation round trips, alignment maths (seed-spec §5, §6.1)."""

import numpy as np
import pytest

from opendr_face_synth.core.pose import (
    angles_from_rotation_seed,
    angles_from_rotation_seed_batch,
    axis_angle,
    axis_angle_batch,
    five_point_template,
    pose_from_rotation_camera,
    pose_from_rotation_camera_batch,
    relative_rotation,
    rotation_about_axis,
    rotation_camera,
    rotation_camera_batch,
    rotation_seed,
    rotation_seed_batch,
    similarity_transform,
)
from opendr_face_synth.core.types import HeadPose


@pytest.mark.parametrize("yaw,pitch,roll", [(0, 0, 0), (30, 10, 5), (-60, -20, 3), (89, 0, 0), (10, 80, -45)])
def test_seed_rotation_round_trip(yaw, pitch, roll):
    pose = angles_from_rotation_seed(rotation_seed(yaw, pitch, roll))
    assert np.allclose([pose.yaw, pose.pitch, pose.roll], [yaw, pitch, roll], atol=1e-6)
    cam = pose_from_rotation_camera(rotation_camera(HeadPose(yaw, pitch, roll)))
    assert np.allclose([cam.yaw, cam.pitch, cam.roll], [yaw, pitch, roll], atol=1e-6)


def test_sign_meaning_matches_seed():
    # The head's back axis is column 2 of the camera-frame rotation; the nose points the opposite way.
    nose = -rotation_camera(HeadPose(30, 0, 0))[:, 2]
    assert nose[0] > 0.4  # yaw > 0: nose toward image-right
    nose = -rotation_camera(HeadPose(0, 20, 0))[:, 2]
    assert nose[1] > 0.3  # pitch > 0: nose moves down the image (y down)
    up = -rotation_camera(HeadPose(0, 0, 20))[:, 1]
    assert up[0] < -0.3  # roll > 0: top of the head toward image-left


def test_relative_rotation_reaches_target():
    src, tgt = HeadPose(-25, 8, 4), HeadPose(40, -10, 4)
    got = pose_from_rotation_camera(relative_rotation(src, tgt) @ rotation_camera(src))
    assert np.allclose([got.yaw, got.pitch, got.roll], [40, -10, 4], atol=1e-6)


def test_template_matches_seed_values_for_256():
    expected = [(95.46, 124.07), (153.85, 123.75), (124.84, 157.28), (100.85, 191.46), (149.21, 191.20)]
    assert np.allclose(five_point_template(256), expected, atol=0.01)


def test_similarity_recovers_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, size=(5, 2))
    ang, scale, shift = 0.3, 1.7, np.array([5.0, -3.0])
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = src @ (scale * rot).T + shift
    m = similarity_transform(src, dst)
    assert np.allclose(m[:, :2], scale * rot, atol=1e-9) and np.allclose(m[:, 2], shift, atol=1e-9)


def test_axis_angle_round_trip():
    for vec in ([0.1, -0.2, 0.3], [0.0, 1.5, 0.0], [0.0, 0.0, 3.1]):
        vec = np.array(vec)
        assert np.allclose(axis_angle(rotation_about_axis(vec)), vec, atol=1e-6)


def test_batched_rotations_match_their_definitions():
    """The batched forms used by the renderer agree with the explicit Rz @ Ry @ Rx products and invert them,
    gimbal lock (|yaw| = 90) and half turns included."""
    rng = np.random.default_rng(0)
    angles = np.concatenate([rng.uniform(-89, 89, (200, 3)), [[90, 20, 0], [-90, -10, 0], [0, 0, 0]]])
    batch = rotation_seed_batch(angles)
    for (yaw, pitch, roll), rot in zip(angles, batch, strict=True):
        y, p, r = np.radians([yaw, pitch, roll])
        rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
        ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
        rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
        assert np.allclose(rot, rz @ ry @ rx, atol=1e-12)
    back = angles_from_rotation_seed_batch(batch)
    assert np.allclose(rotation_seed_batch(back), batch, atol=1e-9)  # same rotation (angles differ at gimbal lock)
    assert np.allclose(back[:200], angles[:200], atol=1e-9)
    assert np.allclose(pose_from_rotation_camera_batch(rotation_camera_batch(angles[:200])), angles[:200], atol=1e-9)

    vectors = np.concatenate([rng.normal(size=(50, 3)) * 0.8, [[0, 0, 0], [0, np.pi, 0], [np.pi, 0, 0]]])
    rots = np.stack([rotation_about_axis(v) for v in vectors])
    recovered = axis_angle_batch(rots)
    assert np.allclose(np.stack([rotation_about_axis(v) for v in recovered]), rots, atol=1e-6)
    assert np.allclose(recovered[:50], vectors[:50], atol=1e-6)
