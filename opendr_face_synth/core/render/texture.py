"""Texture lookup at per-pixel coordinates (nvdiffrast ``texture``), on ``grid_sample``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["texture"]

_MODES = ("bilinear", "nearest", "bicubic")
_PADDINGS = ("border", "zeros", "reflection")


def texture(
    images: Tensor, uv_px: Tensor, *, mode: str = "bilinear", padding: str = "border"
) -> Tensor:
    """Sample ``images`` (B or 1, C, Ht, Wt) at ``uv_px`` (B, H, W, 2); returns (B, H, W, C).

    ``uv_px`` is in the texture's pixel coordinates with the image convention (x right, y down, the
    centre of texel (i, j) at (j + 0.5, i + 0.5)), so sampling at a texel centre returns that texel
    (exactly for power-of-two sizes; other sizes within float32 rounding of ``grid_sample``).
    A batch-1 texture is shared by every view (no copy). The result is a channels-last view of
    ``grid_sample``'s (B, C, H, W) output, to avoid a full-size copy; call ``.contiguous()`` if needed.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if padding not in _PADDINGS:
        raise ValueError(f"padding must be one of {_PADDINGS}, got {padding!r}")
    if images.dim() != 4 or uv_px.dim() != 4 or uv_px.shape[-1] != 2:
        raise ValueError(f"need images (B, C, Ht, Wt) and uv_px (B, H, W, 2), got {tuple(images.shape)}, "
                         f"{tuple(uv_px.shape)}")
    batch = uv_px.shape[0]
    if images.shape[0] == 1 and batch != 1:
        images = images.expand(batch, -1, -1, -1)
    elif images.shape[0] != batch:
        raise ValueError(f"images batch {images.shape[0]} is neither 1 nor the uv batch {batch}")
    if not images.is_floating_point():
        images = images.float()
    height_t, width_t = images.shape[-2:]
    # align_corners=False maps -1 / +1 to the outer texel edges, i.e. pixel coordinate 0 and W.
    half = torch.tensor([width_t / 2.0, height_t / 2.0], dtype=images.dtype, device=images.device)
    grid = uv_px.to(images.dtype).div(half).sub_(1.0)
    out = F.grid_sample(images, grid, mode=mode, padding_mode=padding, align_corners=False)
    return out.permute(0, 2, 3, 1)
