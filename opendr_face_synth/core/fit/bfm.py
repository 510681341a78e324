"""The Basel Face Model as 3DDFA uses it: 62 parameters -> 68 landmarks or a dense mesh.

Three file layouts are read (seed-spec §4):

* the seed bundle (3DDFA v1, ``train.configs/``): ``u_shp.npy``, ``u_exp.npy``, ``w_shp_sim.npy``,
  ``w_exp_sim.npy``, ``keypoints_sim.npy`` and ``visualize/tri.mat`` (1-based, (3, F)): 53,215 vertices;
* 3DDFA_V2: ``configs/bfm_noneck_v3.pkl`` (keys ``u``, ``w_shp``, ``w_exp``, ``keypoints``) + ``configs/tri.pkl``
  (0-based, (3, F)): 38,365 vertices;
* the 68-keypoint bases alone (``u_base.txt``, ``w_shp_base.txt``, ``w_exp_base.txt``): no dense mesh. The model
  then stands in the 68 landmarks for the mesh, with a fixed triangulation of them (see ``keypoint_triangles``),
  so that pose, landmarks and a coarse face proxy still reach the rest of the pipeline.

Frames: the model frame is 3DDFA's (x to image-right, y up, z toward the camera). ``crop_to_camera`` maps
model points through the 62 parameters into our camera frame (core/types.py: source-image pixels, y down,
z = depth away from the camera). Angles follow the seed convention (seed-spec §5).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import Delaunay, cKDTree

from ..pose import angles_from_rotation_seed
from ..types import HeadPose

CROP_SIZE = 120  # 3DDFA's network input side (seed-spec §3.1)
N_SHAPE = 40
N_EXP = 10
N_PARAMS = 12 + N_SHAPE + N_EXP

# The seed re-aligns rotated meshes on these dense vertices (image-left eye, image-right eye, nose, mouth
# corners; seed-spec §6.3). V2's noneck subset keeps the same ids for them (§4.3).
SEED_ALIGN_IDS = np.array([4150, 11744, 8191, 5650, 10922], dtype=np.int64)
V1_VERTEX_COUNT = 53215
V2_VERTEX_COUNT = 38365

# iBUG-68 index of the mirror-symmetric landmark (public iBUG-300W annotation scheme).
IBUG68_MIRROR = np.array(
    list(range(16, -1, -1))  # jaw 0..16
    + list(range(26, 16, -1))  # brows 17..26
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # lower nose
    + [45, 44, 43, 42, 47, 46]  # image-left eye 36..41 -> image-right eye
    + [39, 38, 37, 36, 41, 40]  # image-right eye 42..47
    + [54, 53, 52, 51, 50, 49, 48]  # outer upper lip 48..54
    + [59, 58, 57, 56, 55]  # outer lower lip 55..59
    + [64, 63, 62, 61, 60]  # inner upper lip 60..64
    + [67, 66, 65],  # inner lower lip 65..67
    dtype=np.int64,
)

# Five points from 68 (seed-spec §2): mean of each eye, nose tip 33, mouth corners 48 and 54. As vertex-id
# lists of equal length (6) so that ``FaceFit.landmark_ids5`` can be a (5, 6) array whose row means are the points.
IBUG68_FIVE_IDS = np.array([list(range(36, 42)), list(range(42, 48)), [33] * 6, [48] * 6, [54] * 6], dtype=np.int64)

# Seed index coordinates (integer = pixel centre, as OpenCV/numpy indexing) -> ours (pixel centre at i + 0.5).
PIXEL_CENTRE = 0.5


class ModelFilesError(FileNotFoundError):
    """Files of a face model or 3DDFA bundle are missing or inconsistent; the message lists all of them."""


def _ensure_files(paths: dict[str, Path | None], what: str) -> None:
    """Raise one ModelFilesError naming every missing file (with where it was looked for)."""
    missing = [f"  {role}: {p}" for role, p in paths.items() if p is None or not Path(p).is_file()]
    if missing:
        raise ModelFilesError(f"{what}: {len(missing)} file(s) missing:\n" + "\n".join(missing))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers of numpy arrays and nothing else (the 3DDFA .pkl files are just that)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle API
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only numpy arrays are expected")


def load_numpy_pickle(path: str | Path):  # noqa: ANN201 - dict or array
    """Load a 3DDFA .pkl (numpy arrays in a dict, or one array) without running arbitrary pickled code."""
    with open(path, "rb") as f:
        return _NumpyOnlyUnpickler(f, encoding="latin1").load()


def _as_vertex_ids(flat_keypoints: np.ndarray) -> np.ndarray:
    """3DDFA keypoint files hold flattened xyz indices (3k, 3k+1, 3k+2): return the vertex ids k."""
    flat = np.asarray(flat_keypoints, dtype=np.int64).ravel()
    if flat.size == 68:
        return flat
    if flat.size != 204 or not np.array_equal(
        flat.reshape(68, 3) - flat.reshape(68, 3)[:, :1], np.tile([0, 1, 2], (68, 1))
    ):
        raise ModelFilesError(f"keypoints: expected 204 flattened xyz indices (3k, 3k+1, 3k+2), got {flat.shape}")
    return flat.reshape(68, 3)[:, 0] // 3


@dataclass
class MorphableModel:
    """Mean + 40 shape + 10 expression components, dense (with triangles) or 68 keypoints only.

    Arrays are interleaved xyz as in 3DDFA (vertex i = rows 3i, 3i+1, 3i+2). ``triangles`` are 0-based and
    wound counter-clockwise seen from outside the head (so from the camera for faces that face it).
    """

    u_base: np.ndarray  # (204,)
    w_shp_base: np.ndarray  # (204, 40)
    w_exp_base: np.ndarray  # (204, 10)
    u: np.ndarray | None = None  # (3N,)
    w_shp: np.ndarray | None = None  # (3N, 40)
    w_exp: np.ndarray | None = None  # (3N, 10)
    triangles: np.ndarray | None = None  # (F, 3) int64
    keypoint_ids: np.ndarray | None = None  # (68,) vertex ids of the landmarks in the dense mesh
    mirror_ids: np.ndarray | None = None  # (N,) mirror-symmetric vertex of each vertex
    source: str = ""

    @property
    def dense(self) -> bool:
        return self.u is not None

    @property
    def n_vertices(self) -> int:
        return (self.u.size if self.u is not None else self.u_base.size) // 3

    # ----------------------------------------------------------------------------------------- loaders
    @classmethod
    def from_seed_configs(cls, train_configs: str | Path, tri_mat: str | Path) -> MorphableModel:
        """3DDFA v1 / seed bundle: ``train.configs/*.npy`` and ``visualize/tri.mat`` (1-based, (3, F))."""
        d = Path(train_configs)
        return cls.from_seed_files(
            d / "u_shp.npy", d / "u_exp.npy", d / "w_shp_sim.npy", d / "w_exp_sim.npy", d / "keypoints_sim.npy", tri_mat
        )

    @classmethod
    def from_seed_files(
        cls,
        u_shp: str | Path,
        u_exp: str | Path,
        w_shp_sim: str | Path,
        w_exp_sim: str | Path,
        keypoints_sim: str | Path,
        tri_mat: str | Path,
    ) -> MorphableModel:
        """The seed's dense model from its six files (u = u_shp + u_exp, as R&R does)."""
        paths = {
            "mean shape": Path(u_shp),
            "mean expression": Path(u_exp),
            "shape basis": Path(w_shp_sim),
            "expression basis": Path(w_exp_sim),
            "keypoint indices": Path(keypoints_sim),
            "triangles": Path(tri_mat),
        }
        _ensure_files(paths, "3DDFA v1 dense face model")
        from scipy.io import loadmat

        u = (np.load(paths["mean shape"]) + np.load(paths["mean expression"])).astype(np.float32).ravel()
        mat = loadmat(str(paths["triangles"]))
        if "tri" not in mat:
            raise ModelFilesError(
                f"{tri_mat}: no 'tri' array (found {sorted(k for k in mat if not k.startswith('_'))})"
            )
        tri = np.asarray(mat["tri"], dtype=np.int64)
        tri = tri.T if tri.shape[0] == 3 else tri
        return cls._dense(
            u,
            np.load(paths["shape basis"]),
            np.load(paths["expression basis"]),
            tri - 1,
            _as_vertex_ids(np.load(paths["keypoint indices"])),
            source=f"3DDFA v1 ({Path(u_shp).parent})",
        )

    @classmethod
    def from_v2(cls, bfm_pkl: str | Path, tri_pkl: str | Path | None = None) -> MorphableModel:
        """3DDFA_V2: ``bfm_noneck_v3.pkl`` (+ ``tri.pkl`` (3, F) 0-based, else the pickle's own ``tri``)."""
        paths: dict[str, Path | None] = {"face model": Path(bfm_pkl)}
        if tri_pkl is not None:
            paths["triangles"] = Path(tri_pkl)
        _ensure_files(paths, "3DDFA_V2 dense face model")
        bfm = load_numpy_pickle(bfm_pkl)
        missing = [k for k in ("u", "w_shp", "w_exp", "keypoints") if k not in bfm]
        tri = load_numpy_pickle(tri_pkl) if tri_pkl is not None else bfm.get("tri")
        if tri is None:
            missing.append("tri (no tri.pkl given)")
        if missing:
            raise ModelFilesError(f"3DDFA_V2 face model {bfm_pkl}: missing keys {missing}")
        tri = np.asarray(tri, dtype=np.int64)
        tri = tri.T if tri.shape[0] == 3 and tri.shape[1] != 3 else tri
        return cls._dense(
            np.asarray(bfm["u"], dtype=np.float32).ravel(),
            bfm["w_shp"],
            bfm["w_exp"],
            tri,
            _as_vertex_ids(bfm["keypoints"]),
            source=f"3DDFA_V2 ({bfm_pkl})",
        )

    @classmethod
    def from_keypoint_bases(cls, u_base: str | Path, w_shp_base: str | Path, w_exp_base: str | Path) -> MorphableModel:
        """The 68-landmark bases as text (3DDFA v1 ``u_base.txt``, ``w_shp_base.txt``, ``w_exp_base.txt``)."""
        paths = {
            "keypoint mean": Path(u_base),
            "keypoint shape basis": Path(w_shp_base),
            "keypoint expression basis": Path(w_exp_base),
        }
        _ensure_files(paths, "3DDFA 68-landmark model")
        model = cls(
            u_base=np.loadtxt(u_base, dtype=np.float32).ravel(),
            w_shp_base=np.loadtxt(w_shp_base, dtype=np.float32),
            w_exp_base=np.loadtxt(w_exp_base, dtype=np.float32),
            source=f"68-landmark bases ({Path(u_base).parent})",
        )
        model._check()
        model.triangles = keypoint_triangles(model.u_base)
        model.mirror_ids = IBUG68_MIRROR.copy()
        return model

    @classmethod
    def _dense(cls, u, w_shp, w_exp, triangles, keypoint_ids, source: str) -> MorphableModel:
        u = np.asarray(u, dtype=np.float32).ravel()
        w_shp = np.asarray(w_shp, dtype=np.float32)[:, :N_SHAPE]
        w_exp = np.asarray(w_exp, dtype=np.float32)[:, :N_EXP]
        flat = (3 * keypoint_ids[:, None] + np.arange(3)).ravel()
        model = cls(
            u_base=u[flat],
            w_shp_base=w_shp[flat],
            w_exp_base=w_exp[flat],
            u=u,
            w_shp=w_shp,
            w_exp=w_exp,
            triangles=np.asarray(triangles, dtype=np.int64),
            keypoint_ids=keypoint_ids,
            source=source,
        )
        model._check()
        model.triangles = orient_outward(u.reshape(-1, 3), model.triangles)
        model.mirror_ids = mirror_vertex_ids(u.reshape(-1, 3))
        return model

    def _check(self) -> None:
        """One error listing every inconsistent array shape."""
        problems = []
        if self.u_base.shape != (204,):
            problems.append(f"keypoint mean has shape {self.u_base.shape}, expected (204,)")
        if self.w_shp_base.shape != (204, N_SHAPE):
            problems.append(f"keypoint shape basis has shape {self.w_shp_base.shape}, expected (204, {N_SHAPE})")
        if self.w_exp_base.shape != (204, N_EXP):
            problems.append(f"keypoint expression basis has shape {self.w_exp_base.shape}, expected (204, {N_EXP})")
        if self.u is not None:
            n3 = self.u.size
            if n3 % 3:
                problems.append(f"mean has {n3} values, not a multiple of 3")
            if self.w_shp is None or self.w_shp.shape != (n3, N_SHAPE):
                problems.append(
                    f"shape basis {None if self.w_shp is None else self.w_shp.shape}, expected ({n3}, {N_SHAPE})"
                )
            if self.w_exp is None or self.w_exp.shape != (n3, N_EXP):
                problems.append(
                    f"expression basis {None if self.w_exp is None else self.w_exp.shape}, expected ({n3}, {N_EXP})"
                )
            tri = self.triangles
            if tri is None or tri.ndim != 2 or tri.shape[1] != 3:
                problems.append(f"triangles have shape {None if tri is None else tri.shape}, expected (F, 3)")
            elif tri.size and (tri.min() < 0 or tri.max() >= n3 // 3):
                problems.append(f"triangle indices span [{tri.min()}, {tri.max()}], outside 0..{n3 // 3 - 1}")
            if self.keypoint_ids is None or self.keypoint_ids.max() >= n3 // 3:
                problems.append("keypoint indices point outside the mesh")
        if problems:
            raise ModelFilesError(f"inconsistent face model {self.source}:\n  " + "\n  ".join(problems))

    def align_ids5(self) -> np.ndarray:
        """Vertex ids for the five alignment points: the seed's dense ids on the 3DDFA meshes, else (5, 6)
        lists of landmark vertices (rows averaged: eye centres, nose tip 33, mouth corners)."""
        if self.dense and self.n_vertices in (V1_VERTEX_COUNT, V2_VERTEX_COUNT):
            return SEED_ALIGN_IDS.copy()
        if self.dense:
            return self.keypoint_ids[IBUG68_FIVE_IDS]
        return IBUG68_FIVE_IDS.copy()


def orient_outward(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Flip the whole triangle list if its normals mostly point into the mesh (one winding for the model)."""
    v = np.asarray(vertices, dtype=np.float64)
    a, b, c = v[triangles[:, 0]], v[triangles[:, 1]], v[triangles[:, 2]]
    normals = np.cross(b - a, c - a)
    outward = float(np.einsum("ij,ij->", normals, (a + b + c) / 3.0 - v.mean(axis=0)))
    return triangles if outward >= 0 else triangles[:, [0, 2, 1]].copy()


def mirror_vertex_ids(vertices: np.ndarray) -> np.ndarray:
    """For each vertex, the nearest vertex to its mirror image across the model's x = 0 plane."""
    v = np.asarray(vertices, dtype=np.float64)
    _, ids = cKDTree(v).query(v * np.array([-1.0, 1.0, 1.0]))
    return np.asarray(ids, dtype=np.int64)


def keypoint_triangles(u_base: np.ndarray) -> np.ndarray:
    """Fixed triangulation of the 68 landmarks: Delaunay of the frontal mean landmarks (model x, y).

    It covers the convex hull of the face's landmarks (mouth and eyes are filled), which is enough for a
    coarse proxy surface when no dense model is available. Wound counter-clockwise seen from the front.
    """
    pts = np.asarray(u_base, dtype=np.float64).reshape(-1, 3)[:, :2]
    tri = np.asarray(Delaunay(pts).simplices, dtype=np.int64)
    a, b, c = pts[tri[:, 0]], pts[tri[:, 1]], pts[tri[:, 2]]
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    # Model frame is y up, z toward the viewer: counter-clockwise from the front = positive 2D cross product.
    tri[cross < 0] = tri[cross < 0][:, [0, 2, 1]]
    return tri


# --------------------------------------------------------------------------------------------- params
def split_params(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, 62) -> A (B, 3, 3), t (B, 3), alpha_shp (B, 40), alpha_exp (B, 10) (seed-spec §3.3)."""
    pose = params[:, :12].reshape(-1, 3, 4)
    return pose[:, :, :3], pose[:, :, 3], params[:, 12:52], params[:, 52:62]


def model_points(params: torch.Tensor, mean: torch.Tensor, w_shp: torch.Tensor, w_exp: torch.Tensor) -> torch.Tensor:
    """Shape in the model frame, (B, N, 3): mean + W_shp a_shp + W_exp a_exp, de-interleaved."""
    _, _, a_shp, a_exp = split_params(params)
    flat = mean[None] + a_shp @ w_shp.T + a_exp @ w_exp.T
    return flat.reshape(params.shape[0], -1, 3)


def crop_to_camera(
    points: torch.Tensor, params: torch.Tensor, roi: torch.Tensor, convention: str = "v1"
) -> torch.Tensor:
    """Model-frame points (B, N, 3) -> our camera frame in source-image pixels (B, N, 3).

    v = A p + t gives the 120 crop frame with y up (seed-spec §4.2). ``v1`` (seed, R&R): y <- 121 - y;
    ``v2`` (3DDFA_V2, §4.3): x <- x - 1, z <- z - 1, y <- 120 - y. Then the ROI scaling to image pixels,
    z scaled by the mean of the two scales. V2's extra ``z - min(z)`` is left out: a depth offset changes
    nothing in an orthographic view, and leaving it out keeps z independent of which points are mapped.
    Last, seed index coordinates become ours (pixel centre at +0.5) and z flips to depth away from the camera.
    """
    a, t, _, _ = split_params(params)
    v = points @ a.transpose(1, 2) + t[:, None, :]
    x, y, z = v.unbind(-1)
    if convention == "v1":
        y = CROP_SIZE + 1 - y
    elif convention == "v2":
        x, z, y = x - 1, z - 1, CROP_SIZE - y
    else:
        raise ValueError(f"unknown 3DDFA convention {convention!r} (expected 'v1' or 'v2')")
    sx, sy, ex, ey = roi.unbind(-1)
    scale_x = ((ex - sx) / CROP_SIZE)[:, None]
    scale_y = ((ey - sy) / CROP_SIZE)[:, None]
    x = x * scale_x + sx[:, None] + PIXEL_CENTRE
    y = y * scale_y + sy[:, None] + PIXEL_CENTRE
    z = -z * (scale_x + scale_y) / 2
    return torch.stack([x, y, z], dim=-1)


# ---------------------------------------------------------------------------------------------- pose
def rotation_from_params(params: np.ndarray) -> tuple[np.ndarray, float]:
    """Rotation (rows r1, r2, r1 x r2 of the normalised A; third row of A ignored) and scale (§5)."""
    a = np.asarray(params, dtype=np.float64)[:12].reshape(3, 4)[:, :3]
    n1, n2 = np.linalg.norm(a[0]), np.linalg.norm(a[1])
    r1, r2 = a[0] / n1, a[1] / n2
    return np.stack([r1, r2, np.cross(r1, r2)]), float((n1 + n2) / 2)


def pose_from_params(params: np.ndarray) -> HeadPose:
    """Head pose in degrees, seed convention: yaw > 0 = nose toward image-right, pitch > 0 = head down."""
    rot, _ = rotation_from_params(params)
    return angles_from_rotation_seed(rot)
