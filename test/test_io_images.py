"""read_image / list_images on real files of every awkward kind, written by the tests themselves."""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from opendr_face_synth.io.images import MAX_PIXELS, ImageReadError, list_images, read_image


def _reason(path: Path, **kwargs) -> str:
    with pytest.raises(ImageReadError) as info:
        read_image(path, **kwargs)
    assert info.value.path == path
    assert str(path) in str(info.value)
    return info.value.reason


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A syntactically valid PNG that claims width x height but holds almost no data (cheap 'huge' file)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    path.write_bytes(body)
    return path


def test_rgb_jpeg_png_bmp_webp_tiff(tmp_path, astronaut_rgb):
    for ext, tol in ((".png", 0), (".bmp", 0), (".tiff", 0), (".webp", 40), (".jpg", 40)):
        path = tmp_path / f"a{ext}"
        Image.fromarray(astronaut_rgb).save(path)
        image = read_image(path)
        assert image.dtype == np.uint8 and image.shape == (512, 512, 3) and image.flags.c_contiguous
        diff = np.abs(image.astype(int) - astronaut_rgb.astype(int))
        assert diff.mean() <= tol / 4 and (tol > 0 or diff.max() == 0), ext


def test_channel_order_is_rgb(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200  # pure red
    path = tmp_path / "red.png"
    Image.fromarray(rgb).save(path)
    assert read_image(path)[0, 0].tolist() == [200, 0, 0]


def test_grayscale_and_one_bit(tmp_path):
    gray = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    Image.fromarray(gray).save(tmp_path / "g.png")
    image = read_image(tmp_path / "g.png")
    assert image.shape == (4, 256, 3)
    assert np.array_equal(image[..., 0], gray) and np.array_equal(image[..., 1], gray)
    Image.fromarray(gray > 127).save(tmp_path / "b.bmp")
    assert set(np.unique(read_image(tmp_path / "b.bmp"))) == {0, 255}


def test_alpha_is_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = (10, 20, 30)
    rgba[:2, :, 3] = 255  # top half opaque, bottom half fully transparent
    rgba[2:, :, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    image = read_image(tmp_path / "rgba.png")
    assert image[0, 0].tolist() == [10, 20, 30]
    assert image[3, 3].tolist() == [255, 255, 255]

    la = np.zeros((4, 4, 2), np.uint8)
    la[..., 1] = 128  # half transparent black -> mid gray on white
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert abs(int(read_image(tmp_path / "la.png")[0, 0, 0]) - 127) <= 1


def test_palette_with_and_without_transparency(tmp_path):
    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    pal.putpixel((0, 0), 2)
    pal.save(tmp_path / "p.png")
    image = read_image(tmp_path / "p.png")
    assert image[1, 1].tolist() == [255, 0, 0] and image[0, 0].tolist() == [0, 255, 0]
    pal.save(tmp_path / "pt.png", transparency=1)
    image = read_image(tmp_path / "pt.png")
    assert image[1, 1].tolist() == [255, 255, 255] and image[0, 0].tolist() == [0, 255, 0]


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    gray16 = np.array([[0, 257, 32896, 65535]], np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), gray16)
    assert read_image(tmp_path / "g16.png")[0, :, 0].tolist() == [0, 1, 128, 255]
    cv2.imwrite(str(tmp_path / "g16.tif"), gray16)
    assert read_image(tmp_path / "g16.tif")[0, :, 1].tolist() == [0, 1, 128, 255]
    bgr16 = np.zeros((2, 2, 3), np.uint16)
    bgr16[..., 2] = 65535  # red in OpenCV's BGR order
    bgr16[..., 1] = 32896
    cv2.imwrite(str(tmp_path / "rgb16.png"), bgr16)
    assert read_image(tmp_path / "rgb16.png")[0, 0].tolist() == [255, 128, 0]


def test_cmyk_jpeg(tmp_path, astronaut_rgb):
    Image.fromarray(astronaut_rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    image = read_image(tmp_path / "cmyk.jpg")
    assert image.shape == (512, 512, 3)
    assert np.abs(image.astype(int) - astronaut_rgb.astype(int)).mean() < 8


@pytest.mark.parametrize("orientation, turn", [(6, -1), (8, 1), (3, 2)])
def test_exif_orientation_is_applied(tmp_path, astronaut_rgb, orientation, turn):
    stored = np.ascontiguousarray(astronaut_rgb[:, :300])  # not square, so a turn changes the shape
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    image = read_image(path)
    expected = np.rot90(stored, k=turn)  # 6: stored turned 90 degrees clockwise for display; 8: counter-clockwise
    assert image.shape == expected.shape
    assert np.abs(image.astype(int) - expected.astype(int)).mean() < 4


def test_clear_reasons_for_bad_files(tmp_path, astronaut_rgb):
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert "empty" in _reason(tmp_path / "empty.jpg")
    (tmp_path / "notes.jpg").write_text("shopping list: milk, eggs\n")
    assert "not an image" in _reason(tmp_path / "notes.jpg") and "text" in _reason(tmp_path / "notes.jpg")
    (tmp_path / "noise.png").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes())
    assert "not an image" in _reason(tmp_path / "noise.png")
    ok, jpeg = cv2.imencode(".jpg", astronaut_rgb)
    (tmp_path / "cut.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2])
    assert "truncated" in _reason(tmp_path / "cut.jpg")
    assert "not found" in _reason(tmp_path / "missing.jpg")
    (tmp_path / "folder.jpg").mkdir()
    assert "folder" in _reason(tmp_path / "folder.jpg")
    Image.fromarray(astronaut_rgb).save(tmp_path / "anim.gif")
    assert "unsupported" in _reason(tmp_path / "anim.gif")
    (tmp_path / "anim.gif").rename(tmp_path / "gif_named.jpg")
    assert "unsupported image format GIF" in _reason(tmp_path / "gif_named.jpg")


def test_size_limit(tmp_path, astronaut_rgb):
    assert MAX_PIXELS == 100_000_000
    Image.fromarray(astronaut_rgb).save(tmp_path / "a.png")
    assert "megapixels" in _reason(tmp_path / "a.png", max_pixels=1000)
    start = time.perf_counter()
    # Above our 100 MP bound but under Pillow's own error limit, and above both: both refused, undecoded.
    assert "too large: 12000x10000 = 120 megapixels" in _reason(_png_header_only(tmp_path / "b.png", 12000, 10000))
    assert "too large" in _reason(_png_header_only(tmp_path / "c.png", 20000, 20000))
    assert time.perf_counter() - start < 1.0


def test_large_image_under_the_limit(tmp_path):
    big = np.full((8000, 8000), 90, np.uint8)  # grayscale: fast to write, still 8000x8000 to decode
    big[4000:4010] = 200
    Image.fromarray(big).save(tmp_path / "big.png", compress_level=1)
    image = read_image(tmp_path / "big.png")
    assert image.shape == (8000, 8000, 3) and image[4005, 7999].tolist() == [200, 200, 200]


def test_list_images_walks_groups_and_names_people(tmp_path):
    files = [
        "zed.JPG",
        "amy.png",
        "bob/2021/b.jpeg",
        "bob/a.PNG",
        "bob/notes.txt",
        "carl/x.TIF",
        "carl/y.webp",
        "carl/z.bmp",
        "carl/w.tiff",
        ".hidden/h.jpg",
        "bob/._a.jpg",
        "amy-b/c.jpg",
        "dan.gif",
    ]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    skipped: list[Path] = []
    items = list_images(tmp_path, skipped=skipped)
    got = [(item.person, item.rel.as_posix()) for item in items]
    assert got == [
        ("amy", "amy.png"),
        ("amy-b", "amy-b/c.jpg"),
        ("bob", "bob/2021/b.jpeg"),
        ("bob", "bob/a.PNG"),
        ("carl", "carl/w.tiff"),
        ("carl", "carl/x.TIF"),
        ("carl", "carl/y.webp"),
        ("carl", "carl/z.bmp"),
        ("zed", "zed.JPG"),
    ]
    assert all(item.path == tmp_path / item.rel for item in items)
    assert sorted(p.name for p in skipped) == ["dan.gif", "notes.txt"]


def test_list_images_keeps_a_person_contiguous(tmp_path):
    """A loose 'ann.jpg' and a folder 'ann/' are the same person and must not be split by 'ann-x/'."""
    for name in ("ann.jpg", "ann/1.jpg", "ann-x/1.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [item.person for item in list_images(tmp_path)] == ["ann", "ann", "ann-x"]
