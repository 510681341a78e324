"""Optional backend on ``neural_renderer`` (PyPI ``neural-renderer-pytorch`` 1.1.3), the seed's CUDA renderer.

Nothing here imports ``neural_renderer`` at module import time: it is CUDA-only, has no wheels and must be
built (``scripts/build_neural_renderer.sh``, ``docs/neural_renderer.md``). Three uses:

* :func:`neural_renderer_available` / :func:`unavailable_reason`: is it importable, with CUDA? Never raises.
* :func:`render_seed_nr`: the seed's render exactly (seed-spec §6.4): ``nr.Renderer`` in ``look`` mode,
  orthographic, eye (0, 0, -2.732), fill_back, near 0.1, far 100, ambient light 1, anti-aliasing (2S
  render, 2 x 2 average pool), per-face flat colours. Returns NR's (rgb, depth, alpha).
* :func:`rasterize_nr`: drop-in for :func:`~.rasterize.rasterize` (same arguments, square images only):
  NR's CUDA face-index kernel, the same camera, returned as our :class:`~.rasterize.Fragments`.

Conventions. Our vertices are in output pixels (x right, y down, pixel (i, j) centred at (j + 0.5, i + 0.5)),
depth smaller = nearer. NR samples pixel j of an S-wide image at NDC (2j + 1 - S) / S with y up, then flips
the rows, so ``x_ndc = 2x / S - 1`` and ``y_ndc = 1 - 2y / S`` put NR's sample points exactly on our pixel
centres (:func:`pixel_to_ndc`). The seed's own formula (``x / (S/2) - 1``, ``(S - 1 - y) / (S/2) - 1``, on
coordinates whose pixel centres are integers, i.e. ours - 0.5) draws everything half a pixel left and half a
pixel down of that; ``seed_offsets=True`` reproduces it. Depth is normalised per mesh to [-1, 1], nearest
-1, as the seed does; the ``look`` camera then adds 2.732.

Differences from the built-in rasterizer (measured numbers: docs/neural_renderer.md): NR tests coverage in
float32 NDC without snapping and counts a pixel centre exactly on an edge as inside both triangles (ours:
1/256-pixel fixed point, top-left rule), so triangle ids differ on a small fraction of pixels whose
centres lie within ~1/500 pixel of an edge; its z-buffer compares depth interpolated harmonically (it
assumes a perspective camera), ours linearly, which only matters where surfaces intersect or nearly touch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import ModuleType

import torch
from torch import Tensor

from ..config import RENDER_BACKENDS as BACKENDS
from .rasterize import Fragments, rasterize

__all__ = [
    "BACKENDS",
    "neural_renderer_available",
    "pixel_to_ndc",
    "rasterize_nr",
    "rasterizer_for",
    "render_seed_nr",
    "resolve_backend",
    "unavailable_reason",
]

EYE_DISTANCE = 2.732  # NR's look-mode eye is (0, 0, -(1 / tan(30 deg) + 1)): camera z = z + 2.732
NEAR, FAR = 0.1, 100.0  # NR defaults; normalised depths land in [1.732, 3.732]
TEXTURE_SIZE = 2  # the seed's NR texture: (B, F, 2, 2, 2, 3), all 8 corners one colour


@functools.cache
def unavailable_reason() -> str | None:
    """Why neural_renderer cannot be used here (None when it can). Imports it on the first call only."""
    if not torch.cuda.is_available():
        return "CUDA is not available (neural_renderer is CUDA-only)"
    try:
        import neural_renderer  # noqa: F401
        import neural_renderer.cuda.rasterize  # noqa: F401
    except (ImportError, OSError) as exc:  # not installed, or an extension built for another torch / CUDA
        return f"neural_renderer cannot be imported ({type(exc).__name__}: {exc}); see docs/neural_renderer.md"
    return None


def neural_renderer_available() -> bool:
    """True when neural_renderer and its CUDA extensions import and a CUDA device is present; never raises."""
    return unavailable_reason() is None


def resolve_backend(name: str, device: torch.device | str) -> str:
    """'builtin' or 'neural_renderer' for a configured ``name`` (builtin | neural_renderer | auto) on ``device``.

    ``auto`` takes neural_renderer when it is usable and the device is CUDA. Raises ValueError (message
    starting with ``render_backend``) for an unknown name or an unusable explicit neural_renderer request.
    """
    if name not in BACKENDS:
        raise ValueError(f"render_backend {name!r} is not one of {', '.join(BACKENDS)}")
    if name == "builtin":
        return name
    device = torch.device(device)
    reason = unavailable_reason() if device.type == "cuda" else f"it is CUDA-only and the device is {device}"
    if name == "auto":
        return "builtin" if reason else "neural_renderer"
    if reason:
        raise ValueError(f"render_backend 'neural_renderer' cannot be used: {reason}")
    return name


def rasterizer_for(backend: str) -> Callable[..., Fragments]:
    """The rasterize function of a resolved backend ('builtin' or 'neural_renderer'); same signature."""
    if backend == "builtin":
        return rasterize
    if backend == "neural_renderer":
        return rasterize_nr
    raise ValueError(f"render_backend {backend!r} is not 'builtin' or 'neural_renderer'")


def pixel_to_ndc(vertices: Tensor, size: int, *, seed_offsets: bool = False) -> Tensor:
    """Our pixel-space vertices (B, V, 3) -> NR's normalised coordinates (B, V, 3), float32.

    x, y as the module docstring says (``seed_offsets``: the seed's half-pixel offsets); z is the depth
    normalised per mesh to [-1, 1] with the nearest vertex at -1 (spec §6.4). Non-finite vertices are
    ignored by the normalisation and come out NaN, which NR never draws.
    """
    if vertices.dim() != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be (B, V, 3), got {tuple(vertices.shape)}")
    v = vertices.float()
    x, y, d = v.unbind(-1)
    if seed_offsets:
        x, y = x - 0.5, y + 0.5
    finite = torch.isfinite(v).all(-1)
    lo = torch.where(finite, d, torch.inf).amin(dim=1, keepdim=True)
    hi = torch.where(finite, d, -torch.inf).amax(dim=1, keepdim=True)
    span = (hi - lo).clamp_min(torch.finfo(torch.float32).tiny)
    z = (d - lo) / span * 2.0 - 1.0
    ndc = torch.stack([x * (2.0 / size) - 1.0, 1.0 - y * (2.0 / size), z], dim=-1)
    return torch.where(finite[..., None], ndc, torch.nan)


def _import_nr() -> ModuleType:
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    import neural_renderer

    return neural_renderer


def _check_inputs(vertices: Tensor, triangles: Tensor, height: int, width: int) -> None:
    if vertices.dim() != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be (B, V, 3), got {tuple(vertices.shape)}")
    if triangles.dim() != 2 or triangles.shape[-1] != 3:
        raise ValueError(f"triangles must be (F, 3), got {tuple(triangles.shape)}")
    if height != width or height < 0:
        raise ValueError(f"neural_renderer renders square images only, got {height} x {width}")
    if vertices.device.type != "cuda":
        raise ValueError(f"neural_renderer is CUDA-only; vertices are on {vertices.device}")


def _nr_textures(colours: Tensor, triangles: Tensor, per_vertex: bool) -> Tensor:
    """(B, F, 3) face colours, (B, V, 3) vertex colours (per_vertex) or (B, F, T, T, T, 3) -> NR textures."""
    if colours.dim() == 6:
        return colours.float().contiguous()
    if per_vertex:  # the seed's per-face colour: the mean of the three vertex colours (spec §6.2)
        colours = colours[:, triangles.long()].mean(dim=2)
    if colours.dim() != 3 or colours.shape[1] != triangles.shape[0] or colours.shape[-1] != 3:
        raise ValueError(f"colours must be (B, F, 3), (B, V, 3) with per_vertex, or (B, F, T, T, T, 3); "
                         f"got {tuple(colours.shape)} for {triangles.shape[0]} triangles")
    t = TEXTURE_SIZE
    return colours.float()[:, :, None, None, None, :].expand(-1, -1, t, t, t, -1).contiguous()


def render_seed_nr(
    vertices_px: Tensor,
    triangles: Tensor,
    colours: Tensor,
    size: int,
    *,
    per_vertex: bool = False,
    seed_offsets: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """The seed's NR render of meshes (B, V, 3) in our pixel convention with shared triangles (F, 3).

    ``colours``: per-face (B, F, 3) in [0, 1], per-vertex (B, V, 3) with ``per_vertex``, or an NR texture
    (B, F, T, T, T, 3). Returns NR's outputs: rgb (B, 3, S, S) on black, depth (B, S, S) (camera z, far =
    100 on the background, pooled across silhouettes), alpha (B, S, S) fractional on edges.
    """
    _check_inputs(vertices_px, triangles, size, size)
    nr = _import_nr()
    batch, device = vertices_px.shape[0], vertices_px.device
    tris = triangles.to(device=device, dtype=torch.int64)
    textures = _nr_textures(colours.to(device), tris, per_vertex)
    faces = tris.to(torch.int32)[None].expand(batch, -1, -1).contiguous()
    ndc = pixel_to_ndc(vertices_px, size, seed_offsets=seed_offsets)
    with torch.cuda.device(device):  # NR allocates with torch.cuda.FloatTensor: the current device
        renderer = nr.Renderer(camera_mode="look", image_size=size, perspective=False,
                               light_intensity_ambient=1.0, light_intensity_directional=0.0)
        rgb, depth, alpha = renderer(ndc, faces, textures)
    return rgb, depth, alpha


def rasterize_nr(
    vertices: Tensor, triangles: Tensor, height: int, width: int, *, cull_backfaces: bool = False
) -> Fragments:
    """:func:`~.rasterize.rasterize` on NR's CUDA kernel (``forward_face_index_map``); square images only.

    Triangle ids, barycentrics (NR's screen-space weights, clamped to [0, 1] and renormalised) and depth
    (our units, interpolated linearly from the vertices' depth) as the built-in rasterizer returns them.
    Without ``cull_backfaces`` every triangle is drawn twice, once per winding (NR's fill_back), as the
    seed does; NR keeps the counter-clockwise-on-screen ones (y down), the same front faces as ours.
    """
    _check_inputs(vertices, triangles, height, width)
    _import_nr()
    from neural_renderer.cuda import rasterize as nr_cuda

    batch, size, device = vertices.shape[0], int(height), vertices.device
    tris = triangles.to(device=device, dtype=torch.int64)
    num_tris = tris.shape[0]
    if batch * size * num_tris == 0:  # NR would launch empty grids
        return Fragments(
            torch.full((batch, size, size), -1, dtype=torch.int64, device=device),
            torch.zeros((batch, size, size, 3), device=device),
            torch.full((batch, size, size), torch.inf, device=device),
        )
    camera = pixel_to_ndc(vertices, size) + torch.tensor([0.0, 0.0, EYE_DISTANCE], device=device)
    drawn = tris if cull_backfaces else torch.cat([tris, tris.flip(1)])
    faces = camera[:, drawn].contiguous()  # (B, F', 3 corners, xyz)
    face_index = torch.full((batch, size, size), -1, dtype=torch.int32, device=device)
    weights = torch.zeros((batch, size, size, 3), device=device)
    nr_depth = torch.full((batch, size, size), FAR, device=device)
    with torch.cuda.device(device):
        nr_cuda.forward_face_index_map(faces, face_index, weights, nr_depth, torch.zeros(1, device=device),
                                       torch.zeros_like(faces), size, NEAR, FAR, 0, 0, 0)
    # NR's row 0 is NDC y = -1, the bottom: flip to our top-down rows.
    face_index = face_index.flip(1).long()
    weights = weights.flip(1)
    back = face_index >= num_tris  # a fill_back copy lists its corners in reverse order
    tri_id = torch.where(back, face_index - num_tris, face_index)
    weights = torch.where(back[..., None], weights.flip(-1), weights)
    covered = tri_id >= 0
    corners = tris[tri_id.clamp(min=0)].view(batch, -1)  # (B, S * S * 3) vertex ids
    corner_depth = torch.gather(vertices[..., 2].float(), 1, corners).view(batch, size, size, 3)
    depth = torch.where(covered, (weights * corner_depth).sum(-1), torch.inf)
    planar = weights.permute(3, 0, 1, 2).contiguous()  # the built-in's layout: one plane per weight
    return Fragments(tri_id, planar.permute(1, 2, 3, 0), depth)
