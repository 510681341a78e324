"""The refiner interface: improves rendered views (the seed's generator is one refiner)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass
class RefineInput:
    """A batch of rendered views on the device, all tensors with batch size B.

    images: (B, 3, S, S) float in [0, 1], RGB. alpha: (B, 1, S, S) coverage of the rendered face.
    landmarks68: (B, 68, 2) rotated iBUG-68 points in output pixels, or None when the fitter has none.
    source_yaw_deg: (B,) the fitted yaw of each view's source face (seed convention, degrees).
    flat_images: (B, 3, S, S) seed-style flat-colour renders when the refiner asked for them, else None.
    """

    images: torch.Tensor
    alpha: torch.Tensor
    landmarks68: torch.Tensor | None
    source_yaw_deg: torch.Tensor
    flat_images: torch.Tensor | None = None


class Refiner(Protocol):
    name: str
    wants_flat_render: bool  # True: the synthesizer also renders the seed's flat per-triangle colours

    def refine(self, batch: RefineInput) -> torch.Tensor:
        """Return refined images (B, 3, S, S) in [0, 1] on the same device."""
        ...
