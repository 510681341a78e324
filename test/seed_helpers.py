"""Helpers for the seed-backend tests: the shared folder, the seed's golden files and small fake bundles."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch


def shared_root() -> Path:
    """../shared beside the checkout (or $OPENDR_FACE_SYNTH_SHARED); skip the test when it is absent."""
    default = Path(__file__).resolve().parents[1].parent / "shared"
    path = Path(os.environ.get("OPENDR_FACE_SYNTH_SHARED", default))
    if not (path / "data").is_dir() or not (path / "weights").is_dir():
        pytest.skip(f"shared test data not found at {path} (only CI and developers have it)")
    return path


def seed_fits(shared: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """stem -> (62 de-whitened v1 params, ROI [sx, sy, ex, ey], seed 5-point landmarks (5, 2)) for rr_lfw."""
    folder = shared / "data" / "rr_lfw"
    out = {}
    for line in (folder / "realign_lmk").read_text().splitlines():
        fields = line.split()
        stem = Path(fields[0]).stem
        numbers = np.fromfile(folder / f"{stem}.txt", sep=" ")
        assert numbers.size == 66, f"{stem}.txt holds {numbers.size} numbers, expected 66"
        out[stem] = (numbers[:62], numbers[62:], np.array(fields[2:], dtype=np.float64).reshape(5, 2))
    return out


def seed_lmk_to_ours(points: np.ndarray) -> np.ndarray:
    """The seed's truncated integer index coordinates -> our convention: +0.5 for the truncation, +0.5 for
    the pixel-centre convention."""
    return np.asarray(points, dtype=np.float64) + 1.0


# --------------------------------------------------------------------------------- synthetic models
def synthetic_face(n_vertices: int = 300, seed: int = 0) -> dict[str, np.ndarray]:
    """A small random morphable model in 3DDFA's units: a bumpy half-ellipsoid 'face' (model frame: x right,
    y up, z toward the camera, origin behind the face), Delaunay triangles, 68 keypoint vertices."""
    from scipy.spatial import Delaunay

    rng = np.random.default_rng(seed)
    rim = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    inner = rng.uniform(-1, 1, size=(n_vertices * 3, 2))
    inner = inner[(inner**2).sum(1) < 0.9][: n_vertices - len(rim)]
    xy = np.concatenate([inner, 0.99 * np.stack([np.cos(rim), np.sin(rim)], axis=1)])
    z = np.sqrt(np.clip(1.0 - (xy**2).sum(1), 0, None)) * 0.6 + 0.5
    verts = np.concatenate([xy * [80000, 100000], z[:, None] * 100000], axis=1)  # ~ BFM micrometres
    tri = Delaunay(xy).simplices.astype(np.int64)
    keypoints = rng.choice(len(verts), 68, replace=False)
    return {
        "u": verts.astype(np.float32).ravel(),
        "w_shp": (rng.normal(size=(verts.size, 40)) * 1e-3).astype(np.float32),
        "w_exp": (rng.normal(size=(verts.size, 10)) * 1e2).astype(np.float32),
        "tri": tri,
        "keypoints": keypoints,
    }


def seed_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rz(roll) Ry(yaw) Rx(pitch), degrees (an independent copy of the seed's convention for tests)."""
    y, p, r = np.radians([yaw, pitch, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def params_for_pose(
    yaw: float,
    pitch: float,
    roll: float,
    scale: float = 6e-4,
    translation: tuple[float, float, float] = (60.0, 70.0, -76.6),
) -> np.ndarray:
    """A 62-vector with A = scale * R(yaw, pitch, roll), the given t, zero shape and expression."""
    p = np.zeros(62)
    pose = np.concatenate([scale * seed_rotation(yaw, pitch, roll), np.array(translation)[:, None]], axis=1)
    p[:12] = pose.ravel()
    return p


def write_whitening(path: Path, mean: np.ndarray, std: np.ndarray, v1: bool = True) -> None:
    keys = ("param_mean", "param_std") if v1 else ("mean", "std")
    with open(path, "wb") as f:
        pickle.dump({keys[0]: mean.astype(np.float32), keys[1]: std.astype(np.float32)}, f)


def write_constant_regressor(path: Path, widen: float = 0.25, v1_format: bool = True) -> None:
    """A MobileNet checkpoint whose output is exactly 0 (head zeroed): the fit then equals the whitening mean."""
    from opendr_face_synth.core.fit.tddfa import MobileNetV1

    torch.manual_seed(0)
    net = MobileNetV1(widen)
    with torch.no_grad():
        net.fc.weight.zero_()
        net.fc.bias.zero_()
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    if not v1_format:  # 3DDFA_V2 names the head fc_param and carries a landmark head fc_lm
        state = {k.replace("module.fc.", "module.fc_param."): v for k, v in state.items()}
        state["module.fc_lm.weight"] = torch.zeros(136, int(1024 * widen))
        state["module.fc_lm.bias"] = torch.zeros(136)
    torch.save({"epoch": 1, "state_dict": state}, path)


def write_seed_ddfa(root: Path, face: dict[str, np.ndarray], mean_params: np.ndarray) -> Path:
    """A fake DDFA folder in the seed bundle layout (models/, train.configs/, visualize/tri.mat)."""
    from scipy.io import savemat

    (root / "models").mkdir(parents=True)
    (root / "train.configs").mkdir()
    (root / "visualize").mkdir()
    cfg = root / "train.configs"
    u = face["u"].reshape(-1, 1)
    np.save(cfg / "u_shp.npy", u * 0.75)
    np.save(cfg / "u_exp.npy", u * 0.25)
    np.save(cfg / "w_shp_sim.npy", face["w_shp"])
    np.save(cfg / "w_exp_sim.npy", face["w_exp"])
    np.save(cfg / "keypoints_sim.npy", (3 * face["keypoints"][:, None] + np.arange(3)).ravel().astype(np.int64))
    write_whitening(cfg / "param_whitening.pkl", mean_params, np.full(62, 1e-3))
    savemat(str(root / "visualize" / "tri.mat"), {"tri": (face["tri"].T + 1).astype(np.uint16)})
    write_constant_regressor(root / "models" / "phase1_wpdc_vdc.pth.tar")
    return root
