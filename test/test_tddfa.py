"""The 3ddfa fitter: crop rules, checkpoint loading, the BFM path, the seed's conventions and real fits."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from seed_helpers import (
    params_for_pose,
    seed_fits,
    seed_lmk_to_ours,
    shared_root,
    synthetic_face,
    write_constant_regressor,
    write_seed_ddfa,
    write_whitening,
)

from opendr_face_synth.core.fit import bfm as bfm_mod
from opendr_face_synth.core.fit.base import FitError
from opendr_face_synth.core.fit.bfm import IBUG68_MIRROR, ModelFilesError, MorphableModel
from opendr_face_synth.core.fit.tddfa import (
    CheckpointError,
    TDDFAFitter,
    crop_rois,
    load_regressor,
    load_whitening,
    roi_from_box,
    roi_from_landmarks,
)
from opendr_face_synth.core.pose import angles_from_rotation_seed, rotation_seed
from opendr_face_synth.core.seed_bundle import BundleError, SeedBundle
from opendr_face_synth.core.types import FaceDetection, FaceFit

MEAN_POSE = (20.0, 5.0, 3.0)


# ----------------------------------------------------------------------------------- pure functions
def test_roi_from_detector_box_follows_v2_rule():
    roi = roi_from_box(np.array([[0.0, 0.0, 100.0, 100.0], [10.0, 20.0, 50.0, 80.0]]))
    # s = 100: centre (50, 50 + 14), side int(158)
    np.testing.assert_allclose(roi[0], [-29.0, -15.0, 129.0, 143.0])
    s = (40 + 60) / 2
    side = math.floor(1.58 * s)
    np.testing.assert_allclose(
        roi[1], [30 - side / 2, 50 + 0.14 * s - side / 2, 30 + side / 2, 50 + 0.14 * s + side / 2]
    )


def test_roi_from_landmarks_is_square_of_the_bbox_diagonal():
    pts = np.array([[[10.0, 20.0], [50.0, 80.0], [30.0, 40.0]]])
    roi = roi_from_landmarks(pts)[0]
    half = 60 * math.sqrt(2) / 2
    np.testing.assert_allclose(roi, [30 - half, 50 - half, 30 + half, 50 + half])


def _crop_img(img: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """The seed's crop: rounded window, zeros outside the image."""
    h, w = img.shape[:2]
    sx, sy, ex, ey = (int(round(v)) for v in roi)
    out = np.zeros((ey - sy, ex - sx, img.shape[2]), img.dtype)
    x0, y0, x1, y1 = max(sx, 0), max(sy, 0), min(ex, w), min(ey, h)
    out[y0 - sy : y1 - sy, x0 - sx : x1 - sx] = img[y0:y1, x0:x1]
    return out


def test_batched_crop_matches_seed_crop_and_opencv_resize():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(200, 300, 3), dtype=np.uint8)
    rois = np.array(
        [
            [10.3, 20.7, 150.2, 160.6],
            [-30.5, -10, 90, 110],
            [200, 100, 340, 240],
            [50, 50, 120, 120],
            [5, 5, 305, 205],
            [100.5, 80.5, 160.5, 140.5],
        ]
    )
    expected = np.stack([cv2.resize(_crop_img(img, r), (120, 120), interpolation=cv2.INTER_LINEAR) for r in rois])
    got = crop_rois(torch.from_numpy(img).permute(2, 0, 1)[None].float(), torch.tensor(rois, dtype=torch.float32))
    diff = np.abs(got.permute(0, 2, 3, 1).numpy() - expected)
    assert diff.max() <= 1.0  # OpenCV's fixed-point rounding
    assert diff.mean() < 0.15  # and only now and then


def test_seed_angles_invert_seed_rotation_and_pose_from_params():
    for angles in [(30, 10, -5), (-45, -20, 12), (0, 0, 0), (80, 5, 3)]:
        rot = rotation_seed(*angles)
        got = angles_from_rotation_seed(rot)
        np.testing.assert_allclose([got.yaw, got.pitch, got.roll], angles, atol=1e-9)
        pose = bfm_mod.pose_from_params(params_for_pose(*angles))
        np.testing.assert_allclose([pose.yaw, pose.pitch, pose.roll], angles, atol=1e-6)


# ------------------------------------------------------------------------------------ checkpoints
def test_regressor_checkpoints_v1_and_v2_formats_load(tmp_path: Path):
    write_constant_regressor(tmp_path / "v1.pth.tar", widen=0.25, v1_format=True)
    write_constant_regressor(tmp_path / "v2.pth", widen=0.5, v1_format=False)
    assert load_regressor(tmp_path / "v1.pth.tar").widen_factor == 0.25
    net = load_regressor(tmp_path / "v2.pth")
    assert net.widen_factor == 0.5
    assert torch.count_nonzero(net(torch.zeros(1, 3, 120, 120))) == 0


def test_regressor_checkpoint_mismatch_names_every_key(tmp_path: Path):
    write_constant_regressor(tmp_path / "bad.pth.tar")
    ckpt = torch.load(tmp_path / "bad.pth.tar", weights_only=True)
    state = ckpt["state_dict"]
    del state["module.dw3_1.bn_dw.running_var"]
    state["module.dw4_2.conv_sep.weight"] = torch.zeros(3, 3, 1, 1)
    state["module.extra.weight"] = torch.zeros(2)
    torch.save(ckpt, tmp_path / "bad.pth.tar")
    with pytest.raises(CheckpointError) as err:
        load_regressor(tmp_path / "bad.pth.tar")
    text = str(err.value)
    for key in ("dw3_1.bn_dw.running_var", "dw4_2.conv_sep.weight", "extra.weight"):
        assert key in text
    assert "missing" in text and "unexpected" in text and "mis-shaped" in text


def test_checkpoint_with_pickled_objects_needs_trust(tmp_path: Path):
    import argparse

    write_constant_regressor(tmp_path / "old.pth.tar")
    ckpt = torch.load(tmp_path / "old.pth.tar", weights_only=True)
    ckpt["args"] = argparse.Namespace(lr=0.1)  # old training scripts stored their options
    torch.save(ckpt, tmp_path / "old.pth.tar")
    with pytest.raises(CheckpointError, match="trust_checkpoint=True"):
        load_regressor(tmp_path / "old.pth.tar")
    assert load_regressor(tmp_path / "old.pth.tar", trust_checkpoint=True).widen_factor == 0.25


def test_whitening_files_say_their_convention(tmp_path: Path):
    write_whitening(tmp_path / "v1.pkl", np.arange(62.0), np.ones(62), v1=True)
    write_whitening(tmp_path / "v2.pkl", np.arange(62.0), np.ones(62), v1=False)
    assert load_whitening(tmp_path / "v1.pkl")[2] == "v1"
    assert load_whitening(tmp_path / "v2.pkl")[2] == "v2"
    with open(tmp_path / "odd.pkl", "wb") as f:
        pickle.dump({"average": np.zeros(62)}, f)
    with pytest.raises(ModelFilesError, match="param_mean"):
        load_whitening(tmp_path / "odd.pkl")


# ---------------------------------------------------------------------------- synthetic dense model
@pytest.fixture()
def synthetic_bundle(tmp_path: Path) -> tuple[Path, dict]:
    face = synthetic_face(300)
    root = write_seed_ddfa(tmp_path / "algorithm" / "DDFA", face, params_for_pose(*MEAN_POSE))
    return root, face


def _seed_map_v1(params: np.ndarray, points: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """Independent numpy version of seed-spec §4.2 + our frame (pixel centre +0.5, z away from the camera)."""
    pose = params[:12].reshape(3, 4)
    v = pose[:, :3] @ points.T + pose[:, 3:]
    v[1] = 121 - v[1]
    sx, sy, ex, ey = roi
    kx, ky = (ex - sx) / 120, (ey - sy) / 120
    return np.stack([v[0] * kx + sx + 0.5, v[1] * ky + sy + 0.5, -v[2] * (kx + ky) / 2], axis=1)


def test_synthetic_seed_bundle_gives_the_dense_path_end_to_end(synthetic_bundle):
    root, face = synthetic_bundle
    bundle = SeedBundle.locate(root.parent.parent, need=("fitter", "dense"))  # the OpenDR project layout
    assert bundle.face_model_kind == "seed" and bundle.regressor_family == "v1"
    fitter = TDDFAFitter.from_bundle(bundle)
    image = np.random.default_rng(0).integers(0, 256, (200, 240, 3), dtype=np.uint8)
    fits = fitter.fit(image, [FaceDetection(box=(60, 50, 160, 150), score=1.0)])
    assert len(fits) == 1 and isinstance(fits[0], FaceFit)
    fit = fits[0]
    n = face["u"].size // 3
    assert fit.vertices.shape == (n, 3) and fit.vertices.dtype == np.float32
    assert fit.triangles.shape == face["tri"].shape and fit.triangles.dtype == np.int64
    assert sorted(map(sorted, fit.triangles.tolist())) == sorted(map(sorted, face["tri"].tolist()))
    np.testing.assert_allclose([fit.pose.yaw, fit.pose.pitch, fit.pose.roll], MEAN_POSE, atol=1e-3)

    # The network outputs 0, so the fit is the whitening mean; vertices follow §4.2 with the final ROI.
    params = fit.params["params62"].astype(np.float64)
    np.testing.assert_allclose(params, params_for_pose(*MEAN_POSE), rtol=1e-5, atol=1e-5)
    shape = (face["u"] + face["w_shp"] @ params[12:52] + face["w_exp"] @ params[52:]).reshape(-1, 3)
    np.testing.assert_allclose(fit.vertices, _seed_map_v1(params, shape, fit.params["roi"]), rtol=1e-4, atol=1e-2)

    # Two-step: the saved ROI is the landmark ROI of the first fit, from the box ROI.
    first = roi_from_box(np.array([60, 50, 160, 150.0]) - 0.5)[0]
    lm_first = _seed_map_v1(params, shape[face["keypoints"]], first)[:, :2] - 0.5
    np.testing.assert_allclose(fit.params["roi"], roi_from_landmarks(lm_first[None])[0], rtol=1e-4, atol=1e-3)

    np.testing.assert_allclose(fit.landmarks68, fit.vertices[face["keypoints"]], atol=1e-3)
    assert fit.landmark_ids5.shape == (5, 6)
    np.testing.assert_allclose(fit.vertices[fit.landmark_ids5].mean(axis=1)[:, :2], fit.landmarks5, atol=1e-3)
    lm = fit.landmarks68[:, :2]
    np.testing.assert_allclose(
        fit.landmarks5, [lm[36:42].mean(0), lm[42:48].mean(0), lm[33], lm[48], lm[54]], atol=1e-4
    )
    assert fit.mirror_ids.shape == (n,) and fit.mirror_ids.max() < n
    # The model origin (behind the face): farther from the camera than every vertex.
    assert fit.head_centre.shape == (3,) and fit.head_centre[2] > fit.vertices[:, 2].max()


def test_dense_triangles_face_the_camera_counter_clockwise(synthetic_bundle):
    root, face = synthetic_bundle
    model = MorphableModel.from_seed_configs(root / "train.configs", root / "visualize" / "tri.mat")
    params = torch.tensor(params_for_pose(0, 0, 0)[None], dtype=torch.float32)
    mean = torch.tensor(model.u)
    pts = bfm_mod.crop_to_camera(mean.view(1, -1, 3), params, torch.tensor([[0.0, 0, 120, 120]]))[0].numpy()
    a, b, c = (pts[model.triangles[:, i], :2] for i in range(3))
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    assert (cross < 0).mean() > 0.95  # counter-clockwise on screen (y down) = facing the camera


def test_positive_yaw_turns_the_nose_to_image_right(synthetic_bundle):
    root, face = synthetic_bundle
    model = MorphableModel.from_seed_configs(root / "train.configs", root / "visualize" / "tri.mat")
    nose = int(np.argmax(model.u.reshape(-1, 3)[:, 2]))  # the point nearest to the camera
    for yaw in (25.0, -25.0):
        params = torch.tensor(params_for_pose(yaw, 0, 0)[None], dtype=torch.float32)
        roi = torch.tensor([[0.0, 0, 120, 120]])
        pts = bfm_mod.crop_to_camera(torch.tensor(model.u).view(1, -1, 3), params, roi)[0]
        origin = bfm_mod.crop_to_camera(torch.zeros(1, 1, 3), params, roi)[0, 0]
        assert math.copysign(1, float(pts[nose, 0] - origin[0])) == math.copysign(1, yaw)


def test_v2_layout_dense_model_loads(tmp_path: Path):
    face = synthetic_face(200, seed=3)
    cfg = tmp_path / "configs"
    cfg.mkdir()
    flat_kp = (3 * face["keypoints"][:, None] + np.arange(3)).ravel()
    with open(cfg / "bfm_noneck_v3.pkl", "wb") as f:
        pickle.dump({"u": face["u"][:, None], "w_shp": face["w_shp"], "w_exp": face["w_exp"], "keypoints": flat_kp}, f)
    with open(cfg / "tri.pkl", "wb") as f:
        pickle.dump(face["tri"].T.astype(np.int32), f)
    (tmp_path / "weights").mkdir()
    write_constant_regressor(tmp_path / "weights" / "mb05_120x120.pth", widen=0.5, v1_format=False)
    write_whitening(cfg / "param_mean_std_62d_120x120.pkl", params_for_pose(-30, 0, 0), np.full(62, 1e-3), v1=False)
    bundle = SeedBundle.locate(tmp_path, need=("fitter", "dense"))
    assert bundle.face_model_kind == "v2" and bundle.regressor_family == "v2"
    fitter = TDDFAFitter.from_bundle(bundle)
    assert fitter.convention == "v2" and fitter.model.n_vertices == len(face["u"]) // 3
    fit = fitter.fit(np.zeros((100, 100, 3), np.uint8), [FaceDetection(box=(20, 20, 80, 80), score=1.0)])[0]
    assert isinstance(fit, FaceFit) and abs(fit.pose.yaw + 30) < 1e-3


def test_missing_model_files_give_one_error_listing_all(synthetic_bundle):
    root, _ = synthetic_bundle
    (root / "train.configs" / "w_exp_sim.npy").unlink()
    (root / "visualize" / "tri.mat").unlink()
    with pytest.raises(ModelFilesError) as err:
        MorphableModel.from_seed_configs(root / "train.configs", root / "visualize" / "tri.mat")
    assert "w_exp_sim.npy" in str(err.value) and "tri.mat" in str(err.value)
    with pytest.raises(BundleError) as err:
        SeedBundle.locate(root, need=("fitter", "dense"))
    assert "w_exp_sim" in str(err.value) and "tri_mat" in str(err.value)


def test_inconsistent_model_shapes_are_reported(synthetic_bundle):
    root, face = synthetic_bundle
    np.save(root / "train.configs" / "w_shp_sim.npy", face["w_shp"][:-3])
    with pytest.raises(ModelFilesError, match="shape basis"):
        MorphableModel.from_seed_configs(root / "train.configs", root / "visualize" / "tri.mat")


def test_degenerate_box_gives_fit_error(synthetic_bundle):
    root, _ = synthetic_bundle
    fitter = TDDFAFitter.from_bundle(SeedBundle.locate(root, need=("fitter",)))
    dets = [FaceDetection(box=(10, 10, 10.5, 10.5), score=1.0), FaceDetection(box=(20, 20, 80, 80), score=1.0)]
    fits = fitter.fit(np.zeros((100, 100, 3), np.uint8), dets)
    assert isinstance(fits[0], FitError) and isinstance(fits[1], FaceFit)


# ------------------------------------------------------------------------------ the shared real data
@pytest.fixture(scope="module")
def shared() -> Path:
    return shared_root()


@pytest.fixture(scope="module")
def keypoint_model(shared: Path) -> MorphableModel:
    d = shared / "weights" / "3ddfa_v1"
    return MorphableModel.from_keypoint_bases(d / "u_base.txt", d / "w_shp_base.txt", d / "w_exp_base.txt")


@pytest.fixture(scope="module")
def v2_fitter(shared: Path, keypoint_model: MorphableModel) -> TDDFAFitter:
    d = shared / "weights" / "3ddfa_v2"
    return TDDFAFitter(d / "mb05_120x120.pth", d / "param_mean_std_62d_120x120.pkl", keypoint_model)


def test_real_mb05_checkpoint_is_widen_half(shared: Path):
    net = load_regressor(shared / "weights" / "3ddfa_v2" / "mb05_120x120.pth")
    assert net.widen_factor == 0.5 and net.fc.out_features == 62


def test_keypoint_bases_agree_with_the_mean_mesh(shared: Path, keypoint_model: MorphableModel):
    d = shared / "weights" / "3ddfa_v1"
    u = (np.load(d / "u_shp.npy") + np.load(d / "u_exp.npy")).ravel()
    np.testing.assert_allclose(keypoint_model.u_base, u[np.load(d / "keypoints_sim.npy")], atol=1.0)


def test_seed_fits_give_the_seeds_landmarks_and_yaw_signs(shared: Path, keypoint_model: MorphableModel):
    base = [
        torch.tensor(a, dtype=torch.float64)
        for a in (keypoint_model.u_base, keypoint_model.w_shp_base, keypoint_model.w_exp_base)
    ]
    for stem, (params, roi, seed5) in seed_fits(shared).items():
        p = torch.tensor(params[None])
        lm = bfm_mod.crop_to_camera(bfm_mod.model_points(p, *base), p, torch.tensor(roi[None]), "v1")[0].numpy()
        five = np.stack([lm[36:42, :2].mean(0), lm[42:48, :2].mean(0), lm[33, :2], lm[48, :2], lm[54, :2]])
        err = np.linalg.norm(five - seed_lmk_to_ours(seed5), axis=1)
        assert err.max() < 8.0 and err.mean() < 3.5, f"{stem}: 5-point errors {err.round(1)}"
        yaw = bfm_mod.pose_from_params(params).yaw
        nose_offset = seed5[2, 0] - seed5[:2, 0].mean()  # FAN nose tip relative to the eyes' midpoint
        assert abs(yaw) < 5 or np.sign(yaw) == np.sign(nose_offset), f"{stem}: yaw {yaw:.1f}, nose {nose_offset}"


def _mediapipe_detections(image: np.ndarray, model_selection: int) -> list[FaceDetection]:
    pytest.importorskip("mediapipe")
    from mediapipe.python.solutions import face_detection

    h, w = image.shape[:2]
    with face_detection.FaceDetection(model_selection=model_selection, min_detection_confidence=0.5) as det:
        found = det.process(image).detections or []
    out = []
    for d in found:
        b = d.location_data.relative_bounding_box
        kp = np.array([[k.x * w, k.y * h] for k in d.location_data.relative_keypoints])
        out.append(
            FaceDetection(
                box=(b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h),
                score=float(d.score[0]),
                keypoints=kp,
            )
        )
    return out


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_v2_network_agrees_with_the_seed_fits(shared: Path, v2_fitter: TDDFAFitter):
    yaw_errors = []
    for stem, (params, roi, seed5) in seed_fits(shared).items():
        image = _rgb(shared / "data" / "rr_lfw" / f"{stem}.jpg")
        centre = np.array([(roi[0] + roi[2]) / 2, (roi[1] + roi[3]) / 2])
        dets = _mediapipe_detections(image, model_selection=0)
        assert dets, f"{stem}: no face detected"
        det = min(
            dets, key=lambda d: np.hypot((d.box[0] + d.box[2]) / 2 - centre[0], (d.box[1] + d.box[3]) / 2 - centre[1])
        )
        fit = v2_fitter.fit(image, [det])[0]
        assert isinstance(fit, FaceFit), f"{stem}: {fit}"
        seed_yaw = bfm_mod.pose_from_params(params).yaw
        assert np.sign(fit.pose.yaw) == np.sign(seed_yaw) and abs(fit.pose.yaw - seed_yaw) < 10, (
            f"{stem}: yaw {fit.pose.yaw:.1f} vs the seed's {seed_yaw:.1f}"
        )
        err = np.linalg.norm(fit.landmarks5 - seed_lmk_to_ours(seed5), axis=1)
        assert err.max() < 8.0, f"{stem}: 5-point errors {err.round(1)}"
        yaw_errors.append(abs(fit.pose.yaw - seed_yaw))
    assert np.mean(yaw_errors) < 5.0


def test_v2_network_gives_plausible_fits_on_photos(shared: Path, v2_fitter: TDDFAFitter):
    for path in sorted((shared / "data" / "faces").glob("*.jpg")):
        image = _rgb(path)
        dets = _mediapipe_detections(image, model_selection=1)
        assert dets, f"{path.name}: no face detected"
        for det, fit in zip(dets, v2_fitter.fit(image, dets), strict=True):
            assert isinstance(fit, FaceFit), f"{path.name}: {fit}"
            width = det.box[2] - det.box[0]
            assert abs(fit.pose.yaw) < 75 and abs(fit.pose.pitch) < 45 and abs(fit.pose.roll) < 45
            # mediapipe's first two keypoints are the eyes, image-left first.
            eye_err = np.linalg.norm(fit.landmarks5[:2] - det.keypoints[:2], axis=1) / width
            assert eye_err.max() < 0.15, f"{path.name}: eye error {eye_err.round(3)} of the box width"
            assert fit.vertices.shape == (68, 3) and fit.triangles.max() < 68
            np.testing.assert_array_equal(fit.mirror_ids, IBUG68_MIRROR)
            lo, hi = fit.landmarks68[:, :2].min(0), fit.landmarks68[:, :2].max(0)
            assert np.all(lo > np.array(det.box[:2]) - width) and np.all(hi < np.array(det.box[2:]) + width)


def test_keypoint_proxy_triangles_face_the_camera(shared: Path, v2_fitter: TDDFAFitter):
    image = _rgb(shared / "data" / "faces" / "JianzhuGuo.jpg")  # a near-frontal face
    fit = v2_fitter.fit(image, _mediapipe_detections(image, model_selection=1))[0]
    assert isinstance(fit, FaceFit) and abs(fit.pose.yaw) < 15
    a, b, c = (fit.vertices[fit.triangles[:, i], :2] for i in range(3))
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    assert (cross < 0).mean() > 0.9
