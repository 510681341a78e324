"""The Rotate-and-Render generator's conditioning: landmark-curve maps and the nose/chin mask (seed-spec §7).

From 68 landmarks, 13 facial curves are drawn into S x S maps as the seed does: a natural cubic spline through
each curve's points (parametrised by chord length), resampled to about 10 points per landmark, the samples
rounded to pixels, an exact Euclidean distance to the nearest drawn pixel, a Gaussian of that distance cut at
3 sigma, min-max scaled. The generator sees 5 channels of them (eye A, eye B, nose, mouth, chin), binarised
by default (the seed's ``--no_gaussian_landmark``).

The distance part runs batched on the torch device: per (image, curve) only a window around the curve's
drawn pixels (grown by 3 sigma, where the map can be non-zero) is evaluated, by brute force against the
curve's drawn pixels; nothing loops over pixels in Python. Only the spline sampling (a few dozen points
per curve) runs in numpy.

Coordinates: landmarks are given in our pixel convention (pixel centre at i + 0.5); the seed's drawing rule
``int(x + 0.5)`` applies to its own index coordinates (centre at i), so points are shifted by -0.5 first and a
landmark lands in the pixel that contains it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.interpolate import CubicSpline

# The 13 curves as iBUG-68 indices (seed-spec §7.1): 0 chin (7-9 only), 1-2 brows, 3 nose bridge, 4 lower
# nose, 5-6 image-left eye (upper, lower), 7-8 image-right eye, 9-12 lips (outer upper, inner upper, inner
# lower, outer lower).
CURVES: tuple[tuple[int, ...], ...] = (
    (7, 8, 9),
    (17, 18, 19, 20, 21),
    (22, 23, 24, 25, 26),
    (27, 28, 29, 30),
    (31, 32, 33, 34, 35),
    (36, 37, 38, 39),
    (36, 41, 40, 39),
    (42, 43, 44, 45),
    (42, 47, 46, 45),
    (48, 49, 50, 51, 52, 53, 54),
    (60, 61, 62, 63, 64),
    (60, 67, 66, 65, 64),
    (48, 59, 58, 57, 56, 55, 54),
)
SAMPLES_PER_POINT = 10
# Generator channels from curves: eye A (image-left), eye B (image-right), nose, mouth, chin. Brows unused.
CHANNELS: tuple[tuple[int, ...], ...] = ((5, 6), (7, 8), (3, 4), (9, 10, 11, 12), (0,))
CHANNEL_NAMES = ("eye_a", "eye_b", "nose", "mouth", "chin")
MASK_CURVES = (4, 0)  # lower nose and chin: blanked in the render for turned source faces (--label_mask)
YAW_MASK_THRESHOLD_RAD = 0.255  # |source yaw| at or above this gets the mask (about 14.6 degrees)
DEFAULT_SIGMA = 2.5  # R&R's --heatmap_size at training and in its test script (OpenDR used 1.0)
MIN_POINT_STEP = 0.001  # consecutive landmarks closer than this are merged


def curve_samples(points: np.ndarray, samples: int) -> np.ndarray:
    """Evenly spaced samples (K, 2) along the natural cubic spline through ``points`` (n, 2), seed-style.

    Points closer than MIN_POINT_STEP to the previous input point are dropped; fewer than two left gives an
    empty array. The spline is sampled ``int(samples / segments + 1)`` times per segment (each segment's end
    left out, as in the seed), then that polyline is resampled at ``samples`` equally spaced arc lengths.
    """
    pts = np.asarray(points, dtype=np.float64)
    keep = np.concatenate([[True], np.linalg.norm(np.diff(pts, axis=0), axis=1) > MIN_POINT_STEP])
    pts = pts[keep]
    if len(pts) < 2:
        return np.zeros((0, 2))
    steps = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    knots = np.concatenate([[0.0], np.cumsum(steps)])
    if len(pts) == 2 or np.any(np.diff(knots) <= 0):
        curve = lambda t: pts[0] + np.outer(t / knots[-1], pts[-1] - pts[0])  # noqa: E731 - straight line
    else:
        curve = CubicSpline(knots, pts, bc_type="natural")
    per_segment = int(samples / len(steps) + 1)
    t = knots[:-1, None] + steps[:, None] * (np.arange(per_segment) / per_segment)[None]
    raw = curve(t.ravel())
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(raw, axis=0), axis=1))])
    where = np.linspace(0.0, arc[-1], samples)
    out = np.stack([np.interp(where, arc, raw[:, 0]), np.interp(where, arc, raw[:, 1])], axis=1)
    out[0], out[-1] = raw[0], raw[-1]
    return out


def batched_curve_samples(points: np.ndarray, samples: int) -> np.ndarray:
    """``curve_samples`` for many curves of n points at once, (M, n, 2) -> (M, samples, 2).

    Only for curves whose consecutive points are all farther apart than MIN_POINT_STEP (nothing dropped);
    the natural spline's second derivatives come from one batched solve of the tridiagonal system.
    """
    pts = np.asarray(points, dtype=np.float64)
    m, n = pts.shape[:2]
    steps = np.linalg.norm(np.diff(pts, axis=1), axis=2)  # (M, n-1)
    slopes = np.diff(pts, axis=1) / steps[..., None]  # (M, n-1, 2)
    second = np.zeros((m, n, 2))
    if n > 2:
        system = np.zeros((m, n - 2, n - 2))
        rows = np.arange(n - 2)
        system[:, rows, rows] = 2 * (steps[:, :-1] + steps[:, 1:])
        system[:, rows[1:], rows[:-1]] = steps[:, 1:-1]
        system[:, rows[:-1], rows[1:]] = steps[:, 1:-1]
        second[:, 1:-1] = np.linalg.solve(system, 6 * np.diff(slopes, axis=1))
    per_segment = int(samples / (n - 1) + 1)
    t = steps[..., None] * (np.arange(per_segment) / per_segment)  # (M, n-1, per)
    h = steps[..., None, None]
    m0, m1 = second[:, :-1, None], second[:, 1:, None]
    tt = t[..., None]
    raw = (
        pts[:, :-1, None]
        + (slopes[:, :, None] - h * (2 * m0 + m1) / 6) * tt
        + m0 / 2 * tt**2
        + (m1 - m0) / (6 * h) * tt**3
    ).reshape(m, -1, 2)
    arc = np.concatenate([np.zeros((m, 1)), np.cumsum(np.linalg.norm(np.diff(raw, axis=1), axis=2), axis=1)], 1)
    where = arc[:, -1:] * np.linspace(0.0, 1.0, samples)[None]  # (M, samples)
    seg = np.clip((arc[:, None, :] < where[:, :, None]).sum(-1) - 1, 0, arc.shape[1] - 2)  # np.interp's segment
    lo, hi = np.take_along_axis(arc, seg, 1), np.take_along_axis(arc, seg + 1, 1)
    frac = np.where(hi > lo, (where - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0)[..., None]
    p0 = np.take_along_axis(raw, seg[..., None], 1)
    p1 = np.take_along_axis(raw, seg[..., None] + 1, 1)
    out = p0 + frac * (p1 - p0)
    out[:, 0], out[:, -1] = raw[:, 0], raw[:, -1]
    return out


def curve_pixel_array(landmarks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Drawn pixels of every curve as padded arrays: (B, 13, K, 2) int (x, y) and (B, 13, K) validity.

    Landmarks (B, 68, 2) are in our convention. Curves of the same point count are sampled together; a curve
    with merged (near-duplicate) points falls back to the one-curve path.
    """
    lm = np.asarray(landmarks, dtype=np.float64)[..., :2] - 0.5
    batch, k_max = len(lm), max(len(c) for c in CURVES) * SAMPLES_PER_POINT
    samples = np.zeros((batch, len(CURVES), k_max, 2))
    valid = np.zeros((batch, len(CURVES), k_max), dtype=bool)
    for n in sorted({len(c) for c in CURVES}):
        ids = [i for i, c in enumerate(CURVES) if len(c) == n]
        pts = lm[:, [list(CURVES[i]) for i in ids]]  # (B, G, n, 2)
        flat = pts.reshape(-1, n, 2)
        regular = np.all(np.linalg.norm(np.diff(flat, axis=1), axis=2) > MIN_POINT_STEP, axis=1)
        count = n * SAMPLES_PER_POINT
        out = np.zeros((len(flat), count, 2))
        ok = np.zeros((len(flat), count), dtype=bool)
        if regular.any():
            out[regular] = batched_curve_samples(flat[regular], count)
            ok[regular] = True
        for j in np.nonzero(~regular)[0]:
            s = curve_samples(flat[j], count)
            out[j, : len(s)], ok[j, : len(s)] = s, True
        samples[:, ids, :count] = out.reshape(batch, len(ids), count, 2)
        valid[:, ids, :count] = ok.reshape(batch, len(ids), count)
    pix = np.trunc(samples + 0.5).astype(np.int64)  # the seed's int(v + 0.5): truncation toward zero
    valid &= np.all((pix >= 0) & (pix < size), axis=-1)
    return pix, valid


def curve_pixels(landmarks: np.ndarray, size: int) -> list[list[np.ndarray]]:
    """Drawn pixels [(K, 2) int (x, y), unique] per image per curve, for landmarks (B, 68, 2)."""
    pix, valid = curve_pixel_array(landmarks, size)
    return [[np.unique(pix[b, c][valid[b, c]], axis=0) for c in range(len(CURVES))] for b in range(len(pix))]


def curve_heatmaps(
    landmarks: torch.Tensor | np.ndarray,
    size: int = 256,
    sigma: float = DEFAULT_SIGMA,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The 13 min-max scaled curve maps (B, 13, S, S) float32; see the module docstring."""
    if device is None:
        device = landmarks.device if isinstance(landmarks, torch.Tensor) else "cpu"
    lm = landmarks.detach().cpu().numpy() if isinstance(landmarks, torch.Tensor) else np.asarray(landmarks)
    batch, n_curves = len(lm), len(CURVES)
    pts, valid = curve_pixel_array(lm, size)
    k_max = pts.shape[2]
    pts_t = torch.as_tensor(pts, device=device)
    valid_t = torch.as_tensor(valid, device=device)
    out = torch.zeros((batch, n_curves, size, size), dtype=torch.float32, device=device)
    if batch == 0 or not valid.any():
        return out

    reach = math.ceil(3 * sigma)  # pixels farther than this from every drawn pixel are 0 in the map
    big = torch.iinfo(torch.int64).max // 4
    lo = torch.where(valid_t[..., None], pts_t, big).amin(dim=2) - reach  # (B, C, 2)
    hi = torch.where(valid_t[..., None], pts_t, -big).amax(dim=2) + reach
    has = valid_t.any(dim=2)
    lo = torch.where(has[..., None], lo, 0)
    hi = torch.where(has[..., None], hi, -1)
    win_w = int((hi[..., 0] - lo[..., 0]).max()) + 1
    win_h = int((hi[..., 1] - lo[..., 1]).max()) + 1
    xs = lo[..., 0, None] + torch.arange(win_w, device=device)  # (B, C, Ww)
    ys = lo[..., 1, None] + torch.arange(win_h, device=device)  # (B, C, Wh)

    # Squared distance from each window pixel to the nearest drawn pixel of its curve (exact L2): one running
    # minimum per curve sample (a few dozen), each step a broadcast over all images, curves and window pixels.
    far = torch.tensor(-1e5, device=device)
    px = torch.where(valid_t, pts_t[..., 0].float(), far)  # (B, C, K); padding samples lie far away
    py = torch.where(valid_t, pts_t[..., 1].float(), far)
    dx2 = (xs.float()[:, :, None, :] - px[..., None]) ** 2  # (B, C, K, Ww)
    dy2 = (ys.float()[:, :, None, :] - py[..., None]) ** 2  # (B, C, K, Wh)
    d2 = dy2[:, :, 0, :, None] + dx2[:, :, 0, None, :]
    for k in range(1, k_max):
        torch.minimum(d2, dy2[:, :, k, :, None] + dx2[:, :, k, None, :], out=d2)

    band = d2 < 9.0 * sigma * sigma  # distance < 3 sigma
    gauss = torch.where(band, torch.exp(-d2 / (2.0 * sigma * sigma)), torch.zeros_like(d2))
    in_image = ((ys >= 0) & (ys < size))[..., :, None] & ((xs >= 0) & (xs < size))[..., None, :]
    # Min-max over the whole image: pixels outside the window are 0, and they exist unless the band covers it all.
    g_max = torch.where(in_image, gauss, torch.zeros_like(gauss)).amax(dim=(-2, -1))
    covers_all = (band & in_image).sum(dim=(-2, -1)) >= size * size
    g_min = torch.where(
        covers_all,
        torch.where(in_image, gauss, torch.full_like(gauss, float("inf"))).amin(dim=(-2, -1)),
        torch.zeros_like(g_max),
    )
    span = g_max - g_min
    scaled = torch.where(
        span[..., None, None] > 0,
        (gauss - g_min[..., None, None]) / span.clamp(min=1e-30)[..., None, None],
        torch.zeros_like(gauss),
    )

    bc = torch.arange(batch * n_curves, device=device).view(batch, n_curves, 1, 1)
    flat = (bc * size + ys[..., :, None]) * size + xs[..., None, :]
    out.view(-1)[flat[in_image]] = scaled[in_image]
    return out


def combine_curves(heatmaps: torch.Tensor, binarize: bool = True) -> torch.Tensor:
    """(B, 13, S, S) curve maps -> the generator's 5 channels (B, 5, S, S): sums clipped to [0, 1]."""
    channels = [heatmaps[:, list(ids)].sum(dim=1).clamp(0.0, 1.0) for ids in CHANNELS]
    maps = torch.stack(channels, dim=1)
    return (maps > 0).to(maps.dtype) if binarize else maps


def landmark_maps(
    landmarks: torch.Tensor | np.ndarray, size: int = 256, sigma: float = DEFAULT_SIGMA, binarize: bool = True
) -> torch.Tensor:
    """The generator's 5-channel conditioning (B, 5, S, S) from landmarks (B, 68, 2) in output pixels."""
    return combine_curves(curve_heatmaps(landmarks, size, sigma), binarize)


def nose_chin_band(heatmaps: torch.Tensor) -> torch.Tensor:
    """(B, 1, S, S) bool: pixels closer than 3 sigma to the lower nose or the chin curve."""
    return (heatmaps[:, list(MASK_CURVES)] > 0).any(dim=1, keepdim=True)


def apply_label_mask(
    render: torch.Tensor,
    heatmaps: torch.Tensor,
    source_yaw_deg: torch.Tensor,
    threshold_rad: float = YAW_MASK_THRESHOLD_RAD,
    blank_white: bool = True,
) -> torch.Tensor:
    """The seed's ``--label_mask`` on renders in [-1, 1] (B, 3, S, S): set to 0 (mid-grey) near the lower
    nose and chin for sources turned by at least ``threshold_rad``; the seed also sets every value of 1.0
    (pure white) to 0 in all images (a side effect of how it applies the mask), kept with ``blank_white``."""
    yaw = torch.as_tensor(source_yaw_deg, device=render.device, dtype=torch.float32).reshape(-1)
    turned = (torch.deg2rad(yaw).abs() >= threshold_rad).view(-1, 1, 1, 1)
    blank = nose_chin_band(heatmaps) & turned
    if blank_white:
        blank = blank | (render >= 1.0)
    return torch.where(blank, torch.zeros_like(render), render)
