#!/usr/bin/env python3
"""The built-in rasterizer against neural_renderer (the seed's renderer), in one run, on one CUDA device.

Mesh: the bulged grid of bench/bench_render.py at the seed's size (53,361 vertices, 105,800 triangles; the
BFM has 53,215 / 105,840), seen from 8 yaws in [-40, 40] degrees, flat per-face colours that vary smoothly,
rendered at 256 x 256 with the seed's anti-aliasing (2x supersampling, 2 x 2 average). Per batch size:

* ``builtin``: ``seed_render.render_flat`` on our rasterizer (rgb + alpha), what the pipeline runs;
* ``nr_seed``: ``render_seed_nr``, the seed's ``nr.Renderer`` call (rgb + depth + alpha);
* ``nr_rasterizer``: ``render_flat`` on ``rasterize_nr`` (NR's face-index kernel behind our interface).

Medians over ``--repeats`` after ``--warmup`` calls, with CUDA synchronisation (fewer when one call is
slow, see ``--case-seconds``). Also reports how far NR's render is from ours (alpha, rgb, triangle ids) on
the first 8 views.
One JSON line per batch size on stdout; ``--json FILE`` appends them to FILE too.

Example::

    PYTHONPATH=/tmp/site:$PWD python3 bench/bench_nr_vs_builtin.py --json nr_bench.jsonl
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import time
from collections.abc import Callable

import torch
from bench_render import bulged_grid

from opendr_face_synth.core.refine.seed_render import render_flat
from opendr_face_synth.core.render import rasterize
from opendr_face_synth.core.render.neural_renderer_backend import (
    rasterize_nr,
    render_seed_nr,
    unavailable_reason,
)

VIEWS = 8
BFM_TRIANGLES = 105_840


def views(num_triangles: int, size: int, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, V, 3) pixel-space vertices (depth: smaller is nearer), item k at yaw -40 + 80 (k mod 8) / 7 degrees."""
    verts, tris = bulged_grid(num_triangles, float(size))
    yaws = torch.tensor([math.radians(-40 + 80 * (k % VIEWS) / (VIEWS - 1)) for k in range(batch)])
    cos, sin = torch.cos(yaws)[:, None], torch.sin(yaws)[:, None]
    x, y, z = verts.unbind(-1)
    screen = torch.stack([cos * x + sin * z + size / 2, y.expand(batch, -1) + size / 2, -sin * x + cos * z], -1)
    return screen.to(device), tris.to(device)


def face_colours(vertices: torch.Tensor, triangles: torch.Tensor, size: int) -> torch.Tensor:
    centre = vertices[:, triangles].mean(dim=2) / size
    u, v = centre[..., 0], centre[..., 1]
    return torch.stack([u, v, 0.5 + 0.4 * torch.sin(3.0 * u + 2.0 * v)], dim=-1).clamp(0.0, 1.0)


def timed(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int, budget_s: float) -> float:
    """Median milliseconds of ``fn`` after ``warmup`` calls; stops repeating once ``budget_s`` is spent."""
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
        torch.cuda.synchronize(device)
        if time.perf_counter() - start > budget_s / 3:  # a call this slow is warm after one
            break
    times: list[float] = []
    while len(times) < repeats and sum(times) < budget_s:
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def agreement(verts: torch.Tensor, tris: torch.Tensor, colours: torch.Tensor, size: int) -> dict:
    """How far the seed's NR render is from ours, on the batch's first 8 views (every yaw once)."""
    verts, colours = verts[:VIEWS], colours[:VIEWS]
    rgb_n, _, alpha_n = render_seed_nr(verts, tris, colours, size)
    rgb_b, alpha_b = render_flat(verts, tris, colours, size, size)
    alpha_diff = (alpha_n - alpha_b[:, 0]).abs()
    rgb_diff = (rgb_n - rgb_b).abs().amax(1)
    hr = verts * torch.tensor([2.0, 2.0, 1.0], device=verts.device)
    ours, theirs = rasterize(hr, tris, 2 * size, 2 * size), rasterize_nr(hr, tris, 2 * size, 2 * size)
    same = (ours.triangle_id == theirs.triangle_id) & ours.mask
    return {
        "alpha_mean_abs": float(alpha_diff.mean()),
        "alpha_max_abs": float(alpha_diff.max()),
        "rgb_mean_abs": float(rgb_diff.mean()),
        "rgb_max_abs_same_alpha": float(rgb_diff[alpha_diff == 0].max()),
        "rgb_max_abs": float(rgb_diff.max()),
        "samples_same_triangle": float(same.sum() / ours.mask.sum()),
        "samples_coverage_differs": float((ours.mask != theirs.mask).float().mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--triangles", type=int, default=BFM_TRIANGLES)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (one when a call is slow)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--case-seconds",
        type=float,
        default=10.0,
        help="time budget per backend and batch size: fewer repeats when a call is slow",
    )
    parser.add_argument("--json", default=None, help="append one JSON line per batch size to this file")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type != "cuda":
        raise SystemExit("this benchmark needs a CUDA device (neural_renderer is CUDA-only)")
    reason = unavailable_reason()
    if reason:
        raise SystemExit(f"neural_renderer is not usable: {reason}")
    import neural_renderer

    machine = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu": torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "neural_renderer": getattr(neural_renderer, "__version__", "?"),
    }
    print(json.dumps(machine))
    size = args.size
    with torch.no_grad():
        for batch in args.batch:
            verts, tris = views(args.triangles, size, batch, device)
            colours = face_colours(verts, tris, size)
            cases = {
                "builtin": lambda v=verts, t=tris, c=colours: render_flat(v, t, c, size, size),
                "nr_seed": lambda v=verts, t=tris, c=colours: render_seed_nr(v, t, c, size),
                "nr_rasterizer": lambda v=verts, t=tris, c=colours: render_flat(v, t, c, size, size, rasterize_nr),
            }
            ms = {name: timed(fn, device, args.warmup, args.repeats, args.case_seconds) for name, fn in cases.items()}
            res = {
                "bench": "nr_vs_builtin",
                **machine,
                "vertices": int(verts.shape[1]),
                "triangles": int(tris.shape[0]),
                "size": size,
                "supersampling": 2,
                "batch": batch,
                "ms_per_batch": {k: round(v, 3) for k, v in ms.items()},
                "nr_seed_over_builtin": round(ms["nr_seed"] / ms["builtin"], 2),
                "nr_rasterizer_over_builtin": round(ms["nr_rasterizer"] / ms["builtin"], 2),
                "agreement": {k: float(f"{v:.3g}") for k, v in agreement(verts, tris, colours, size).items()},
            }
            line = json.dumps(res)
            print(line, flush=True)
            if args.json:
                with open(args.json, "a", encoding="utf-8") as fh:
                    fh.write(line + "\n")


if __name__ == "__main__":
    main()
