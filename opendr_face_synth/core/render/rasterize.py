"""Batched z-buffer triangle rasterizer in pure PyTorch (CPU and CUDA), after nvdiffrast's ``rasterize``.

Conventions (see ``core/types.py``): pixels x right, y down, the centre of pixel (i, j) is (j + 0.5, i + 0.5);
orthographic projection, so a vertex (x, y, depth) lands on pixel (x, y); smaller depth is nearer.

How it works, and why:

* **Exact coverage.** Vertex x, y are snapped to a fixed-point grid of 1/256 pixel (like GPU rasterizers)
  and every coverage decision is integer arithmetic carried out exactly in float64. Coverage uses the
  top-left rule (a pixel centre on a left or top edge belongs to the triangle, one on a right or bottom edge
  does not), so triangles that share an edge or a vertex cover each pixel centre of their union exactly once.
* **Cost grows with covered pixels, not pixels x triangles.** Per (image, triangle) the rows its pixel-
  centre bounding box spans are listed; per (triangle, row) the exact covered span [lo, hi] of pixel
  columns comes from one division per edge; only covered pixels are then enumerated (flattened with
  ``repeat_interleave``), so there is no per-pixel edge test and no wasted candidate pixel.
* **One scatter-min z-buffer.** Each covered pixel makes an int64 key whose high 32 bits are the bit
  pattern of a positive float32 depth (positive floats order like their bit patterns) and whose low
  32 bits are the triangle's rank; a single ``scatter_reduce_(..., 'amin')`` per chunk resolves
  visibility with integer atomics only. The nearest surface wins; equal depths go to the smallest
  triangle id (ranks are ordered by triangle id), so results are deterministic on every device.
* **Bounded memory.** Images are processed in groups (bounded triangle instances), (triangle, row) pairs
  and candidate pixels in chunks; only chunk sizing syncs with the host. Huge triangles cost one pair per
  covered row, never a bounding-box's worth of candidates.

Winding: a triangle is *front-facing* when its vertices run counter-clockwise as seen on the screen
(y down), i.e. ``(x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0) < 0`` in pixel coordinates.
``cull_backfaces=True`` drops the others. Degenerate (zero snapped area) triangles, triangles with a
non-finite coordinate and triangles with a vertex farther than 2**16 pixels from the origin are dropped.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Fragments", "rasterize"]

SUBPIXEL_BITS = 8
_SUB = float(1 << SUBPIXEL_BITS)
MAX_COORD = float(1 << 16)  # pixels; keeps every fixed-point product below 2**53 (exact in float64)
# Empty z-buffer key: high half = bits of float32 +inf (decodes to depth inf), low half = rank -1.
_EMPTY_KEY = (0x7F800000 << 32) | 0xFFFFFFFF
_LITTLE_ENDIAN = sys.byteorder == "little"


@dataclass(frozen=True)
class Fragments:
    """Per-pixel rasterizer output, batch first.

    ``triangle_id`` (B, H, W) int64, -1 where no triangle covers the pixel centre.
    ``barycentrics`` (B, H, W, 3) float32: weights of the triangle's three vertices at the pixel centre
    (0 where empty). ``depth`` (B, H, W) float32: depth of the visible surface, +inf where empty.
    """

    triangle_id: Tensor
    barycentrics: Tensor
    depth: Tensor

    @property
    def mask(self) -> Tensor:
        """(B, H, W) bool: pixels covered by a triangle."""
        return self.triangle_id >= 0


@dataclass(frozen=True)
class _Limits:
    triangles: int  # (image, triangle) instances set up at once
    rows: int  # (triangle, row) pairs per chunk
    candidates: int  # covered pixels scattered per chunk
    pixels: int  # pixels resolved per chunk


def _default_limits(device: torch.device) -> _Limits:
    """CPU: chunks small enough that temporaries stay in cache and below the allocator's mmap threshold."""
    if device.type == "cpu":
        return _Limits(triangles=1 << 17, rows=1 << 16, candidates=1 << 19, pixels=1 << 18)
    return _Limits(triangles=1 << 21, rows=1 << 22, candidates=1 << 24, pixels=1 << 24)


def rasterize(
    vertices: Tensor,
    triangles: Tensor,
    height: int,
    width: int,
    *,
    cull_backfaces: bool = False,
    max_candidates: int | None = None,
    max_rows: int | None = None,
    max_triangles: int | None = None,
) -> Fragments:
    """Rasterize a batch of meshes that share one triangle list.

    ``vertices`` (B, V, 3) float: x, y in pixels, depth. ``triangles`` (F, 3) integer vertex ids.
    Returns :class:`Fragments` for images of ``height`` x ``width`` on the vertices' device.
    ``max_candidates`` / ``max_rows`` / ``max_triangles`` bound the chunk sizes (covered pixels,
    (triangle, row) pairs, (image, triangle) instances); the result does not depend on them.
    """
    if vertices.dim() != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be (B, V, 3), got {tuple(vertices.shape)}")
    if triangles.dim() != 2 or triangles.shape[-1] != 3:
        raise ValueError(f"triangles must be (F, 3), got {tuple(triangles.shape)}")
    device = vertices.device
    batch, height, width = vertices.shape[0], int(height), int(width)
    num_tris = triangles.shape[0]
    if num_tris >= (1 << 31) - 1:
        raise ValueError("at most 2**31 - 2 triangles")
    defaults = _default_limits(device)
    limits = _Limits(
        triangles=max(1, max_triangles or defaults.triangles),
        rows=max(height, max_rows or defaults.rows),  # a triangle chunk must fit one triangle's rows
        candidates=max(width, max_candidates or defaults.candidates),  # ... and a chunk one row's span
        pixels=defaults.pixels,
    )
    hw = height * width
    zbuf = torch.full((batch * hw,), _EMPTY_KEY, dtype=torch.int64, device=device)
    depth = torch.empty((batch, height, width), dtype=torch.float32, device=device)
    bary = torch.empty((batch, height, width, 3), dtype=torch.float32, device=device)
    if batch == 0 or hw == 0:
        return Fragments(zbuf.view(batch, height, width), bary, depth)

    tris = triangles.to(device=device, dtype=torch.int64)
    per_group = max(1, limits.triangles // max(1, num_tris))
    for b0 in range(0, batch, per_group):
        b1 = min(batch, b0 + per_group)
        setup = _setup(vertices[b0:b1], tris, height, width, cull_backfaces, b0)
        if setup is not None:
            _scatter_group(setup, zbuf, width, limits)
            resolve_table = setup.resolve_table
        else:
            resolve_table = _dummy_row(device)
        _resolve(zbuf, depth, bary, resolve_table, b0 * height, b1 * height, height, width, limits.pixels)
    return Fragments(zbuf.view(batch, height, width), bary, depth)


@dataclass
class _Setup:
    """Per visible (image, triangle) instance of one image group, compacted."""

    pair_table: Tensor  # (T, 20) float64: per-edge span constants, depth plane, pixel base, first row
    num_rows: Tensor  # (T,) int64 covered-row count
    resolve_table: Tensor  # (T + 1, 9) float32, row 0 = empty; columns: see _RESOLVE_COLUMNS


# Resolve table columns: snapped corner 0 (pixel units, centre-shifted), barycentric planes
# b1 = p1*dx + q1*dy, b2 = p2*dx + q2*dy, weight sum (1; 0 for the empty row), triangle id (int32 bits),
# depth shift added to the decoded z-buffer depth.
_RESOLVE_COLUMNS = ("x0", "y0", "p1", "q1", "p2", "q2", "sum", "tid", "zshift")


def _dummy_row(device: torch.device) -> Tensor:
    """The empty pixel's row: zero weights, triangle id -1, depth shift 0 (inf stays inf)."""
    row = torch.zeros((1, len(_RESOLVE_COLUMNS)), dtype=torch.float32, device=device)
    row.view(torch.int32)[0, 7] = -1
    return row


def _setup(
    verts: Tensor, tris: Tensor, height: int, width: int, cull: bool, first_image: int
) -> _Setup | None:
    """Snap, validate, bound and orient every (image, triangle) of a group; keep the visible ones."""
    group, num_tris = verts.shape[0], tris.shape[0]
    device = verts.device
    corners = verts[:, tris].to(torch.float64)  # (G, F, 3 corners, 3)
    finite = torch.isfinite(corners).all(-1).all(-1)
    finite &= (corners[..., :2].abs() <= MAX_COORD).all(-1).all(-1)
    # Fixed point, shifted so that pixel centre (i, j) sits at (SUB * j, SUB * i).
    fx = torch.round((corners[..., 0] - 0.5) * _SUB)
    fy = torch.round((corners[..., 1] - 0.5) * _SUB)
    fx = torch.where(finite[..., None], fx, 0.0)
    fy = torch.where(finite[..., None], fy, 0.0)
    e1x, e1y = fx[..., 1] - fx[..., 0], fy[..., 1] - fy[..., 0]
    e2x, e2y = fx[..., 2] - fx[..., 0], fy[..., 2] - fy[..., 0]
    area2 = e1x * e2y - e1y * e2x  # > 0: clockwise on screen (y down) = back-facing
    valid = finite & ((area2 < 0) if cull else (area2 != 0))

    col0 = torch.ceil(fx.amin(-1) / _SUB).clamp_(min=0)
    col1 = torch.floor(fx.amax(-1) / _SUB).clamp_(max=width - 1)
    ymin, ymax = fy.amin(-1), fy.amax(-1)
    row0 = torch.ceil(ymin / _SUB)
    row1 = torch.floor(ymax / _SUB)
    # A horizontal bottom edge excludes its own row (top-left rule); other edges are handled per row.
    flat_bottom = (fy == ymax[..., None]).sum(-1) >= 2
    row1 -= (flat_bottom & (row1 * _SUB == ymax)).to(row1.dtype)
    row0.clamp_(min=0)
    row1.clamp_(max=height - 1)
    valid &= (col0 <= col1) & (row0 <= row1)

    keep = valid.reshape(-1).nonzero().squeeze(1)  # host sync: number of visible instances
    count = keep.numel()
    if count == 0:
        return None
    image = keep // num_tris  # group-local image index
    tid = keep - image * num_tris

    def take(t: Tensor) -> Tensor:
        return t.reshape(group * num_tris, *t.shape[2:]).index_select(0, keep)

    fx, fy, z = take(fx), take(fy), take(corners[..., 2])
    area2, row0, row1 = take(area2), take(row0), take(row1)
    sign = torch.sign(area2)

    # Edge k runs from corner k to corner k+1. Its edge function, oriented positive inside, at pixel
    # centre (j, i) is alpha*j + u*i + w (exact integers in float64, identical up to sign for the two
    # triangles sharing the edge, which is what makes shared edges watertight).
    ax, ay = fx, fy
    bx, by = fx.roll(-1, dims=1), fy.roll(-1, dims=1)
    dx, dy = (bx - ax) * sign[:, None], (by - ay) * sign[:, None]
    alpha = -dy * _SUB
    u = dx * _SUB
    w = dy * ax - dx * ay
    horizontal = alpha == 0
    neg_alpha = torch.where(horizontal, 1.0, -alpha)
    u = torch.where(horizontal, 0.0, u)
    w = torch.where(horizontal, 0.0, w)
    inf = torch.tensor(float("inf"), dtype=torch.float64, device=device)
    # Left edges (alpha > 0) include ties: lo = ceil(t); right edges exclude them: hi = ceil(t) - 1.
    off_lo = torch.where(alpha > 0, 0.0, -inf)
    off_hi = torch.where(alpha < 0, -1.0, inf)

    # Depth plane and barycentric planes in pixel units relative to corner 0 (snapped positions).
    x0, y0 = fx[:, 0] / _SUB, fy[:, 0] / _SUB
    area_px = area2 / (_SUB * _SUB)
    e1x, e1y = (fx[:, 1] - fx[:, 0]) / _SUB, (fy[:, 1] - fy[:, 0]) / _SUB
    e2x, e2y = (fx[:, 2] - fx[:, 0]) / _SUB, (fy[:, 2] - fy[:, 0]) / _SUB
    p1, q1 = e2y / area_px, -e2x / area_px
    p2, q2 = -e1y / area_px, e1x / area_px
    # Depth is shifted per image to be >= 1 so that float32 bit patterns order like the depths.
    zmin_tri = z.amin(1)
    zmin = torch.full((group,), float("inf"), dtype=torch.float64, device=device)
    zmin.scatter_reduce_(0, image, zmin_tri, "amin")
    zshift = zmin.index_select(0, image) - 1.0
    z0 = z[:, 0] - zshift
    dz1, dz2 = z[:, 1] - z[:, 0], z[:, 2] - z[:, 0]
    gx = dz1 * p1 + dz2 * p2
    gy = dz1 * q1 + dz2 * q2
    zc = z0 - gx * x0 - gy * y0  # depth at pixel centre (0, 0)

    num_rows = (row1 - row0 + 1).to(torch.int64)
    row_start = torch.cumsum(num_rows, 0) - num_rows
    base = ((image + first_image) * (height * width)).to(torch.float64)
    pair_table = torch.cat(
        [
            u, w, neg_alpha, off_lo, off_hi,
            torch.stack([zc, gy, gx, base, row0 - row_start.to(torch.float64)], dim=1),
        ],
        dim=1,
    )  # (T, 20)

    resolve_table = torch.empty((count + 1, len(_RESOLVE_COLUMNS)), dtype=torch.float32, device=device)
    resolve_table[0:1] = _dummy_row(device)
    body = resolve_table[1:]
    body[:, 0], body[:, 1] = x0, y0
    body[:, 2], body[:, 3], body[:, 4], body[:, 5] = p1, q1, p2, q2
    body[:, 6] = 1.0
    body.view(torch.int32)[:, 7] = tid.to(torch.int32)
    body[:, 8] = zshift
    return _Setup(pair_table=pair_table, num_rows=num_rows, resolve_table=resolve_table)


def _chunk_bounds(counts: Tensor, limit: int) -> list[tuple[int, int, int, int]]:
    """Split items with ``counts`` (each <= limit) into consecutive runs of total < 2 * limit.

    An item goes to run ``(end - 1) // limit`` of its cumulative end. Returns (first item, end item,
    first unit, end unit) per non-empty run; two host syncs whatever the number of items.
    """
    ends = torch.cumsum(counts, 0)
    total = int(ends[-1].item()) if counts.numel() else 0
    if total <= limit:
        return [(0, counts.numel(), 0, total)] if total > 0 else []
    marks = torch.arange(limit, total, limit, device=counts.device, dtype=ends.dtype)
    edges = torch.searchsorted(ends, marks, right=True)
    units = ends.index_select(0, (edges - 1).clamp_(min=0)).masked_fill_(edges == 0, 0)
    item_edges = [0, *edges.tolist(), counts.numel()]
    unit_edges = [0, *units.tolist(), total]
    return [
        (item_edges[k], item_edges[k + 1], unit_edges[k], unit_edges[k + 1])
        for k in range(len(item_edges) - 1)
        if unit_edges[k + 1] > unit_edges[k]
    ]


def _scatter_group(setup: _Setup, zbuf: Tensor, width: int, limits: _Limits) -> None:
    """Scatter-min every covered pixel of a group's triangles into the z-buffer keys."""
    device = zbuf.device
    for t0, t1, r0, r1 in _chunk_bounds(setup.num_rows, limits.rows):
        num_pairs = r1 - r0
        tri = torch.repeat_interleave(
            torch.arange(t0, t1, device=device), setup.num_rows[t0:t1], output_size=num_pairs
        )
        g = setup.pair_table.index_select(0, tri)
        row = torch.arange(r0, r1, device=device, dtype=torch.float64).add_(g[:, 19])
        t = torch.addcmul(g[:, 3:6], g[:, 0:3], row[:, None]).div_(g[:, 6:9]).ceil_()
        lo = torch.add(t, g[:, 9:12]).amax(1).clamp_(min=0.0)
        hi = t.add_(g[:, 12:15]).amin(1).clamp_(max=float(width - 1))
        count = hi.sub_(lo).add_(1.0).clamp_(min=0.0).to(torch.int64)
        start = torch.cumsum(count, 0).sub_(count)
        # Pixel stage table, int64 columns: pixel index - start, start, rank | depth bits, (z_lo, dz/dx).
        table = torch.empty((num_pairs, 4), dtype=torch.int64, device=device)
        pbase = torch.add(g[:, 18], row, alpha=width).add_(lo)
        table[:, 0] = pbase.to(torch.int64).sub_(start)
        table[:, 1] = start
        table[:, 2] = tri
        z_lo = torch.addcmul(g[:, 15], g[:, 16], row).addcmul_(g[:, 17], lo)
        tf = table.view(torch.float32)
        tf[:, 6] = z_lo
        tf[:, 7] = g[:, 17]
        del g, t, lo, hi, pbase, z_lo, row
        _scatter_pixels(table, count, zbuf, limits.candidates)


def _scatter_pixels(table: Tensor, count: Tensor, zbuf: Tensor, limit: int) -> None:
    device = zbuf.device
    for p0, p1, c0, c1 in _chunk_bounds(count, limit):
        n = c1 - c0
        if n == 0:
            continue
        pair = torch.repeat_interleave(torch.arange(p0, p1, device=device), count[p0:p1], output_size=n)
        rows = table.index_select(0, pair)  # (n, 4)
        del pair
        ar = torch.arange(c0, c1, device=device)
        pix = rows[:, 0] + ar
        k = ar.sub_(rows[:, 1]).to(torch.float32)
        rf = rows.view(torch.float32)
        if _LITTLE_ENDIAN:
            torch.addcmul(rf[:, 6], rf[:, 7], k, out=rf[:, 5])  # high half of column 2 := depth bits
            keys = rows[:, 2]
        else:  # pragma: no cover - no big-endian test machine
            zbits = torch.addcmul(rf[:, 6], rf[:, 7], k).view(torch.int32).to(torch.int64)
            keys = (zbits << 32) | rows[:, 2]
        zbuf.scatter_reduce_(0, pix, keys, "amin")


def _resolve(
    zbuf: Tensor, depth: Tensor, bary: Tensor, table: Tensor, row0: int, row1: int, height: int, width: int,
    pixel_limit: int,
) -> None:
    """Turn the z-buffer keys of image rows [row0, row1) (of B*H) into ids, depths and barycentrics."""
    device = zbuf.device
    rows_per_chunk = max(1, pixel_limit // width)
    zrows = zbuf.view(-1, width)
    depth_rows = depth.view(-1, width)
    bary_rows = bary.view(-1, width, 3)
    cols = torch.arange(width, device=device, dtype=torch.float32)
    for r0 in range(row0, row1, rows_per_chunk):
        r1 = min(row1, r0 + rows_per_chunk)
        keys = zrows[r0:r1]
        halves = keys.view(torch.int32).view(r1 - r0, width, 2)
        if _LITTLE_ENDIAN:
            low, high = halves[..., 0], halves[..., 1]
        else:  # pragma: no cover
            low, high = halves[..., 1], halves[..., 0]
        rows = table.index_select(0, (low + 1).view(-1)).view(r1 - r0, width, len(_RESOLVE_COLUMNS))
        torch.add(high.view(torch.float32), rows[..., 8], out=depth_rows[r0:r1])
        keys.copy_(rows[..., 7].view(torch.int32))  # keys become triangle ids (-1 = empty)
        ys = (torch.arange(r0, r1, device=device) % height).to(torch.float32)[:, None]
        dxs = torch.sub(cols, rows[..., 0])
        dys = torch.sub(ys, rows[..., 1])
        out = bary_rows[r0:r1]
        b1 = torch.mul(rows[..., 2], dxs, out=out[..., 1]).addcmul_(rows[..., 3], dys)
        b2 = torch.mul(rows[..., 4], dxs, out=out[..., 2]).addcmul_(rows[..., 5], dys)
        torch.sub(rows[..., 6], b1, out=out[..., 0]).sub_(b2)
