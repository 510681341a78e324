#!/usr/bin/env python3
"""Benchmark the render primitives (rasterize, interpolate, texture, antialias) on a synthetic face-like mesh.

The mesh is a bulged grid (a height field like a face mask) of about ``--triangles`` triangles whose
projection fills ~40% of the ``--size`` frame, seen from 8 yaws in [-40, 40] degrees (batch item k gets
yaw k mod 8, so batch 32 = 4 faces x 8 views), optionally in front of a frame-filling background grid
(``--background-cells``: the head-proxy / background layer of the synthesizer). Every view is rendered
at ``--ss`` x the size, shaded with 6 interpolated channels (like the synthesizer's source + mirror
coordinates), textured from a 512^2 texture and box-filtered.

Example::

    python bench/bench_render.py --device cpu --threads 2 --batch 1 8 32 --triangles 852 20000 100000
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch

from opendr_face_synth.core.render import antialias, interpolate, rasterize, texture

VIEWS = 8
CHANNELS = 6


def bulged_grid(num_triangles: int, size: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A face-mask-like height field: ~num_triangles triangles over a square of 40% of the frame area."""
    cells_y = max(1, round(math.sqrt(num_triangles / 2)))
    cells_x = max(1, round(num_triangles / (2 * cells_y)))
    half = 0.5 * math.sqrt(0.4) * size
    gy, gx = torch.meshgrid(torch.linspace(-1, 1, cells_y + 1), torch.linspace(-1, 1, cells_x + 1), indexing="ij")
    bulge = torch.sqrt((1.6 - gx**2 - gy**2).clamp_min(0.0))  # nearer (smaller depth) in the middle
    vertices = torch.stack([gx * half, gy * half, -bulge * half], dim=-1).reshape(-1, 3)
    return vertices, _grid_triangles(cells_y, cells_x)


def _grid_triangles(cells_y: int, cells_x: int) -> torch.Tensor:
    """Two counter-clockwise-on-screen triangles per cell of a (cells_y + 1) x (cells_x + 1) vertex grid."""
    idx = torch.arange((cells_y + 1) * (cells_x + 1)).reshape(cells_y + 1, cells_x + 1)
    a, b = idx[:-1, :-1].reshape(-1), idx[:-1, 1:].reshape(-1)
    c, d = idx[1:, :-1].reshape(-1), idx[1:, 1:].reshape(-1)
    return torch.cat([torch.stack([a, c, b], 1), torch.stack([b, c, d], 1)])


def background_grid(cells: int, size: float, depth: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A flat grid covering 1.35x the frame, centred, at ``depth``."""
    g = torch.linspace(-0.675 * size, 0.675 * size, cells + 1)
    gy, gx = torch.meshgrid(g, g, indexing="ij")
    vertices = torch.stack([gx, gy, torch.full_like(gx, depth)], dim=-1).reshape(-1, 3)
    return vertices, _grid_triangles(cells, cells)


def build_batch(args: argparse.Namespace, num_triangles: int, batch: int, device: torch.device):
    size = float(args.size)
    verts, tris = bulged_grid(num_triangles, size)
    if args.background_cells > 0:
        bg_v, bg_t = background_grid(args.background_cells, size, depth=2.0 * size)
        tris = torch.cat([tris, bg_t + verts.shape[0]])
        verts = torch.cat([verts, bg_v])
    yaws = torch.tensor([math.radians(-40 + 80 * (k % VIEWS) / (VIEWS - 1)) for k in range(batch)])
    cos, sin = torch.cos(yaws)[:, None], torch.sin(yaws)[:, None]
    x, y, z = verts[:, 0], verts[:, 1], verts[:, 2]
    moves = z[None] < size  # the background layer stays put
    xr = torch.where(moves, cos * x + sin * z, x)
    zr = torch.where(moves, -sin * x + cos * z, z)
    screen = torch.stack([xr + size / 2, y.expand_as(xr) + size / 2, zr], dim=-1) * torch.tensor([args.ss, args.ss, 1])
    # Attributes: texture coordinates (texel units of a 512^2 texture) + 4 more channels.
    uv = (verts[:, :2] / (1.35 * size) + 0.5) * 512.0
    attrs = torch.cat([uv, verts[:, 2:3], verts], dim=1)[None].expand(batch, -1, -1).contiguous()
    tex = torch.rand(1, 3, 512, 512)
    return screen.to(device), tris.to(device), attrs.to(device), tex.to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(args: argparse.Namespace, num_triangles: int, batch: int, device: torch.device) -> dict:
    screen, tris, attrs, tex = build_batch(args, num_triangles, batch, device)
    hr = args.size * args.ss
    times: dict[str, list[float]] = {"rasterize": [], "interpolate": [], "texture": [], "antialias": []}
    covered = 0.0
    for it in range(args.warmup + args.repeats):
        stamps = []
        _sync(device)
        stamps.append(time.perf_counter())
        frags = rasterize(screen, tris, hr, hr)
        _sync(device)
        stamps.append(time.perf_counter())
        shade = interpolate(attrs, frags, tris)
        _sync(device)
        stamps.append(time.perf_counter())
        colour = texture(tex, shade[..., 0:2])
        _sync(device)
        stamps.append(time.perf_counter())
        out, alpha = antialias(colour, frags, args.ss)
        _sync(device)
        stamps.append(time.perf_counter())
        if it >= args.warmup:
            for key, t0, t1 in zip(times, stamps[:-1], stamps[1:], strict=True):
                times[key].append(t1 - t0)
        covered = float(alpha.mean())
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    total = sum(med.values())
    return {
        "device": str(device), "threads": torch.get_num_threads(), "batch": batch,
        "triangles": int(tris.shape[0]), "size": args.size, "ss": args.ss, "coverage": round(covered, 3),
        "median_ms": {k: round(v, 3) for k, v in med.items()}, "total_ms": round(total, 3),
        "ms_per_view": round(total / batch, 3), "views_per_s": round(1e3 * batch / total, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--triangles", type=int, nargs="+", default=[852, 20000, 100000])
    parser.add_argument("--background-cells", type=int, default=0,
                        help="add a frame-filling background grid of 2*N^2 triangles")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--ss", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default=None, help="append one JSON line per case to this file")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"{'tris':>7} {'batch':>5} {'rast':>8} {'interp':>8} {'tex':>8} {'aa':>8} {'ms/view':>8} {'views/s':>8}")
    with torch.no_grad():
        for num_triangles in args.triangles:
            for batch in args.batch:
                res = run_case(args, num_triangles, batch, device)
                m = res["median_ms"]
                print(f"{res['triangles']:>7} {batch:>5} {m['rasterize']:>8.2f} {m['interpolate']:>8.2f} "
                      f"{m['texture']:>8.2f} {m['antialias']:>8.2f} {res['ms_per_view']:>8.2f} "
                      f"{res['views_per_s']:>8.1f}", flush=True)
                if args.json:
                    with open(args.json, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
