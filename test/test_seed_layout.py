"""The seed's output tree (``-seed_layout`` / ``generate --layout seed``): exact names, folders, sizes, no overwrites.

A small stand-in engine (two faces per photo, views tinted by face and view) checks the naming rules in
milliseconds; the last test runs the real engine on the astronaut photo.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from opendr_face_synth.cli import main as cli
from opendr_face_synth.cli import seed_tool
from opendr_face_synth.core.config import SynthConfig
from opendr_face_synth.core.pose import five_point_template
from opendr_face_synth.core.types import FaceDetection, FaceResult, HeadPose, ImageResult, View, ViewRequest
from opendr_face_synth.io.seed_layout import ARCFACE_224, aligned_copy, pose_tag, seed_radians

ORIG = Path("rs_model/example/Images_orig")
ALIGNED = Path("rs_model/example/Images_aligned")
LMK = Path("rs_model/example/example010_rotate_lmk.txt")


class TwoFaceEngine:
    """Stand-in for FaceSynthesizer: ``faces`` faces per image, view (f, v) filled with grey 40 + 10*(4f + v)."""

    def __init__(self, config: SynthConfig, faces: int = 2) -> None:
        self.config = config.validate()
        self.view_requests = config.view_requests()
        self.device = "cpu"
        self.faces = faces

    def process(self, images: list[np.ndarray]) -> list[ImageResult]:
        size = self.config.output_size
        results = []
        for image in images:
            faces = []
            for f in range(self.faces):
                views = []
                for v, request in enumerate(self.view_requests):
                    target = HeadPose(request.yaw or 0.0, request.pitch or 0.0)
                    pixels = np.full((size, size, 3), 40 + 10 * (4 * f + v), np.uint8)
                    views.append(View(request, target, pixels, np.full((size, size), 255, np.uint8), achieved=target))
                faces.append(FaceResult(FaceDetection((10.0 * f, 0.0, 10.0 * f + 8, 8.0), 0.9), None, views))
            results.append(ImageResult(faces=faces, image_size=image.shape[:2]))
        return results

    def close(self) -> None:
        return None


def _save(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "degrees, radians",
    [(10, 0.17), (30, 0.52), (-30, -0.52), (0, 0.0), (40, 0.7), (90, 1.57), (9.9, 0.17)],
)
def test_seed_radians(degrees, radians):
    assert seed_radians(degrees) == radians


@pytest.mark.parametrize(
    "request_, tag",
    [
        (ViewRequest(yaw=10), "yaw_0.17"),
        (ViewRequest(yaw=0), "yaw_0.0"),
        (ViewRequest(yaw=40), "yaw_0.7"),  # str() of the float, as the seed writes it: no trailing zero
        (ViewRequest(pitch=-30), "pitch_-0.52"),
        (ViewRequest(yaw=-30, pitch=10), "yaw_-0.52_pitch_0.17"),  # grid view, not a seed mode
    ],
)
def test_pose_tag(request_, tag):
    assert pose_tag(request_) == tag


def test_aligned_copy_puts_the_template_on_arcface():
    view = np.zeros((256, 256, 3), np.uint8)
    for x, y in five_point_template(256):
        cv2.circle(view, (round(x), round(y)), 4, (255, 255, 255), -1)
    aligned = aligned_copy(view)
    assert aligned.shape == (224, 224, 3)
    for x, y in ARCFACE_224:
        assert aligned[round(y), round(x)].min() > 200
    assert aligned.mean() < 10  # only the five dots


def test_seed_tool_switch_names_and_collisions(tmp_path, astronaut_rgb):
    src, out = tmp_path / "imgs_input", tmp_path / "results"
    _save(src / "astronaut.jpg", astronaut_rgb)
    _save(src / "more/astronaut.png", astronaut_rgb)  # same stem: the seed would overwrite the first one's views
    argv = ["-path_in", str(src), "-save_path", str(out), "-val_yaw", "10,", "9.9", "-val_pitch", "-30", "-seed_layout"]
    assert seed_tool.main(argv, TwoFaceEngine) == 0
    # Sorted input order: astronaut.jpg first, more/astronaut.png second; 9.9 degrees rounds like 10.
    orig = [
        "astronaut_yaw_0.17.jpg",
        "astronaut_2_yaw_0.17.jpg",  # yaw 9.9 of the same face
        "astronaut_pitch_-0.52.jpg",
        "astronaut_f1_yaw_0.17.jpg",
        "astronaut_2_f1_yaw_0.17.jpg",
        "astronaut_f1_pitch_-0.52.jpg",
        "astronaut_3_yaw_0.17.jpg",  # the second photo: the smallest free n for each name
        "astronaut_4_yaw_0.17.jpg",
        "astronaut_2_pitch_-0.52.jpg",
        "astronaut_3_f1_yaw_0.17.jpg",
        "astronaut_4_f1_yaw_0.17.jpg",
        "astronaut_2_f1_pitch_-0.52.jpg",
    ]
    expected = {(ORIG / n).as_posix() for n in orig} | {(ALIGNED / n).as_posix() for n in orig}
    expected |= {
        LMK.as_posix(),
        "metadata.csv",
        "failures.csv",
        "contact_sheets/astronaut.png",
        "contact_sheets/more.png",
    }
    assert _files(out) == expected
    rows = _rows(out / "metadata.csv")
    assert [Path(r["output_file"]).name for r in rows] == orig  # every view, in write order
    assert [r["source_file"] for r in rows] == 6 * ["astronaut.jpg"] + 6 * ["more/astronaut.png"]
    assert rows[1]["requested_yaw"] == "9.90" and rows[0]["output_file"] == (ORIG / orig[0]).as_posix()
    for i, name in enumerate(orig):  # each file holds its own view (nothing overwritten)
        face, view = divmod(i % 6, 3)
        grey = 40 + 10 * (4 * face + view)
        orig_img = cv2.imread(str(out / ORIG / name))
        aligned = cv2.imread(str(out / ALIGNED / name))
        assert orig_img.shape == (256, 256, 3) and aligned.shape == (224, 224, 3)
        assert abs(float(orig_img.mean()) - grey) < 2 and abs(float(aligned[112, 112].mean()) - grey) < 3
    lines = (out / LMK).read_text().splitlines()
    points = " ".join(str(int(v)) for v in five_point_template(256).reshape(-1))
    assert lines == [f"{out / ORIG / name} 1 {points}" for name in orig]
    assert points == "95 124 153 123 124 157 100 191 149 191"  # seed-spec §6.1, truncated as the seed does


def test_seed_tool_without_the_switch_keeps_person_folders(tmp_path, astronaut_rgb):
    src, out = tmp_path / "in", tmp_path / "results"
    _save(src / "astronaut.jpg", astronaut_rgb)
    argv = ["-path_in", str(src), "-save_path", str(out), "-val_yaw", "10", "-val_pitch", "20"]
    assert seed_tool.main(argv, TwoFaceEngine) == 0
    assert not (out / "rs_model").exists() and (out / "astronaut/astronaut_f0_yaw+10_pitch+00.png").is_file()


def test_generate_layout_seed_grid_and_masks(tmp_path, astronaut_rgb, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    _save(src / "astronaut.png", astronaut_rgb)
    argv = [
        "generate",
        str(src),
        str(out),
        "--layout",
        "seed",
        "--yaw",
        "-30",
        "--pitch",
        "10",
        "--grid",
        "--size",
        "128",
        "--save-masks",
        "--no-contact-sheets",
        "--no-progress",
    ]
    assert cli.main(argv, lambda config: TwoFaceEngine(config, faces=1)) == 0
    assert str(out / "rs_model/example") in capsys.readouterr().out
    name = "astronaut_yaw_-0.52_pitch_0.17"
    assert _files(out) == {
        f"{ORIG.as_posix()}/{name}.jpg",
        f"{ALIGNED.as_posix()}/{name}.jpg",
        f"masks/{name}.png",
        LMK.as_posix(),
        "metadata.csv",
        "failures.csv",
    }
    (row,) = _rows(out / "metadata.csv")
    assert (row["output_file"], row["mask_file"]) == (f"{ORIG.as_posix()}/{name}.jpg", f"masks/{name}.png")
    assert cv2.imread(str(out / ORIG / f"{name}.jpg")).shape == (128, 128, 3)
    assert cv2.imread(str(out / ALIGNED / f"{name}.jpg")).shape == (224, 224, 3)  # the seed's size at any --size
    points = (out / LMK).read_text().split()[2:]
    assert points == [str(int(v)) for v in five_point_template(128).reshape(-1)]


def test_generate_layout_rejects_unknown(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["generate", str(tmp_path), str(tmp_path / "o"), "--layout", "celeba"], TwoFaceEngine)
    assert info.value.code == 2 and "--layout" in capsys.readouterr().err


def test_real_engine_seed_layout(tmp_path, astronaut_rgb, capsys):
    """The seed tool with the switch and the real engine: the seed's names for -val_yaw 10 / -val_pitch -30."""
    pytest.importorskip("mediapipe")
    src, out = tmp_path / "imgs_input", tmp_path / "results"
    _save(src / "astronaut.jpg", astronaut_rgb)
    argv = [
        "-path_in",
        str(src),
        "-save_path",
        str(out),
        "-val_yaw",
        "10",
        "-val_pitch",
        "-30",
        "-device",
        "cpu",
        "--seed-layout",
    ]
    assert seed_tool.main(argv) == 0, capsys.readouterr().err[-3000:]
    names = ["astronaut_yaw_0.17.jpg", "astronaut_pitch_-0.52.jpg"]
    assert sorted(p.name for p in (out / ORIG).iterdir()) == sorted(names)  # one face in the photo
    assert sorted(p.name for p in (out / ALIGNED).iterdir()) == sorted(names)
    for name in names:
        orig = cv2.imread(str(out / ORIG / name))
        aligned = cv2.imread(str(out / ALIGNED / name))
        assert orig.shape == (256, 256, 3) and orig.std() > 10
        assert aligned.shape == (224, 224, 3) and aligned.std() > 10
    rows = _rows(out / "metadata.csv")
    assert [r["output_file"] for r in rows] == [(ORIG / n).as_posix() for n in names]
    assert len((out / LMK).read_text().splitlines()) == 2
