"""Batched z-buffer triangle rasterizer in pure PyTorch (CPU and CUDA), after nvdiffrast's ``rasterize``.

Conventions (see ``core/types.py``): pixels x right, y down, the centre of pixel (i, j) is (j + 0.5, i + 0.5);
orthographic projection, so a vertex (x, y, depth) lands on pixel (x, y); smaller depth is nearer.

How it works, and why:

* **Exact coverage.** Vertex x, y are snapped to a fixed-point grid of 1/256 pixel (like GPU rasterizers)
  and every coverage decision is integer arithmetic carried out exactly in float64. Coverage follows the
  top-left rule (a pixel centre on a left or top edge belongs to the triangle, one on a right or bottom
  edge does not), so triangles that share an edge or a vertex cover each pixel centre of their union
  exactly once: no cracks, no double coverage.
* **Cost grows with covered pixels, not pixels x triangles.** Per (image, triangle) the pixel rows of its
  bounding box are listed; per (triangle, row) the exact covered span of columns comes from one division
  per edge (a scanline rasterizer); only covered pixels are then enumerated, flattened with
  ``repeat_interleave``: no per-pixel edge tests, no wasted bounding-box candidates, and a huge triangle
  costs one (triangle, row) pair per covered row.
* **One scatter-min z-buffer.** A covered pixel makes an int64 key whose high 32 bits are the bit pattern
  of a positive float32 depth (depths are shifted per image to be >= 1; positive floats order like their
  bit patterns) and whose low 32 bits are the triangle id. A single
  ``scatter_reduce_(..., 'amin')`` per chunk resolves visibility with integer atomics only: the nearest
  surface wins, equal depths go to the smallest triangle id, identically on every device and chunking.
* **Bounded memory.** Images are set up in groups (bounded triangle instances), (triangle, row) pairs and
  covered pixels are processed in chunks; only chunk sizing (and the visible-triangle count) syncs with
  the host. Per-pixel tables are structure-of-arrays, which is what PyTorch's CPU gathers and element-wise
  kernels are fastest on.

Winding: a triangle is *front-facing* when its vertices run counter-clockwise as seen on the screen
(y down), i.e. ``(x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0) < 0`` in pixel coordinates;
``cull_backfaces=True`` drops the others. Triangles with zero snapped area, a non-finite coordinate or a
vertex farther than 2**16 pixels from the origin are always dropped.
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
# Empty z-buffer key: high half = bits of float32 +inf (decodes to depth inf), low half = triangle id -1.
_EMPTY_KEY = (0x7F800000 << 32) | 0xFFFFFFFF
_LITTLE_ENDIAN = sys.byteorder == "little"


@dataclass(frozen=True)
class Fragments:
    """Per-pixel rasterizer output, batch first.

    ``triangle_id`` (B, H, W) int64, -1 where no triangle covers the pixel centre.
    ``barycentrics`` (B, H, W, 3) float32: weights of the triangle's three corners at the pixel centre
    (0 where empty). :func:`rasterize` returns it as a view of planar (3, B, H, W) storage, so that each
    weight is one contiguous plane (fast per-channel arithmetic); ``.contiguous()`` packs it.
    ``depth`` (B, H, W) float32: depth of the visible surface, +inf where empty.
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
    """CPU: chunks whose temporaries stay in cache and below the allocator's mmap threshold; CUDA: big."""
    if device.type == "cpu":
        return _Limits(triangles=1 << 17, rows=1 << 16, candidates=1 << 18, pixels=1 << 18)
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
    (triangle, row) pairs, (image, triangle) instances); results do not depend on them.
    """
    if vertices.dim() != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be (B, V, 3), got {tuple(vertices.shape)}")
    if triangles.dim() != 2 or triangles.shape[-1] != 3:
        raise ValueError(f"triangles must be (F, 3), got {tuple(triangles.shape)}")
    if height < 0 or width < 0:
        raise ValueError(f"bad image size {height} x {width}")
    device = vertices.device
    batch, height, width = vertices.shape[0], int(height), int(width)
    num_tris = triangles.shape[0]
    if num_tris >= (1 << 31) - 1:
        raise ValueError("at most 2**31 - 2 triangles")
    defaults = _default_limits(device)
    limits = _Limits(
        triangles=max(1, max_triangles or defaults.triangles),
        rows=max(height, max_rows or defaults.rows),  # a row chunk must hold one triangle's rows...
        candidates=max(width, max_candidates or defaults.candidates),  # ... a pixel chunk one row's span
        pixels=defaults.pixels,
    )
    hw = height * width
    zbuf = torch.full((batch * hw,), _EMPTY_KEY, dtype=torch.int64, device=device)
    depth = torch.empty((batch, height, width), dtype=torch.float32, device=device)
    bary = torch.empty((3, batch, height, width), dtype=torch.float32, device=device)
    if batch > 0 and hw > 0:
        tris = triangles.to(device=device, dtype=torch.int64)
        per_group = max(1, limits.triangles // max(1, num_tris))
        for b0 in range(0, batch, per_group):
            b1 = min(batch, b0 + per_group)
            setup = _setup(vertices[b0:b1], tris, height, width, cull_backfaces, b0) if num_tris else None
            if setup is not None:
                _scatter(setup, zbuf, width, limits)
            _resolve(zbuf, depth, bary, setup, b0, b1, height, width, num_tris, limits.pixels)
    return Fragments(zbuf.view(batch, height, width), bary.permute(1, 2, 3, 0), depth)


# Resolve table rows. One column per (image, triangle) of a group, image b's triangle f at column
# b * (F + 1) + 1 + f; column b * (F + 1) is the image's empty pixel (all zero). Rows: snapped corner 0 in
# centre-shifted pixel units, barycentric planes b1 = p1*dx + q1*dy and b2 = p2*dx + q2*dy (dx, dy from
# corner 0), weight sum (1; 0 when empty).
_X0, _Y0, _P1, _Q1, _P2, _Q2, _SUM = range(7)


@dataclass
class _Setup:
    """Visible (image, triangle) instances of one image group, ordered by (image, triangle id)."""

    pair_table: Tensor  # (17, T) float64, rows _U..._ROW_SHIFT: per-instance constants of the row scan
    num_rows: Tensor  # (T,) int64 rows to scan
    tid: Tensor  # (T,) int64 triangle id
    resolve_table: Tensor  # (7, G * (F + 1)) float32, see _X0...
    zshift: Tensor  # (G,) float32 depth shift per image


# Pair-table rows: edges (left, left, right, right) of the row scan: u, w, -alpha (4 rows each); shifted
# depth at pixel (0, 0) and its gradient; first pixel index of the image; first row minus row offset.
_U, _W, _NEG_ALPHA = 0, 4, 8
_ZC, _GY, _GX, _BASE, _ROW_SHIFT = range(12, 17)


def _setup(
    verts: Tensor, tris: Tensor, height: int, width: int, cull: bool, first_image: int
) -> _Setup | None:
    """Snap, validate, bound and orient every (image, triangle) of a group; keep the visible ones.

    Works on flat structure-of-arrays (1-D gathers and element-wise ops are PyTorch's fast paths) and
    compacts to the visible instances as early as possible.
    """
    group, num_verts = verts.shape[:2]
    num_tris = tris.shape[0]
    device = verts.device
    v = verts.to(torch.float64)
    x, y = v[..., 0], v[..., 1]
    # Fixed point, shifted so that pixel centre (i, j) sits at (SUB * j, SUB * i); NaN marks bad vertices,
    # which makes every test below fail for their triangles.
    fxv = torch.round((x - 0.5) * _SUB)
    fyv = torch.round((y - 0.5) * _SUB)
    bad = ~torch.isfinite(v).all(-1) | (x.abs() > MAX_COORD) | (y.abs() > MAX_COORD)
    fxv.masked_fill_(bad, float("nan"))
    fxv, fyv, zv = fxv.view(-1), fyv.view(-1), v[..., 2].reshape(-1)
    offsets = (torch.arange(group, device=device) * num_verts)[:, None]
    vid = [(tris[:, k][None] + offsets).view(-1) for k in range(3)]  # (G * F,) flat vertex ids per corner
    x0, x1, x2 = (fxv.index_select(0, i) for i in vid)
    y0, y1, y2 = (fyv.index_select(0, i) for i in vid)
    area2 = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)  # > 0: clockwise on screen = back-facing
    valid = (area2 < 0) if cull else (area2.abs() > 0)  # NaN fails both
    inv = 1.0 / _SUB
    col0 = torch.minimum(torch.minimum(x0, x1), x2).mul_(inv).ceil_().clamp_(min=0)
    col1 = torch.maximum(torch.maximum(x0, x1), x2).mul_(inv).floor_().clamp_(max=width - 1)
    valid &= col0 <= col1
    row0 = torch.minimum(torch.minimum(y0, y1), y2).mul_(inv).ceil_().clamp_(min=0)
    ymax = torch.maximum(torch.maximum(y0, y1), y2)
    row1 = (ymax * inv).floor_()
    valid &= row0 <= row1.clamp(max=height - 1)
    keep = valid.nonzero().squeeze(1)  # host sync: the number of visible instances
    if keep.numel() == 0:
        return None
    image = keep.div(num_tris, rounding_mode="floor")  # group-local image index
    tid = keep - image * num_tris
    x0, x1, x2, y0, y1, y2, area2, row0, row1, ymax = (
        t.index_select(0, keep) for t in (x0, x1, x2, y0, y1, y2, area2, row0, row1, ymax)
    )
    # A horizontal bottom edge excludes its own row (top-left rule); all other edges are handled per row.
    flat_bottom = ((y0 == ymax).to(torch.int8) + (y1 == ymax) + (y2 == ymax) >= 2) & (row1 * _SUB == ymax)
    row1 = row1.sub_(flat_bottom.to(row1.dtype)).clamp_(max=height - 1)
    num_rows = (row1 - row0 + 1).clamp_(min=0).to(torch.int64)
    count = keep.numel()

    # Edge k runs from corner k to corner k+1; oriented positive inside, its edge function at pixel centre
    # (j, i) is alpha*j + u*i + w. These are exact integers in float64, equal up to sign for the two
    # triangles sharing the edge: that is what makes shared edges and vertices watertight.
    sign = torch.sign(area2)
    xs, ys = torch.stack([x0, x1, x2]), torch.stack([y0, y1, y2])  # (3, T)
    dx = (xs.roll(-1, dims=0) - xs).mul_(sign)
    dy = (ys.roll(-1, dims=0) - ys).mul_(sign)
    neg_alpha = dy * _SUB
    u = dx * _SUB
    w = dy * xs - dx * ys
    # On row i an edge bounds the span at t = (u*i + w) / -alpha: a left edge (alpha > 0) from below,
    # j >= ceil(t) (ties included); a right edge (alpha < 0) from above, j <= ceil(t) - 1 (ties excluded).
    # Every triangle has one or two edges of each kind; take (first left, last left, first right, last
    # right), which repeats an edge when there is only one, so that rows need no masking. Horizontal
    # edges are left out (the row range handles them).
    not_left = (neg_alpha >= 0).to(torch.int64)
    not_right = (neg_alpha <= 0).to(torch.int64)
    sel = torch.stack([
        not_left[0] * (1 + not_left[1]),  # first left edge: 0 if edge 0 is left, else 1 if edge 1, else 2
        2 - not_left[2] * (1 + not_left[1]),  # last left edge
        not_right[0] * (1 + not_right[1]),
        2 - not_right[2] * (1 + not_right[1]),
    ])
    flat_sel = sel.mul_(count).add_(torch.arange(count, device=device)).view(-1)  # into (3, T) flattened
    pair_table = torch.empty((17, count), dtype=torch.float64, device=device)
    for row, values in ((_U, u), (_W, w), (_NEG_ALPHA, neg_alpha)):
        torch.index_select(values.view(-1), 0, flat_sel, out=pair_table[row:row + 4].view(-1))

    # Depth plane and barycentric planes in pixel units relative to corner 0 (snapped positions).
    px0, py0 = x0 * inv, y0 * inv
    area_px = area2 * (inv * inv)
    e1x, e1y = (x1 - x0).mul_(inv), (y1 - y0).mul_(inv)
    e2x, e2y = (x2 - x0).mul_(inv), (y2 - y0).mul_(inv)
    p1, q1 = e2y / area_px, e2x.neg_().div_(area_px)
    p2, q2 = e1y.neg_().div_(area_px), e1x / area_px
    flat_vid = image * num_verts
    z0, z1, z2 = (zv.index_select(0, tris[:, k].index_select(0, tid) + flat_vid) for k in range(3))
    # Depths are shifted per image to be >= 1 so that float32 bit patterns order like the depths.
    zmin = torch.full((group,), float("inf"), dtype=torch.float64, device=device)
    zmin.scatter_reduce_(0, image, torch.minimum(torch.minimum(z0, z1), z2), "amin")
    zshift = torch.where(torch.isfinite(zmin), zmin - 1.0, 0.0)
    dz1, dz2 = z1.sub_(z0), z2.sub_(z0)
    gx = torch.mul(dz1, p1, out=pair_table[_GX]).addcmul_(dz2, p2)
    gy = torch.mul(dz1, q1, out=pair_table[_GY]).addcmul_(dz2, q2)
    # shifted depth at pixel centre (0, 0)
    torch.sub(z0, zshift.index_select(0, image), out=pair_table[_ZC]).sub_(gx * px0).sub_(gy * py0)
    torch.mul(image + first_image, float(height * width), out=pair_table[_BASE])
    row_start = torch.cumsum(num_rows, 0).sub_(num_rows)
    torch.sub(row0, row_start.to(torch.float64), out=pair_table[_ROW_SHIFT])

    stride = group * (num_tris + 1)
    resolve_table = torch.zeros((7, stride), dtype=torch.float32, device=device)
    columns = torch.empty((7, count), dtype=torch.float32, device=device)
    for row, values in ((_X0, px0), (_Y0, py0), (_P1, p1), (_Q1, q1), (_P2, p2), (_Q2, q2)):
        columns[row] = values
    columns[_SUM] = 1.0
    dest = (torch.arange(7, device=device) * stride)[:, None] + (keep + image + 1)
    resolve_table.view(-1).index_copy_(0, dest.view(-1), columns.view(-1))
    return _Setup(pair_table=pair_table, num_rows=num_rows, tid=tid, resolve_table=resolve_table,
                  zshift=zshift.to(torch.float32))


def gather_columns(table: Tensor, index: Tensor) -> Tensor:
    """``table[:, index]`` for a (K, T) table and an int64 (n,) index -> (K, n).

    On multi-threaded CPU ``torch.gather`` with an expanded index runs in parallel while ``index_select``
    along dim 1 does not (~1.5x faster with 2 threads); single-threaded, ``index_select`` is faster.
    """
    if table.device.type == "cpu" and torch.get_num_threads() > 1:
        return torch.gather(table, 1, index.view(1, -1).expand(table.shape[0], -1))
    return table.index_select(1, index)


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


def _scatter(setup: _Setup, zbuf: Tensor, width: int, limits: _Limits) -> None:
    """Scatter-min the keys of every covered pixel of a group's triangles into the z-buffer."""
    device = zbuf.device
    table = setup.pair_table
    for t0, t1, r0, r1 in _chunk_bounds(setup.num_rows, limits.rows):
        inst = torch.repeat_interleave(
            torch.arange(t0, t1, device=device), setup.num_rows[t0:t1], output_size=r1 - r0
        )

        def col(k: int, inst: Tensor = inst) -> Tensor:
            return table[k].index_select(0, inst)

        row = torch.arange(r0, r1, device=device, dtype=torch.float64).add_(col(_ROW_SHIFT))
        t = [torch.addcmul(col(_W + k), col(_U + k), row).div_(col(_NEG_ALPHA + k)) for k in range(4)]
        lo = torch.maximum(t[0], t[1]).ceil_().clamp_(min=0.0)
        hi = torch.minimum(t[2], t[3]).ceil_().clamp_(max=float(width))  # exclusive end
        count = hi.sub_(lo).clamp_(min=0.0).to(torch.int64)
        start = torch.cumsum(count, 0).sub_(count)
        pix_minus_start = torch.add(col(_BASE), row, alpha=width).add_(lo).to(torch.int64).sub_(start)
        gx = col(_GX)
        z_lo = torch.addcmul(col(_ZC), col(_GY), row).addcmul_(gx, lo).to(torch.float32)
        tid = setup.tid.index_select(0, inst)
        del t, lo, hi, row, inst
        _scatter_pixels(zbuf, count, start, pix_minus_start, z_lo, gx.to(torch.float32), tid, limits.candidates)


def _scatter_pixels(
    zbuf: Tensor, count: Tensor, start: Tensor, pix_minus_start: Tensor, z_lo: Tensor, dzdx: Tensor,
    tid: Tensor, limit: int,
) -> None:
    """Enumerate the covered pixels of (triangle, row) spans, chunk by chunk, and scatter-min their keys."""
    device = zbuf.device
    for p0, p1, c0, c1 in _chunk_bounds(count, limit):
        n = c1 - c0
        pair = torch.repeat_interleave(torch.arange(p0, p1, device=device), count[p0:p1], output_size=n)
        ar = torch.arange(c0, c1, device=device)
        pix = pix_minus_start.index_select(0, pair).add_(ar)
        offset = ar.sub_(start.index_select(0, pair)).to(torch.float32)
        z = z_lo.index_select(0, pair).addcmul_(dzdx.index_select(0, pair), offset)
        key = z.view(torch.int32).to(torch.int64).bitwise_left_shift_(32)
        key.bitwise_or_(tid.index_select(0, pair))
        zbuf.scatter_reduce_(0, pix, key, "amin")


def _resolve(
    zbuf: Tensor, depth: Tensor, bary: Tensor, setup: _Setup | None, first_image: int, last_image: int,
    height: int, width: int, num_tris: int, pixel_limit: int,
) -> None:
    """Turn the z-buffer keys of a group's images into triangle ids, depths and barycentrics."""
    device = zbuf.device
    rows_per_chunk = max(1, pixel_limit // width)
    zrows = zbuf.view(-1, width)
    depth_rows = depth.view(-1, width)
    bary_rows = bary.view(3, -1, width)
    if setup is None:  # nothing visible: the keys are all empty
        zrows[first_image * height:last_image * height] = -1
        depth_rows[first_image * height:last_image * height] = float("inf")
        bary_rows[:, first_image * height:last_image * height] = 0.0
        return
    cols = torch.arange(width, device=device, dtype=torch.float32)
    for r0 in range(first_image * height, last_image * height, rows_per_chunk):
        r1 = min(last_image * height, r0 + rows_per_chunk)
        row = torch.arange(r0, r1, device=device)
        image = row.div(height, rounding_mode="floor").sub_(first_image)
        ys = row.sub_(image * height).sub_(first_image * height).to(torch.float32)[:, None]
        keys = zrows[r0:r1]
        halves = keys.view(torch.int32).view(r1 - r0, width, 2)
        low, high = (halves[..., 0], halves[..., 1]) if _LITTLE_ENDIAN else (halves[..., 1], halves[..., 0])
        torch.add(high.view(torch.float32), setup.zshift.index_select(0, image)[:, None], out=depth_rows[r0:r1])
        index = low + image.mul_(num_tris + 1).add_(1)[:, None]  # empty (-1) -> the image's zero column
        g = gather_columns(setup.resolve_table, index.view(-1)).view(7, r1 - r0, width)
        keys.bitwise_left_shift_(32).bitwise_right_shift_(32)  # sign-extend the low half: triangle id or -1
        dx = torch.sub(cols, g[_X0])
        dy = torch.sub(ys, g[_Y0])
        b1 = torch.mul(g[_P1], dx, out=bary_rows[1, r0:r1]).addcmul_(g[_Q1], dy)
        b2 = torch.mul(g[_P2], dx, out=bary_rows[2, r0:r1]).addcmul_(g[_Q2], dy)
        torch.sub(g[_SUM], b1, out=bary_rows[0, r0:r1]).sub_(b2)
