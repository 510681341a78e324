"""The seed's output tree (OpenDR tool, seed-spec §9.1 and §10.2 step 3), for scripts that depend on its names.

Layout under OUT (the seed tool's ``-save_path``)::

    OUT/rs_model/example/Images_orig/<stem>_<pose tag>.jpg      the view (256x256 at the default size)
    OUT/rs_model/example/Images_aligned/<stem>_<pose tag>.jpg   the same view as a 224x224 ArcFace crop
    OUT/rs_model/example/example010_rotate_lmk.txt              <orig path> 1 x1 y1 ... x5 y5, one line per view
    OUT/metadata.csv, OUT/failures.csv, OUT/contact_sheets/    as in the dataset layout (dataset.py)
    OUT/masks/<stem>_<pose tag>.png                             with save_masks

It replaces the person folders of the dataset layout; metadata.csv still has one row per view (its
``output_file`` is the Images_orig path), so nothing the dataset layout records is lost.

Names, as the seed writes them:

* ``<stem>`` is the input file name without its extension; the folder is flat, as in the seed (its
  stage 1 copies every photo into one folder and it keeps ``folder_level`` = 1 path part).
* The pose tag is ``yaw_<rad>`` for a yaw request and ``pitch_<rad>`` for a pitch request: the angle in
  radians rounded to 2 decimals, written as Python writes the float (10 -> ``0.17``, 40 -> ``0.7``,
  -30 -> ``-0.52``, 0 -> ``0.0``). A grid view (both angles set; the seed has no such mode) gets
  ``yaw_<rad>_pitch_<rad>``.
* Every file is a JPEG (quality 95; the seed saves with Pillow's default 75), whatever the input type.

Where we differ, because the seed would lose output:

* The seed renders only the first face of a photo; we render all. Face 0 keeps the seed's name, face k > 0
  is ``<stem>_f<k>_<pose tag>.jpg``.
* The seed overwrites a file when two outputs share a name (two photos with one stem in different
  folders or with different extensions, or two angles that round to the same radians such as 10 and
  9.9). Here the first view to claim a name keeps it and a later one gets ``_<n>`` after the stem
  (``<stem>_2_<pose tag>.jpg``, n = 2, 3, ... the smallest free one; names are compared ignoring case).
  Inputs are processed in sorted order, so the rule is deterministic; metadata.csv maps every output
  back to its source file.

Orig and aligned: the seed's orig image is its generator output, aligned by a 5-point similarity on its
256 template (seed-spec §6.1, §6.3); its aligned copy warps that image once more, from the 5 keypoints of
the rotated landmarks onto the ArcFace template x2, into 224x224 with a black border (§9.1). Our views are
aligned on the same 256 template (scaled to the output size), so the aligned copy here is the fixed warp
from that template onto ArcFace x2. The seed's rotated keypoints sit near but not exactly on the template,
so its crop can differ from ours by that residual. For the same reason the rotate_lmk.txt lines hold the
template points (truncated to ints, as the seed writes its keypoints).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from ..core.pose import five_point_template, similarity_transform
from ..core.types import View, ViewRequest
from .dataset import MASKS_DIR, DatasetWriter, guard_write, write_jpeg, write_png
from .images import ImageItem

SEED_DIR = Path("rs_model", "example")  # <names>/<dataset> of the OpenDR tool's options
ORIG_DIR = SEED_DIR / "Images_orig"  # <FID>_orig with FID = 'Images' (seed-spec §10.2)
ALIGNED_DIR = SEED_DIR / "Images_aligned"
LMK_FILE = SEED_DIR / "example010_rotate_lmk.txt"  # <dataset><list_start><list_end>_rotate_lmk.txt
ALIGNED_SIZE = 224
JPEG_QUALITY = 95
# The seed's aligned frame: the ArcFace 112 template x2 (seed-spec §9.1).
ARCFACE_224 = 2.0 * np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)


def seed_radians(degrees: float) -> float:
    """Degrees -> radians rounded to 2 decimals, computed as the seed computes its pose lists (seed-spec §6.3)."""
    return round(degrees / 180.0 * math.pi, 2)


def pose_tag(request: ViewRequest) -> str:
    """``yaw_0.17``, ``pitch_-0.52``, or ``yaw_0.17_pitch_0.52`` for a grid view (the seed's str() of the float)."""
    parts = [
        f"{axis}_{seed_radians(angle)}"
        for axis, angle in (("yaw", request.yaw), ("pitch", request.pitch))
        if angle is not None
    ]
    return "_".join(parts) or "src"  # 'src': keeps both source angles, which no valid config requests


def aligned_copy(view: np.ndarray) -> np.ndarray:
    """The view warped from its 5-point template onto ArcFace x2: the seed's 224x224 aligned copy."""
    m = similarity_transform(five_point_template(view.shape[0]), ARCFACE_224)
    return cv2.warpAffine(view, m, (ALIGNED_SIZE, ALIGNED_SIZE), flags=cv2.INTER_LINEAR, borderValue=0)


class SeedLayoutWriter(DatasetWriter):
    """``DatasetWriter`` with the seed's folders and names for the views (see the module docstring)."""

    def __init__(self, out_dir: str | os.PathLike[str], save_masks: bool = False, contact_sheets: bool = True) -> None:
        super().__init__(out_dir, save_masks=save_masks, contact_sheets=contact_sheets)
        self._names: set[str] = set()
        self._lmk_file: IO[str] | None = None

    def open(self) -> None:
        super().open()
        for folder in (ORIG_DIR, ALIGNED_DIR):
            self._mkdir(self.out_dir / folder)
        lmk_path = self.out_dir / LMK_FILE
        with guard_write(lmk_path):
            self._lmk_file = open(lmk_path, "w", encoding="utf-8", errors="backslashreplace")  # closed in close()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._lmk_file is not None and not self._lmk_file.closed:
                self._lmk_file.close()

    def _unique_stem(self, item: ImageItem) -> str:
        return Path(item.rel.name).stem  # uniqueness is per file name, in _claim

    def _write_views(
        self, item: ImageItem, stem: str, face_index: int, views: list[View]
    ) -> Iterator[tuple[View, str, str]]:
        face_part = f"_f{face_index}" if face_index else ""
        for view in views:
            name = self._claim(stem, f"{face_part}_{pose_tag(view.request)}")
            orig_rel = (ORIG_DIR / f"{name}.jpg").as_posix()
            write_jpeg(self.out_dir / orig_rel, view.image, JPEG_QUALITY)
            write_jpeg(self.out_dir / ALIGNED_DIR / f"{name}.jpg", aligned_copy(view.image), JPEG_QUALITY)
            mask_rel = ""
            if self.save_masks:
                self._mkdir(self.out_dir / MASKS_DIR)
                mask_rel = f"{MASKS_DIR}/{name}.png"
                write_png(self.out_dir / mask_rel, view.mask)
            self._write_keypoints(self.out_dir / orig_rel, view.image.shape[0])
            yield view, orig_rel, mask_rel

    def _claim(self, stem: str, suffix: str) -> str:
        """``stem + suffix``, or ``stem_<n> + suffix`` with the smallest free n >= 2 when that name is taken."""
        name, n = stem + suffix, 2
        while name.casefold() in self._names:
            name, n = f"{stem}_{n}{suffix}", n + 1
        self._names.add(name.casefold())
        return name

    def _write_keypoints(self, orig_path: Path, size: int) -> None:
        if self._lmk_file is None:
            raise RuntimeError("SeedLayoutWriter.open() was not called")
        points = " ".join(str(int(v)) for v in five_point_template(size).reshape(-1))
        with guard_write(self._lmk_file.name):
            self._lmk_file.write(f"{orig_path} 1 {points}\n")

    def _flush(self) -> None:
        super()._flush()
        if self._lmk_file is not None:
            with guard_write(self._lmk_file.name):
                self._lmk_file.flush()
