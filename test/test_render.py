"""Tests of the batched PyTorch rasterizer (core/render): coverage, z order, interpolation, texture, AA."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from opendr_face_synth.core.render import (
    Fragments,
    antialias,
    coverage,
    downsample,
    interpolate,
    rasterize,
    texture,
)


# ----------------------------------------------------------------------------- helpers
def _t(vertices, triangles) -> tuple[torch.Tensor, torch.Tensor]:
    v = torch.as_tensor(np.asarray(vertices, dtype=np.float32))
    if v.dim() == 2:
        v = v[None]
    return v, torch.as_tensor(np.asarray(triangles, dtype=np.int64)).reshape(-1, 3)


def reference_raster(vertices: np.ndarray, triangles: np.ndarray, height: int, width: int, cull: bool = False):
    """Brute force: every pixel centre against every triangle with exact integer edge functions.

    Same snapping (1/256 px) and top-left rule as the rasterizer, written independently (per-pixel edge
    tests instead of per-row spans). Returns (triangle id, depth) with depth from float64 barycentrics.
    """
    sub = 256
    fx = np.round((vertices[:, 0].astype(np.float64) - 0.5) * sub).astype(np.int64)
    fy = np.round((vertices[:, 1].astype(np.float64) - 0.5) * sub).astype(np.int64)
    py, px = np.meshgrid(np.arange(height) * sub, np.arange(width) * sub, indexing="ij")
    best_id = np.full((height, width), -1, np.int64)
    best_z = np.full((height, width), np.inf)
    for f, tri in enumerate(triangles):
        xs, ys = fx[tri], fy[tri]
        area2 = (xs[1] - xs[0]) * (ys[2] - ys[0]) - (ys[1] - ys[0]) * (xs[2] - xs[0])
        if area2 == 0 or (cull and area2 > 0):
            continue
        s = 1 if area2 > 0 else -1
        inside = np.ones((height, width), bool)
        for k in range(3):
            ax, ay, bx, by = xs[k], ys[k], xs[(k + 1) % 3], ys[(k + 1) % 3]
            e = s * ((bx - ax) * (py - ay) - (by - ay) * (px - ax))
            top_left = s * (by - ay) < 0 or (by == ay and s * (bx - ax) > 0)
            inside &= (e > 0) | ((e == 0) & top_left)
        if not inside.any():
            continue
        x0, y0 = xs[0] / sub, ys[0] / sub
        area = area2 / sub**2
        dxp, dyp = px / sub - x0, py / sub - y0
        e1x, e1y, e2x, e2y = (xs[1] - xs[0]) / sub, (ys[1] - ys[0]) / sub, (xs[2] - xs[0]) / sub, (ys[2] - ys[0]) / sub
        b1 = (dxp * e2y - dyp * e2x) / area
        b2 = (dyp * e1x - dxp * e1y) / area
        z = vertices[tri, 2].astype(np.float64)
        depth = (1 - b1 - b2) * z[0] + b1 * z[1] + b2 * z[2]
        better = inside & ((depth < best_z) | ((depth == best_z) & (f < best_id)))
        best_id[better] = f
        best_z[better] = depth[better]
    return best_id, best_z


def grid_mesh(cells_y: int, cells_x: int, x0: float, y0: float, x1: float, y1: float, jitter: float = 0.0,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A triangulated rectangle; interior vertices jittered by up to ``jitter`` cell fractions."""
    rng = np.random.default_rng(seed)
    gy, gx = np.meshgrid(np.linspace(y0, y1, cells_y + 1), np.linspace(x0, x1, cells_x + 1), indexing="ij")
    if jitter:
        jx = rng.uniform(-jitter, jitter, gx.shape) * (x1 - x0) / cells_x
        jy = rng.uniform(-jitter, jitter, gy.shape) * (y1 - y0) / cells_y
        jx[:, [0, -1]] = 0
        jy[[0, -1], :] = 0
        gx, gy = gx + jx, gy + jy
    verts = np.stack([gx.ravel(), gy.ravel(), rng.uniform(1, 2, gx.size)], axis=1)
    idx = np.arange(gx.size).reshape(gx.shape)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    flip = rng.random(a.size) < 0.5  # both diagonals
    t1 = np.where(flip[:, None], np.stack([a, c, d], 1), np.stack([a, c, b], 1))
    t2 = np.where(flip[:, None], np.stack([a, d, b], 1), np.stack([b, c, d], 1))
    return verts.astype(np.float32), np.concatenate([t1, t2]).astype(np.int64)


def per_triangle_counts(vertices: np.ndarray, triangles: np.ndarray, height: int, width: int) -> np.ndarray:
    """How many triangles cover each pixel centre, each triangle rasterized alone (one batch item each)."""
    n = len(triangles)
    own = vertices[triangles.reshape(-1)]  # unshared corners: triangle k = vertices 3k..3k+2
    batch = np.repeat(own[None], n, axis=0)
    for k in range(n):  # move every other triangle far off-screen
        mask = np.ones(3 * n, bool)
        mask[3 * k:3 * k + 3] = False
        batch[k, mask, 0] += 1e4
    frags = rasterize(torch.from_numpy(batch), torch.arange(3 * n).reshape(n, 3), height, width)
    return (frags.triangle_id >= 0).sum(0).numpy()


# ----------------------------------------------------------------------------- coverage
def test_right_triangle_covers_known_pixels():
    # Legs on pixel borders: centres strictly inside are those with i + j <= 2 (hypotenuse x + y = 4).
    frags = rasterize(*_t([[0, 0, 1], [4, 0, 1], [0, 4, 1]], [[0, 2, 1]]), 6, 6)
    expected = np.add.outer(np.arange(6), np.arange(6)) <= 2
    expected[4:, :] = expected[:, 4:] = False
    assert np.array_equal(frags.triangle_id[0].numpy() == 0, expected)
    assert frags.triangle_id.dtype == torch.int64


@pytest.mark.parametrize("winding", [[0, 1, 2], [0, 2, 1]])
def test_edges_through_pixel_centres_follow_top_left_rule(winding):
    # Top edge y = 0.5 and left edge x = 0.5 pass through centres (included), the hypotenuse x + y = 5
    # too (a right edge: excluded): covered = {i + j <= 3}, 10 pixels, whatever the winding.
    frags = rasterize(*_t([[0.5, 0.5, 1], [4.5, 0.5, 1], [0.5, 4.5, 1]], [winding]), 6, 6)
    ii, jj = np.meshgrid(np.arange(6), np.arange(6), indexing="ij")
    assert np.array_equal(frags.triangle_id[0].numpy() >= 0, ii + jj <= 3)


@pytest.mark.parametrize("box", [(2, 3, 30, 17), (0, 0, 32, 32), (5.3, 1.7, 20.2, 29.9), (-7.5, 3.25, 12.5, 40.0)])
def test_quad_pixel_count_equals_area(box):
    x0, y0, x1, y1 = box
    v = [[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]]
    expected_cols = max(0, min(32, math.ceil(x1 - 0.5)) - max(0, math.ceil(x0 - 0.5)))
    expected_rows = max(0, min(32, math.ceil(y1 - 0.5)) - max(0, math.ceil(y0 - 0.5)))
    for tris in ([[0, 2, 1], [1, 2, 3]], [[0, 2, 3], [0, 3, 1]]):  # both diagonals
        frags = rasterize(*_t(v, tris), 32, 32)
        assert int((frags.triangle_id >= 0).sum()) == expected_rows * expected_cols
    if box == (2, 3, 30, 17):
        assert expected_rows * expected_cols == (30 - 2) * (17 - 3)  # integer corners: count == area


@pytest.mark.parametrize("centre", [(16.5, 16.5), (16.0, 16.0), (15.37, 16.81)])
def test_fan_has_no_cracks_or_overlaps(centre):
    # A closed fan around a centre on a pixel centre, a pixel corner and an arbitrary point.
    k = 11
    ang = np.linspace(0, 2 * np.pi, k, endpoint=False) + 0.3
    ring = np.stack([centre[0] + 13 * np.cos(ang), centre[1] + 11 * np.sin(ang), np.ones(k)], 1)
    verts = np.concatenate([[[centre[0], centre[1], 1.0]], ring]).astype(np.float32)
    tris = np.array([[0, 1 + i, 1 + (i + 1) % k] for i in range(k)])
    counts = per_triangle_counts(verts, tris, 32, 32)
    assert counts.max() == 1  # no double coverage
    full = rasterize(*_t(verts, tris), 32, 32).triangle_id[0].numpy() >= 0
    assert np.array_equal(full, counts == 1)
    # No cracks: every pixel centre strictly inside the polygon (by its own edge tests) is covered.
    ref_id, _ = reference_raster(verts, tris, 32, 32)
    assert np.array_equal(full, ref_id >= 0)
    assert abs(full.sum() - 0.5 * 13 * 11 * k * np.sin(2 * np.pi / k)) < 0.05 * full.sum()


def test_jittered_grid_covers_every_pixel_once():
    verts, tris = grid_mesh(5, 6, 1.3, 0.6, 27.1, 22.9, jitter=0.35, seed=3)
    verts[7, :2] = [np.floor(verts[7, 0]) + 0.5, np.floor(verts[7, 1]) + 0.5]  # a vertex on a pixel centre
    counts = per_triangle_counts(verts, tris, 24, 28)
    assert counts.max() == 1
    ii, jj = np.meshgrid(np.arange(24) + 0.5, np.arange(28) + 0.5, indexing="ij")
    interior = (jj > 1.3) & (jj < 27.1) & (ii > 0.6) & (ii < 22.9)
    assert np.array_equal(counts == 1, interior)


def test_matches_brute_force_reference_on_random_triangles():
    rng = np.random.default_rng(7)
    n = 60
    verts = np.concatenate(
        [rng.uniform(-10, 50, (3 * n, 2)), np.repeat(rng.permutation(n) + 1.0, 3)[:, None]], 1
    ).astype(np.float32)  # constant, distinct depth per triangle: an unambiguous z order
    tris = np.arange(3 * n).reshape(n, 3)
    frags = rasterize(*_t(verts, tris), 40, 37)
    ref_id, ref_z = reference_raster(verts, tris, 40, 37)
    assert np.array_equal(frags.triangle_id[0].numpy(), ref_id)
    assert np.allclose(frags.depth[0].numpy(), ref_z)


def test_offscreen_degenerate_and_empty_inputs():
    tris = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    verts = [
        [-30, -30, 1], [-20, -30, 1], [-30, -20, 1],  # off-screen
        [2, 2, 1], [8, 8, 1], [14, 14, 1],  # collinear
        [5, 5, 1], [5, 5, 1], [9, 1, 1],  # repeated vertex
        [float("nan"), 1, 1], [3, 9, 1], [9, 9, 1],  # non-finite
    ]
    no_triangles = rasterize(torch.zeros(2, 0, 3), torch.zeros(0, 3, dtype=torch.long), 16, 16)
    for frags in (rasterize(*_t(verts, tris), 16, 16), no_triangles):
        assert (frags.triangle_id == -1).all()
        assert torch.isinf(frags.depth).all()
        assert (frags.barycentrics == 0).all()
    frags = rasterize(torch.zeros(0, 3, 3), torch.tensor([[0, 1, 2]]), 8, 8)
    assert frags.triangle_id.shape == (0, 8, 8) and frags.barycentrics.shape == (0, 8, 8, 3)


def test_partially_offscreen_and_huge_triangles_clip():
    verts = np.array([[-5e4, -3e4, 1], [6e4, 10, 2], [20, 5e4, 3], [-3.7, 4.2, 0.5], [25.3, 12.9, 0.5],
                      [7.1, 30.8, 0.5]], np.float32)
    tris = np.array([[0, 1, 2], [3, 4, 5]])
    frags = rasterize(*_t(verts, tris), 24, 20, max_candidates=40, max_rows=30)
    ref_id, ref_z = reference_raster(verts, tris, 24, 20)
    assert np.array_equal(frags.triangle_id[0].numpy(), ref_id)
    assert np.allclose(frags.depth[0].numpy(), ref_z, rtol=1e-5)
    assert (frags.triangle_id[0] == 0).any() and (frags.triangle_id[0] == 1).any()


# ----------------------------------------------------------------------------- z order
@pytest.mark.parametrize("near_first", [True, False])
def test_nearest_triangle_wins(near_first):
    near = [[2, 2, 1.0], [14, 2, 1.0], [2, 14, 1.0]]
    far = [[4, 4, 5.0], [15, 4, 5.0], [4, 15, 5.0]]
    verts = near + far if near_first else far + near
    frags = rasterize(*_t(verts, [[0, 2, 1], [3, 5, 4]]), 16, 16)
    near_id = 0 if near_first else 1
    tid, depth = frags.triangle_id[0], frags.depth[0]
    assert tid[5, 5] == near_id and depth[5, 5] == 1.0  # overlap: the near one
    assert tid[12, 5] == 1 - near_id and depth[12, 5] == 5.0  # only the far one
    assert tid[0, 0] == -1 and torch.isinf(depth[0, 0])


def test_equal_depth_tie_goes_to_smallest_id_and_intersections_resolve_per_pixel():
    square = [[0, 0, 3.0], [16, 0, 3.0], [0, 16, 3.0]]
    frags = rasterize(*_t(square + square, [[3, 5, 4], [0, 2, 1]]), 16, 16)
    assert set(frags.triangle_id[0].unique().tolist()) == {-1, 0}
    # Two full-screen planes crossing at x = 8: z = x and z = 16 - x.
    v = [[-1, -1, -1], [40, -1, 40], [-1, 40, -1], [-1, -1, 17], [40, -1, -24], [-1, 40, 17]]
    frags = rasterize(*_t(v, [[0, 2, 1], [3, 5, 4]]), 16, 16)
    x = torch.arange(16) + 0.5
    expected = torch.where(x < 8, 0, 1).expand(16, 16)
    assert torch.equal(frags.triangle_id[0], expected)
    assert torch.allclose(frags.depth[0], torch.minimum(x, 16 - x).expand(16, 16), atol=1e-4)


def test_backface_culling():
    ccw = [[0, 0, 1], [0, 8, 1], [8, 0, 1]]  # counter-clockwise on screen (y down): front
    cw = [[8, 8, 1], [16, 8, 1], [8, 16, 1]]  # clockwise: back
    v, t = _t(ccw + cw, [[0, 1, 2], [3, 4, 5]])
    assert set(rasterize(v, t, 16, 16).triangle_id.unique().tolist()) == {-1, 0, 1}
    assert set(rasterize(v, t, 16, 16, cull_backfaces=True).triangle_id.unique().tolist()) == {-1, 0}


# ----------------------------------------------------------------------------- batches and chunks
def _random_scene(batch: int, n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    scale, shift = torch.tensor([size * 1.2, size * 1.2, 10.0]), torch.tensor([size * 0.1, size * 0.1, 0])
    base = torch.rand(n * 3, 3, generator=g) * scale - shift
    verts = base[None] + torch.randn(batch, n * 3, 3, generator=g) * 4.0
    return verts, torch.arange(n * 3).reshape(n, 3)


def _assert_same(a: Fragments, b: Fragments) -> None:
    assert torch.equal(a.triangle_id, b.triangle_id)
    assert torch.equal(a.depth, b.depth)
    assert torch.equal(a.barycentrics, b.barycentrics)


def test_batch_items_are_independent():
    verts, tris = _random_scene(4, 40, 48, seed=1)
    together = rasterize(verts, tris, 48, 40)
    for k in range(4):
        alone = rasterize(verts[k:k + 1], tris, 48, 40)
        _assert_same(Fragments(together.triangle_id[k:k + 1], together.barycentrics[k:k + 1],
                               together.depth[k:k + 1]), alone)


def test_chunking_gives_identical_results():
    verts, tris = _random_scene(5, 70, 64, seed=2)
    whole = rasterize(verts, tris, 64, 64)
    assert (whole.triangle_id >= 0).float().mean() > 0.5
    for kwargs in ({"max_candidates": 700}, {"max_rows": 1}, {"max_triangles": 70},
                   {"max_candidates": 2000, "max_rows": 100, "max_triangles": 1}):
        _assert_same(whole, rasterize(verts, tris, 64, 64, **kwargs))


def test_barycentrics_reconstruct_pixel_centres():
    verts, tris = _random_scene(2, 30, 32, seed=4)
    frags = rasterize(verts, tris, 32, 32)
    b = frags.barycentrics
    covered = frags.triangle_id >= 0
    assert torch.allclose(b.sum(-1)[covered], torch.ones(()), atol=1e-5)
    assert (b[covered] > -1e-4).all() and (b[~covered] == 0).all()
    xy = interpolate(verts[..., :2], frags, tris)
    ii, jj = torch.meshgrid(torch.arange(32) + 0.5, torch.arange(32) + 0.5, indexing="ij")
    err = (xy - torch.stack([jj, ii], -1)).abs()[covered]
    assert err.max() < 2.0 / 256  # snapping to 1/256 px


# ----------------------------------------------------------------------------- interpolate
def test_interpolated_position_equals_pixel_centre_on_screen_filling_quad():
    w, h = 40, 30
    v, t = _t([[0, 0, 1], [w, 0, 2], [0, h, 3], [w, h, 4]], [[0, 2, 1], [1, 2, 3]])
    frags = rasterize(v, t, h, w)
    assert (frags.triangle_id >= 0).all()
    attrs = torch.cat([v[0, :, :2], v[0, :, :2] / torch.tensor([w, h])], 1)  # (V, 4) shared form
    out = interpolate(attrs, frags, t)
    assert out.shape == (1, h, w, 4)
    ii, jj = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    assert torch.allclose(out[0, ..., 0], jj, atol=1e-4) and torch.allclose(out[0, ..., 1], ii, atol=1e-4)
    assert torch.allclose(out[0, ..., 2], jj / w, atol=1e-6) and torch.allclose(out[0, ..., 3], ii / h, atol=1e-6)
    # depth is the plane through the corners: z = 1 + x / w + 2 y / h
    assert torch.allclose(frags.depth[0], 1 + jj / w + 2 * ii / h, atol=1e-5)


def test_interpolate_batch_attributes_dtype_and_empty_pixels():
    verts, tris = _random_scene(3, 25, 24, seed=5)
    frags = rasterize(verts, tris, 24, 24)
    attrs = torch.randn(3, verts.shape[1], 5, dtype=torch.float64)
    out = interpolate(attrs, frags, tris)
    assert out.dtype == torch.float64 and out.shape == (3, 24, 24, 5)
    assert (out[frags.triangle_id < 0] == 0).all()
    b, i, j = [int(x[0]) for x in torch.nonzero(frags.triangle_id >= 0, as_tuple=True)]
    corners = tris[frags.triangle_id[b, i, j]]
    expected = (frags.barycentrics[b, i, j, :, None].double() * attrs[b, corners]).sum(0)
    assert torch.allclose(out[b, i, j], expected)


# ----------------------------------------------------------------------------- texture
def test_texture_exact_at_texel_centres():
    for height, width, tol in ((16, 32, 0.0), (7, 13, 1e-6), (37, 51, 2e-5)):
        img = torch.rand(2, 3, height, width)
        ii, jj = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
        uv = torch.stack([jj, ii], -1).expand(2, -1, -1, -1)
        for mode in ("bilinear", "nearest"):
            out = texture(img, uv, mode=mode)
            assert out.shape == (2, height, width, 3)
            assert (out - img.permute(0, 2, 3, 1)).abs().max() <= tol


def test_texture_bilinear_midpoints_padding_and_shared_texture():
    img = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])  # (1, 1, 2, 2)
    uv = torch.tensor([[[[1.0, 0.5], [1.0, 1.0], [-5.0, 0.5], [0.5, 0.5]]]]).expand(3, -1, -1, -1)
    out = texture(img, uv)  # shared by a batch of 3
    assert torch.allclose(out[:, 0, :, 0], torch.tensor([0.5, 1.75, 0.0, 0.0]).expand(3, -1))
    zeros = texture(img, uv, padding="zeros")
    assert zeros[0, 0, 2, 0] == 0 and zeros[0, 0, 0, 0] == 0.5
    with pytest.raises(ValueError):
        texture(img, uv, mode="cubic")


# ----------------------------------------------------------------------------- antialias
def test_antialias_fractional_alpha_exactly_on_edges():
    ss, size = 2, 16
    # A vertical edge at x = 5.5 and a horizontal one at y = 10.5 (low-res pixels), diagonal elsewhere.
    v = torch.tensor([[[5.5, -1, 1], [30, -1, 1], [5.5, 10.5, 1], [30, 10.5, 1]]]) * torch.tensor([ss, ss, 1])
    frags = rasterize(v, torch.tensor([[0, 2, 1], [1, 2, 3]]), size * ss, size * ss)
    colour = torch.tensor([0.2, 0.4, 0.8]).expand(1, size * ss, size * ss, 3)
    premul, alpha = antialias(colour, frags, ss)
    a = alpha[0, ..., 0]
    assert torch.equal(a[:10, 6:], torch.ones(10, 10))  # inside
    assert torch.equal(a[:10, 5], torch.full((10,), 0.5))  # the vertical edge column
    assert torch.equal(a[10, 6:], torch.full((10,), 0.5))  # the horizontal edge row
    assert a[10, 5] == 0.25
    assert a[:, :5].sum() == 0 and a[11:].sum() == 0
    assert torch.allclose(premul, colour[:, :size, :size] * alpha)
    diag = rasterize(torch.tensor([[[0, 0, 1], [32, 0, 1], [0, 32, 1]]]) * 1.0, torch.tensor([[0, 2, 1]]), 32, 32)
    _, alpha_d = antialias(torch.ones(1, 32, 32, 1), diag, 2)
    values = set(alpha_d.unique().tolist())
    assert values <= {0.0, 0.25, 0.5, 0.75, 1.0} and {0.0, 1.0} < values


def test_downsample_matches_block_mean_for_both_layouts():
    x = torch.rand(2, 3, 12, 18).permute(0, 2, 3, 1)  # planar storage
    for ss in (1, 2, 3):
        ref = x.reshape(2, 12 // ss, ss, 18 // ss, ss, 3).mean((2, 4))
        for image in (x, x.contiguous()):
            assert torch.allclose(downsample(image, ss), ref, atol=1e-6)
    w = torch.rand(2, 12, 18, 1)
    assert torch.allclose(downsample(x, 2, w), downsample(x * w, 2), atol=1e-6)
    frags = Fragments(torch.tensor([[[0, -1], [3, 3]]]), torch.zeros(1, 2, 2, 3), torch.zeros(1, 2, 2))
    assert torch.equal(coverage(frags)[0, ..., 0], torch.tensor([[1.0, 0.0], [1.0, 1.0]]))


# ----------------------------------------------------------------------------- scale
_BIG_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, time
    import torch
    sys.path.insert(0, {root!r})
    from opendr_face_synth.core.render import rasterize
    torch.set_num_threads(2)
    n = 224  # 2 * 224 * 224 = 100352 triangles
    g = torch.linspace(0, 1, n + 1)
    gy, gx = torch.meshgrid(g, g, indexing="ij")
    v = torch.stack([gx * 200 + 28, gy * 200 + 28, (gx - 0.5) ** 2 + (gy - 0.5) ** 2], -1).reshape(1, -1, 3)
    idx = torch.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1].reshape(-1), idx[:-1, 1:].reshape(-1), idx[1:, :-1].reshape(-1), idx[1:, 1:].reshape(-1)
    tris = torch.cat([torch.stack([a, c, b], 1), torch.stack([b, c, d], 1)])
    verts = v.expand(4, -1, -1) + torch.tensor([[[0.0, 0, 0]], [[3.3, 0, 0]], [[0, -2.1, 0]], [[1.7, 1.1, 0]]])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    frags = rasterize(verts, tris, 256, 256)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    inside = frags.triangle_id[:, 40:220, 40:220]
    print(json.dumps({{"tris": tris.shape[0], "seconds": seconds, "peak_growth_mb": (after - before) / 1024,
                      "full": bool((inside >= 0).all()), "distinct": int(frags.triangle_id.unique().numel())}}))
    """
)


def test_100k_triangle_mesh_renders_within_memory_bound(tmp_path):
    root = str(__import__("pathlib").Path(__file__).resolve().parents[1])
    proc = subprocess.run([sys.executable, "-c", _BIG_SCRIPT.format(root=root)], capture_output=True, text=True,
                          timeout=120, check=True)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["tris"] > 100_000
    assert res["full"] and res["distinct"] > 60_000
    # 4 x 256^2 outputs are ~6 MB; the setup of 400k triangle instances in float64 chunks stays bounded.
    assert res["peak_growth_mb"] < 600, res


# ----------------------------------------------------------------------------- devices
@pytest.mark.gpu
def test_cpu_and_cuda_agree():
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    # Overlapping triangles at distinct constant depths (an unambiguous z order, so ids must match
    # exactly) and a jittered height-field grid (no overlaps), as a batch of two.
    rng = np.random.default_rng(9)
    n = 200
    soup = np.concatenate([rng.uniform(-10, 100, (3 * n, 2)), np.repeat(rng.permutation(n) + 1.0, 3)[:, None]], 1)
    grid_v, grid_t = grid_mesh(10, 14, -3.3, 2.2, 84.7, 91.9, jitter=0.4, seed=9)
    away = np.array([1e4, 0.0, 0.0])
    verts = torch.from_numpy(np.stack([
        np.concatenate([soup, grid_v + away]), np.concatenate([soup + away, grid_v])  # one scene per image
    ]).astype(np.float32))
    tris = torch.from_numpy(np.concatenate([np.arange(3 * n).reshape(n, 3), grid_t + 3 * n]))
    cpu = rasterize(verts, tris, 96, 80)
    gpu = rasterize(verts.cuda(), tris.cuda(), 96, 80)
    assert torch.equal(cpu.triangle_id, gpu.triangle_id.cpu())
    assert torch.allclose(cpu.depth, gpu.depth.cpu(), atol=1e-5)
    assert torch.allclose(cpu.barycentrics, gpu.barycentrics.cpu(), atol=1e-5)
    attrs = torch.randn(2, verts.shape[1], 4)
    a = interpolate(attrs, cpu, tris)
    b = interpolate(attrs.cuda(), gpu, tris.cuda()).cpu()
    assert torch.allclose(a, b, atol=1e-5)
    img = torch.rand(2, 3, 40, 50)
    assert torch.allclose(texture(img, a[..., :2] * 20), texture(img.cuda(), b[..., :2].cuda() * 20).cpu(), atol=1e-5)
    pa, aa = antialias(a, cpu, 2)
    pb, ab = antialias(b.cuda(), gpu, 2)
    assert torch.allclose(pa, pb.cpu(), atol=1e-5) and torch.equal(aa, ab.cpu())
