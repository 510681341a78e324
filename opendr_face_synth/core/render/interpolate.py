"""Per-pixel interpolation of vertex attributes with the rasterizer's barycentrics (nvdiffrast ``interpolate``)."""

from __future__ import annotations

import torch
from torch import Tensor

from .rasterize import Fragments

__all__ = ["interpolate"]

# Bound on the floats gathered per chunk (corner table and per-pixel rows): keeps CPU temporaries in cache.
_CPU_CHUNK_FLOATS = 1 << 21
_CUDA_CHUNK_FLOATS = 1 << 27


def interpolate(attributes: Tensor, fragments: Fragments, triangles: Tensor) -> Tensor:
    """Interpolate ``attributes`` (B, V, C) or (V, C) (shared by the batch) over the visible triangles.

    Returns (B, H, W, C) in the attributes' floating dtype: sum_k barycentric_k * attribute[corner k] at
    covered pixels, 0 at empty ones. ``triangles`` must be the (F, 3) list that was rasterized.
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
    channels = attributes.shape[-1]
    tris = triangles.to(device=device, dtype=torch.int64)
    num_tris = tris.shape[0]
    out = torch.zeros((batch, height, width, channels), dtype=attributes.dtype, device=device)
    if batch * height * width == 0 or channels == 0 or num_tris == 0:
        return out

    budget = _CPU_CHUNK_FLOATS if device.type == "cpu" else _CUDA_CHUNK_FLOATS
    per_corner_row = 3 * channels
    images_per_group = max(1, budget // ((num_tris + 1) * per_corner_row))
    rows_per_chunk = max(1, budget // (width * per_corner_row))
    bary_rows = fragments.barycentrics.view(-1, width, 3)
    id_rows = tri_id.view(-1, width)
    out_rows = out.view(-1, width, channels)
    for b0 in range(0, batch, images_per_group):
        b1 = min(batch, b0 + images_per_group)
        # Corner table: row 1 + b * (F + 1) + f holds the three corners' attributes of triangle f of
        # image b0 + b; row b * (F + 1) is zero, so the index of an empty pixel (f = -1) lands on it.
        corners = torch.zeros((b1 - b0, num_tris + 1, 3, channels), dtype=attributes.dtype, device=device)
        corners[:, 1:] = attributes[b0:b1][:, tris]
        corners = corners.view(-1, per_corner_row)
        for r0 in range(b0 * height, b1 * height, rows_per_chunk):
            r1 = min(b1 * height, r0 + rows_per_chunk)
            image = torch.arange(r0, r1, device=device) // height - b0
            index = id_rows[r0:r1] + image.mul_(num_tris + 1).add_(1)[:, None]
            gathered = corners.index_select(0, index.view(-1)).view(r1 - r0, width, 3, channels)
            weights = bary_rows[r0:r1].to(attributes.dtype)
            res = out_rows[r0:r1]
            torch.mul(gathered[:, :, 0], weights[..., 0:1], out=res)
            res.addcmul_(gathered[:, :, 1], weights[..., 1:2])
            res.addcmul_(gathered[:, :, 2], weights[..., 2:3])
    return out
