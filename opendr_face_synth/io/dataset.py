"""The output dataset: one folder per person, metadata.csv and failures.csv, optional masks and contact sheets.

Layout under OUT::

    OUT/<person>/<stem>_f<face>_yaw<+30>_pitch<+00>.png   the views (the dataset proper)
    OUT/masks/<person>/<same name>.png                     with save_masks: 255 = real source texture
    OUT/contact_sheets/<person>.png                        previews (see contact_sheet.py)
    OUT/metadata.csv                                       one row per view written
    OUT/failures.csv                                       one row per file / face that gave nothing

The seed tool's own tree (``rs_model/example/Images_orig/...``) replaces the person folders with
``-seed_layout`` / ``generate --layout seed``: see seed_layout.py, which overrides ``_write_views``.

Masks and sheets live outside the person folders so that folder-per-class loaders (which walk each
class folder recursively) see only the views; metadata.csv is the authoritative index. Both CSV files
are rewritten at the start of a run and flushed after every image, so an interrupted run keeps a
truthful record of what it wrote: a view gets its metadata row only after its file is complete.

Angles in names are whole degrees with a sign and at least two digits (``yaw+30``, ``yaw-05``,
``pitch+00``). A request that keeps the source angle (``ViewRequest.yaw is None``) is named by the
angle actually rendered. Two views that would get the same name (e.g. yaw 0 keeping a source pitch
of ~0 and pitch 0 keeping a source yaw of ~0) get ``_v<view index>`` appended to the later one.
"""

from __future__ import annotations

import csv
import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from ..core.types import FaceResult, ImageResult, View
from .contact_sheet import ContactSheet
from .images import ImageItem

METADATA_COLUMNS = (
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
)
FAILURE_COLUMNS = ("file", "reason")
MASKS_DIR = "masks"
SHEETS_DIR = "contact_sheets"

_ERRNO_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOTDIR: "a parent of this path is a file, not a folder",
    errno.EISDIR: "a folder is in the way of this file",
    errno.ENAMETOOLONG: "file name too long",
}


class OutputWriteError(Exception):
    """The output cannot be written (disk full, no permission...): the run must stop, naming the file."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot write {self.path}: {reason}")


def angle_tag(angle: float) -> str:
    """'+30', '-05', '+00' (whole degrees; -0.4 rounds to '+00')."""
    return f"{round(float(angle)):+03d}"


def view_name(stem: str, face_index: int, view: View) -> str:
    """``<stem>_f<face>_yaw<+30>_pitch<+00>`` (no extension); kept source angles use the rendered angle."""
    rendered = view.achieved or view.target
    yaw = view.request.yaw if view.request.yaw is not None else rendered.yaw
    pitch = view.request.pitch if view.request.pitch is not None else rendered.pitch
    return f"{stem}_f{face_index}_yaw{angle_tag(yaw)}_pitch{angle_tag(pitch)}"


@contextmanager
def guard_write(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an OSError while writing ``path`` into one ``OutputWriteError`` with a plain reason."""
    try:
        yield
    except OSError as exc:
        reason = _ERRNO_REASONS.get(exc.errno or -1, exc.strerror or str(exc))
        raise OutputWriteError(exc.filename or path, reason) from exc


def write_png(path: Path, image: np.ndarray) -> None:
    """Encode RGB (H, W, 3) or gray (H, W) uint8 as PNG and write it, with errors naming ``path``."""
    _write_encoded(path, image, ".png", ())


def write_jpeg(path: Path, image: np.ndarray, quality: int = 95) -> None:
    """Encode RGB (H, W, 3) or gray (H, W) uint8 as JPEG and write it, with errors naming ``path``."""
    _write_encoded(path, image, ".jpg", (cv2.IMWRITE_JPEG_QUALITY, quality))


def _write_encoded(path: Path, image: np.ndarray, ext: str, params: tuple[int, ...]) -> None:
    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, encoded = cv2.imencode(ext, np.ascontiguousarray(pixels), list(params))
    if not ok:
        raise OutputWriteError(path, f"{ext[1:].upper()} encoding failed")
    with guard_write(path), open(path, "wb") as fh:
        fh.write(encoded.tobytes())


class DatasetWriter:
    """Writes ``ImageResult``s of a run into OUT (see the module docstring); use as a context manager."""

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        save_masks: bool = False,
        contact_sheets: bool = True,
        sheet_tile: int = 128,
        sheet_max_rows: int = 24,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.save_masks = save_masks
        self.contact_sheets = contact_sheets
        self.sheet_tile = sheet_tile
        self.sheet_max_rows = sheet_max_rows
        self.views_written = 0
        self.faces_written = 0
        self.failures = 0
        self.sheets_written = 0
        self._meta_file: IO[str] | None = None
        self._fail_file: IO[str] | None = None
        self._meta: Any = None  # csv writers (their class is private to the csv module)
        self._fail: Any = None
        self._stems: dict[str, set[str]] = {}
        self._made_dirs: set[Path] = set()
        self._sheet_person: str | None = None
        self._sheet: ContactSheet | None = None

    def __enter__(self) -> DatasetWriter:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> None:
        """Create OUT and start metadata.csv / failures.csv (header rows, flushed)."""
        self._mkdir(self.out_dir)
        meta_path, fail_path = self.out_dir / "metadata.csv", self.out_dir / "failures.csv"
        with guard_write(meta_path):
            self._meta_file = open(
                meta_path, "w", newline="", encoding="utf-8", errors="backslashreplace"
            )  # closed in close()
        with guard_write(fail_path):
            self._fail_file = open(fail_path, "w", newline="", encoding="utf-8", errors="backslashreplace")
        self._meta = csv.writer(self._meta_file)
        self._fail = csv.writer(self._fail_file)
        self._write_row(self._meta_file, self._meta, METADATA_COLUMNS)
        self._write_row(self._fail_file, self._fail, FAILURE_COLUMNS)

    def close(self) -> None:
        """Write the last contact sheet and close the CSV files (safe to call twice)."""
        try:
            self._finish_sheet()
        finally:
            for fh in (self._meta_file, self._fail_file):
                if fh is not None and not fh.closed:
                    fh.close()

    def add_failure(self, file: str | os.PathLike[str], reason: str) -> None:
        """One row of failures.csv: a file (relative to IN) or 'file face N' and why it gave nothing."""
        self.failures += 1
        self._write_row(self._fail_file, self._fail, (Path(file).as_posix(), reason))

    def add_result(self, item: ImageItem, source_rgb: np.ndarray, result: ImageResult) -> int:
        """Write every view of every face of one image; returns the number of views written."""
        self._switch_sheet(item.person)
        if result.error and not result.faces:
            self.add_failure(item.rel, result.error)
            return 0
        stem = self._unique_stem(item)
        written = 0
        for face_index, face in enumerate(result.faces):
            if face.error or not face.views:
                self.add_failure(item.rel, f"face {face_index}: {face.error or 'no views rendered'}")
            else:
                written += self._write_face(item, stem, face_index, face)
            if self._sheet is not None:
                pose = face.fit.pose if face.fit is not None else None
                self._sheet.add_face(source_rgb, face.detection, stem, face_index, pose, face.views, face.error)
        if result.error and result.faces:
            self.add_failure(item.rel, result.error)
        self._flush()
        return written

    def _write_face(self, item: ImageItem, stem: str, face_index: int, face: FaceResult) -> int:
        pose = face.fit.pose if face.fit is not None else None
        src = (pose.yaw, pose.pitch, pose.roll) if pose is not None else (None, None, None)
        x0, y0, x1, y1 = face.detection.box
        written = 0
        for view, output_rel, mask_rel in self._write_views(item, stem, face_index, face.views):
            got = view.achieved or view.target
            self._write_row(
                self._meta_file,
                self._meta,
                (
                    item.person,
                    item.rel.as_posix(),
                    face_index,
                    _num(x0, 1),
                    _num(y0, 1),
                    _num(x1, 1),
                    _num(y1, 1),
                    _num(face.detection.score, 4),
                    _num(src[0]),
                    _num(src[1]),
                    _num(src[2]),
                    _num(view.request.yaw),
                    _num(view.request.pitch),
                    _num(got.yaw),
                    _num(got.pitch),
                    output_rel,
                    mask_rel,
                ),
                flush=False,
            )
            self.views_written += 1
            written += 1
        self.faces_written += 1
        return written

    def _write_views(
        self, item: ImageItem, stem: str, face_index: int, views: list[View]
    ) -> Iterator[tuple[View, str, str]]:
        """Write each view's files, then yield it with its paths relative to OUT (output file, mask file or '').

        The layout hook (seed_layout.py overrides it); yielding after the write keeps a view's metadata row
        behind its complete file.
        """
        folder = self.out_dir / item.person
        self._mkdir(folder)
        used: set[str] = set()
        for view_index, view in enumerate(views):
            name = view_name(stem, face_index, view)
            if name in used:
                name = f"{name}_v{view_index}"
            used.add(name)
            write_png(folder / f"{name}.png", view.image)
            mask_rel = ""
            if self.save_masks:
                mask_dir = self.out_dir / MASKS_DIR / item.person
                self._mkdir(mask_dir)
                write_png(mask_dir / f"{name}.png", view.mask)
                mask_rel = f"{MASKS_DIR}/{item.person}/{name}.png"
            yield view, f"{item.person}/{name}.png", mask_rel

    def _unique_stem(self, item: ImageItem) -> str:
        """File stem inside the person folder: sub-folders below the person joined by '_', unique per person."""
        inner = item.rel.parts[1:] if len(item.rel.parts) > 1 else item.rel.parts
        stem = "_".join([*inner[:-1], Path(inner[-1]).stem])
        used = self._stems.setdefault(item.person, set())
        candidate = stem
        if candidate in used:
            candidate = f"{stem}_{item.rel.suffix.lstrip('.').lower()}"
        n = 2
        while candidate in used:
            candidate = f"{stem}_{n}"
            n += 1
        used.add(candidate)
        return candidate

    def _switch_sheet(self, person: str) -> None:
        """Contact sheets are per person; inputs arrive grouped by person (list_images sorts them so)."""
        if not self.contact_sheets or person == self._sheet_person:
            return
        self._finish_sheet()
        self._sheet_person = person
        self._sheet = ContactSheet(tile=self.sheet_tile, max_rows=self.sheet_max_rows)

    def _finish_sheet(self) -> None:
        sheet, person = self._sheet, self._sheet_person
        self._sheet, self._sheet_person = None, None
        if sheet is None or person is None:
            return
        image = sheet.render()
        if image is None:
            return
        folder = self.out_dir / SHEETS_DIR
        self._mkdir(folder)
        write_png(folder / f"{person}.png", image)
        self.sheets_written += 1

    def _mkdir(self, folder: Path) -> None:
        if folder in self._made_dirs:
            return
        with guard_write(folder):
            folder.mkdir(parents=True, exist_ok=True)
        self._made_dirs.add(folder)

    def _flush(self) -> None:
        for fh in (self._meta_file, self._fail_file):
            if fh is not None:
                with guard_write(fh.name):
                    fh.flush()

    @staticmethod
    def _write_row(fh: IO[str] | None, writer: Any, row: tuple, flush: bool = True) -> None:
        if fh is None or writer is None:
            raise RuntimeError("DatasetWriter.open() was not called")
        with guard_write(fh.name):
            writer.writerow(row)
            if flush:
                fh.flush()


def _num(value: float | None, digits: int = 2) -> str:
    """CSV number: fixed decimals, '' for a missing value (e.g. a request that keeps the source angle)."""
    if value is None:
        return ""
    return f"{float(value):.{digits}f}"
