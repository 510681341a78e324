"""The whole engine on real photos: identity fidelity, pose accuracy, multi-face, bad input, masks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from core_helpers import load_rgb

from opendr_face_synth.core.config import ConfigError, SynthConfig
from opendr_face_synth.core.detect import FaceDetector
from opendr_face_synth.core.fit.mediapipe_fit import MediapipeFitter
from opendr_face_synth.core.pose import five_point_template, similarity_transform
from opendr_face_synth.core.synthesizer import FLAG_INPAINTED, FaceSynthesizer, target_pose
from opendr_face_synth.core.types import HeadPose, ViewRequest
from opendr_face_synth.io.samples import astronaut_rgb

SIZE = 256


@pytest.fixture(scope="module")
def synth():
    s = FaceSynthesizer(SynthConfig(yaws=(-30.0, 0.0, 30.0), pitches=(-20.0, 20.0), device="cpu"))
    yield s
    s.close()


@pytest.fixture(scope="module")
def measure():
    det, fit = FaceDetector(min_confidence=0.3), MediapipeFitter()

    def pose_of(image: np.ndarray) -> HeadPose | None:
        faces = det.detect(image)
        if not faces:
            return None
        best = max(faces, key=lambda f: f.size)
        (result,) = fit.fit(image, [best])
        return getattr(result, "pose", None)

    yield pose_of
    det.close()
    fit.close()


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    diff = (a.astype(np.float64) - b.astype(np.float64))[mask]
    mse = float((diff**2).mean())
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def test_target_pose_semantics():
    src = HeadPose(-12.0, 7.0, 3.0)
    assert target_pose(src, ViewRequest(yaw=30)) == HeadPose(30.0, 7.0, 3.0)
    assert target_pose(src, ViewRequest(pitch=-20)) == HeadPose(-12.0, -20.0, 3.0)
    assert target_pose(src, ViewRequest(yaw=10, pitch=5)) == HeadPose(10.0, 5.0, 3.0)


def test_views_shape_and_order(synth):
    (result,) = synth.process([astronaut_rgb()])
    assert result.error is None and len(result.faces) == 1
    views = result.faces[0].views
    assert [(v.request.yaw, v.request.pitch) for v in views] == [
        (-30.0, None), (0.0, None), (30.0, None), (None, -20.0), (None, 20.0)]
    for view in views:
        assert view.image.shape == (SIZE, SIZE, 3) and view.image.dtype == np.uint8
        assert view.mask.shape == (SIZE, SIZE) and view.flags.shape == (SIZE, SIZE)
        assert view.image.std() > 20  # a real picture, not a flat fill
    # Different yaws give different pictures.
    assert np.abs(views[0].image.astype(int) - views[2].image.astype(int)).mean() > 10


def test_identity_view_reproduces_aligned_source(synth):
    image = astronaut_rgb()
    synth.view_requests = [ViewRequest()]  # target = source pose
    try:
        (result,) = synth.process([image])
    finally:
        synth.view_requests = synth.config.view_requests()
    face = result.faces[0]
    view = face.views[0]
    m = similarity_transform(face.fit.landmarks5, five_point_template(SIZE))
    expected = cv2.warpAffine(image, m, (SIZE, SIZE), flags=cv2.INTER_AREA)
    known = (view.mask == 255) & (view.flags & FLAG_INPAINTED == 0)
    assert known.mean() > 0.5
    assert psnr(view.image, expected, known) >= 30.0


def _check_pose_accuracy(synth_factory, image, measure):
    """Landmarks on the generated views give back the requested angles.

    The measuring tool is mediapipe's mesh on the output picture; its own response is not linear at
    large angles (see BENCHMARKS.md), so the bound is on the mean error (8 degrees, the target) and a
    looser bound on the worst single view.
    """
    synth = synth_factory()
    (result,) = synth.process([image])
    errors = []
    for face in result.faces:
        face_yaws = []
        for view in face.views:
            got = measure(view.image)
            assert got is not None, f"no face found in the {view.request} view"
            if view.request.yaw is not None:
                errors.append(("yaw", view.request.yaw, got.yaw))
                face_yaws.append(got.yaw)
            if view.request.pitch is not None:
                errors.append(("pitch", view.request.pitch, got.pitch))
        # Monotonic: a larger requested yaw gives a larger measured yaw.
        assert all(b > a for a, b in zip(face_yaws, face_yaws[1:], strict=False)), face_yaws
    diffs = np.array([abs(got - wanted) for _, wanted, got in errors])
    report = ", ".join(f"{k} {w:+.0f}->{g:+.1f}" for k, w, g in errors)
    assert diffs.mean() <= 8.0, report
    assert diffs.max() <= 18.0, report


POSE_CONFIG = dict(yaws=(-45.0, -30.0, -15.0, 0.0, 15.0, 30.0, 45.0), pitches=(-20.0, -10.0, 10.0, 20.0), device="cpu")


def test_pose_accuracy_astronaut(measure):
    _check_pose_accuracy(lambda: FaceSynthesizer(SynthConfig(**POSE_CONFIG)), astronaut_rgb(), measure)


@pytest.mark.parametrize("name", ["JianzhuGuo.jpg", "trump_hillary.jpg"])
def test_pose_accuracy_shared_photos(name, measure, shared_dir):
    image = load_rgb(shared_dir / "data/faces" / name)
    _check_pose_accuracy(lambda: FaceSynthesizer(SynthConfig(**POSE_CONFIG)), image, measure)


def test_multi_face_image_gives_views_for_every_face(synth, shared_dir):
    image = load_rgb(shared_dir / "data/faces/emma.jpg")
    (result,) = synth.process([image])
    assert len(result.faces) == 3
    assert all(len(f.views) == len(synth.view_requests) for f in result.faces)


def test_batch_equals_single(synth):
    image = astronaut_rgb()
    single = synth.process([image])[0].faces[0].views[2].image
    batch = synth.process([image, np.ascontiguousarray(image[:, ::-1])])
    assert np.array_equal(batch[0].faces[0].views[2].image, single)
    assert len(batch[1].faces) == 1


def test_bad_inputs_give_reasons_and_others_go_on(synth):
    results = synth.process([
        np.zeros((0, 0, 3), np.uint8),
        np.zeros((100, 100), np.uint8),
        np.zeros((300, 300, 3), np.uint8),
        np.zeros((64, 64, 3), np.float32),
        astronaut_rgb(),
    ])
    assert "too small" in results[0].error
    assert "shape" in results[1].error
    assert results[2].error == "no face found"
    assert "uint8" in results[3].error
    assert results[4].error is None and len(results[4].faces[0].views) == 5


def test_black_background_mode():
    s = FaceSynthesizer(SynthConfig(yaws=(30.0,), background="black", device="cpu"))
    (result,) = s.process([astronaut_rgb()])
    view = result.faces[0].views[0]
    corners = view.image[:10, :10].reshape(-1, 3)
    assert corners.max() == 0  # nothing but the face mesh is drawn
    assert view.image[100:160, 100:160].mean() > 40
    s.close()


def test_rotated_view_marks_unknown_pixels(synth):
    (result,) = synth.process([astronaut_rgb()])
    view = result.faces[0].views[2]  # yaw +30 from a near-frontal face: disocclusions appear
    assert (view.flags & FLAG_INPAINTED).any()
    assert (view.mask[view.flags & FLAG_INPAINTED > 0] < 255).all()


@pytest.mark.parametrize("bad", [dict(yaws=(120.0,)), dict(yaws=(), pitches=()), dict(output_size=8),
                                 dict(device="tpu"), dict(background="blue")])
def test_config_errors(bad):
    with pytest.raises(ConfigError):
        SynthConfig(**bad).validate()


def test_turned_face_fills_its_hidden_side_from_the_mirror_side(shared_dir):
    """Emma's middle face is turned ~50 degrees: a frontal view takes the far cheek from the near one."""
    from opendr_face_synth.core.synthesizer import FLAG_FACE, FLAG_MIRROR

    image = load_rgb(shared_dir / "data/faces/emma.jpg")[:, 1500:2200]
    s = FaceSynthesizer(SynthConfig(yaws=(0.0,), device="cpu"))
    (result,) = s.process([image])
    s.close()
    face = result.faces[0]
    assert face.fit.pose.yaw < -35
    flags = face.views[0].flags
    on_face = flags & FLAG_FACE > 0
    mirrored = (flags & FLAG_MIRROR > 0) & on_face
    assert mirrored.sum() > 0.1 * on_face.sum()
    # Mirrored texels sit on the side that faced away from the camera: with a negative yaw (nose toward
    # image-left) that is the image-left cheek, behind the nose.
    cols = np.nonzero(on_face)[1]
    assert np.median(np.nonzero(mirrored)[1]) < np.median(cols)
    # Real texture only where the mask says so.
    assert (face.views[0].mask[(flags & FLAG_INPAINTED) > 0] < 255).all()
