"""Helpers for the core tests: image loading and the seed's 3DDFA parameter files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def load_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"cannot read {path}"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def seed_pose_from_params(path: Path) -> tuple[float, float, float]:
    """(yaw, pitch, roll) degrees from the seed's 66-number 3DDFA file, with the seed's formulas (§5)."""
    params = np.loadtxt(path)
    p = params[:12].reshape(3, 4)
    r1 = p[0, :3] / np.linalg.norm(p[0, :3])
    r2 = p[1, :3] / np.linalg.norm(p[1, :3])
    rot = np.stack([r1, r2, np.cross(r1, r2)])
    yaw = -np.arcsin(np.clip(rot[2, 0], -1, 1))
    pitch = np.arctan2(rot[2, 1] / np.cos(yaw), rot[2, 2] / np.cos(yaw))
    roll = np.arctan2(rot[1, 0] / np.cos(yaw), rot[0, 0] / np.cos(yaw))
    return tuple(float(v) for v in np.degrees([yaw, pitch, roll]))
