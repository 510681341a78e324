"""Seed-style flat texture for the Rotate-and-Render generator (seed-spec §6.2, §6.5).

The generator learned to repair renders made a particular way: every vertex takes the colour of the pixel it
falls on in the aligned source crop (no visibility test, so hidden vertices take the colour of what covers
them), every triangle is drawn in the mean colour of its three vertices, and the colours along the face's
silhouette are replaced by the mean skin colour ("boundary erosion"). ``seed_flat_colors`` reproduces that
and returns one colour per triangle; the renderer draws them at the rotated pose.

The seed's erosion is random at test time (first blurred row r0 ~ U{50..99}, threshold tau ~ U(0.8, 0.99),
a new draw per image). Here it is deterministic: r0 = 75 and tau = 0.895, the middles of those ranges, with
the test-time 15 x 15 box filter; rows scale with the image size (the seed's are for 256).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

ERODE_KERNEL = 15  # the seed's test-time box filter (its --erode_kernel option is ignored at test time)
ERODE_FIRST_ROW = 75  # seed: random in [50, 99] for a 256 image
ERODE_BOTTOM_MARGIN = 10  # seed: rows r0 .. S - 11 are blurred
ERODE_THRESHOLD = 0.895  # seed: random in U(0.8, 0.99)
EMPTY_FILL = 0.5  # fill colour when nothing survives the erosion
SUPERSAMPLE = 2  # the seed's renderer anti-aliases at 2x and averages 2 x 2 blocks


def vertex_colors(vertices: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Colour (B, V, C) of the pixel each vertex (B, V, >=2; our pixel convention) falls on, clamped to the
    image (B, C, H, W). The seed rounds its index coordinates, which is the containing pixel here."""
    _, channels, height, width = image.shape
    x = vertices[..., 0].floor().long().clamp(0, width - 1)
    y = vertices[..., 1].floor().long().clamp(0, height - 1)
    flat = image.reshape(image.shape[0], channels, -1)
    idx = (y * width + x)[:, None, :].expand(-1, channels, -1)
    return torch.gather(flat, 2, idx).transpose(1, 2)


def triangle_colors(vertex_rgb: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """Flat colour per triangle (B, F, C): the mean of its three vertex colours."""
    tri = triangles.to(device=vertex_rgb.device, dtype=torch.long)
    return vertex_rgb[:, tri].mean(dim=2)


def erode_mask(
    alpha: torch.Tensor, kernel: int = ERODE_KERNEL, first_row: int | None = None, threshold: float = ERODE_THRESHOLD
) -> torch.Tensor:
    """The seed's erosion of a coverage map (B, 1, H, W): box-blur (zero padding) on rows first_row .. H - 11
    only, keep the raw coverage on the other rows, then binarise at ``threshold``."""
    height = alpha.shape[-2]
    if first_row is None:
        first_row = round(ERODE_FIRST_ROW * height / 256)
    last_row = height - 1 - round(ERODE_BOTTOM_MARGIN * height / 256)
    blurred = F.avg_pool2d(alpha, kernel, stride=1, padding=kernel // 2, count_include_pad=True)
    rows = torch.arange(height, device=alpha.device).view(1, 1, -1, 1)
    use_blur = (rows >= first_row) & (rows <= last_row)
    return torch.where(use_blur, blurred, alpha) > threshold


def fill_outside(render: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Outside ``mask`` (B, 1, H, W), the per-image per-channel mean colour of the render inside it."""
    weight = mask.to(render.dtype)
    count = weight.sum(dim=(2, 3))
    mean = (render * weight).sum(dim=(2, 3)) / count.clamp(min=1)
    mean = torch.where(count > 0, mean, torch.full_like(mean, EMPTY_FILL))
    return torch.where(mask, render, mean[:, :, None, None])


def render_flat(
    vertices: torch.Tensor,
    triangles: torch.Tensor,
    face_rgb: torch.Tensor,
    height: int,
    width: int,
    rasterize: Callable | None = None,
    supersample: int = SUPERSAMPLE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat-colour render (B, C, H, W) on black and coverage alpha (B, 1, H, W), anti-aliased like the seed's
    renderer (rasterised at ``supersample`` x the size, then block-averaged)."""
    if rasterize is None:
        from ..render.rasterize import rasterize
    scale = torch.tensor([supersample, supersample, 1.0], device=vertices.device, dtype=vertices.dtype)
    verts = vertices * scale
    # Depth is only compared; keep it positive (the z-buffer sorts depths by their float bit patterns).
    verts = torch.cat([verts[..., :2], verts[..., 2:] - verts[..., 2:].amin(dim=1, keepdim=True) + 1], dim=-1)
    frags = rasterize(verts, triangles, height * supersample, width * supersample)
    tid = frags.triangle_id
    covered = tid >= 0
    colors = torch.gather(face_rgb, 1, tid.clamp(min=0).reshape(tid.shape[0], -1, 1).expand(-1, -1, face_rgb.shape[-1]))
    colors = colors.reshape(*tid.shape, -1).permute(0, 3, 1, 2) * covered[:, None]
    rgb = F.avg_pool2d(colors, supersample)
    alpha = F.avg_pool2d(covered[:, None].to(rgb.dtype), supersample)
    return rgb, alpha


def seed_flat_colors(
    vertices: torch.Tensor,
    triangles: torch.Tensor,
    image: torch.Tensor,
    *,
    erode: bool = True,
    rasterize: Callable | None = None,
    kernel: int = ERODE_KERNEL,
    threshold: float = ERODE_THRESHOLD,
) -> torch.Tensor:
    """Per-triangle colours (B, F, C) of the seed's texture for meshes at their source pose.

    ``vertices`` (B, V, 3) in the output image's pixels (our convention, depth away from the camera),
    ``triangles`` (F, 3), ``image`` (B, C, H, W) the aligned source crop in [0, 1]. Without ``erode`` these
    are the plain per-triangle means of §6.2; with it, the mesh is rendered flat, its coverage eroded, the
    render filled outside with the mean colour and the vertex colours sampled again from it (§6.5).
    ``rasterize`` defaults to core/render's rasterizer (same signature).
    """
    image = image.to(vertices.dtype)
    faces = triangle_colors(vertex_colors(vertices, image), triangles)
    if not erode:
        return faces
    height, width = image.shape[-2:]
    render, alpha = render_flat(vertices, triangles, faces, height, width, rasterize)
    filled = fill_outside(render, erode_mask(alpha, kernel, threshold=threshold))
    return triangle_colors(vertex_colors(vertices, filled), triangles)
