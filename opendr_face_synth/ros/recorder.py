"""On-board recording: a rosbag2 writer on its own thread behind a bounded queue.

Processing never waits for the disk: ``BagRecorder.write`` only puts the message object in a bounded
queue (full queue: the message is dropped and counted); the writer thread serialises it to CDR with
``rclpy.serialization.serialize_message`` and writes it.

Two writers, both producing standard rosbag2 bags (metadata.yaml + storage files, message definitions
embedded so that ``ros2 bag info`` / ``ros2 bag play`` read them):

* ``rosbag2_py`` (ROS machines, when importable): ROS's own writer, native size/duration splitting.
* ``builtin`` (the pip set-up, where rosbag2_py does not exist): MCAP through the ``mcap`` library or
  sqlite3 through Python's sqlite3, rosbag2 format version 9, split by size and duration. It is written
  here rather than with ``rosbags.rosbag2.Writer`` because that one keeps data in memory until close
  (MCAP summary, sqlite3 transaction), so a full disk or a crash would leave nothing readable. Here the
  MCAP file is flushed chunk by chunk and, after a write error, cut back to the last complete chunk and
  closed with a footer; sqlite3 commits every second. metadata.yaml is rewritten at every file
  rotation and at the end, listing only readable files.

A write error (disk full, directory gone, ...) or free space falling below ``min_free_bytes`` stops the
recording with ``state == "error"`` and a reason; the node keeps publishing.
"""

from __future__ import annotations

import datetime
import os
import queue
import shutil
import sqlite3
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PACKAGE = "opendr_face_synth"
METADATA_VERSION = 9
_MCAP_MAGIC = b"\x89MCAP0\r\n"
_FLUSH_PERIOD_S = 1.0
_DISK_CHECK_PERIOD_S = 1.0
_STOP = object()


class RecordingError(RuntimeError):
    """Recording could not start or had to stop; the message is the reason."""


@dataclass(frozen=True)
class TopicSpec:
    """One recorded topic: full name, ROS type ('pkg/msg/Type') and the publisher's QoS (depth, reliable)."""

    name: str
    msgtype: str
    depth: int = 10
    reliable: bool = True


# ---------------------------------------------------------------------------------------------
# Message definitions (ros2msg text with dependencies + RIHS01 type hash), as rosbag2 embeds them.


def _interface_dirs() -> list[Path]:
    """Where this package's .msg files may be: install prefixes (colcon / pip set-up), then the source tree."""
    dirs: list[Path] = []
    for prefix in [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]:
        dirs.append(Path(prefix) / "share" / PACKAGE / "msg")
    dirs.append(Path(__file__).resolve().parents[2] / "msg")
    return dirs


def _typestore() -> Any:
    """rosbags typestore of this ROS distro (the standard messages) with our messages registered."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    distro = os.environ.get("ROS_DISTRO", "kilted").upper()
    store_id = getattr(Stores, f"ROS2_{distro}", None) or Stores.LATEST
    store = get_typestore(store_id)
    msg_dir = next((d for d in _interface_dirs() if (d / "SynthFaceArray.msg").is_file()), None)
    if msg_dir is None:
        raise RecordingError(f"cannot find {PACKAGE}'s .msg files (looked in {[str(d) for d in _interface_dirs()]})")
    types: dict[str, Any] = {}
    for path in sorted(msg_dir.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(encoding="utf-8"), f"{PACKAGE}/msg/{path.stem}"))
    store.register(types)
    return store


def message_definitions(msgtypes: list[str]) -> dict[str, tuple[str, str]]:
    """msgtype -> (ros2msg definition text with dependencies, RIHS01 hash)."""
    store = _typestore()
    out: dict[str, tuple[str, str]] = {}
    for msgtype in msgtypes:
        text, _ = store.generate_msgdef(msgtype, ros_version=2)
        out[msgtype] = (text, store.hash_rihs01(msgtype))
    return out


def _qos_dicts(spec: TopicSpec) -> list[dict[str, Any]]:
    zero = {"sec": 0, "nsec": 0}
    return [
        {
            "history": "keep_last",
            "depth": spec.depth,
            "reliability": "reliable" if spec.reliable else "best_effort",
            "durability": "volatile",
            "deadline": dict(zero),
            "lifespan": dict(zero),
            "liveliness": "automatic",
            "liveliness_lease_duration": dict(zero),
            "avoid_ros_namespace_conventions": False,
        }
    ]


# ---------------------------------------------------------------------------------------------
# Storage files of the builtin writer.


class _TrackedStream:
    """Unbuffered file for the mcap writer that knows its position (for cutting back after an error)."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self.pos = 0

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        while view.nbytes:
            written = os.write(self._fd, view)
            self.pos += written
            view = view[written:]
        return len(data)

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        """Nothing is buffered here; the data is in the OS after write()."""

    def truncate_and_close(self, size: int, tail: bytes) -> None:
        """Cut the file back to ``size`` bytes, append ``tail`` and close (used after a write error)."""
        try:
            os.ftruncate(self._fd, size)
            os.lseek(self._fd, size, os.SEEK_SET)
            self.pos = size
            self.write(tail)
        finally:
            self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _McapFile:
    """One MCAP storage file, rosbag2 style (profile ros2, ros2msg schemas, cdr channels)."""

    suffix = ".mcap"

    def __init__(self, path: Path, topics: list[TopicSpec], defs: dict[str, tuple[str, str]]) -> None:
        from mcap.writer import CompressionType, Writer

        self.path = path
        self._stream = _TrackedStream(path)
        self._writer = Writer(self._stream, chunk_size=1 << 20, compression=CompressionType.NONE)
        self._writer.start(profile="ros2", library=f"{PACKAGE} builtin rosbag2 writer")
        self._channels: dict[str, int] = {}
        schema_ids: dict[str, int] = {}
        for spec in topics:
            text, rihs01 = defs[spec.msgtype]
            if spec.msgtype not in schema_ids:
                schema_ids[spec.msgtype] = self._writer.register_schema(spec.msgtype, "ros2msg", text.encode())
            self._channels[spec.name] = self._writer.register_channel(
                spec.name,
                "cdr",
                schema_ids[spec.msgtype],
                {"offered_qos_profiles": yaml.safe_dump(_qos_dicts(spec)), "topic_type_hash": rihs01},
            )
        self._writer.flush()
        self._good = self._stream.pos  # everything before this offset is complete records
        self._pending = 0  # message bytes in the chunk being built (not yet in the file)
        self.pending_counts: Counter[str] = Counter()  # messages per topic not yet in the file
        self._sequence = 0

    @property
    def size(self) -> int:
        return self._stream.pos + self._pending

    def write(self, topic: str, data: bytes, stamp_ns: int) -> None:
        self._sequence += 1
        before = self._stream.pos
        self._writer.add_message(self._channels[topic], stamp_ns, data, stamp_ns, self._sequence)
        self.pending_counts[topic] += 1
        if self._stream.pos != before:  # a chunk (holding this message too) went to the file
            self._pending = 0
            self.pending_counts.clear()
        else:
            self._pending += len(data) + 31
        self._good = self._stream.pos

    def flush(self) -> None:
        self._writer.flush()
        self._pending = 0
        self.pending_counts.clear()
        self._good = self._stream.pos

    def close(self, metadata_yaml: str) -> None:
        self._writer.add_metadata("rosbag2", {"serialized_metadata": metadata_yaml})
        self._writer.finish()
        self._stream.close()

    def salvage(self) -> None:
        """After a write error: keep the complete records, end the data section and add a footer
        without summary (readers then scan the file). Cutting back frees the partial chunk's space."""
        data_end = struct.pack("<BQI", 0x0F, 4, 0)
        footer = struct.pack("<BQQQI", 0x02, 20, 0, 0, 0)
        self._stream.truncate_and_close(self._good, data_end + footer + _MCAP_MAGIC)


class _Sqlite3File:
    """One sqlite3 storage file in rosbag2's schema (version 4 tables, as rosbag2 Jazzy+ writes)."""

    suffix = ".db3"
    _SCHEMA = """
    CREATE TABLE schema(schema_version INTEGER PRIMARY KEY, ros_distro TEXT NOT NULL);
    CREATE TABLE metadata(id INTEGER PRIMARY KEY, metadata_version INTEGER NOT NULL, metadata TEXT NOT NULL);
    CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL,
      serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL,
      type_description_hash TEXT NOT NULL);
    CREATE TABLE message_definitions(id INTEGER PRIMARY KEY, topic_type TEXT NOT NULL,
      encoding TEXT NOT NULL, encoded_message_definition TEXT NOT NULL,
      type_description_hash TEXT NOT NULL);
    CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL,
      timestamp INTEGER NOT NULL, data BLOB NOT NULL);
    CREATE INDEX timestamp_idx ON messages (timestamp ASC);
    """

    def __init__(self, path: Path, topics: list[TopicSpec], defs: dict[str, tuple[str, str]]) -> None:
        self.path = path
        if path.exists():
            raise RecordingError(f"{path} exists already")
        # Created by start() in the caller's thread, then used only by the writer thread.
        self._conn = sqlite3.connect(str(path), check_same_thread=False)
        self._conn.executescript(self._SCHEMA)
        distro = os.environ.get("ROS_DISTRO", "kilted")
        self._conn.execute("INSERT INTO schema VALUES(?, ?)", (4, distro))
        self._topic_ids: dict[str, int] = {}
        for msgtype in dict.fromkeys(spec.msgtype for spec in topics):
            text, rihs01 = defs[msgtype]
            self._conn.execute(
                "INSERT INTO message_definitions (topic_type, encoding, encoded_message_definition,"
                " type_description_hash) VALUES(?, ?, ?, ?)",
                (msgtype, "ros2msg", text, rihs01),
            )
        for index, spec in enumerate(topics, start=1):
            self._conn.execute(
                "INSERT INTO topics VALUES(?, ?, ?, ?, ?, ?)",
                (index, spec.name, spec.msgtype, "cdr", yaml.safe_dump(_qos_dicts(spec)), defs[spec.msgtype][1]),
            )
            self._topic_ids[spec.name] = index
        self._conn.commit()
        self.pending_counts: Counter[str] = Counter()  # messages per topic not yet committed

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def write(self, topic: str, data: bytes, stamp_ns: int) -> None:
        self._conn.execute(
            "INSERT INTO messages (topic_id, timestamp, data) VALUES(?, ?, ?)", (self._topic_ids[topic], stamp_ns, data)
        )
        self.pending_counts[topic] += 1

    def flush(self) -> None:
        self._conn.commit()
        self.pending_counts.clear()

    def close(self, metadata_yaml: str) -> None:
        self._conn.execute(
            "INSERT INTO metadata(metadata_version, metadata) VALUES(?, ?)", (METADATA_VERSION, metadata_yaml)
        )
        self._conn.commit()
        self._conn.close()

    def salvage(self) -> None:
        """After a write error: drop the uncommitted transaction; what was committed stays."""
        try:
            self._conn.rollback()
        finally:
            self._conn.close()


@dataclass
class _FileInfo:
    name: str
    start_ns: int = 0
    end_ns: int = 0
    count: int = 0


class _BuiltinBag:
    """A rosbag2 bag directory of one or more storage files (split by size / duration)."""

    def __init__(
        self, path: Path, storage: str, topics: list[TopicSpec], max_file_bytes: int, max_file_duration_ns: int
    ) -> None:
        if storage not in ("mcap", "sqlite3"):
            raise RecordingError(f"unknown storage {storage!r} (mcap or sqlite3)")
        self.path = path
        self.storage = storage
        self.topics = topics
        self.defs = message_definitions(sorted({t.msgtype for t in topics}))
        self.max_file_bytes = max_file_bytes
        self.max_file_duration_ns = max_file_duration_ns
        self.closed_files: list[_FileInfo] = []
        self.topic_counts: dict[str, int] = {t.name: 0 for t in topics}
        self._file: _McapFile | _Sqlite3File | None = None
        self._info: _FileInfo | None = None
        path.mkdir(parents=True, exist_ok=False)
        self._open_next()

    def _open_next(self) -> None:
        cls = _McapFile if self.storage == "mcap" else _Sqlite3File
        name = f"{self.path.name}_{len(self.closed_files)}{cls.suffix}"
        self._file = cls(self.path / name, self.topics, self.defs)
        self._info = _FileInfo(name)

    @property
    def files(self) -> list[str]:
        return [f.name for f in self.closed_files] + ([self._info.name] if self._info else [])

    @property
    def bytes_written(self) -> int:
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())

    def write(self, topic: str, data: bytes, stamp_ns: int) -> None:
        assert self._file is not None and self._info is not None
        info = self._info
        if info.count and (
            (self.max_file_bytes and self._file.size >= self.max_file_bytes)
            or (self.max_file_duration_ns and stamp_ns - info.start_ns >= self.max_file_duration_ns)
        ):
            self._rotate()
            info = self._info
            assert info is not None
        self._file.write(topic, data, stamp_ns)
        info.start_ns = stamp_ns if info.count == 0 else min(info.start_ns, stamp_ns)
        info.end_ns = max(info.end_ns, stamp_ns)
        info.count += 1
        self.topic_counts[topic] += 1

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def _rotate(self) -> None:
        assert self._file is not None and self._info is not None
        self._file.close(self.metadata_yaml(self.closed_files + [self._info], inner=True))
        self.closed_files.append(self._info)
        self._file, self._info = None, None
        self.write_metadata()
        self._open_next()

    def close(self) -> None:
        if self._file is not None and self._info is not None:
            self._file.close(self.metadata_yaml(self.closed_files + [self._info], inner=True))
            self.closed_files.append(self._info)
            self._file, self._info = None, None
        self.write_metadata()

    def salvage(self) -> str:
        """After an error: keep what the current file holds, rewrite metadata.yaml. Returns a note."""
        note = ""
        if self._file is not None and self._info is not None:
            file, info = self._file, self._info
            self._file, self._info = None, None
            lost = file.pending_counts
            info.count -= sum(lost.values())
            for topic, count in lost.items():
                self.topic_counts[topic] -= count
            if lost:
                note = f"; the last {sum(lost.values())} messages were not on disk yet and are lost"
            try:
                file.salvage()
                self.closed_files.append(info)
            except (OSError, sqlite3.Error) as err:
                reason = err.strerror if isinstance(err, OSError) else str(err)
                note = f"; {info.name} could not be closed ({reason}) and is left out of metadata.yaml"
        try:
            self.write_metadata()
        except OSError as err:
            note += f"; metadata.yaml not written ({err.strerror})"
        return note

    def metadata_dict(self, files: list[_FileInfo]) -> dict[str, Any]:
        start = min((f.start_ns for f in files if f.count), default=0)
        end = max((f.end_ns for f in files if f.count), default=0)
        total = sum(f.count for f in files)
        return {
            "version": METADATA_VERSION,
            "storage_identifier": self.storage,
            "duration": {"nanoseconds": max(0, end - start)},
            "starting_time": {"nanoseconds_since_epoch": start},
            "message_count": total,
            "topics_with_message_count": [
                {
                    "topic_metadata": {
                        "name": spec.name,
                        "type": spec.msgtype,
                        "serialization_format": "cdr",
                        "offered_qos_profiles": _qos_dicts(spec),
                        "type_description_hash": self.defs[spec.msgtype][1],
                    },
                    "message_count": self.topic_counts[spec.name],
                }
                for spec in self.topics
            ],
            "compression_format": "",
            "compression_mode": "",
            "relative_file_paths": [f.name for f in files],
            "files": [
                {
                    "path": f.name,
                    "starting_time": {"nanoseconds_since_epoch": f.start_ns},
                    "duration": {"nanoseconds": max(0, f.end_ns - f.start_ns)},
                    "message_count": f.count,
                }
                for f in files
            ],
            "custom_data": {"writer": f"{PACKAGE} builtin"},
            "ros_distro": os.environ.get("ROS_DISTRO", "kilted"),
        }

    def metadata_yaml(self, files: list[_FileInfo], inner: bool = False) -> str:
        data = self.metadata_dict(files)
        return yaml.safe_dump(data if inner else {"rosbag2_bagfile_information": data}, sort_keys=False)

    def write_metadata(self) -> None:
        tmp = self.path / "metadata.yaml.tmp"
        tmp.write_text(self.metadata_yaml(self.closed_files), encoding="utf-8")
        tmp.replace(self.path / "metadata.yaml")


class _Rosbag2PyBag:
    """ROS's own writer (rosbag2_py), used where ROS provides it."""

    def __init__(
        self, path: Path, storage: str, topics: list[TopicSpec], max_file_bytes: int, max_file_duration_ns: int
    ) -> None:
        import rosbag2_py

        self.path = path
        self.storage = storage
        self.topic_counts: dict[str, int] = {t.name: 0 for t in topics}
        options = rosbag2_py.StorageOptions(
            uri=str(path),
            storage_id=storage,
            max_bagfile_size=max_file_bytes,
            max_bagfile_duration=max_file_duration_ns // 1_000_000_000,
        )
        self._writer = rosbag2_py.SequentialWriter()
        self._writer.open(options, rosbag2_py.ConverterOptions("cdr", "cdr"))
        for spec in topics:
            self._writer.create_topic(
                rosbag2_py.TopicMetadata(name=spec.name, type=spec.msgtype, serialization_format="cdr")
            )

    @property
    def files(self) -> list[str]:
        return sorted(p.name for p in self.path.glob("*") if p.suffix in (".mcap", ".db3"))

    @property
    def bytes_written(self) -> int:
        return sum(p.stat().st_size for p in self.path.glob("*") if p.is_file())

    def write(self, topic: str, data: bytes, stamp_ns: int) -> None:
        self._writer.write(topic, data, stamp_ns)
        self.topic_counts[topic] += 1

    def flush(self) -> None:
        """rosbag2 flushes on its own schedule."""

    def close(self) -> None:
        close = getattr(self._writer, "close", None)  # Humble has no close(): the destructor closes
        if close is not None:
            close()
        self._writer = None

    def salvage(self) -> str:
        self.close()
        return ""


def rosbag2_py_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("rosbag2_py") is not None


# ---------------------------------------------------------------------------------------------


class BagRecorder:
    """Records messages to one bag on a writer thread; see the module docstring for the guarantees."""

    def __init__(
        self,
        bag_path: Path,
        topics: list[TopicSpec],
        storage: str = "mcap",
        max_file_bytes: int = 0,
        max_file_duration_s: float = 0.0,
        queue_size: int = 64,
        min_free_bytes: int = 0,
        writer: str = "auto",
        log: Callable[[str, str], None] | None = None,
        flush_period_s: float = _FLUSH_PERIOD_S,
    ) -> None:
        if writer not in ("auto", "builtin", "rosbag2_py"):
            raise RecordingError(f"unknown bag writer {writer!r} (auto, builtin or rosbag2_py)")
        if writer == "rosbag2_py" and not rosbag2_py_available():
            raise RecordingError("bag writer rosbag2_py requested but it is not importable here")
        self.path = Path(bag_path)
        self.topics = list(topics)
        self.storage = storage
        self.max_file_bytes = max_file_bytes
        self.max_file_duration_ns = int(max_file_duration_s * 1e9)
        self.min_free_bytes = min_free_bytes
        self.flush_period_s = flush_period_s
        self.writer_name = writer if writer != "auto" else ("rosbag2_py" if rosbag2_py_available() else "builtin")
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._log = log or (lambda level, text: None)
        self._lock = threading.Lock()
        self._state = "idle"
        self._error = ""
        self._dropped = 0
        self._written = 0
        self._bag: _BuiltinBag | _Rosbag2PyBag | None = None
        self._thread: threading.Thread | None = None

    # -- control (any thread) --

    def start(self) -> None:
        """Create the bag; raises RecordingError with the reason (directory not writable, disk full, ...)."""
        if self.path.exists():
            raise RecordingError(f"bag {self.path} exists already")
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RecordingError(f"cannot create bag directory {parent}: {err.strerror or err}") from err
        if not os.access(parent, os.W_OK | os.X_OK):
            raise RecordingError(f"bag directory {parent} is not writable")
        free = shutil.disk_usage(parent).free
        if self.min_free_bytes and free < self.min_free_bytes:
            raise RecordingError(
                f"only {free / 1e6:.0f} MB free in {parent}, below record_min_free_mb={self.min_free_bytes / 1e6:.0f}"
            )
        cls = _Rosbag2PyBag if self.writer_name == "rosbag2_py" else _BuiltinBag
        try:
            self._bag = cls(self.path, self.storage, self.topics, self.max_file_bytes, self.max_file_duration_ns)
        except (OSError, sqlite3.Error, RuntimeError) as err:
            raise RecordingError(f"cannot open bag {self.path}: {err}") from err
        with self._lock:
            self._state = "recording"
        self._thread = threading.Thread(target=self._run, name="bag_writer", daemon=True)
        self._thread.start()

    def write(self, topic: str, msg: Any, stamp_ns: int) -> bool:
        """Queue ``msg`` for writing; never blocks. False when not recording or the queue is full."""
        with self._lock:
            if self._state != "recording":
                return False
        try:
            self._queue.put_nowait((topic, msg, stamp_ns))
        except queue.Full:
            with self._lock:
                self._dropped += 1
            return False
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Write what is queued, close the bag (idempotent). Blocks up to ``timeout`` for the writer."""
        thread = self._thread
        if thread is None:
            return
        with self._lock:
            if self._state == "recording":
                self._state = "stopping"
        deadline = time.monotonic() + timeout
        while thread.is_alive():
            try:
                self._queue.put(_STOP, timeout=0.1)
                break
            except queue.Full:
                if time.monotonic() > deadline:
                    break
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            self._log("error", f"bag writer did not finish within {timeout:.0f} s; {self.path} may be incomplete")
        self._thread = None

    @property
    def state(self) -> str:
        with self._lock:
            return self._state

    def status(self) -> dict[str, str]:
        with self._lock:
            state, error, dropped, written = self._state, self._error, self._dropped, self._written
        bag = self._bag
        out = {
            "state": state,
            "bag": str(self.path),
            "writer": self.writer_name,
            "storage": self.storage,
            "messages": str(written),
            "queue": str(self._queue.qsize()),
            "dropped": str(dropped),
        }
        if bag is not None:
            out["files"] = str(len(bag.files))
        if error:
            out["error"] = error
        return out

    # -- writer thread --

    def _run(self) -> None:
        from rclpy.serialization import serialize_message

        bag = self._bag
        assert bag is not None
        last_flush = last_disk_check = time.monotonic()
        stopped_by_request = False
        try:
            while True:
                try:
                    item = self._queue.get(timeout=0.2)
                except queue.Empty:
                    item = None
                if item is _STOP:
                    stopped_by_request = True
                    break
                if item is not None:
                    topic, msg, stamp_ns = item
                    bag.write(topic, serialize_message(msg), stamp_ns)
                    with self._lock:
                        self._written += 1
                now = time.monotonic()
                if now - last_flush >= self.flush_period_s:
                    bag.flush()
                    last_flush = now
                if self.min_free_bytes and now - last_disk_check >= _DISK_CHECK_PERIOD_S:
                    last_disk_check = now
                    free = shutil.disk_usage(self.path).free
                    if free < self.min_free_bytes:
                        raise _LowDisk(
                            f"disk almost full: {free / 1e6:.0f} MB free in {self.path.parent}, "
                            f"below record_min_free_mb={self.min_free_bytes / 1e6:.0f}; bag closed"
                        )
            bag.close()
            with self._lock:
                self._state = "stopped"
            self._log("info", f"bag closed: {self.path} ({self._written} messages)")
        except _LowDisk as err:
            self._fail(str(err), clean=True)
        except (OSError, sqlite3.Error, RuntimeError, ValueError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            self._fail(f"write to {self.path} failed: {reason}", clean=False)
        finally:
            if not stopped_by_request:
                self._drain()

    def _fail(self, reason: str, clean: bool) -> None:
        bag = self._bag
        note = ""
        if bag is not None:
            if clean:
                try:
                    bag.close()
                except (OSError, sqlite3.Error, RuntimeError) as err:
                    note = bag.salvage() + f"; close failed: {err}"
            else:
                note = bag.salvage()
        with self._lock:
            self._state = "error"
            self._error = reason + note
        self._log("error", f"recording stopped: {reason}{note}. Publishing goes on; what was written stays readable.")

    def _drain(self) -> None:
        """Discard what is still queued after an error so the queue's memory is released."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return


class _LowDisk(Exception):
    """Free space fell below the configured minimum (a clean stop, not a write error)."""


def new_bag_path(bag_dir: str | os.PathLike[str], prefix: str = "face_synth") -> Path:
    """<bag_dir>/<prefix>_YYYY_MM_DD-HH_MM_SS (with a suffix when that exists already), like ros2 bag record."""
    stamp = datetime.datetime.now().strftime("%Y_%m_%d-%H_%M_%S")
    base = Path(bag_dir).expanduser() / f"{prefix}_{stamp}"
    path, index = base, 1
    while path.exists():
        path = base.with_name(f"{base.name}_{index}")
        index += 1
    return path
