"""Per-face scene: the fitted face mesh plus a head proxy and a background layer, textured by the photo.

The whole-head composite works on one mesh per face, built in the source image's camera frame:

* the fitted face mesh (precise geometry, rotates rigidly);
* a regular grid over the source crop (a height field seen from the source camera): inside the person's
  silhouette it lies on an ellipsoid fitted around the face (the *head proxy*: hair, ears, neck), and
  elsewhere on a far plane (the *background layer*). Each grid vertex carries a rotation weight: 1 on
  the head, tapering to 0 down the neck, 0 on the background, so hair and ears turn with the face,
  the neck twists and the background stays put, all without tearing the mesh.

Grid triangles that span a depth jump (head edge to background) become visible only when the head turns:
they are *disocclusions*, flagged so the compositor fills them by inpainting instead of smearing.
Everything here is small per-face numpy work; the heavy per-pixel work is batched on the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fit.mediapipe_mesh import boundary_vertices, five_points
from .pose import five_point_template, rotation_camera, similarity_transform
from .types import FaceFit

LAYER_FACE = 1
LAYER_HEAD = 2
LAYER_BACKGROUND = 4

# Head-proxy ellipsoid in units of the fitted face width, in the head's frame (right, down, back);
# centre offset from the fit's head centre. Average adult head proportions: breadth ~1.1, height ~1.6,
# length ~1.4 face widths.
HEAD_SEMI_AXES = np.array([0.58, 0.85, 0.70])
HEAD_CENTRE_OFFSET = np.array([0.0, -0.20, 0.0])
# The neck turns less than the head: the weight falls from 1 at the chin to 0 this far below it.
NECK_TAPER = 0.6
HEAD_REACH = (1.6, 1.35)  # hair counts as head within these multiples of the ellipsoid's semi-axes
BACKGROUND_DEPTH = 3.0  # background plane, face widths behind the head centre
GRID_CELLS = 64  # grid resolution of the head proxy / background mesh
FIELD_OF_VIEW_MARGIN = 1.7  # the grid covers the output's field of view at source pose, enlarged


@dataclass
class FaceScene:
    """One face ready for batched rendering. All 3D points are in source camera coordinates."""

    vertices: np.ndarray  # (V, 3) float32: face mesh vertices first, then grid vertices
    weights: np.ndarray  # (V,) float32 rotation weight
    mirror_ids: np.ndarray  # (V,) int64 mirror-symmetric vertex (grid vertices: themselves)
    triangles: np.ndarray  # (F, 3) int64
    triangle_layer: np.ndarray  # (F,) uint8 LAYER_* of each triangle
    triangle_unknown: np.ndarray  # (F,) bool: depth-jump triangles, unknown where a rotation opens them
    source_normals: np.ndarray  # (V, 3) float32 unit surface normals (toward the source camera: -z)
    triangle_mirror_ok: np.ndarray  # (F,) bool: the mirror images of the 3 vertices form a compact triangle
    num_face_vertices: int
    num_face_triangles: int
    texture: np.ndarray  # (T, T, 3) uint8 RGB crop of the source at full resolution (capped)
    texture_from_source: np.ndarray  # (2, 3) affine: source pixels -> texture pixels
    source_depth: np.ndarray  # (T, T) float32 depth of the face mesh seen from the source (inf: none)
    face_width: float
    image_size: tuple[int, int]  # (H, W) of the source image


def head_frame(fit: FaceFit) -> tuple[np.ndarray, float]:
    """The head's rotation (camera frame) and the face width (cheek to cheek, source pixels).

    Fitters may provide both in ``params``; otherwise they follow from the pose and from the eye distance
    (about 0.45 face widths on adult faces).
    """
    rot = fit.params.get("rotation")
    rot = rotation_camera(fit.pose) if rot is None else np.asarray(rot, dtype=np.float64)
    width = fit.params.get("face_width")
    if width is None:
        eyes = five_points(fit.vertices.astype(np.float64), fit.landmark_ids5)[:2]
        width = float(np.linalg.norm(eyes[1] - eyes[0])) / 0.45
    return rot, float(width)


def field_of_view(fit: FaceFit, output_size: int) -> tuple[np.ndarray, float]:
    """Centre and side (source pixels) of the square the aligned output shows at the source pose."""
    import cv2  # imported here so that rendering prepared scenes (GPU benchmarks) needs no OpenCV

    src5 = five_points(fit.vertices.astype(np.float64), fit.landmark_ids5)[:, :2]
    m = similarity_transform(src5, five_point_template(output_size))
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    inv = cv2.invertAffineTransform(m)
    centre = inv @ np.array([output_size / 2.0, output_size / 2.0, 1.0])
    return centre, output_size / scale


def build_scene(
    image_rgb: np.ndarray,
    fit: FaceFit,
    output_size: int,
    person_mask_fn,
    texture_cap: int,
    rasterize_depth_fn,
    with_head: bool = True,
) -> FaceScene:
    """Build the face's scene.

    ``person_mask_fn(rgb) -> (h, w) float in [0, 1]`` segments people in a crop; ``rasterize_depth_fn
    (vertices (V, 3) in texture pixels, triangles, size) -> (size, size) depth`` renders the face mesh's
    depth seen from the source (nearest surface; inf where empty).
    """
    import cv2

    height, width = image_rgb.shape[:2]
    rot, face_width = head_frame(fit)
    centre_xy, side = field_of_view(fit, output_size)
    side *= FIELD_OF_VIEW_MARGIN
    tex_size = int(min(texture_cap, max(64, round(side))))
    scale = tex_size / side
    ox, oy = centre_xy - side / 2.0
    tex_from_src = np.array([[scale, 0.0, -ox * scale], [0.0, scale, -oy * scale]])
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    texture = cv2.warpAffine(image_rgb, tex_from_src, (tex_size, tex_size), flags=interp,
                             borderMode=cv2.BORDER_REPLICATE)

    face_v = fit.vertices.astype(np.float64)
    tris = np.asarray(fit.triangles, dtype=np.int64)
    face_in_tex = face_v.copy()
    face_in_tex[:, :2] = face_v[:, :2] * scale + tex_from_src[:, 2]
    face_in_tex[:, 2] *= scale
    source_depth_tex = rasterize_depth_fn(face_in_tex.astype(np.float32), tris, tex_size)
    source_depth = source_depth_tex / scale  # back to source depth units, sampled in texture pixels

    nv = len(face_v)
    mirror = fit.mirror_ids if fit.mirror_ids is not None else np.arange(nv)
    if fit.params.get("dense") is False:
        # A 68-landmark mesh (no dense face model) is too coarse for per-triangle mirror look-ups: mirrored
        # triangles then paste whole features (a second eye) onto the hidden side. Leave those unknown.
        mirror = np.arange(nv)
    normals = _vertex_normals(face_v, tris)
    mirror_ok = _mirror_coherent(face_v, tris, np.asarray(mirror, np.int64))
    if not with_head:
        return FaceScene(
            vertices=face_v.astype(np.float32), weights=np.ones(nv, np.float32),
            mirror_ids=np.asarray(mirror, np.int64), triangles=tris,
            triangle_layer=np.full(len(tris), LAYER_FACE, np.uint8),
            triangle_unknown=np.zeros(len(tris), bool), source_normals=normals, triangle_mirror_ok=mirror_ok,
            num_face_vertices=nv, num_face_triangles=len(tris),
            texture=texture, texture_from_source=tex_from_src, source_depth=source_depth.astype(np.float32),
            face_width=face_width, image_size=(height, width),
        )

    # Grid vertices at texture-pixel positions, mapped back to source pixels.
    n = GRID_CELLS + 1
    g = (np.arange(n) + 0.0) * (tex_size / GRID_CELLS)
    gx, gy = np.meshgrid(g, g)
    grid_tex = np.stack([gx.ravel(), gy.ravel()], axis=1)
    grid_src = (grid_tex - tex_from_src[:, 2]) / scale

    person = cv2.GaussianBlur(person_mask_fn(texture), (0, 0), sigmaX=tex_size / 200.0)
    person_at = _sample(person, grid_tex)
    face_depth_at = _sample(source_depth, grid_tex, nearest=True)

    centre = np.asarray(fit.head_centre, dtype=np.float64) + rot @ (HEAD_CENTRE_OFFSET * face_width)
    axes = HEAD_SEMI_AXES * face_width
    ell_depth, inside_ell = _ellipsoid_front_depth(grid_src, centre, rot, axes)

    # Head frame coordinates of grid points (at the centre's depth) for the neck taper.
    local = (np.column_stack([grid_src, np.full(len(grid_src), centre[2])]) - centre) @ rot
    local_x, local_y = local[:, 0], local[:, 1]
    chin_y = float(((face_v - centre) @ rot[:, 1]).max())
    neck_w = np.clip(1.0 - (local_y - chin_y) / (NECK_TAPER * face_width), 0.0, 1.0)

    on_face = np.isfinite(face_depth_at)
    # Only the person around this face turns: the head (hair included) within a generous ellipse, and the
    # neck below the chin. Other people and the body stay with the background.
    near_head = (local_x / (HEAD_REACH[0] * axes[0])) ** 2 + (local_y / (HEAD_REACH[1] * axes[1])) ** 2 <= 1.0
    neck = (local_y > chin_y - 0.2 * face_width) & (np.abs(local_x) < axes[0])
    is_person = (person_at > 0.5) & (near_head | neck)
    depth = np.full(len(grid_src), centre[2] + BACKGROUND_DEPTH * face_width)
    weight = np.zeros(len(grid_src))
    head = is_person & ~on_face
    # Person pixels outside the ellipsoid (hair volume, neck, shoulders) sit on the head's mid-plane.
    depth[head] = np.where(inside_ell[head], ell_depth[head], centre[2])
    # Face-rim continuity: shift the proxy so it meets the face mesh where they touch.
    rim_ids = fit.params.get("rim_ids")
    if rim_ids is None:
        rim_ids = boundary_vertices(tris)
    rim_offset = _rim_offset(grid_src, head, face_v[np.asarray(rim_ids)], centre, rot, axes, face_width)
    depth[head] += rim_offset[head]
    weight[head] = neck_w[head]
    # Behind the face mesh the grid copies its depth, slightly pushed back so the real mesh wins.
    depth[on_face] = face_depth_at[on_face] + 0.03 * face_width
    weight[on_face] = 1.0

    grid_vertices = np.column_stack([grid_src, depth])
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    grid_tris = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)])
    tri_depth = depth[grid_tris]
    span = tri_depth.max(axis=1) - tri_depth.min(axis=1)
    # Depth jumps between head and background are not surfaces: where rotation opens them up
    # (the renderer checks the stretch per view) they show what the source never saw.
    unknown = span > 0.1 * face_width
    layer = np.where(weight[grid_tris].max(axis=1) > 0, LAYER_HEAD, LAYER_BACKGROUND).astype(np.uint8)

    vertices = np.concatenate([face_v, grid_vertices]).astype(np.float32)
    weights = np.concatenate([np.ones(nv), weight]).astype(np.float32)
    mirror_all = np.concatenate([np.asarray(mirror, np.int64), nv + np.arange(n * n)])
    triangles = np.concatenate([tris, grid_tris + nv])
    return FaceScene(
        vertices=vertices, weights=weights, mirror_ids=mirror_all, triangles=triangles,
        triangle_layer=np.concatenate([np.full(len(tris), LAYER_FACE, np.uint8), layer]),
        triangle_unknown=np.concatenate([np.zeros(len(tris), bool), unknown]),
        source_normals=np.concatenate([normals, np.tile(np.float32([0, 0, -1]), (n * n, 1))]),
        triangle_mirror_ok=np.concatenate([mirror_ok, np.zeros(len(grid_tris), bool)]),
        num_face_vertices=nv, num_face_triangles=len(tris), texture=texture,
        texture_from_source=tex_from_src, source_depth=source_depth.astype(np.float32),
        face_width=face_width, image_size=(height, width),
    )


def _vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Unit vertex normals oriented toward the source camera (the camera looks along +z)."""
    p = vertices[triangles]
    normals = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])  # area-weighted
    acc = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(acc, triangles[:, k], normals)
    acc /= np.linalg.norm(acc, axis=1, keepdims=True) + 1e-12
    if np.median(acc[:, 2]) > 0:  # triangle winding is the other way round
        acc = -acc
    return acc.astype(np.float32)


def _mirror_coherent(vertices: np.ndarray, triangles: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """Triangles whose mirrored vertices stay close together, so interpolating them is meaningful."""
    def longest_edge(t: np.ndarray) -> np.ndarray:
        p = vertices[t]
        return np.max([np.linalg.norm(p[:, i] - p[:, (i + 1) % 3], axis=1) for i in range(3)], axis=0)

    return longest_edge(mirror[triangles]) <= 2.5 * longest_edge(triangles) + 1e-6


def _sample(image: np.ndarray, xy: np.ndarray, nearest: bool = False) -> np.ndarray:
    """Sample a single-channel map at pixel coordinates (x right, y down; centres at +0.5)."""
    import cv2

    h, w = image.shape
    if nearest:
        xi = np.clip(np.floor(xy[:, 0]).astype(int), 0, w - 1)
        yi = np.clip(np.floor(xy[:, 1]).astype(int), 0, h - 1)
        return image[yi, xi]
    mx = (xy[:, 0] - 0.5).astype(np.float32).reshape(-1, 1)
    my = (xy[:, 1] - 0.5).astype(np.float32).reshape(-1, 1)
    return cv2.remap(image.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).ravel()


def _ellipsoid_front_depth(xy: np.ndarray, centre: np.ndarray, rot: np.ndarray, axes: np.ndarray):
    """Depth of the camera-facing side of an ellipsoid along each orthographic ray (x, y)."""
    # Point p(z) = (x, y, z); head coordinates q = rot^T (p - c); sum (q_i / a_i)^2 = 1 is quadratic in z.
    inv = rot.T / axes[:, None]  # rows scaled: q_i / a_i = inv[i] . (p - c)
    base = np.column_stack([xy[:, 0] - centre[0], xy[:, 1] - centre[1], np.zeros(len(xy))]) @ inv.T
    dz = inv[:, 2]
    qa = float(dz @ dz)
    qb = 2.0 * base @ dz
    qc = (base**2).sum(axis=1) - 1.0
    disc = qb**2 - 4 * qa * qc
    inside = disc > 0
    root = (-qb - np.sqrt(np.maximum(disc, 0.0))) / (2 * qa)
    return centre[2] + root, inside


def _rim_offset(grid_src, head_mask, rim_v, centre, rot, axes, face_width) -> np.ndarray:
    """Smooth depth offset so the head proxy meets the face mesh's outer rim ``rim_v`` (K, 3)."""
    rim_xy = rim_v[:, :2]
    ell, inside = _ellipsoid_front_depth(rim_xy, centre, rot, axes)
    target = rim_v[:, 2]
    delta = np.where(inside, target - ell, target - centre[2])
    offset = np.zeros(len(grid_src))
    pts = grid_src[head_mask]
    if len(pts) == 0:
        return offset
    d2 = ((pts[:, None, :] - rim_xy[None, :, :]) ** 2).sum(axis=2)
    sigma = 0.25 * face_width
    w = np.exp(-d2 / (2 * sigma**2)) + 1e-12
    nearest_w = np.exp(-d2.min(axis=1) / (2 * (0.5 * face_width) ** 2))  # fades away from the face
    offset[head_mask] = (w @ delta) / w.sum(axis=1) * nearest_w
    return offset
