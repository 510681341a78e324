"""Batched rasterization in pure PyTorch (CPU and CUDA), modelled on nvdiffrast's four primitives.

* :func:`rasterize` (B, V, 3) pixel-space vertices + shared (F, 3) triangles -> :class:`Fragments`
  (triangle id, barycentrics, depth per pixel; exact top-left coverage, nearest depth wins).
* :func:`interpolate` vertex attributes -> per-pixel values.
* :func:`texture` sample images at per-pixel texel coordinates (``grid_sample``).
* :func:`antialias` / :func:`downsample` / :func:`coverage`: supersampling anti-aliasing (rasterize at
  ``ss`` x the resolution, shade, box-filter; fractional alpha on edges).

Plain functions, tensors in and out, batch first, on the inputs' device; no state.
"""

from .antialias import antialias, coverage, downsample
from .interpolate import interpolate
from .rasterize import Fragments, rasterize
from .texture import texture

__all__ = ["Fragments", "antialias", "coverage", "downsample", "interpolate", "rasterize", "texture"]
