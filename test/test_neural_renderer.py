"""Tests of the optional neural_renderer backend (core/render/neural_renderer_backend.py).

The pure parts (pixel -> NDC, texture layout, backend selection, config and CLI wiring) run everywhere. The
comparisons with the built-in rasterizer run only where neural_renderer imports with CUDA (build it with
scripts/build_neural_renderer.sh); the tolerances are explained in docs/neural_renderer.md.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from opendr_face_synth.cli import main as cli
from opendr_face_synth.core.config import ConfigError, SynthConfig
from opendr_face_synth.core.refine.seed_render import render_flat, seed_flat_colors
from opendr_face_synth.core.render import neural_renderer_backend as nrb
from opendr_face_synth.core.render import rasterize
from opendr_face_synth.core.render.neural_renderer_backend import (
    neural_renderer_available,
    pixel_to_ndc,
    rasterize_nr,
    rasterizer_for,
    render_seed_nr,
    resolve_backend,
    unavailable_reason,
)

needs_nr = pytest.mark.skipif(
    not neural_renderer_available(), reason=f"neural_renderer is not usable here: {unavailable_reason()}"
)

# Agreement bounds of NR with the built-in rasterizer. NR tests coverage on unsnapped float32 coordinates and
# counts a sample exactly on an edge as inside both triangles, ours snaps to 1/256 pixel and applies the
# top-left rule: samples within ~1/500 pixel of an edge may go to the neighbouring triangle (about 1% of a
# face mesh's samples at 512 x 512, measured), never to an unrelated one, and silhouettes agree.
MIN_ID_AGREEMENT = 0.97  # covered samples given the same triangle
MAX_COVERAGE_MISMATCH = 1e-4  # fraction of samples covered by one backend only
# Flat renders with smoothly varying face colours, anti-aliased; MAX_RGB where both have the same coverage.
MAX_RGB_MEAN, MAX_RGB = 1e-4, 0.02
MAX_ALPHA_MEAN = 1e-4
MAX_DEPTH, MAX_DEPTH_MEAN = 0.03, 5e-4  # NR's camera depth, normalised units ([-1, 1] + 2.732)
DEVICE = "cuda"


# ----------------------------------------------------------------------------- scenes
def face_mesh(num_triangles: int, size: int, yaws: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """A face-mask-like bulged grid (as bench/bench_render.py) over 40% of the frame, one view per yaw.

    Returns (B, V, 3) vertices in pixels (depth: smaller is nearer) and (F, 3) counter-clockwise triangles.
    """
    cells = max(1, round(math.sqrt(num_triangles / 2)))
    half = 0.5 * math.sqrt(0.4) * size
    gy, gx = torch.meshgrid(torch.linspace(-1, 1, cells + 1), torch.linspace(-1, 1, cells + 1), indexing="ij")
    bulge = torch.sqrt((1.6 - gx**2 - gy**2).clamp_min(0.0))
    x, y, z = (gx * half).reshape(-1), (gy * half).reshape(-1), (-bulge * half).reshape(-1)
    views = []
    for yaw in yaws:
        c, s = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
        # Off-centre by a fraction of a pixel so that no symmetry puts vertices on pixel centres.
        views.append(torch.stack([c * x + s * z + size / 2 + 0.37, y + size / 2 - 0.21, -s * x + c * z], dim=-1))
    idx = torch.arange((cells + 1) ** 2).reshape(cells + 1, cells + 1)
    a, b = idx[:-1, :-1].reshape(-1), idx[:-1, 1:].reshape(-1)
    c_, d = idx[1:, :-1].reshape(-1), idx[1:, 1:].reshape(-1)
    return torch.stack(views), torch.cat([torch.stack([a, c_, b], 1), torch.stack([b, c_, d], 1)])


def smooth_face_colours(vertices: torch.Tensor, triangles: torch.Tensor, size: int) -> torch.Tensor:
    """(B, F, 3) colours that vary slowly across the mesh: neighbouring triangles differ by ~1e-3."""
    centre = vertices[:, triangles].mean(dim=2)
    u, v = centre[..., 0] / size, centre[..., 1] / size
    return torch.stack([u, v, 0.5 + 0.4 * torch.sin(3.0 * u + 2.0 * v)], dim=-1).clamp(0.0, 1.0)


def far_from_edges(vertices: np.ndarray, triangles: np.ndarray, height: int, width: int, margin: float) -> np.ndarray:
    """(H, W) bool: pixel centres farther than ``margin`` pixels from every edge of the (V, 3) mesh."""
    py, px = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    far = np.ones((height, width), bool)
    for tri in triangles:
        for k in range(3):
            a, b = vertices[tri[k], :2].astype(np.float64), vertices[tri[(k + 1) % 3], :2].astype(np.float64)
            ab = b - a
            t = np.clip(((px - a[0]) * ab[0] + (py - a[1]) * ab[1]) / max(ab @ ab, 1e-12), 0.0, 1.0)
            far &= np.hypot(px - a[0] - t * ab[0], py - a[1] - t * ab[1]) > margin
    return far


def triangle_soup(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random overlapping triangles, each at its own constant depth (an unambiguous z order), both windings."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-0.2 * size, 1.2 * size, (n, 3, 2))
    depth = np.repeat(rng.permutation(n)[:, None, None] + 1.0, 3, axis=1)
    verts = np.concatenate([xy, depth], axis=-1).reshape(-1, 3)
    return torch.from_numpy(verts.astype(np.float32))[None], torch.arange(3 * n).reshape(n, 3)


# ----------------------------------------------------------------------------- pure parts (everywhere)
def test_pixel_centres_map_to_nr_sample_points():
    size = 8
    i, j = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centres = torch.stack([j + 0.5, i + 0.5, torch.zeros(size, size)], dim=-1).reshape(1, -1, 3).float()
    ndc = pixel_to_ndc(centres, size).reshape(size, size, 3)
    # NR samples its column xi, row yi at ((2 xi + 1 - S) / S, (2 yi + 1 - S) / S), y up, then flips the rows.
    xi, yi = j, size - 1 - i
    assert torch.allclose(ndc[..., 0], (2.0 * xi + 1 - size) / size, atol=1e-6)
    assert torch.allclose(ndc[..., 1], (2.0 * yi + 1 - size) / size, atol=1e-6)


def test_seed_offsets_reproduce_the_seed_formula():
    size = 256
    verts = torch.tensor([[[10.25, 20.5, 1.0], [100.0, 3.75, 2.0], [255.5, 255.5, 3.0]]])
    seed = pixel_to_ndc(verts, size, seed_offsets=True)
    # The seed's coordinates have pixel centres on integers (ours - 0.5); its spec §6.4 formula on them:
    x_rr, y_rr = verts[..., 0] - 0.5, verts[..., 1] - 0.5
    assert torch.allclose(seed[..., 0], x_rr / (size / 2) - 1, atol=1e-6)
    assert torch.allclose(seed[..., 1], (size - 1 - y_rr) / (size / 2) - 1, atol=1e-6)
    # ... which is our exact mapping of points half a pixel left and half a pixel down.
    shifted = verts + torch.tensor([-0.5, 0.5, 0.0])
    assert torch.allclose(seed, pixel_to_ndc(shifted, size), atol=1e-6)


def test_depth_is_normalised_per_mesh_nearest_at_minus_one():
    verts = torch.tensor([
        [[0.0, 0.0, 5.0], [1.0, 0.0, 1.0], [0.0, 1.0, 3.0]],
        [[0.0, 0.0, -40.0], [1.0, 0.0, -20.0], [0.0, 1.0, float("nan")]],
    ])
    z = pixel_to_ndc(verts, 16)[..., 2]
    assert torch.allclose(z[0], torch.tensor([1.0, -1.0, 0.0]))
    assert torch.allclose(z[1, :2], torch.tensor([-1.0, 1.0]))  # the non-finite vertex is left out...
    assert torch.isnan(pixel_to_ndc(verts, 16)[1, 2]).all()  # ... and comes out NaN (never drawn)
    flat = pixel_to_ndc(torch.tensor([[[0.0, 0.0, 7.0], [1.0, 1.0, 7.0]]]), 16)[..., 2]
    assert torch.equal(flat, torch.full((1, 2), -1.0))


def test_texture_layouts():
    tris = torch.tensor([[0, 1, 2], [0, 2, 3]])
    face = torch.rand(2, 2, 3)
    tex = nrb._nr_textures(face, tris, per_vertex=False)
    assert tex.shape == (2, 2, 2, 2, 2, 3) and torch.equal(tex[:, :, 1, 0, 1], face)
    vertex = torch.rand(2, 4, 3)
    tex_v = nrb._nr_textures(vertex, tris, per_vertex=True)
    assert torch.allclose(tex_v[:, :, 0, 0, 0], vertex[:, tris].mean(dim=2))
    assert nrb._nr_textures(tex, tris, per_vertex=False).shape == tex.shape
    with pytest.raises(ValueError, match="colours"):
        nrb._nr_textures(torch.rand(2, 5, 3), tris, per_vertex=False)


def test_backend_resolution(monkeypatch):
    assert resolve_backend("builtin", "cpu") == "builtin"
    assert resolve_backend("auto", "cpu") == "builtin"
    with pytest.raises(ValueError, match="^render_backend 'neural_renderer' cannot be used: it is CUDA-only"):
        resolve_backend("neural_renderer", "cpu")
    with pytest.raises(ValueError, match="^render_backend 'opengl'"):
        resolve_backend("opengl", "cpu")
    monkeypatch.setattr(nrb, "unavailable_reason", lambda: None)
    assert resolve_backend("auto", "cuda") == "neural_renderer"
    assert resolve_backend("neural_renderer", "cuda:0") == "neural_renderer"
    monkeypatch.setattr(nrb, "unavailable_reason", lambda: "not built")
    assert resolve_backend("auto", "cuda") == "builtin"
    with pytest.raises(ValueError, match="not built"):
        resolve_backend("neural_renderer", "cuda")
    assert rasterizer_for("builtin") is rasterize and rasterizer_for("neural_renderer") is rasterize_nr


def test_availability_is_a_bool_with_a_reason():
    available = neural_renderer_available()
    assert isinstance(available, bool)
    assert (unavailable_reason() is None) == available
    if not torch.cuda.is_available():
        assert not available and "CUDA" in unavailable_reason()


def test_rasterize_nr_checks_arguments_before_needing_a_gpu():
    verts, tris = torch.zeros(1, 3, 3), torch.tensor([[0, 1, 2]])
    with pytest.raises(ValueError, match="square"):
        rasterize_nr(verts, tris, 16, 24)
    with pytest.raises(ValueError, match="CUDA-only"):
        rasterize_nr(verts, tris, 16, 16)
    with pytest.raises(ValueError, match="triangles"):
        rasterize_nr(verts, tris[0], 16, 16)


def test_config_validates_the_render_backend():
    assert SynthConfig().render_backend == "builtin"
    for name in ("builtin", "neural_renderer", "auto"):
        SynthConfig(render_backend=name).validate()
    with pytest.raises(ConfigError, match="^render_backend 'nr'"):
        SynthConfig(render_backend="nr").validate()


def test_cli_flag_reaches_the_config(tmp_path, astronaut_rgb):
    import cv2

    src = tmp_path / "a.png"
    cv2.imwrite(str(src), astronaut_rgb[..., ::-1])
    seen: list[SynthConfig] = []

    def factory(config: SynthConfig):
        seen.append(config)
        raise RuntimeError("no engine in this test")

    status = cli.main(["generate", str(src), str(tmp_path / "out"), "--render-backend", "auto", "--no-progress"],
                      factory)
    assert status == cli.EXIT_NOTHING and seen[0].render_backend == "auto"


def test_unusable_backend_is_a_usage_error_naming_the_flag(tmp_path, astronaut_rgb, capsys):
    import cv2

    from opendr_face_synth.core.synthesizer import FaceSynthesizer

    src = tmp_path / "a.png"
    cv2.imwrite(str(src), astronaut_rgb[..., ::-1])
    argv = ["generate", str(src), str(tmp_path / "out"), "--device", "cpu", "--render-backend", "neural_renderer",
            "--no-progress"]
    with pytest.raises(SystemExit) as info:
        cli.main(argv, FaceSynthesizer)  # fails before any model is loaded
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--render-backend: render_backend 'neural_renderer' cannot be used" in err and "Traceback" not in err
    assert not Path(tmp_path / "out").exists()


# ----------------------------------------------------------------------------- against neural_renderer (CUDA)
@pytest.mark.gpu
@needs_nr
def test_analytic_soup_matches_builtin_away_from_edges():
    size = 64
    verts, tris = triangle_soup(12, size, seed=3)
    ours = rasterize(verts.to(DEVICE), tris.to(DEVICE), size, size)
    nr = rasterize_nr(verts.to(DEVICE), tris.to(DEVICE), size, size)
    far = torch.from_numpy(far_from_edges(verts[0].numpy(), tris.numpy(), size, size, 0.01))
    assert far.float().mean() > 0.8
    ids_o, ids_n = ours.triangle_id[0].cpu(), nr.triangle_id[0].cpu()
    assert torch.equal(ids_o[far], ids_n[far])  # coverage and the nearest triangle
    same = (ids_o == ids_n) & (ids_o >= 0)
    assert torch.allclose(ours.depth[0].cpu()[same], nr.depth[0].cpu()[same], rtol=1e-6)  # constant per triangle
    assert torch.isinf(nr.depth[0].cpu()[ids_n < 0]).all()
    # Barycentrics of both reconstruct the pixel centres (ours to within the 1/256-pixel snapping).
    i, j = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    for frags in (ours, nr):
        tid = frags.triangle_id[0].cpu().clamp(min=0)
        corners = verts[0][tris[tid]][..., :2]  # (H, W, 3, 2)
        pos = (frags.barycentrics[0].cpu()[..., None] * corners).sum(dim=2)
        covered = frags.triangle_id[0].cpu() >= 0
        assert (pos[..., 0] - j)[covered].abs().max() < 0.01 and (pos[..., 1] - i)[covered].abs().max() < 0.01


@pytest.mark.gpu
@needs_nr
@pytest.mark.parametrize("near_first", [True, False])
def test_nearest_surface_wins_in_either_order(near_first):
    quad = torch.tensor([[4.2, 4.3], [27.7, 4.1], [27.9, 27.6], [4.1, 27.8]])
    near = torch.cat([quad, torch.full((4, 1), 1.0)], 1)
    far = torch.cat([quad + torch.tensor([3.1, 2.9]), torch.full((4, 1), 9.0)], 1)
    verts = torch.cat([near, far] if near_first else [far, near])[None].to(DEVICE)
    tris = torch.tensor([[0, 3, 2], [0, 2, 1], [4, 7, 6], [4, 6, 5]]).to(DEVICE)
    frags = rasterize_nr(verts, tris, 32, 32)
    near_ids = {0, 1} if near_first else {2, 3}
    assert int(frags.triangle_id[0, 15, 15]) in near_ids and float(frags.depth[0, 15, 15]) == pytest.approx(1.0)
    assert int(frags.triangle_id[0, 29, 29]) not in near_ids and float(frags.depth[0, 29, 29]) == pytest.approx(9.0)
    ours = rasterize(verts, tris, 32, 32)
    same = ours.triangle_id == frags.triangle_id
    assert same.float().mean() > 0.95
    assert torch.allclose(ours.depth[same], frags.depth[same], rtol=1e-6)


@pytest.mark.gpu
@needs_nr
def test_backface_culling_and_batches_match_builtin():
    ccw = [[3.3, 3.1, 1.0], [5.2, 28.4, 1.0], [28.9, 20.3, 1.0]]  # counter-clockwise on screen (y down)
    cw = [[3.3, 3.1, 1.0], [28.9, 20.3, 1.0], [5.2, 28.4, 1.0]]
    verts = torch.tensor([ccw, cw]).to(DEVICE)
    tris = torch.tensor([[0, 1, 2]]).to(DEVICE)
    far = torch.from_numpy(far_from_edges(np.array(ccw), np.array([[0, 1, 2]]), 32, 32, 0.01)).to(DEVICE)
    for cull in (False, True):
        nr = rasterize_nr(verts, tris, 32, 32, cull_backfaces=cull)
        ours = rasterize(verts, tris, 32, 32, cull_backfaces=cull)
        assert torch.equal(nr.mask[:, far], ours.mask[:, far])
    assert not rasterize_nr(verts, tris, 32, 32, cull_backfaces=True).mask[1].any()
    empty = rasterize_nr(verts, tris[:0], 32, 32)
    assert (empty.triangle_id == -1).all() and torch.isinf(empty.depth).all()


@pytest.mark.gpu
@needs_nr
def test_face_mesh_fragments_agree_with_builtin():
    size = 512  # a 256 render at 2x supersampling
    verts, tris = face_mesh(20_000, size, (-40.0, 0.0, 30.0))
    verts, tris = verts.to(DEVICE), tris.to(DEVICE)
    ours = rasterize(verts, tris, size, size)
    nr = rasterize_nr(verts, tris, size, size)
    cov_o, cov_n = ours.mask, nr.mask
    assert (cov_o != cov_n).float().mean() <= MAX_COVERAGE_MISMATCH
    same = (ours.triangle_id == nr.triangle_id) & cov_o
    assert same.sum() / cov_o.sum() >= MIN_ID_AGREEMENT
    # Where they differ, NR's triangle is a neighbour of ours (the sample sits on their shared edge or vertex).
    differ = cov_o & cov_n & ~same
    a, b = tris[ours.triangle_id[differ]], tris[nr.triangle_id[differ]]
    shares = (a[:, :, None] == b[:, None, :]).any(-1).any(-1)
    assert shares.sum() >= 0.99 * differ.sum()
    span = float(verts[..., 2].amax() - verts[..., 2].amin())
    assert (ours.depth - nr.depth)[same].abs().max() <= 1e-3 * span


@pytest.mark.gpu
@needs_nr
@pytest.mark.parametrize("seed_offsets", [False, True])
def test_seed_render_matches_builtin_flat_render(seed_offsets):
    size = 256
    verts, tris = face_mesh(20_000, size, (-40.0, 0.0, 30.0))
    verts, tris = verts.to(DEVICE), tris.to(DEVICE)
    colours = smooth_face_colours(verts, tris, size)
    rgb, depth, alpha = render_seed_nr(verts, tris, colours, size, seed_offsets=seed_offsets)
    assert rgb.shape == (3, 3, size, size) and depth.shape == alpha.shape == (3, size, size)
    # The built-in equivalent: seed_offsets moves the picture half a pixel left and half a pixel down.
    shift = torch.tensor([-0.5, 0.5, 0.0], device=DEVICE) if seed_offsets else torch.zeros(3, device=DEVICE)
    rgb_b, alpha_b = render_flat(verts + shift, tris, colours, size, size)
    alpha_diff = (alpha - alpha_b[:, 0]).abs()
    assert alpha_diff.mean() <= MAX_ALPHA_MEAN and alpha_diff.max() <= 0.25  # at most one sample of four
    diff = (rgb - rgb_b).abs()
    assert diff.mean() <= MAX_RGB_MEAN and diff.amax(1)[alpha_diff == 0].max() <= MAX_RGB
    # Depth: camera z = normalised depth + 2.732, on fully covered pixels (NR pools the far plane into edges).
    frags = rasterize((verts + shift) * torch.tensor([2.0, 2.0, 1.0], device=DEVICE), tris, 2 * size, 2 * size)
    lo, hi = verts[..., 2].amin(1)[:, None, None], verts[..., 2].amax(1)[:, None, None]
    z = (frags.depth - lo) / (hi - lo) * 2.0 - 1.0 + nrb.EYE_DISTANCE
    z = torch.nn.functional.avg_pool2d(torch.where(frags.mask, z, 0.0)[:, None], 2)[:, 0]
    # NR interpolates 1 / z (it assumes a perspective camera), we interpolate z: they differ by up to ~1e-2 on
    # triangles seen edge-on (the mesh's steep rim), ~1e-5 elsewhere.
    full = (alpha == 1) & (alpha_b[:, 0] == 1)
    assert (depth - z)[full].abs().max() <= MAX_DEPTH and (depth - z)[full].abs().mean() <= MAX_DEPTH_MEAN
    if not seed_offsets:  # per-vertex colours: the seed's per-face means
        vertex_rgb = torch.rand(3, verts.shape[1], 3, device=DEVICE)
        a = render_seed_nr(verts, tris, vertex_rgb, size, per_vertex=True)[0]
        b = render_seed_nr(verts, tris, vertex_rgb[:, tris].mean(dim=2), size)[0]
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.gpu
@needs_nr
def test_seed_texture_with_nr_rasterizer_matches_builtin():
    size = 256
    verts, tris = face_mesh(20_000, size, (0.0, 25.0))
    verts, tris = verts.to(DEVICE), tris.to(DEVICE)
    i, j = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    image = torch.stack([i, j, 0.5 + 0.4 * torch.sin(4 * i + 3 * j)])[None].expand(2, -1, -1, -1).to(DEVICE)
    ours = seed_flat_colors(verts, tris, image)
    nr = seed_flat_colors(verts, tris, image, rasterize=rasterize_nr)
    diff = (ours - nr).abs()
    assert diff.mean() <= 1e-3 and diff.max() <= 0.05
