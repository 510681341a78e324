"""``opendr-face-synth export-bag BAG OUT``: a recorded bag as a dataset in the offline tool's layout.

    OUT/track_0001/<stamp>_f<face>_yaw<+30>_pitch<+00>.png   the views, one folder per track id
    OUT/masks/track_0001/<same name>.png                     with --masks (when the bag has masks)
    OUT/contact_sheets/track_0001.png                        one preview sheet per track
    OUT/metadata.csv                                         one row per view: the offline tool's columns
                                                             + stamp, frame_id, track_id, topic
    OUT/failures.csv                                         frames / faces that have no views, and why

``<stamp>`` is the input frame's header stamp, ``t<sec>_<nanosec>``. The bag is read with rosbags
using the message definitions stored in the bag itself, so no ROS installation is needed. When the
input frames were recorded too, contact sheets show each face's crop from its frame.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

VIEWS_TYPE = "opendr_face_synth/msg/SynthFaceArray"
IMAGE_TYPE = "sensor_msgs/msg/Image"
EXTRA_COLUMNS = ("stamp", "frame_id", "track_id", "topic")
EXIT_OK, EXIT_NOTHING, EXIT_USAGE = 0, 1, 2


class ExportError(Exception):
    """The bag cannot be exported (not a bag, no views topic, output not writable): the reason."""


@dataclass
class ExportSummary:
    frames: int = 0
    faces: int = 0
    views: int = 0
    tracks: set[int] = field(default_factory=set)
    failures: int = 0
    sheets: int = 0
    topic: str = ""
    start_ns: int = 0
    end_ns: int = 0

    def text(self, bag: Path, out: Path) -> str:
        seconds = max(0, self.end_ns - self.start_ns) / 1e9
        return (
            f"exported {self.views} views of {self.faces} faces from {self.frames} frames "
            f"({len(self.tracks)} tracks, {seconds:.1f} s of {self.topic}) from {bag} to {out}; "
            f"{self.sheets} contact sheets, {self.failures} failures (failures.csv)"
        )


def _image_array(msg: Any) -> np.ndarray | None:
    """rosbags-deserialised sensor_msgs/Image (rgb8 / bgr8 / mono8 as recorded here) -> RGB or mono uint8."""
    if msg.width == 0 or msg.height == 0:
        return None
    data = np.asarray(msg.data, dtype=np.uint8)
    channels = {"rgb8": 3, "bgr8": 3, "mono8": 1}.get(msg.encoding)
    if channels is None:
        return None
    rows = data.reshape(msg.height, msg.step)[:, : msg.width * channels]
    if channels == 1:
        return np.ascontiguousarray(rows.reshape(msg.height, msg.width))
    image = rows.reshape(msg.height, msg.width, 3)
    return np.ascontiguousarray(image[:, :, ::-1] if msg.encoding == "bgr8" else image)


def _input_frame(msg: Any) -> np.ndarray | None:
    """A recorded input frame (any encoding the node accepts) as RGB, for the contact sheets' crops."""
    from ..ros.image_conversion import ImageConversionError, image_to_rgb

    try:
        return image_to_rgb(msg, use_cv_bridge=False)
    except ImageConversionError:
        return None


def _results(msg: Any) -> list[tuple[int, Any]]:
    """SynthFaceArray (rosbags object) -> [(track_id, FaceResult)] in the engine's own types."""
    from ..core.types import FaceDetection, FaceFit, FaceResult, HeadPose, View, ViewRequest

    out = []
    for face in msg.faces:
        roi = face.roi
        x0, y0 = float(roi.x_offset), float(roi.y_offset)
        box = (x0, y0, x0 + float(roi.width), y0 + float(roi.height))
        fit = None
        if face.has_source_pose:
            p = face.source_pose
            fit = FaceFit(
                vertices=np.zeros((0, 3), np.float32),
                triangles=np.zeros((0, 3), np.int64),
                pose=HeadPose(float(p.yaw), float(p.pitch), float(p.roll)),
                landmarks5=np.zeros((5, 2), np.float32),
                landmark_ids5=np.zeros(5, np.int64),
                head_centre=np.zeros(3, np.float32),
            )
        views = []
        for v in face.views:
            image = _image_array(v.image)
            if image is None:
                continue
            mask = _image_array(v.mask)
            request = ViewRequest(
                yaw=float(v.requested_yaw) if v.yaw_requested else None,
                pitch=float(v.requested_pitch) if v.pitch_requested else None,
            )
            target = HeadPose(float(v.target.yaw), float(v.target.pitch), float(v.target.roll))
            achieved = None
            if v.has_achieved:
                achieved = HeadPose(float(v.achieved.yaw), float(v.achieved.pitch), float(v.achieved.roll))
            views.append(
                View(
                    request=request,
                    target=target,
                    image=image,
                    mask=mask if mask is not None else np.zeros(image.shape[:2], np.uint8),
                    achieved=achieved,
                )
            )
        result = FaceResult(FaceDetection(box=box, score=float(face.score)), fit, views, face.error or None)
        out.append((int(face.track_id), result))
    return out


def _read_errors() -> tuple[type[Exception], ...]:
    """What rosbags raises for a damaged or unreadable bag (imported lazily)."""
    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag2.errors import ReaderError
    from rosbags.serde.errors import SerdeError
    from rosbags.typesys.base import TypesysError

    return (AnyReaderError, ReaderError, SerdeError, TypesysError)


class _Exporter:
    """Writes views, metadata rows and per-track contact sheets (see the module docstring)."""

    def __init__(self, out: Path, save_masks: bool, contact_sheets: bool, sheet_tile: int, sheet_max_rows: int):
        from ..io.dataset import METADATA_COLUMNS, guard_write

        self.out = out
        self.save_masks = save_masks
        self.contact_sheets = contact_sheets
        self.sheet_tile = sheet_tile
        self.sheet_max_rows = sheet_max_rows
        self.summary = ExportSummary()
        self.sheets: dict[int, Any] = {}
        self._dirs: set[Path] = set()
        self._mkdir(out)
        with guard_write(out / "metadata.csv"):
            self._meta_file = open(out / "metadata.csv", "w", newline="", encoding="utf-8")  # noqa: SIM115
        with guard_write(out / "failures.csv"):
            self._fail_file = open(out / "failures.csv", "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._meta, self._fail = csv.writer(self._meta_file), csv.writer(self._fail_file)
        self._row(self._meta_file, self._meta, (*METADATA_COLUMNS, *EXTRA_COLUMNS))
        self._row(self._fail_file, self._fail, ("file", "reason"))

    def _mkdir(self, folder: Path) -> None:
        from ..io.dataset import guard_write

        if folder not in self._dirs:
            with guard_write(folder):
                folder.mkdir(parents=True, exist_ok=True)
            self._dirs.add(folder)

    @staticmethod
    def _row(fh: Any, writer: Any, row: tuple) -> None:
        from ..io.dataset import guard_write

        with guard_write(fh.name):
            writer.writerow(row)

    def failure(self, what: str, reason: str) -> None:
        self._row(self._fail_file, self._fail, (what, reason))
        self.summary.failures += 1

    def frame(self, msg: Any, stamp_ns: int, topic: str, source: np.ndarray | None) -> None:
        """One SynthFaceArray message (rosbags object)."""
        from ..io.contact_sheet import ContactSheet
        from ..io.dataset import guard_write, view_name, write_png

        s = self.summary
        s.frames += 1
        s.start_ns = stamp_ns if s.frames == 1 else min(s.start_ns, stamp_ns)
        s.end_ns = max(s.end_ns, stamp_ns)
        sec, nsec, frame_id = msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id
        stem = f"t{sec}_{nsec:09d}"
        if msg.error and not msg.faces:
            self.failure(stem, msg.error)
            return
        for face_index, (track_id, face) in enumerate(_results(msg)):
            person = f"track_{track_id:04d}"
            s.tracks.add(track_id)
            if face.error or not face.views:
                self.failure(f"{person}/{stem} f{face_index}", face.error or "no views")
            pose = face.fit.pose if face.fit is not None else None
            src = ("", "", "") if pose is None else (f"{pose.yaw:.2f}", f"{pose.pitch:.2f}", f"{pose.roll:.2f}")
            x0, y0, x1, y1 = face.detection.box
            used: set[str] = set()
            for view_index, view in enumerate(face.views):
                self._mkdir(self.out / person)
                name = view_name(stem, face_index, view)
                if name in used:
                    name = f"{name}_v{view_index}"
                used.add(name)
                write_png(self.out / person / f"{name}.png", view.image)
                mask_rel = ""
                if self.save_masks and view.mask.any():
                    self._mkdir(self.out / "masks" / person)
                    write_png(self.out / "masks" / person / f"{name}.png", view.mask)
                    mask_rel = f"masks/{person}/{name}.png"
                got = view.achieved or view.target
                row = (
                    person,
                    stem,
                    face_index,
                    f"{x0:.1f}",
                    f"{y0:.1f}",
                    f"{x1:.1f}",
                    f"{y1:.1f}",
                    f"{face.detection.score:.4f}",
                    *src,
                    "" if view.request.yaw is None else f"{view.request.yaw:.2f}",
                    "" if view.request.pitch is None else f"{view.request.pitch:.2f}",
                    f"{got.yaw:.2f}",
                    f"{got.pitch:.2f}",
                    f"{person}/{name}.png",
                    mask_rel,
                    f"{sec}.{nsec:09d}",
                    frame_id,
                    track_id,
                    topic,
                )
                self._row(self._meta_file, self._meta, row)
                s.views += 1
            s.faces += 1
            if self.contact_sheets:
                if track_id not in self.sheets:
                    self.sheets[track_id] = ContactSheet(tile=self.sheet_tile, max_rows=self.sheet_max_rows)
                sheet = self.sheets[track_id]
                if source is None:  # no recorded input: a plain tile where the face crop would be
                    source = np.full((max(1, msg.image_height), max(1, msg.image_width), 3), 32, np.uint8)
                sheet.add_face(source, face.detection, stem, face_index, pose, face.views, face.error)
        with guard_write(self._meta_file.name):
            self._meta_file.flush()
            self._fail_file.flush()

    def close(self) -> None:
        from ..io.dataset import SHEETS_DIR, write_png

        for fh in (self._meta_file, self._fail_file):
            fh.close()
        for track_id, sheet in sorted(self.sheets.items()):
            image = sheet.render()
            if image is not None:
                self._mkdir(self.out / SHEETS_DIR)
                write_png(self.out / SHEETS_DIR / f"track_{track_id:04d}.png", image)
                self.summary.sheets += 1


def export_bag(
    bag: str | Path,
    out: str | Path,
    topic: str | None = None,
    save_masks: bool = False,
    contact_sheets: bool = True,
    sheet_tile: int = 128,
    sheet_max_rows: int = 24,
) -> ExportSummary:
    """Write the dataset; raises ExportError with the reason. Memory: one message at a time, a few
    recorded input frames, and one bounded contact sheet per track."""
    from rosbags.highlevel import AnyReader

    from ..io.dataset import OutputWriteError

    bag, out = Path(bag), Path(out)
    if not (bag / "metadata.yaml").is_file():
        raise ExportError(f"{bag} is not a rosbag2 bag folder (no metadata.yaml)")
    try:
        with AnyReader([bag]) as reader:
            views_conns = [c for c in reader.connections if c.msgtype == VIEWS_TYPE]
            if topic is not None:
                views_conns = [c for c in views_conns if c.topic == topic]
            topics = sorted({c.topic for c in views_conns})
            if not topics:
                found = ", ".join(sorted(f"{c.topic} ({c.msgtype})" for c in reader.connections)) or "none"
                wanted = f" {topic!r}" if topic else ""
                raise ExportError(f"no {VIEWS_TYPE} topic{wanted} in {bag} (topics: {found})")
            if len(topics) > 1:
                raise ExportError(f"several views topics in {bag}: {', '.join(topics)}; choose one with --topic")
            image_conns = [c for c in reader.connections if c.msgtype == IMAGE_TYPE] if contact_sheets else []
            exporter = _Exporter(out, save_masks, contact_sheets, sheet_tile, sheet_max_rows)
            exporter.summary.topic = topics[0]
            frames: dict[tuple[int, int, str], np.ndarray] = {}  # recorded inputs waiting for their views
            try:
                for conn, stamp_ns, raw in reader.messages(connections=views_conns + image_conns):
                    msg = reader.deserialize(raw, conn.msgtype)
                    key = (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id)
                    if conn.msgtype == IMAGE_TYPE:
                        frame = _input_frame(msg)
                        if frame is not None:
                            frames[key] = frame
                            while len(frames) > 8:  # bounded: views follow their input closely
                                frames.pop(next(iter(frames)))
                        continue
                    exporter.frame(msg, stamp_ns, conn.topic, frames.pop(key, None))
            finally:
                exporter.close()
    except OutputWriteError as err:
        raise ExportError(str(err)) from err
    except _read_errors() as err:
        raise ExportError(f"cannot read {bag}: {err}") from err
    return exporter.summary


def add_subcommand(subparsers: Any) -> None:
    """Register ``export-bag`` on the CLI's subparsers (cli/main.py calls this)."""
    parser = subparsers.add_parser(
        "export-bag",
        help="turn a recorded bag (face_synth_node) into a dataset folder",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("bag", type=Path, help="bag folder (with metadata.yaml)")
    parser.add_argument("out", type=Path, help="output dataset folder")
    parser.add_argument("--topic", default=None, help="views topic when the bag has several")
    parser.add_argument("--masks", action="store_true", help="also write the masks (OUT/masks/...)")
    parser.add_argument("--no-contact-sheets", action="store_true", help="skip the per-track preview sheets")
    parser.add_argument("--sheet-tile", type=int, default=128, help="contact sheet tile size in pixels")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Exit 0 when views were exported, 1 when the bag held none, 2 when it cannot be exported."""
    if not 16 <= args.sheet_tile <= 1024:
        print(f"export-bag: --sheet-tile {args.sheet_tile} is outside [16, 1024]", file=sys.stderr)
        return EXIT_USAGE
    try:
        summary = export_bag(
            args.bag,
            args.out,
            topic=args.topic,
            save_masks=args.masks,
            contact_sheets=not args.no_contact_sheets,
            sheet_tile=args.sheet_tile,
        )
    except ExportError as err:
        print(f"export-bag: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(summary.text(args.bag, args.out))
    return EXIT_OK if summary.views else EXIT_NOTHING


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m opendr_face_synth.cli.export_bag BAG OUT``)."""
    parser = argparse.ArgumentParser(prog="export-bag")
    sub = parser.add_subparsers(dest="command", required=True)
    add_subcommand(sub)
    return run(parser.parse_args(["export-bag", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    raise SystemExit(main())
