"""Conditioning maps of the Rotate-and-Render generator (seed-spec §7)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from opendr_face_synth.core.refine import landmark_maps as lm
from opendr_face_synth.core.refine.landmark_maps import (
    CURVES,
    apply_label_mask,
    curve_heatmaps,
    curve_pixels,
    curve_samples,
    landmark_maps,
)

FAR = -5000.0  # landmarks parked here: every point of a curve coincides, so the curve draws nothing


def _parked() -> np.ndarray:
    return np.full((68, 2), FAR)


def _face_like(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """A rough frontal iBUG-68 layout scaled to the image, with noise."""
    pts = np.zeros((68, 2))
    t = np.linspace(-1, 1, 17)
    pts[0:17] = np.stack([t * 0.42, 0.05 + 0.4 * (1 - t**2) ** 0.5 * 0.9], 1)  # jaw
    pts[17:22] = np.stack([np.linspace(-0.35, -0.08, 5), -0.22 - 0.03 * np.sin(np.linspace(0, np.pi, 5))], 1)
    pts[22:27] = pts[17:22][::-1] * [-1, 1]
    pts[27:31] = np.stack([np.zeros(4), np.linspace(-0.12, 0.08, 4)], 1)
    pts[31:36] = np.stack([np.linspace(-0.08, 0.08, 5), 0.12 + 0.02 * np.cos(np.linspace(-1.5, 1.5, 5))], 1)
    eye = np.array([[-0.1, 0], [-0.05, -0.03], [0.0, -0.03], [0.05, 0], [0.0, 0.02], [-0.05, 0.02]])
    pts[36:42] = eye + [-0.17, -0.1]
    pts[42:48] = eye * [-1, 1] + [0.17, -0.1]
    pts[42:48] = pts[[45, 44, 43, 42, 47, 46]]
    pts[48:55] = np.stack([np.linspace(-0.15, 0.15, 7), 0.25 - 0.02 * np.cos(np.linspace(-1.5, 1.5, 7))], 1)
    pts[55:60] = np.stack([np.linspace(0.1, -0.1, 5), 0.3 + 0.02 * np.cos(np.linspace(-1.5, 1.5, 5))], 1)
    pts[60:65] = np.stack([np.linspace(-0.1, 0.1, 5), np.full(5, 0.26)], 1)
    pts[65:68] = np.stack([np.linspace(0.05, -0.05, 3), np.full(3, 0.28)], 1)
    return pts * size + size / 2 + rng.normal(0, 1.0, pts.shape)


def _reference_maps(pixels: list[np.ndarray], size: int, sigma: float) -> np.ndarray:
    """The seed's per-curve recipe on the same drawn pixels, with OpenCV's exact distance transform."""
    out = np.zeros((len(pixels), size, size))
    for c, pix in enumerate(pixels):
        canvas = np.full((size, size), 255, np.uint8)
        if len(pix):
            canvas[pix[:, 1], pix[:, 0]] = 0
        dist = cv2.distanceTransform(canvas, cv2.DIST_L2, cv2.DIST_MASK_PRECISE).astype(np.float64)
        g = np.where(dist < 3 * sigma, np.exp(-(dist**2) / (2 * sigma**2)) / (2 * np.pi * sigma**2), 0.0)
        out[c] = (g - g.min()) / (g.max() - g.min()) if g.max() > g.min() else 0.0
    return out


@pytest.mark.parametrize("sigma", [2.5, 1.0])
def test_heatmaps_equal_opencv_distance_transform_recipe(sigma: float):
    rng = np.random.default_rng(0)
    batch = np.stack([_face_like(rng) for _ in range(3)])
    batch[2] += [150, 40]  # partly outside the image
    heat = curve_heatmaps(torch.tensor(batch), 256, sigma).numpy()
    pixels = curve_pixels(batch, 256)
    for b in range(len(batch)):
        np.testing.assert_allclose(heat[b], _reference_maps(pixels[b], 256, sigma), atol=1e-5)
    assert heat.max() == pytest.approx(1.0) and heat.min() == 0.0


def test_straight_line_gives_a_band_of_the_expected_width_and_rows():
    pts = _parked()
    xs = np.linspace(90.2, 150.2, 7)
    pts[48:55] = np.stack([xs, np.full(7, 100.3)], 1)  # outer upper lip on a horizontal line
    pts[[59, 58, 57, 56, 55]] = pts[49:54]  # outer lower lip along the same line
    maps = landmark_maps(torch.tensor(pts[None]), 256, sigma=2.5).numpy()[0]
    mouth = maps[3]
    rows = np.nonzero(mouth[:, 120])[0]
    # Drawn on row 100 (the pixel holding y = 100.3); binarised band = distance < 3 sigma = 7.5 -> 7 rows each side.
    np.testing.assert_array_equal(rows, np.arange(93, 108))
    cols = np.nonzero(mouth[100])[0]
    # The seed samples each spline segment without its end, so the curve stops 10/12 px short of the last
    # point (x = 149.4, pixel 149): 7 points, 70 samples, 12 per segment of 10 px.
    np.testing.assert_array_equal(cols, np.arange(90 - 7, 149 + 8))
    assert set(np.unique(mouth)) == {0.0, 1.0}
    assert maps[[0, 1, 2, 4]].sum() == 0  # nothing else is drawn

    thin = landmark_maps(torch.tensor(pts[None]), 256, sigma=1.0).numpy()[0, 3]
    np.testing.assert_array_equal(np.nonzero(thin[:, 120])[0], np.arange(98, 103))

    soft = curve_heatmaps(torch.tensor(pts[None]), 256, sigma=2.5).numpy()[0, 9]  # one curve, not a sum
    for d in range(0, 9):
        expected = math.exp(-(d**2) / (2 * 2.5**2)) if d < 7.5 else 0.0
        assert soft[100 + d, 120] == pytest.approx(expected, abs=1e-6)


def test_channels_are_eye_a_eye_b_nose_mouth_chin():
    pts = _face_like(np.random.default_rng(1))
    maps = landmark_maps(torch.tensor(pts[None]), 256).numpy()[0]
    expected_centres = [pts[36:42].mean(0), pts[42:48].mean(0), pts[27:36].mean(0), pts[48:68].mean(0), pts[8]]
    for c, centre in enumerate(expected_centres):
        ys, xs = np.nonzero(maps[c])
        assert len(xs) > 0, lm.CHANNEL_NAMES[c]
        assert np.hypot(xs.mean() - centre[0], ys.mean() - centre[1]) < 12, lm.CHANNEL_NAMES[c]
    assert pts[36:42, 0].mean() < pts[42:48, 0].mean()  # eye A is the image-left eye


def test_curve_samples_follow_the_spline():
    line = curve_samples(np.array([[0.0, 0.0], [10.0, 0.0], [30.0, 0.0]]), 30)
    assert line.shape == (30, 2)
    np.testing.assert_allclose(line[:, 1], 0, atol=1e-9)
    steps = np.diff(line[:, 0])
    assert np.all(steps > 0) and steps.std() < 0.05 * steps.mean()
    arc = np.array([[0.0, 0.0], [10.0, 5.0], [20.0, 7.0], [30.0, 5.0], [40.0, 0.0]])
    samples = curve_samples(arc, 50)
    for point in arc[1:-1]:  # a spline passes through its knots
        assert np.min(np.linalg.norm(samples - point, axis=1)) < 0.6
    np.testing.assert_allclose(samples[0], arc[0])
    assert curve_samples(np.array([[1.0, 1.0], [1.0, 1.0005]]), 20).shape == (0, 2)


def test_batched_spline_sampling_equals_the_one_curve_path():
    rng = np.random.default_rng(7)
    for n in (2, 3, 4, 5, 7):
        curves = np.cumsum(rng.normal(0, 8, size=(20, n, 2)), axis=1) + 100
        batched = lm.batched_curve_samples(curves, n * 10)
        single = np.stack([curve_samples(c, n * 10) for c in curves])
        np.testing.assert_allclose(batched, single, atol=1e-8)
    # A curve with a repeated point goes through the one-curve path (the point is merged).
    pts = _face_like(np.random.default_rng(8))
    pts[38] = pts[37]
    pix, valid = lm.curve_pixel_array(pts[None], 256)
    single = np.trunc(curve_samples(pts[[36, 37, 38, 39]] - 0.5, 40) + 0.5)
    np.testing.assert_array_equal(pix[0, 5][valid[0, 5]], single)


def test_nose_and_chin_mask_only_for_turned_sources():
    pts = _face_like(np.random.default_rng(2))
    heat = curve_heatmaps(torch.tensor(np.stack([pts, pts])), 256)
    render = torch.full((2, 3, 256, 256), 0.4)
    render[:, :, 5, 5] = 1.0  # a pure-white pixel far from the face
    threshold_deg = math.degrees(lm.YAW_MASK_THRESHOLD_RAD)
    out = apply_label_mask(render, heat, torch.tensor([threshold_deg - 0.05, -(threshold_deg + 0.05)]))
    nose_chin = (heat[:, 4] > 0) | (heat[:, 0] > 0)
    assert nose_chin[1].sum() > 100
    # Below the threshold nothing but the seed's white-pixel side effect changes.
    changed0 = (out[0] != render[0]).any(dim=0)
    assert changed0.sum() == 1 and changed0[5, 5]
    changed1 = (out[1] != render[1]).any(dim=0)
    assert torch.equal(changed1 & ~nose_chin[1], changed0)
    assert torch.all(out[1][:, nose_chin[1]] == 0)


def test_landmarks_outside_the_image_give_empty_maps():
    pts = _parked()
    pts[:] = [400.0, 400.0] + np.random.default_rng(3).normal(0, 20, (68, 2))
    assert landmark_maps(torch.tensor(pts[None]), 256).sum() == 0


def test_batch_of_eight_matches_single_faces():
    rng = np.random.default_rng(4)
    faces = np.stack([_face_like(rng) for _ in range(8)])
    maps = landmark_maps(torch.tensor(faces), 256)
    assert maps.shape == (8, 5, 256, 256)
    for i in (0, 5):
        assert torch.equal(maps[i], landmark_maps(torch.tensor(faces[i : i + 1]), 256)[0])


def test_every_curve_is_used_once_in_the_right_order():
    assert len(CURVES) == 13 and CURVES[0] == (7, 8, 9) and CURVES[4] == (31, 32, 33, 34, 35)
    assert sorted(c for ids in lm.CHANNELS for c in ids) == [0, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
