"""Per-pixel interpolation of vertex attributes with the rasterizer's barycentrics (nvdiffrast ``interpolate``)."""

from __future__ import annotations

import torch
from torch import Tensor

from .rasterize import Fragments, gather_columns

__all__ = ["interpolate"]

# Floats gathered per chunk (corner table and per-pixel values): CPU temporaries stay in cache and below
# the allocator's mmap threshold; on CUDA fewer, bigger launches.
_CPU_CHUNK_FLOATS = 1 << 20
_CUDA_CHUNK_FLOATS = 1 << 28


def interpolate(attributes: Tensor, fragments: Fragments, triangles: Tensor) -> Tensor:
    """Interpolate ``attributes`` (B, V, C), or (V, C) shared by the batch, over the visible triangles.

    Returns (B, H, W, C) in the attributes' floating dtype: sum_k barycentric_k * attribute[corner k] at
    covered pixels, 0 at empty ones; ``triangles`` is the (F, 3) list that was rasterized. The result is a
    view of planar (C, B, H, W) storage: every channel is one contiguous plane, which is what makes the
    weighted sum (and per-channel work downstream) fast on CPU; ``.contiguous()`` packs it.
    """
    tri_id = fragments.triangle_id
    batch, height, width = tri_id.shape
    device = tri_id.device
    if attributes.dim() == 2:
        attributes = attributes.unsqueeze(0).expand(batch, -1, -1)
    if attributes.dim() != 3 or attributes.shape[0] != batch:
        raise ValueError(f"attributes must be (B, V, C) with B={batch} or (V, C), got {tuple(attributes.shape)}")
    if not attributes.is_floating_point():
        attributes = attributes.float()
    attributes = attributes.to(device)
    dtype, channels = attributes.dtype, attributes.shape[-1]
    tris = triangles.to(device=device, dtype=torch.int64)
    num_tris = tris.shape[0]
    if batch * height * width == 0 or channels == 0 or num_tris == 0:
        return torch.zeros((channels, batch, height, width), dtype=dtype, device=device).permute(1, 2, 3, 0)
    out = torch.empty((channels, batch, height, width), dtype=dtype, device=device)  # every row is written

    budget = _CPU_CHUNK_FLOATS if device.type == "cpu" else _CUDA_CHUNK_FLOATS
    per_pixel = 3 * channels
    images_per_group = max(1, budget // ((num_tris + 1) * per_pixel))
    rows_per_chunk = max(1, budget // (width * per_pixel))
    weights = fragments.barycentrics.to(dtype)
    weight_rows = [weights[..., k].reshape(-1, width) for k in range(3)]  # views for planar storage
    id_rows = tri_id.view(-1, width)
    out_rows = out.view(channels, -1, width)
    for b0 in range(0, batch, images_per_group):
        b1 = min(batch, b0 + images_per_group)
        # Corner table (3 * C, G * (F + 1)): column b * (F + 1) + 1 + f holds the corner attributes of
        # triangle f of image b0 + b; column b * (F + 1) is zero, where empty pixels (f = -1) land.
        corners = torch.zeros((3, channels, b1 - b0, num_tris + 1), dtype=dtype, device=device)
        corners[:, :, :, 1:] = attributes[b0:b1][:, tris].permute(2, 3, 0, 1)
        corners = corners.view(per_pixel, -1)
        for r0 in range(b0 * height, b1 * height, rows_per_chunk):
            r1 = min(b1 * height, r0 + rows_per_chunk)
            first = torch.arange(r0, r1, device=device).div_(height, rounding_mode="floor").sub_(b0)
            index = id_rows[r0:r1] + first.mul_(num_tris + 1).add_(1)[:, None]
            g = gather_columns(corners, index.view(-1)).view(3, channels, r1 - r0, width)
            res = out_rows[:, r0:r1]
            torch.mul(g[0], weight_rows[0][r0:r1], out=res)
            res.addcmul_(g[1], weight_rows[1][r0:r1])
            res.addcmul_(g[2], weight_rows[2][r0:r1])
    return out.permute(1, 2, 3, 0)
