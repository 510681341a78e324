"""Reading input photos into RGB uint8 arrays, with one clear reason per file that cannot be used.

Why not ``cv2.imread``: it returns ``None`` without saying why, ignores EXIF orientation unless asked,
drops alpha silently and truncates 16-bit data. Pillow tells corrupt, truncated and unknown files
apart and gives the tools to convert every mode deliberately:

* grayscale / 1-bit / palette / CMYK / YCbCr / LAB / HSV -> RGB (Pillow's conversions);
* RGBA, LA, PA and palette images with a transparent colour are **composited on white**: pixels under
  full transparency hold arbitrary colours (often black or garbage), and a white backdrop is what a
  viewer of the photo sees and what a face detector copes with best;
* 16-bit and 32-bit integer / float samples are **scaled** to 8 bits (65535 -> 255), never clipped;
* the EXIF orientation tag is applied, so a phone photo comes out the way it is displayed;
* images above ``MAX_PIXELS`` (100 megapixels, e.g. 10000x10000) are refused with a clear reason before
  anything is decoded: an 8000x8000 photo (64 MP, 192 MB as RGB) is fine, a decompression bomb is not.

Pillow has its own process-wide bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, about 89 MP for a warning and
179 MP for an error). This module does not change that global; it silences the warning for images
under its own bound and reports Pillow's error like its own. A ``max_pixels`` above ~179 MP therefore
needs the caller to raise Pillow's limit too.
"""

from __future__ import annotations

import errno
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
MAX_PIXELS = 100_000_000

# Formats Pillow may identify that we deliberately decode (the extension list above, plus the names
# Pillow gives to variants of them: MPO = multi-picture JPEG from cameras, DIB = headerless BMP).
_DECODED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "DIB", "TIFF", "WEBP"})
_WHITE = (255, 255, 255)


class ImageReadError(Exception):
    """A file that cannot be used as an input photo; ``reason`` is a short, user-facing explanation."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class ImageItem:
    """One input photo and the person it belongs to (the output folder it feeds)."""

    path: Path
    person: str
    rel: Path  # path relative to the input root (the file name alone for a single-file input)


def read_image(path: str | os.PathLike[str], max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode ``path`` into a C-contiguous (H, W, 3) uint8 RGB array, or raise ``ImageReadError``."""
    path = Path(path)
    _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                _check_header(path, img, max_pixels)
                img.load()
                rgb = _to_rgb(path, _apply_orientation(img))
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageReadError(path, f"too large ({exc}); the limit is {max_pixels / 1e6:.0f} megapixels") from None
    except UnidentifiedImageError:
        raise ImageReadError(path, _unidentified_reason(path)) from None
    except MemoryError:
        raise ImageReadError(path, "not enough memory to decode this image") from None
    except OSError as exc:
        raise ImageReadError(path, _os_reason(exc)) from None
    except (ValueError, SyntaxError, IndexError) as exc:  # Pillow's plugins raise these on malformed data
        raise ImageReadError(path, f"corrupt image data ({type(exc).__name__}: {exc})") from None
    return np.ascontiguousarray(rgb)


def list_images(folder: str | os.PathLike[str], skipped: list[Path] | None = None) -> list[ImageItem]:
    """Every photo under ``folder`` (recursively), grouped by person, in a stable order.

    Person = the top-level sub-folder a file lies in (``IN/alice/2020/x.jpg`` -> ``alice``); a loose file
    in ``folder`` itself is its own person, named by its stem (``IN/bob.jpg`` -> ``bob``). Extensions
    are matched case-insensitively (``IMAGE_EXTENSIONS``). Hidden files and folders (``.name``, such as
    macOS ``._x.jpg`` resource forks) are ignored. Other files are appended to ``skipped`` when given, so
    a caller can say how many it left out. Order: by person, then by path, so that each person's images
    are contiguous.
    """
    root = Path(folder)
    items: list[ImageItem] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith("."):
                continue
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                if skipped is not None:
                    skipped.append(path)
                continue
            rel = path.relative_to(root)
            person = rel.parts[0] if len(rel.parts) > 1 else rel.stem
            items.append(ImageItem(path=path, person=person, rel=rel))
    items.sort(key=lambda item: (item.person, item.rel.parts))
    return items


def _check_file(path: Path) -> None:
    """Reasons that need no decoding: missing, a folder, unreadable, empty."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except OSError as exc:
        raise ImageReadError(path, _os_reason(exc)) from None
    if path.is_dir():
        raise ImageReadError(path, "is a folder, not an image file")
    if st.st_size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")


def _check_header(path: Path, img: Image.Image, max_pixels: int) -> None:
    """Refuse unsupported formats and oversized images before the (expensive) decode."""
    if img.format not in _DECODED_FORMATS:
        raise ImageReadError(
            path, f"unsupported image format {img.format or 'unknown'} (supported: JPEG, PNG, BMP, TIFF, WebP)"
        )
    width, height = img.size
    if width <= 0 or height <= 0:
        raise ImageReadError(path, f"corrupt header: size {width}x{height}")
    if width * height > max_pixels:
        raise ImageReadError(
            path,
            f"too large: {width}x{height} = {width * height / 1e6:.0f} megapixels, "
            f"the limit is {max_pixels / 1e6:.0f} megapixels",
        )


def _apply_orientation(img: Image.Image) -> Image.Image:
    """Turn the image the way its EXIF orientation tag says; a malformed EXIF block leaves it as stored."""
    try:
        turned = ImageOps.exif_transpose(img)
    except (ValueError, TypeError, KeyError, SyntaxError, OSError):
        turned = img  # unreadable EXIF: the pixel data itself is fine, use it unrotated
    return img if turned is None else turned


def _to_rgb(path: Path, img: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to RGB uint8 (see the module docstring for the rules)."""
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img)
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _high_depth_gray(img)
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    elif mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
    elif mode == "L" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        background = Image.new("RGBA", img.size, (*_WHITE, 255))
        return np.asarray(Image.alpha_composite(background, img).convert("RGB"))
    try:
        return np.asarray(img.convert("RGB"))
    except ValueError as exc:
        raise ImageReadError(path, f"unsupported pixel mode {mode} ({exc})") from None


def _high_depth_gray(img: Image.Image) -> np.ndarray:
    """Scale 16/32-bit or float gray samples to 0..255: 16-bit data by 255/65535, floats in [0, 1] by 255."""
    values = np.asarray(img).astype(np.float64)
    top = float(values.max()) if values.size else 0.0
    if img.mode == "F" and top <= 1.0:
        values = values * 255.0
    elif img.mode.startswith("I;16") or 255.0 < top <= 65535.0:
        values = values * (255.0 / 65535.0)
    elif top > 65535.0:
        values = values * (255.0 / top)
    gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def _unidentified_reason(path: Path) -> str:
    """Why Pillow could not identify a file: the extension is wrong, or the content is not an image."""
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return f"unsupported file type {path.suffix or '(no extension)'}"
    with path.open("rb") as fh:
        head = fh.read(512)
    if head and all(b in b"\t\n\r" or 32 <= b < 127 for b in head):
        return "not an image: the file contains text"
    return "not an image, or its header is corrupt (no known image format recognised)"


def _os_reason(exc: OSError) -> str:
    """A short reason from Pillow's / the OS's error (truncation, permissions, I/O)."""
    text = str(exc)
    if exc.errno == errno.EACCES:
        return "permission denied"
    if exc.errno == errno.EIO:
        return "input/output error while reading"
    if "truncated" in text:
        return f"truncated image data ({text})"
    return f"corrupt or unreadable image data ({text})"
