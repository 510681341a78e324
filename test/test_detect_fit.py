"""Detection and the default mediapipe fitter on real photos."""

import numpy as np
import pytest
from core_helpers import load_rgb, seed_pose_from_params

from opendr_face_synth.core.detect import FaceDetector
from opendr_face_synth.core.fit.mediapipe_fit import MediapipeFitter
from opendr_face_synth.core.fit.mediapipe_mesh import boundary_vertices, face_mesh_triangles
from opendr_face_synth.core.types import FaceFit


@pytest.fixture(scope="module")
def astronaut(astronaut_rgb):
    return astronaut_rgb


@pytest.fixture(scope="module")
def detector():
    det = FaceDetector()
    yield det
    det.close()


@pytest.fixture(scope="module")
def fitter():
    fit = MediapipeFitter()
    yield fit
    fit.close()


def test_mesh_topology_is_a_clean_disc():
    tris = face_mesh_triangles()
    assert tris.shape == (852, 3)
    edges = np.sort(np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [0, 2]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert counts.max() == 2  # manifold: no edge in more than two triangles
    directed = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    assert len(np.unique(directed, axis=0)) == len(directed)  # consistently oriented
    assert len(boundary_vertices(tris)) > 36


def test_astronaut_one_frontal_face(detector, fitter, astronaut):
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    x0, y0, x1, y1 = faces[0].box
    assert 150 < x0 < 200 and 50 < y0 < 100 and 80 < x1 - x0 < 140
    (fit,) = fitter.fit(astronaut, faces)
    assert isinstance(fit, FaceFit)
    assert fit.vertices.shape == (478, 3) and fit.triangles.shape == (852, 3)
    assert abs(fit.pose.yaw) < 10 and abs(fit.pose.roll) < 10
    # Five points: image-left eye left of image-right eye, nose between, mouth below.
    le, re, nose, lm, rm = fit.landmarks5
    assert le[0] < nose[0] < re[0] and lm[0] < rm[0] and nose[1] < lm[1]
    # Mirror map: an involution that swaps the two sides and fixes the mid-line.
    m = fit.mirror_ids
    assert np.array_equal(m[m], np.arange(478))
    assert (m[33], m[61], m[234], m[468]) == (263, 291, 454, 473)
    assert m[1] == 1 and m[152] == 152 and m[10] == 10
    # It is a geometric mirror on this (frontal) face: pairs sit symmetric about the nose-chin line.
    local = (fit.vertices - fit.head_centre) @ fit.params["rotation"]
    assert np.median(np.abs(local[:, 0] + local[m, 0])) < 0.03 * fit.params["face_width"]
    # Head centre lies behind the face surface.
    assert fit.head_centre[2] > fit.vertices[:, 2].max()


def test_multi_face_collage(detector, fitter, shared_dir):
    image = load_rgb(shared_dir / "data/faces/emma.jpg")
    faces = detector.detect(image)
    assert len(faces) == 3
    assert [f.box[0] for f in faces] == sorted(f.box[0] for f in faces)  # left to right
    fits = fitter.fit(image, faces)
    assert all(isinstance(f, FaceFit) for f in fits)


def test_no_face_gives_empty_list(detector):
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 255, size=(300, 400, 3), dtype=np.uint8)
    assert detector.detect(noise) == []
    assert detector.detect(np.zeros((200, 200, 3), np.uint8)) == []


def test_poses_agree_with_seed_3ddfa_fits(detector, fitter, shared_dir):
    """Our yaw/pitch on the seed's LFW examples vs the seed's own 3DDFA v1 fits (seed convention)."""
    folder = shared_dir / "data/rr_lfw"
    diffs = []
    for txt in sorted(folder.glob("*.txt")):
        if txt.name == "file_list.txt":
            continue
        image = load_rgb(txt.with_suffix(".jpg"))
        faces = detector.detect(image)
        assert faces, txt.stem
        # The seed fitted the most central face.
        centre = np.array(image.shape[1::-1]) / 2
        face = min(faces, key=lambda f: np.linalg.norm(np.array(f.box[:2]) + np.array(f.box[2:]) - 2 * centre))
        (fit,) = fitter.fit(image, [face])
        seed_yaw, seed_pitch, _ = seed_pose_from_params(txt)
        if abs(seed_yaw) > 5:
            assert np.sign(fit.pose.yaw) == np.sign(seed_yaw), txt.stem
        diffs.append([abs(fit.pose.yaw - seed_yaw), abs(fit.pose.pitch - seed_pitch)])
    diffs = np.array(diffs)
    assert len(diffs) == 8
    assert np.median(diffs[:, 0]) < 6 and np.median(diffs[:, 1]) < 6, diffs


def test_small_face_in_huge_image_is_found(detector, astronaut):
    canvas = np.full((6000, 6000, 3), 200, np.uint8)
    canvas[4000:4512, 1000:1512] = astronaut  # a 100-pixel face in a 36-megapixel picture
    faces = detector.detect(canvas)
    assert len(faces) == 1
    x0, y0, _, _ = faces[0].box
    assert 1150 < x0 < 1200 and 4050 < y0 < 4100
