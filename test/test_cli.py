"""The offline tool end to end on real files: every bad input, exit statuses, layout, metadata, seed flags.

Most tests inject a small stand-in engine through ``main(argv, synthesizer_factory=...)`` (it "finds" one
face in any image that is not flat and renders views that are crops of it), so they exercise the real
reading, batching, reporting and writing code in seconds. The last tests run the real FaceSynthesizer.
"""

from __future__ import annotations

import csv
import errno
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from seed_helpers import params_for_pose, synthetic_face, write_seed_ddfa

from opendr_face_synth.cli import main as cli
from opendr_face_synth.cli import seed_tool
from opendr_face_synth.core.config import SynthConfig
from opendr_face_synth.core.types import FaceDetection, FaceFit, FaceResult, HeadPose, ImageResult, View
from opendr_face_synth.io.contact_sheet import label_height
from opendr_face_synth.io.dataset import DatasetWriter, OutputWriteError, angle_tag, write_png

NAME = re.compile(r"^(?P<stem>.+)_f(?P<face>\d+)_yaw(?P<yaw>[+-]\d{2,})_pitch(?P<pitch>[+-]\d{2,})(_v\d+)?\.png$")
SOURCE_POSE = HeadPose(yaw=4.0, pitch=-6.0, roll=1.0)
BROKEN_SHAPE = (99, 77, 3)  # the stand-in engine fails on images of exactly this shape


class FakeEngine:
    """Stand-in for FaceSynthesizer with the same API; records what it was given."""

    def __init__(self, config: SynthConfig, interrupt_after: int | None = None) -> None:
        self.config = config.validate()
        self.view_requests = config.view_requests()
        self.device = "cpu"
        self.batches: list[list[tuple[int, ...]]] = []
        self.interrupt_after = interrupt_after
        self.closed = False

    def process(self, images: list[np.ndarray]) -> list[ImageResult]:
        if self.interrupt_after is not None and len(self.batches) >= self.interrupt_after:
            raise KeyboardInterrupt
        self.batches.append([im.shape for im in images])
        if any(im.shape == BROKEN_SHAPE for im in images):
            raise RuntimeError("synthetic engine failure")
        return [self._one(im) for im in images]

    def _one(self, image: np.ndarray) -> ImageResult:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        h, w = image.shape[:2]
        if float(image[::8, ::8].std()) < 1.0:
            return ImageResult(faces=[], image_size=(h, w), error="no face found")
        box = (w * 0.25, h * 0.25, w * 0.75, h * 0.75)
        crop = np.ascontiguousarray(image[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4])
        size = self.config.output_size
        fit = FaceFit(
            np.zeros((3, 3), np.float32),
            np.zeros((1, 3), np.int64),
            SOURCE_POSE,
            np.zeros((5, 2)),
            np.zeros(5, np.int64),
            np.zeros(3),
        )
        views = []
        for req in self.view_requests:
            target = HeadPose(
                SOURCE_POSE.yaw if req.yaw is None else req.yaw,
                SOURCE_POSE.pitch if req.pitch is None else req.pitch,
                SOURCE_POSE.roll,
            )
            view_img = cv2.resize(crop, (size, size))
            views.append(View(req, target, view_img, np.full((size, size), 255, np.uint8), achieved=target))
        return ImageResult(faces=[FaceResult(FaceDetection(box, 0.87), fit, views)], image_size=(h, w))

    def close(self) -> None:
        self.closed = True


class Factory:
    """SynthConfig -> FakeEngine, keeping every engine it made for the test to inspect."""

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs
        self.engines: list[FakeEngine] = []

    def __call__(self, config: SynthConfig) -> FakeEngine:
        self.engines.append(FakeEngine(config, **self.kwargs))
        return self.engines[-1]


def _save(path: Path, image: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, **kwargs)
    return path


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def messy_input(tmp_path_factory, astronaut_rgb) -> Path:
    """A photo folder with every kind of trouble, written as real files."""
    root = tmp_path_factory.mktemp("messy_in")
    face = astronaut_rgb
    _save(root / "alice/portrait.jpg", face, quality=90)
    _save(root / "alice/2020/portrait.png", face)  # same stem as above, one folder deeper
    _save(root / "bob.PNG", cv2.cvtColor(face, cv2.COLOR_RGB2GRAY))  # loose file, grayscale, upper-case ext
    rgba = np.dstack([face, np.full(face.shape[:2], 255, np.uint8)])
    rgba[:64, :, 3] = 0
    _save(root / "carol/rgba.png", rgba)
    (root / "carol").mkdir(exist_ok=True)
    cv2.imwrite(str(root / "carol/deep16.png"), cv2.cvtColor(face, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed turned 90 degrees clockwise
    _save(root / "dave/exif_rotated.jpg", np.ascontiguousarray(face[:, :400]), exif=exif, quality=90)
    big = np.full((8000, 8000, 3), 180, np.uint8)
    big[3700:4212, 3700:4212] = face
    _save(root / "erin/huge_8000.png", big, compress_level=1)
    (root / "bad").mkdir()
    (root / "bad/empty.jpg").write_bytes(b"")
    (root / "bad/notes.jpg").write_text("this is a text file with a .jpg name\n")
    ok, jpeg = cv2.imencode(".jpg", face)
    (root / "bad/truncated.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 3])
    _save(root / "bad/no_face.png", np.full((300, 300, 3), 128, np.uint8))
    _save(
        root / "bad/engine_breaks.png",
        np.full(BROKEN_SHAPE, 60, np.uint8) + np.arange(77, dtype=np.uint8)[None, :, None],
    )
    (root / "README.txt").write_text("not an image, not a person\n")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return root


@pytest.fixture(scope="module")
def messy_run(messy_input, tmp_path_factory):
    """One `generate` run over the messy folder (shared by the tests that inspect its output)."""
    out = tmp_path_factory.mktemp("messy_out") / "dataset"
    factory = Factory()
    argv = [
        "generate",
        str(messy_input),
        str(out),
        "--yaw",
        "-30,",
        "30",
        "--pitch",
        "-20",
        "--save-masks",
        "--batch-images",
        "3",
        "--size",
        "64",
        "--no-progress",
    ]
    capture = pytest.MonkeyPatch()
    stdout, stderr = _Capture(), _Capture()
    capture.setattr(sys, "stdout", stdout)
    capture.setattr(sys, "stderr", stderr)
    try:
        status = cli.main(argv, synthesizer_factory=factory)
    finally:
        capture.undo()
    return {"status": status, "out": out, "stdout": stdout.text, "stderr": stderr.text, "factory": factory}


class _Capture:
    """A text sink for sys.stdout/sys.stderr in a module-scoped fixture (capsys is function-scoped)."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        return None

    @property
    def text(self) -> str:
        return "".join(self.parts)


GOOD = [
    "alice/2020/portrait.png",
    "alice/portrait.jpg",
    "bob.PNG",
    "carol/deep16.png",
    "carol/rgba.png",
    "dave/exif_rotated.jpg",
    "erin/huge_8000.png",
]
BAD = {
    "bad/empty.jpg": "empty file",
    "bad/notes.jpg": "not an image",
    "bad/truncated.jpg": "truncated",
    "bad/no_face.png": "no face found",
    "bad/engine_breaks.png": "engine error: RuntimeError: synthetic engine failure",
}


def test_messy_folder_goes_on_and_exits_zero(messy_run):
    assert messy_run["status"] == 0
    for name, reason in BAD.items():
        line = next((ln for ln in messy_run["stderr"].splitlines() if name in ln), None)
        assert line is not None and reason in line, f"{name} not reported with '{reason}'"
    assert "README.txt" not in messy_run["stderr"] and ".DS_Store" not in messy_run["stderr"]
    assert "Traceback" not in messy_run["stderr"]
    summary = messy_run["stdout"]
    assert "12 images (3 unusable), 7 faces, 21 views written, 5 failures" in summary
    assert re.search(r"\d+\.\d views/s", summary)
    (engine,) = messy_run["factory"].engines
    assert engine.closed
    assert all(len(batch) <= 3 for batch in engine.batches)


def test_inputs_reach_the_engine_decoded(messy_run):
    shapes = [shape for batch in messy_run["factory"].engines[0].batches for shape in batch]
    assert (8000, 8000, 3) in shapes
    assert (400, 512, 3) in shapes  # the EXIF-rotated 512x400 photo arrives turned upright (400 wide)
    assert (512, 400, 3) not in shapes


def test_output_layout(messy_run):
    out = messy_run["out"]
    people = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert people == ["alice", "bob", "carol", "contact_sheets", "dave", "erin", "masks"]
    alice = sorted(p.name for p in (out / "alice").iterdir())
    assert alice == sorted(
        f"{stem}_f0_yaw{y}_pitch{p}.png"
        for stem in ("2020_portrait", "portrait")
        for y, p in (("-30", "-06"), ("+30", "-06"), ("+04", "-20"))
    )
    for person in ("alice", "bob", "carol", "dave", "erin"):
        for view in (out / person).iterdir():
            assert NAME.match(view.name), view.name
            image = cv2.imread(str(view))
            assert image is not None and image.shape == (64, 64, 3)
            assert (out / "masks" / person / view.name).is_file()
        sheet = cv2.imread(str(out / "contact_sheets" / f"{person}.png"))
        assert sheet is not None and sheet.shape[1] == 4 * 128  # source crop + 3 views
    assert not (out / "bad").exists()


def test_metadata_and_failures_csv(messy_run, messy_input):
    out = messy_run["out"]
    rows = _read_csv(out / "metadata.csv")
    assert list(rows[0].keys()) == [
        "person",
        "source_file",
        "face_index",
        "box_x0",
        "box_y0",
        "box_x1",
        "box_y1",
        "detection_score",
        "source_yaw",
        "source_pitch",
        "source_roll",
        "requested_yaw",
        "requested_pitch",
        "achieved_yaw",
        "achieved_pitch",
        "output_file",
        "mask_file",
    ]
    assert len(rows) == 21
    assert sorted({r["source_file"] for r in rows}) == GOOD
    for row in rows:
        assert (out / row["output_file"]).is_file() and (out / row["mask_file"]).is_file()
        assert row["output_file"].startswith(row["person"] + "/")
        assert (messy_input / row["source_file"]).is_file()
        assert float(row["source_yaw"]) == 4.0 and float(row["detection_score"]) == pytest.approx(0.87)
        m = NAME.match(Path(row["output_file"]).name)
        assert m is not None and int(m["yaw"]) == round(float(row["achieved_yaw"]))
        assert int(m["pitch"]) == round(float(row["achieved_pitch"]))
    huge = [r for r in rows if r["source_file"] == "erin/huge_8000.png"]
    assert [(r["requested_yaw"], r["requested_pitch"]) for r in huge] == [("-30.00", ""), ("30.00", ""), ("", "-20.00")]
    assert float(huge[0]["box_x1"]) == 6000.0  # boxes in full-resolution source pixels
    failures = {r["file"]: r["reason"] for r in _read_csv(out / "failures.csv")}
    assert set(failures) == set(BAD)
    for name, reason in BAD.items():
        assert reason in failures[name]


@pytest.mark.parametrize(
    "angle_args, yaws, pitches",
    [
        (["--yaw", "10,40"], (10.0, 40.0), ()),
        (["--yaw", "10,", "40"], (10.0, 40.0), ()),
        (["--yaw", "10", "40", "--pitch", "-5"], (10.0, 40.0), (-5.0,)),
        (["--yaw", "-60,-30,0,30,60", "--pitch", "-20,20"], (-60.0, -30.0, 0.0, 30.0, 60.0), (-20.0, 20.0)),
        (["--yaw", "-10", "-20.5"], (-10.0, -20.5), ()),
        (["--yaw=-15,", "15"], (-15.0, 15.0), ()),
        (["--yaw", "", "--pitch", "12"], (), (12.0,)),
        ([], (-60.0, -30.0, 0.0, 30.0, 60.0), ()),
    ],
)
def test_angle_list_forms(tmp_path, astronaut_rgb, angle_args, yaws, pitches):
    src = _save(tmp_path / "in/astro.png", astronaut_rgb)
    factory = Factory()
    assert cli.main(["generate", str(src), str(tmp_path / "out"), "--no-progress", *angle_args], factory) == 0
    config = factory.engines[0].config
    assert (config.yaws, config.pitches) == (yaws, pitches)
    # A single image file as IN: one person named by its stem.
    assert {p.name for p in (tmp_path / "out").iterdir() if p.is_dir()} == {"astro", "contact_sheets"}


def test_grid_and_options_reach_the_config(tmp_path, astronaut_rgb):
    _save(tmp_path / "in/p/a.png", astronaut_rgb)
    factory = Factory()
    argv = [
        "generate",
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        "--yaw",
        "-30",
        "30",
        "--pitch",
        "-10",
        "10",
        "--grid",
        "--device",
        "cpu",
        "--size",
        "128",
        "--background",
        "black",
        "--max-faces",
        "2",
        "--min-face-size",
        "40",
        "--no-contact-sheets",
        "--no-progress",
    ]
    assert cli.main(argv, factory) == 0
    config = factory.engines[0].config
    assert (config.grid, config.device, config.output_size, config.background) == (True, "cpu", 128, "black")
    assert (config.max_faces, config.min_face_size, config.fitter, config.refiner) == (2, 40, "mediapipe", "none")
    assert len(list((tmp_path / "out/p").iterdir())) == 4
    assert not (tmp_path / "out/contact_sheets").exists() and not (tmp_path / "out/masks").exists()


@pytest.mark.parametrize(
    "extra, flag",
    [
        (["--yaw", "100"], "--yaw"),
        (["--yaw", "abc"], "--yaw"),
        (["--pitch", "10,x"], "--pitch"),
        (["--pitch", "-91"], "--pitch"),
        (["--yaw", "", "--pitch", ""], "--yaw/--pitch"),
        (["--size", "8"], "--size"),
        (["--size", "big"], "--size"),
        (["--device", "tpu"], "--device"),
        (["--background", "blue"], "--background"),
        (["--fitter", "dlib"], "--fitter"),
        (["--max-faces", "-1"], "--max-faces"),
        (["--batch-images", "0"], "--batch-images"),
        (["--weights-dir", "/nonexistent/weights"], "--weights-dir"),
    ],
)
def test_usage_errors_exit_2_naming_the_flag(tmp_path, astronaut_rgb, capsys, extra, flag):
    src = _save(tmp_path / "in/a.png", astronaut_rgb)
    factory = Factory()
    with pytest.raises(SystemExit) as info:
        cli.main(["generate", str(src), str(tmp_path / "out"), "--no-progress", *extra], factory)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err
    assert factory.engines == []  # no models loaded for a usage error


def test_missing_input_and_bad_output_are_usage_errors(tmp_path, capsys, astronaut_rgb):
    with pytest.raises(SystemExit) as info:
        cli.main(["generate", str(tmp_path / "nowhere"), str(tmp_path / "out")], Factory())
    assert info.value.code == 2 and "IN" in capsys.readouterr().err
    _save(tmp_path / "in/a.png", astronaut_rgb)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(SystemExit) as info:
        cli.main(["generate", str(tmp_path / "in"), str(tmp_path / "file.txt")], Factory())
    assert info.value.code == 2 and "OUT" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cli.main([], Factory())
    assert info.value.code == 2


def test_nothing_producible_exits_1(tmp_path, capsys):
    (tmp_path / "empty_dir").mkdir()
    assert cli.main(["generate", str(tmp_path / "empty_dir"), str(tmp_path / "o1")], Factory()) == 1
    assert "no image files" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad/zero.jpg").write_bytes(b"")
    _save(tmp_path / "bad/flat.png", np.zeros((50, 50, 3), np.uint8))
    assert cli.main(["generate", str(tmp_path / "bad"), str(tmp_path / "o2"), "--no-progress"], Factory()) == 1
    captured = capsys.readouterr()
    assert "zero.jpg: empty file" in captured.err and "flat.png: no face found" in captured.err
    assert "nothing could be produced" in captured.err
    assert len(_read_csv(tmp_path / "o2/failures.csv")) == 2


def test_unwritable_output_is_one_clear_error(tmp_path, capsys, astronaut_rgb):
    src = _save(tmp_path / "in/a.png", astronaut_rgb)
    (tmp_path / "blocker").write_text("a file where a folder should be")
    out = tmp_path / "blocker/out"
    assert cli.main(["generate", str(src), str(out), "--no-progress"], Factory()) == 1
    err = capsys.readouterr().err
    assert f"cannot write {out}" in err and "not a folder" in err
    assert "Traceback" not in err


def test_disk_full_names_the_file(tmp_path):
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("/dev/full is Linux-only")
    with pytest.raises(OutputWriteError) as info:
        write_png(full, np.zeros((8, 8, 3), np.uint8))
    assert info.value.path == full and info.value.reason == "no space left on device"
    assert str(info.value) == "cannot write /dev/full: no space left on device"
    assert errno.ENOSPC == info.value.__cause__.errno


def test_disk_full_mid_run_stops_with_one_message(tmp_path, capsys, astronaut_rgb):
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full is Linux-only")
    _save(tmp_path / "in/p/a.png", astronaut_rgb)
    _save(tmp_path / "in/p/b.png", np.roll(astronaut_rgb, 5, axis=0))
    blocked = tmp_path / "out/p/b_f0_yaw+00_pitch-06.png"
    blocked.parent.mkdir(parents=True)
    blocked.symlink_to("/dev/full")  # writing this view hits a full device
    argv = ["generate", str(tmp_path / "in"), str(tmp_path / "out"), "--yaw", "0", "--no-progress"]
    assert cli.main(argv, Factory()) == 1
    err = capsys.readouterr().err
    assert f"cannot write {blocked}: no space left on device" in err and "Traceback" not in err
    assert [r["source_file"] for r in _read_csv(tmp_path / "out/metadata.csv")] == ["p/a.png"]


def test_metadata_is_on_disk_after_each_image(tmp_path, astronaut_rgb):
    """Rows are flushed per image, so a run killed later keeps them (read back before close())."""
    from opendr_face_synth.io.images import ImageItem

    engine = FakeEngine(SynthConfig(yaws=(0.0, 20.0)))
    writer = DatasetWriter(tmp_path / "out", contact_sheets=False)
    writer.open()
    (result,) = engine.process([astronaut_rgb])
    assert writer.add_result(ImageItem(tmp_path / "a.png", "a", Path("a.png")), astronaut_rgb, result) == 2
    writer.add_failure("b.jpg", "empty file (0 bytes)")
    assert len(_read_csv(tmp_path / "out/metadata.csv")) == 2
    assert _read_csv(tmp_path / "out/failures.csv") == [{"file": "b.jpg", "reason": "empty file (0 bytes)"}]
    writer.close()


def test_interrupted_run_keeps_its_metadata(tmp_path, astronaut_rgb, capsys):
    for i in range(4):
        _save(tmp_path / f"in/p/{i}.png", np.roll(astronaut_rgb, i, axis=1))
    factory = Factory(interrupt_after=1)
    argv = [
        "generate",
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        "--yaw",
        "0",
        "--batch-images",
        "2",
        "--no-progress",
    ]
    assert cli.main(argv, factory) == 130
    rows = _read_csv(tmp_path / "out/metadata.csv")
    assert [r["source_file"] for r in rows] == ["p/0.png", "p/1.png"]
    assert "interrupted" in capsys.readouterr().err


def test_names_stay_unique(tmp_path):
    """Two views that round to the same angles, and two photos with the same stem, never overwrite."""
    assert [angle_tag(a) for a in (30, -5, 0.4, -0.4, -89.6, 5.5)] == ["+30", "-05", "+00", "+00", "-90", "+06"]
    face = np.random.default_rng(1).integers(0, 255, (120, 120, 3), np.uint8)
    for name in ("x.png", "x.jpg"):
        _save(tmp_path / "in/p" / name, face)
    factory = Factory()
    argv = ["generate", str(tmp_path / "in"), str(tmp_path / "out"), "--yaw", "4", "--pitch", "-6", "--no-progress"]
    assert cli.main(argv, factory) == 0
    names = sorted(p.name for p in (tmp_path / "out/p").iterdir())
    assert names == [
        "x_f0_yaw+04_pitch-06.png",
        "x_f0_yaw+04_pitch-06_v1.png",
        "x_png_f0_yaw+04_pitch-06.png",
        "x_png_f0_yaw+04_pitch-06_v1.png",
    ]
    assert len(_read_csv(tmp_path / "out/metadata.csv")) == 4


def test_output_inside_input_is_not_read_back(tmp_path, astronaut_rgb):
    _save(tmp_path / "in/p/a.png", astronaut_rgb)
    for _ in range(2):
        factory = Factory()
        assert (
            cli.main(
                ["generate", str(tmp_path / "in"), str(tmp_path / "in/out"), "--yaw", "0", "--no-progress"], factory
            )
            == 0
        )
        assert sum(len(b) for b in factory.engines[0].batches) == 1


def test_dataset_writer_requires_open(tmp_path):
    writer = DatasetWriter(tmp_path / "o")
    with pytest.raises(RuntimeError, match="open"):
        writer.add_failure("a.jpg", "reason")


# --- the seed-compatible tool ---------------------------------------------------------------------


@pytest.fixture
def seed_input(tmp_path, astronaut_rgb) -> Path:
    _save(tmp_path / "imgs_input/person01/a.jpg", astronaut_rgb)
    return tmp_path / "imgs_input"


@pytest.mark.parametrize(
    "angle_args, yaws, pitches",
    [
        (["-val_yaw", "10,", "40", "-val_pitch", "10,", "30"], (10.0, 40.0), (10.0, 30.0)),  # documented form
        (["-val_yaw", "10,40", "-val_pitch", "10", "30"], (10.0, 40.0), (10.0, 30.0)),
        (["-val_yaw", "-10,", "-40"], (-10.0, -40.0), (30.0, 40.0)),
        ([], (10.0, 20.0), (30.0, 40.0)),  # OpenDR's defaults
    ],
)
def test_seed_tool_angle_forms(seed_input, tmp_path, angle_args, yaws, pitches):
    factory = Factory()
    argv = ["-path_in", str(seed_input), "-save_path", str(tmp_path / "results"), "-device", "cpu", *angle_args]
    assert seed_tool.main(argv, factory) == 0
    config = factory.engines[0].config
    assert (config.yaws, config.pitches, config.grid, config.device) == (yaws, pitches, False, "cpu")
    rows = _read_csv(tmp_path / "results/metadata.csv")
    assert len(rows) == len(yaws) + len(pitches) and {r["person"] for r in rows} == {"person01"}


def test_seed_tool_ignores_the_original_side_flags(seed_input, tmp_path, capsys):
    factory = Factory()
    argv = [
        "-path_in",
        str(seed_input),
        "-path_3ddfa",
        "./algorithm/DDFA/",
        "-save_path",
        str(tmp_path / "r"),
        "--dump_ply",
        "false",
        "--bbox_init",
        "two",
        "-f",
        "a.jpg",
        "b.jpg",
        "--mode",
        "gpu",
        "--paf_size",
        "3",
        "--dump_res",
        "--show_flg",
        "false",
        "--rank",
        "0",
        "-device",
        "gpu",
    ]
    assert seed_tool.main(argv, factory) == 0
    err = capsys.readouterr().err
    note = next(line for line in err.splitlines() if line.startswith("note: ignoring"))
    for flag in ("--dump_ply", "--bbox_init", "--files", "--mode", "--paf_size", "--dump_res", "--show_flg", "--rank"):
        assert flag in note
    assert "-path_3ddfa ./algorithm/DDFA/ is not a folder" in err
    config = factory.engines[0].config
    assert config.weights_dir is None and config.device == "cuda"


def test_seed_tool_passes_an_existing_3ddfa_folder(seed_input, tmp_path, capsys):
    (tmp_path / "DDFA").mkdir()
    factory = Factory()
    argv = ["-path_in", str(seed_input), "-path_3ddfa", str(tmp_path / "DDFA"), "-save_path", str(tmp_path / "r")]
    assert seed_tool.main(argv, factory) == 0
    config = factory.engines[0].config
    assert config.weights_dir == str(tmp_path / "DDFA")
    assert (config.fitter, config.refiner) == ("mediapipe", "none")  # an incomplete bundle: default engine
    err = capsys.readouterr().err
    assert "not a complete seed bundle" in err and "latest_net_G.pth" in err


def test_seed_tool_runs_the_original_method_with_a_complete_bundle(seed_input, tmp_path, capsys):
    """The OpenDR project layout: -path_3ddfa ./algorithm/DDFA, the generator in ./checkpoints/rs_model/."""
    ddfa = write_seed_ddfa(tmp_path / "project/algorithm/DDFA", synthetic_face(120), params_for_pose(10, 0, 0))
    checkpoint = tmp_path / "project/checkpoints/rs_model/latest_net_G.pth"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"")  # located here; loading it is the engine's job (tested in test_seed_pipeline)
    factory = Factory()
    argv = ["-path_in", str(seed_input), "-path_3ddfa", str(ddfa), "-save_path", str(tmp_path / "r")]
    assert seed_tool.main(argv, factory) == 0
    config = factory.engines[0].config
    assert (config.fitter, config.refiner, config.weights_dir) == ("3ddfa", "rotate_and_render", str(ddfa))
    assert "running the original method" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, flag",
    [
        (["-val_yaw", "100"], "-val_yaw"),
        (["-val_pitch", "x"], "-val_pitch"),
        (["-device", "tpu"], "-device"),
        (["--gpu_ids", "0"], "--gpu_ids"),  # not a flag of the original tool either
    ],
)
def test_seed_tool_usage_errors(seed_input, tmp_path, capsys, extra, flag):
    with pytest.raises(SystemExit) as info:
        seed_tool.main(["-path_in", str(seed_input), "-save_path", str(tmp_path / "r"), *extra], Factory())
    assert info.value.code == 2 and flag in capsys.readouterr().err


def test_seed_tool_missing_input(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        seed_tool.main(["-path_in", str(tmp_path / "nope"), "-save_path", str(tmp_path / "r")], Factory())
    assert info.value.code == 2 and "-path_in" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        seed_tool.main([], Factory())
    assert info.value.code == 2 and "-path_in" in capsys.readouterr().err


# --- as a program, and with the real engine -------------------------------------------------------


def test_module_entry_point_usage_error(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "opendr_face_synth.cli.main",
            "generate",
            str(tmp_path),
            str(tmp_path / "o"),
            "--yaw",
            "120",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "--yaw" in proc.stderr and "Traceback" not in proc.stderr


def test_subcommand_plugins(tmp_path, monkeypatch, capsys):
    """A module in SUBCOMMAND_MODULES adds its own subcommand; a missing one is simply not offered."""
    (tmp_path / "face_synth_demo_plugin.py").write_text(
        "def add_subcommand(subparsers):\n"
        "    p = subparsers.add_parser('demo', help='a demo subcommand')\n"
        "    p.add_argument('n', type=int)\n"
        "    p.set_defaults(handler=lambda args: args.n + 1)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ("face_synth_demo_plugin", "no_such_face_synth_module"))
    assert cli.main(["demo", "4"], Factory()) == 5
    assert "no_such" not in capsys.readouterr().err


@pytest.fixture(scope="module")
def real_engine():
    """The real FaceSynthesizer class (its models need mediapipe)."""
    pytest.importorskip("mediapipe")
    return pytest.importorskip("opendr_face_synth.core.synthesizer").FaceSynthesizer


def test_real_engine_as_a_program(tmp_path, astronaut_rgb, real_engine):
    src, out = tmp_path / "in", tmp_path / "out"
    _save(src / "astronaut.png", astronaut_rgb)
    _save(src / "wall.png", np.full((240, 320, 3), (90, 120, 150), np.uint8))
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00garbage")
    big = np.full((8000, 8000, 3), 170, np.uint8)  # a 64-megapixel photo with a large face in it
    big[500:3500, 4000:7000] = cv2.resize(astronaut_rgb, (3000, 3000))
    _save(src / "huge.png", big, compress_level=1)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "opendr_face_synth.cli.main",
            "generate",
            str(src),
            str(out),
            "--yaw",
            "-30,",
            "30",
            "--pitch",
            "15",
            "--device",
            "cpu",
            "--save-masks",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wall.png: no face" in proc.stderr and "broken.jpg:" in proc.stderr
    assert "2 faces, 6 views written, 2 failures" in proc.stdout
    rows = _read_csv(out / "metadata.csv")
    assert [(r["requested_yaw"], r["requested_pitch"]) for r in rows] == 2 * [
        ("-30.00", ""),
        ("30.00", ""),
        ("", "15.00"),
    ]
    assert [r["person"] for r in rows] == 3 * ["astronaut"] + 3 * ["huge"]
    assert float(rows[3]["box_x0"]) > 4000  # full-resolution coordinates in the 8000x8000 photo
    for row in rows:
        assert row["face_index"] == "0"
        assert abs(float(row["source_yaw"])) < 20 and abs(float(row["source_pitch"])) < 25  # a near-frontal photo
        if row["requested_yaw"]:
            assert float(row["achieved_yaw"]) == pytest.approx(float(row["requested_yaw"]), abs=1.0)
        view = cv2.imread(str(out / row["output_file"]))
        mask = cv2.imread(str(out / row["mask_file"]), cv2.IMREAD_GRAYSCALE)
        assert view.shape == (256, 256, 3) and view.std() > 10
        assert mask.shape == (256, 256) and (mask == 255).mean() > 0.1
    assert {r["file"] for r in _read_csv(out / "failures.csv")} == {"wall.png", "broken.jpg"}
    assert (out / "contact_sheets/astronaut.png").is_file()


def test_real_engine_on_shared_photos(tmp_path, shared_dir, real_engine, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for name in ("trump_hillary.jpg", "emma.jpg"):
        shutil.copy(shared_dir / "data/faces" / name, src / name)
    (src / "lfw").mkdir()
    for name in ("Ann_Veneman_0010.jpg", "Keanu_Reeves_0010.jpg"):
        shutil.copy(shared_dir / "data/rr_lfw" / name, src / "lfw" / name)
    status = cli.main(["generate", str(src), str(out), "--yaw", "20", "--device", "cpu", "--no-progress"])
    assert status == 0, capsys.readouterr().err[-3000:]
    rows = _read_csv(out / "metadata.csv")
    faces = {(r["person"], r["source_file"]): set() for r in rows}
    for r in rows:
        faces[(r["person"], r["source_file"])].add(int(r["face_index"]))
    assert faces == {
        ("emma", "emma.jpg"): {0, 1, 2},
        ("lfw", "lfw/Ann_Veneman_0010.jpg"): {0},
        ("lfw", "lfw/Keanu_Reeves_0010.jpg"): {0},
        ("trump_hillary", "trump_hillary.jpg"): {0, 1},
    }
    # Faces are numbered left to right.
    trump = [r for r in rows if r["person"] == "trump_hillary"]
    assert float(trump[0]["box_x0"]) < float(trump[1]["box_x0"])
    sheet = cv2.imread(str(out / "contact_sheets/lfw.png"))
    assert sheet.shape[:2] == (2 * (128 + label_height(128)), 2 * 128)


def test_real_engine_seed_tool_documented_call(tmp_path, shared_dir, real_engine, capsys):
    """The call from OpenDR's docs, on three of the seed's own example photos."""
    src = tmp_path / "imgs_input"
    src.mkdir()
    for name in ("Amber_Tamblyn_0001.jpg", "Hugo_Chavez_0033.jpg", "Norah_Jones_0003.jpg", "Hugo_Chavez_0033.txt"):
        shutil.copy(shared_dir / "data/rr_lfw" / name, src / name)
    argv = [
        "-path_in",
        str(src),
        "-path_3ddfa",
        "./algorithm/DDFA/",
        "-save_path",
        str(tmp_path / "results"),
        "-val_yaw",
        "10,",
        "40",
        "-val_pitch",
        "10,",
        "30",
        "-device",
        "cpu",
    ]
    assert seed_tool.main(argv) == 0, capsys.readouterr().err[-3000:]
    rows = _read_csv(tmp_path / "results/metadata.csv")
    assert {r["person"] for r in rows} == {"Amber_Tamblyn_0001", "Hugo_Chavez_0033", "Norah_Jones_0003"}
    per_face: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (row["source_file"], row["face_index"])
        per_face[key] = per_face.get(key, 0) + 1
    assert set(per_face.values()) == {4}  # one view per yaw and one per pitch, as the seed (every face, though)
    assert {("Amber_Tamblyn_0001.jpg", "0"), ("Hugo_Chavez_0033.jpg", "0"), ("Norah_Jones_0003.jpg", "0")} <= set(
        per_face
    )
    for row in rows:
        name = Path(row["output_file"]).name
        if row["requested_yaw"]:
            assert f"_yaw{angle_tag(float(row['requested_yaw']))}_" in name
        else:
            assert name.endswith(f"_pitch{angle_tag(float(row['requested_pitch']))}.png")
