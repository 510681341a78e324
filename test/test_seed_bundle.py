"""Locating the seed's files: OpenDR / DDFA-folder / 3DDFA_V2 / flat layouts, and one clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from seed_helpers import (
    params_for_pose,
    synthetic_face,
    write_constant_regressor,
    write_seed_ddfa,
    write_whitening,
)

from opendr_face_synth.core.seed_bundle import BundleError, SeedBundle


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def _opendr_project(root: Path) -> Path:
    write_seed_ddfa(root / "algorithm" / "DDFA", synthetic_face(120), params_for_pose(10, 0, 0))
    _touch(root / "checkpoints" / "rs_model" / "latest_net_G.pth")
    return root


def _keypoint_bases(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.savetxt(folder / "u_base.txt", rng.normal(size=204) * 1e4)
    np.savetxt(folder / "w_shp_base.txt", rng.normal(size=(204, 40)))
    np.savetxt(folder / "w_exp_base.txt", rng.normal(size=(204, 10)))


def test_opendr_project_layout(tmp_path: Path):
    root = _opendr_project(tmp_path)
    bundle = SeedBundle.locate(root)
    ddfa = root / "algorithm" / "DDFA"
    assert bundle.paths["generator"] == root / "checkpoints" / "rs_model" / "latest_net_G.pth"
    assert bundle.paths["regressor"] == ddfa / "models" / "phase1_wpdc_vdc.pth.tar"
    assert bundle.paths["whitening"] == ddfa / "train.configs" / "param_whitening.pkl"
    assert bundle.paths["tri_mat"] == ddfa / "visualize" / "tri.mat"
    assert bundle.regressor_family == "v1" and bundle.face_model_kind == "seed"
    model = bundle.face_model()
    assert model.dense and model.n_vertices == 120


def test_ddfa_folder_as_given_to_the_seed_tool(tmp_path: Path):
    root = _opendr_project(tmp_path)
    bundle = SeedBundle.locate(root / "algorithm" / "DDFA")  # the seed tool's -path_3ddfa
    assert bundle.paths["generator"] == (root / "checkpoints" / "rs_model" / "latest_net_G.pth").resolve()
    assert bundle.face_model_kind == "seed"


def test_3ddfa_v2_layout(tmp_path: Path):
    _touch(tmp_path / "weights" / "mb05_120x120.pth")
    _touch(tmp_path / "configs" / "param_mean_std_62d_120x120.pkl")
    _touch(tmp_path / "configs" / "bfm_noneck_v3.pkl")
    _touch(tmp_path / "configs" / "tri.pkl")
    bundle = SeedBundle.locate(tmp_path, need=("fitter", "dense"))
    assert bundle.regressor_family == "v2" and bundle.face_model_kind == "v2"
    assert bundle.paths["regressor"] == tmp_path / "weights" / "mb05_120x120.pth"
    assert bundle.paths["bfm_noneck_v3"] == tmp_path / "configs" / "bfm_noneck_v3.pkl"
    assert "generator" not in bundle.paths


def test_v2_network_prefers_mb1_and_flat_folders_work(tmp_path: Path):
    _touch(tmp_path / "mb05_120x120.pth")
    _touch(tmp_path / "mb1_120x120.pth")
    _touch(tmp_path / "param_mean_std_62d_120x120.pkl")
    _keypoint_bases(tmp_path)
    bundle = SeedBundle.locate(tmp_path, need=("fitter",))
    assert bundle.paths["regressor"].name == "mb1_120x120.pth"
    assert bundle.face_model_kind == "keypoints"
    model = bundle.face_model()
    assert not model.dense and model.triangles.max() < 68


def test_several_folders_are_combined(tmp_path: Path):
    write_constant_regressor(_touch(tmp_path / "net" / "mb05_120x120.pth"))
    write_whitening(tmp_path / "net" / "param_mean_std_62d_120x120.pkl", np.zeros(62), np.ones(62), v1=False)
    _keypoint_bases(tmp_path / "bases")
    _touch(tmp_path / "gen" / "latest_net_G.pth")
    bundle = SeedBundle.locate(tmp_path / "net", tmp_path / "bases", tmp_path / "gen")
    assert bundle.paths["generator"] == tmp_path / "gen" / "latest_net_G.pth"
    assert bundle.paths["u_base"] == tmp_path / "bases" / "u_base.txt"


def test_everything_missing_is_reported_once_with_where_it_was_looked_for(tmp_path: Path):
    _touch(tmp_path / "weights" / "mb05_120x120.pth")  # a V2 network without its whitening
    with pytest.raises(BundleError) as err:
        SeedBundle.locate(tmp_path, need=("fitter", "generator"))
    text = str(err.value)
    assert "latest_net_G.pth" in text and str(tmp_path / "checkpoints" / "rs_model" / "latest_net_G.pth") in text
    assert "param_mean_std_62d_120x120.pkl" in text  # the V2 network's own whitening, not v1's
    assert "w_shp_sim" in text and "bfm_noneck_v3" in text and "u_base" in text  # every face-model option


def test_a_keypoint_model_does_not_satisfy_a_dense_need(tmp_path: Path):
    _keypoint_bases(tmp_path)
    assert SeedBundle.locate(tmp_path, need=()).face_model_kind == "keypoints"
    with pytest.raises(BundleError, match="no dense face model"):
        SeedBundle.locate(tmp_path, need=("dense",))


def test_require_names_the_missing_role(tmp_path: Path):
    _keypoint_bases(tmp_path)
    bundle = SeedBundle.locate(tmp_path, need=())
    with pytest.raises(BundleError, match="generator"):
        bundle.require("generator")
    with pytest.raises(ValueError, match="needs among"):
        SeedBundle.locate(tmp_path, need=("everything",))
