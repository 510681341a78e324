"""On-board recording: bags written by the node read back with rosbags and with the independent
mcap + mcap-ros2-support reader equal what was published; file splitting; a full disk, an unwritable
directory and SIGINT during recording leave readable bags while the node goes on; export-bag."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip("rclpy", reason="rclpy is not importable (bash scripts/setup_env.sh installs it)")
pytest.importorskip("opendr_face_synth.msg", reason="messages not built (bash scripts/build_msgs.sh .venv)")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from opendr_face_synth.msg import SynthFaceArray  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rosbags.highlevel import AnyReader  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_srvs.srv import SetBool  # noqa: E402

from opendr_face_synth.cli.export_bag import ExportError, export_bag  # noqa: E402
from opendr_face_synth.ros.camera_replay import sample_frame  # noqa: E402
from opendr_face_synth.ros.image_conversion import array_to_image, rgb_to_image  # noqa: E402
from opendr_face_synth.ros.node import FaceSynthNode  # noqa: E402
from opendr_face_synth.ros.recorder import BagRecorder, TopicSpec, message_definitions  # noqa: E402
from opendr_face_synth.ros.testing import (  # noqa: E402
    RosHarness,
    diagnostics_values,
    isolated_domain,
    localhost_env,
    wait_until,
)

pytestmark = pytest.mark.ros
NODE = "/face_synth_node"
VIEWS_TYPE = "opendr_face_synth/msg/SynthFaceArray"
_stamps = iter(range(1, 1_000_000))


# ------------------------------------------------------------------ helpers


def _bag_of(response_message: str) -> Path:
    assert "recording to " in response_message, response_message
    return Path(response_message.split("recording to ", 1)[1].strip())


def _read_rosbags(bag: Path) -> dict[str, list]:
    """topic -> [(log time, deserialised message)] with rosbags and the definitions stored in the bag."""
    out: dict[str, list] = {}
    with AnyReader([bag]) as reader:
        for conn, stamp, raw in reader.messages():
            out.setdefault(conn.topic, []).append((stamp, reader.deserialize(raw, conn.msgtype)))
    return out


def _read_mcap(bag: Path) -> dict[str, list]:
    """The same with Foxglove's mcap reader, decoding with the schema found in each file."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    out: dict[str, list] = {}
    for name in meta["relative_file_paths"]:
        with open(bag / name, "rb") as fh:
            reader = make_reader(fh, decoder_factories=[DecoderFactory()])
            for schema, channel, message, decoded in reader.iter_decoded_messages():
                assert schema.encoding == "ros2msg" and channel.message_encoding == "cdr"
                out.setdefault(channel.topic, []).append((message.log_time, schema.name, decoded))
    return out


def _raw(data) -> bytes:
    """uint8[] as rclpy (array.array), rosbags (numpy) or mcap-ros2 (bytes) give it."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    return np.asarray(data, dtype=np.uint8).tobytes()


def _same_views(published: SynthFaceArray, stored) -> None:
    """A published views message and one read back from a bag (either reader) are the same."""
    assert (stored.header.stamp.sec, stored.header.stamp.nanosec) == (
        published.header.stamp.sec, published.header.stamp.nanosec,
    )  # fmt: skip
    assert stored.header.frame_id == published.header.frame_id
    assert (stored.image_width, stored.image_height) == (published.image_width, published.image_height)
    assert len(stored.faces) == len(published.faces)
    for a, b in zip(published.faces, stored.faces, strict=True):
        assert (a.track_id, a.roi.x_offset, a.roi.y_offset, a.roi.width, a.roi.height) == (
            b.track_id, b.roi.x_offset, b.roi.y_offset, b.roi.width, b.roi.height,
        )  # fmt: skip
        assert np.float32(a.score) == np.float32(b.score)
        assert np.float32(a.source_pose.yaw) == np.float32(b.source_pose.yaw)
        assert len(a.views) == len(b.views)
        for va, vb in zip(a.views, b.views, strict=True):
            assert (va.yaw_requested, va.pitch_requested) == (vb.yaw_requested, vb.pitch_requested)
            assert np.float32(va.requested_yaw) == np.float32(vb.requested_yaw)
            assert np.float32(va.achieved.yaw) == np.float32(vb.achieved.yaw)
            assert (va.image.width, va.image.height) == (vb.image.width, vb.image.height)
            assert va.image.encoding == vb.image.encoding
            assert _raw(va.image.data) == _raw(vb.image.data)
            assert _raw(va.mask.data) == _raw(vb.mask.data)


# ------------------------------------------------------------------ node fixture


@pytest.fixture(scope="module")
def ros():
    harness = RosHarness(isolated_domain(2))
    yield harness
    harness.close()


@pytest.fixture(scope="module")
def node(ros, tmp_path_factory):
    bag_dir = tmp_path_factory.mktemp("bags")
    overrides = [
        Parameter("yaws", value=[-20.0, 20.0]),
        Parameter("output_size", value=64),
        Parameter("device", value="cpu"),
        Parameter("qos_reliability", value="reliable"),
        Parameter("bag_dir", value=str(bag_dir)),
        Parameter("record_input", value=True),
        Parameter("diagnostics_period", value=0.3),
    ]
    n = FaceSynthNode(context=ros.context, parameter_overrides=overrides)
    ros.add_node(n)
    yield n
    n.shutdown()
    ros.remove_node(n)
    n.destroy_node()


@pytest.fixture(scope="module")
def io(ros, node):
    views, _ = ros.collect(SynthFaceArray, f"{NODE}/views")
    diags, _ = ros.collect(DiagnosticArray, "/diagnostics")
    raw = ros.publisher(Image, "/image")
    ros.wait_for_subscribers(raw)
    wait_until(lambda: node._views_pub.get_subscription_count() > 0, 10, "views subscription")
    return {"views": views, "diags": diags, "raw": raw}


def _send(io, index: int, faces: int = 1) -> tuple[Image, SynthFaceArray]:
    msg = array_to_image(sample_frame(index, faces=faces), "rgb8")
    msg.header.frame_id = "replay_cam"
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1_700_000_000 + next(_stamps), 5
    key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
    io["raw"].publish(msg)
    found: list = []

    def arrived() -> bool:
        found[:] = [m for m in list(io["views"]) if (m.header.stamp.sec, m.header.stamp.nanosec) == key]
        return bool(found)

    wait_until(arrived, 60, f"views of frame {key}")
    return msg, found[0]


def _recording(ros, on: bool):
    return ros.call(SetBool, f"{NODE}/set_recording", SetBool.Request(data=on), timeout=30)


def _diag(io, predicate, what: str) -> dict[str, str]:
    def ok() -> bool:
        return any(predicate(diagnostics_values(d)) for d in list(io["diags"])[-5:])

    wait_until(ok, 10, what)
    return next(v for v in (diagnostics_values(d) for d in reversed(list(io["diags"]))) if predicate(v))


_recorded: dict[str, Path] = {}


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_recorded_bag_equals_what_was_published(ros, io, node, storage: str) -> None:
    node.set_parameters([Parameter("bag_storage", value=storage)])
    response = _recording(ros, True)
    assert response.success, response.message
    bag = _bag_of(response.message)
    assert _recording(ros, True).message.startswith("already recording")
    values = _diag(
        io, lambda v: v.get("recording_state") == "recording" and v.get("recording_bag") == str(bag), "diagnostics"
    )
    assert values["recording_storage"] == storage and values["recording_writer"] == "builtin"
    sent = [_send(io, i, faces=1 + i % 2) for i in range(4)]
    response = _recording(ros, False)
    assert response.success and "bag closed" in response.message
    _recorded[storage] = bag

    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 9 and meta["storage_identifier"] == storage
    topics = meta["topics_with_message_count"]
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in topics}
    assert counts == {f"{NODE}/views": 4, "/image": 4}
    hashes = {t["topic_metadata"]["type"]: t["topic_metadata"]["type_description_hash"] for t in topics}
    assert hashes[VIEWS_TYPE].startswith("RIHS01_")

    stored = _read_rosbags(bag)
    views = [m for _, m in stored[f"{NODE}/views"]]
    assert len(views) == 4
    for (_, published), read in zip(sent, views, strict=True):
        _same_views(published, read)
    inputs = [m for _, m in stored["/image"]]
    for (frame, _), read in zip(sent, inputs, strict=True):
        assert (read.header.stamp.sec, read.width, read.height, read.encoding) == (
            frame.header.stamp.sec, frame.width, frame.height, frame.encoding,
        )  # fmt: skip
        assert _raw(read.data) == _raw(frame.data)
    times = [t for t, _ in stored[f"{NODE}/views"]]
    assert times == sorted(times) and abs(times[-1] / 1e9 - time.time()) < 600

    if storage == "mcap":
        independent = _read_mcap(bag)
        mviews = independent[f"{NODE}/views"]
        assert [schema for _, schema, _ in mviews] == [VIEWS_TYPE] * 4
        for (_, published), (_, _, read) in zip(sent, mviews, strict=True):
            _same_views(published, read)
        assert len(independent["/image"]) == 4


def test_export_bag_writes_the_dataset_layout(tmp_path: Path) -> None:
    bag = _recorded.get("mcap")
    if bag is None:
        pytest.skip("needs the bag of test_recorded_bag_equals_what_was_published[mcap]")
    summary = export_bag(bag, tmp_path / "ds", save_masks=True)
    assert summary.frames == 4 and summary.faces == 6 and summary.views == 12
    rows = list(csv.DictReader(open(tmp_path / "ds" / "metadata.csv", encoding="utf-8")))
    assert len(rows) == 12
    for row in rows:
        assert (tmp_path / "ds" / row["output_file"]).is_file()
        assert (tmp_path / "ds" / row["mask_file"]).is_file()
        assert row["output_file"].startswith(f"track_{int(row['track_id']):04d}/")
        assert row["frame_id"] == "replay_cam" and row["stamp"].startswith("17000000")
        assert row["requested_yaw"] in ("-20.00", "20.00") and row["requested_pitch"] == ""
    tracks = {row["track_id"] for row in rows}
    assert len(tracks) >= 2
    sheets = {p.name for p in (tmp_path / "ds" / "contact_sheets").iterdir()}
    assert sheets == {f"track_{int(t):04d}.png" for t in tracks}
    import cv2

    sheet = cv2.imread(str(next((tmp_path / "ds" / "contact_sheets").iterdir())))
    assert sheet is not None and sheet.shape[0] > 64
    # The command line (cli/main.py's hook) gives the same, exit 0, and a summary line.
    cli = [sys.executable, "-m", "opendr_face_synth.cli.main", "export-bag", str(bag), str(tmp_path / "cli")]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "exported 12 views of 6 faces from 4 frames" in done.stdout
    done = subprocess.run(cli[:-2] + [str(tmp_path / "nothing"), str(tmp_path / "x")], capture_output=True, text=True)
    assert done.returncode == 2 and "not a rosbag2 bag" in done.stderr
    with pytest.raises(ExportError, match="no opendr_face_synth/msg/SynthFaceArray topic '/other'"):
        export_bag(bag, tmp_path / "y", topic="/other")


def test_unwritable_bag_directory_gives_the_error_and_the_node_goes_on(ros, io, node, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    old = node.get_parameter("bag_dir").value
    node.set_parameters([Parameter("bag_dir", value=str(blocker / "bags"))])
    try:
        response = _recording(ros, True)
        assert not response.success
        assert "cannot create bag directory" in response.message and "a_file" in response.message
        values = _diag(io, lambda v: v.get("recording_state") == "error", "recording error in diagnostics")
        assert "cannot create bag directory" in values["recording_error"]
        assert values["_message"].startswith("recording stopped")
        _, out = _send(io, 3)  # publishing goes on
        assert len(out.faces) == 1
    finally:
        node.set_parameters([Parameter("bag_dir", value=old)])


def test_low_disk_space_refuses_to_start(ros, io, node) -> None:
    node.set_parameters([Parameter("record_min_free_mb", value=1_000_000)])  # 1 TB free required
    try:
        response = _recording(ros, True)
        assert not response.success and "MB free" in response.message and "record_min_free_mb" in response.message
    finally:
        node.set_parameters([Parameter("record_min_free_mb", value=200)])
    response = _recording(ros, True)  # works again
    assert response.success, response.message
    _send(io, 1)
    assert _recording(ros, False).success


# ------------------------------------------------------------------ the writer alone


def _views_msg(i: int) -> SynthFaceArray:
    from opendr_face_synth.msg import SynthFace, SynthView

    msg = SynthFaceArray()
    msg.header.stamp.sec, msg.header.frame_id = 100 + i, "cam"
    face = SynthFace(track_id=1 + i % 3, score=0.5)
    view = SynthView(yaw_requested=True, requested_yaw=float(i))
    view.image = rgb_to_image(np.full((32, 32, 3), i % 256, np.uint8), msg.header)
    face.views = [view]
    msg.faces = [face]
    return msg


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_files_split_by_size_and_by_duration_and_all_stay_readable(tmp_path: Path, storage: str) -> None:
    topics = [TopicSpec("/v", VIEWS_TYPE)]
    by_size = BagRecorder(tmp_path / "size", topics, storage=storage, max_file_bytes=20_000, writer="builtin")
    by_time = BagRecorder(tmp_path / "time", topics, storage=storage, max_file_duration_s=1.0, writer="builtin")
    for rec in (by_size, by_time):
        rec.start()
        for i in range(30):
            assert rec.write("/v", _views_msg(i), (100 + i) * 250_000_000)  # 4 messages per second
        rec.stop()
        assert rec.state == "stopped", rec.status()
    for name, expected_files in (("size", 5), ("time", 8)):
        meta = yaml.safe_load((tmp_path / name / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        files = meta["relative_file_paths"]
        assert len(files) >= expected_files, files
        assert sorted(p.name for p in (tmp_path / name).iterdir() if p.name != "metadata.yaml") == sorted(files)
        assert sum(f["message_count"] for f in meta["files"]) == meta["message_count"] == 30
        stored = _read_rosbags(tmp_path / name)["/v"]
        assert [m.faces[0].views[0].requested_yaw for _, m in stored] == [float(i) for i in range(30)]


def test_queue_is_bounded_and_drops_are_counted(tmp_path: Path) -> None:
    rec = BagRecorder(tmp_path / "q", [TopicSpec("/v", VIEWS_TYPE)], queue_size=3, writer="builtin")
    rec.start()
    results = [rec.write("/v", _views_msg(i), i + 1) for i in range(500)]  # far faster than the writer
    rec.stop()
    assert not all(results) and int(rec.status()["dropped"]) == results.count(False)
    assert int(rec.status()["messages"]) == results.count(True)
    assert rec.write("/v", _views_msg(0), 1) is False  # stopped


_DISK_FULL_CHILD = r"""
import resource, sys, time
import numpy as np
from pathlib import Path
resource.setrlimit(resource.RLIMIT_FSIZE, (2_500_000, 2_500_000))  # every file: at most 2.5 MB
from opendr_face_synth.ros.recorder import BagRecorder, TopicSpec
from opendr_face_synth.ros.image_conversion import rgb_to_image
logs = []
rec = BagRecorder(Path(sys.argv[1]), [TopicSpec("/image", "sensor_msgs/msg/Image")], storage=sys.argv[2],
                  writer="builtin", flush_period_s=0.05, log=lambda level, text: logs.append(text))
rec.start()
rng = np.random.default_rng(0)
for i in range(80):
    img = rgb_to_image(rng.integers(0, 255, (200, 300, 3), dtype=np.uint8))
    img.header.stamp.sec = 1000 + i
    rec.write("/image", img, (1000 + i) * 10**9)
    time.sleep(0.03)
time.sleep(0.5)
status = rec.status()
rec.stop()
print("STATE", status["state"])
print("ERROR", status.get("error", ""))
print("LOG", " | ".join(logs))
"""


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_disk_full_stops_recording_with_the_reason_and_keeps_what_was_written(tmp_path: Path, storage: str) -> None:
    """A file-size limit (RLIMIT_FSIZE) makes writes fail like a full disk does, in a child process."""
    bag = tmp_path / "bag"
    done = subprocess.run(
        [sys.executable, "-c", _DISK_FULL_CHILD, str(bag), storage], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    assert lines["STATE"] == "error"
    assert "failed" in lines["ERROR"] and ("File too large" in lines["ERROR"] or "disk I/O error" in lines["ERROR"])
    assert "recording stopped" in lines["LOG"]
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    stored = _read_rosbags(bag)
    count = len(stored.get("/image", []))
    assert count == meta["message_count"]
    assert count >= 3  # what reached the disk before the failure is there
    stamps = [m.header.stamp.sec for _, m in stored["/image"]]
    assert stamps == list(range(1000, 1000 + count))
    if storage == "mcap":
        assert len(_read_mcap(bag)["/image"]) == count


def test_embedded_definitions_match_the_built_interfaces() -> None:
    """The definitions written into bags hash to the same RIHS01 as rosidl's for the built messages."""
    import json

    defs = message_definitions([VIEWS_TYPE, "sensor_msgs/msg/Image"])
    text, rihs01 = defs[VIEWS_TYPE]
    assert text.startswith("uint16 VERSION=1\nstd_msgs/Header header")
    assert "MSG: opendr_face_synth/SynthView" in text and "MSG: sensor_msgs/Image" in text
    built = Path(sys.prefix) / "share" / "opendr_face_synth" / "msg" / "SynthFaceArray.json"
    if not built.is_file():
        pytest.skip(f"{built} not found (messages built elsewhere)")
    hashes = {h["type_name"]: h["hash_string"] for h in json.loads(built.read_text())["type_hashes"]}
    assert hashes[VIEWS_TYPE] == rihs01
    assert hashes["sensor_msgs/msg/Image"] == defs["sensor_msgs/msg/Image"][1]


# ------------------------------------------------------------------ SIGINT while recording (node process)


def test_sigint_during_recording_leaves_a_readable_bag(tmp_path: Path) -> None:
    domain = isolated_domain(7)
    env = localhost_env(domain)
    bag_dir = tmp_path / "bags"
    node_cmd = [
        sys.executable, "-m", "opendr_face_synth.ros.node", "--ros-args", "-r", "image:=/cam",
        "-p", "record:=true", "-p", f"bag_dir:={bag_dir}", "-p", "device:=cpu", "-p", "output_size:=64",
        "-p", "yaws:=[-15.0, 15.0]", "-p", "qos_reliability:=reliable", "-p", "record_input:=true",
    ]  # fmt: skip
    replay_cmd = [
        sys.executable, "-m", "opendr_face_synth.ros.camera_replay", "--ros-args", "-r", "image:=/cam",
        "-p", "rate:=10.0",
    ]  # fmt: skip
    node = subprocess.Popen(node_cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    replay = subprocess.Popen(replay_cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def views_recorded() -> bool:
            files = list(bag_dir.glob("face_synth_*/*.mcap"))
            return bool(files) and files[0].stat().st_size > 100_000  # some chunks on disk

        wait_until(views_recorded, 90, "the node to record", period=0.2)
        time.sleep(1.0)
        node.send_signal(signal.SIGINT)  # mid-recording, frames still arriving
        output, _ = node.communicate(timeout=60)
    finally:
        replay.send_signal(signal.SIGINT)
        replay.wait(20)
        if node.poll() is None:
            node.kill()
    assert node.returncode == 0, output
    assert "bag closed" in output
    (bag,) = bag_dir.glob("face_synth_*")
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    stored = _read_rosbags(bag)
    views = stored["/face_synth_node/views"]
    assert len(views) >= 1 and meta["message_count"] == sum(len(v) for v in stored.values())
    assert all(len(m.faces) == 1 and len(m.faces[0].views) == 2 for _, m in views)
    assert len(_read_mcap(bag)["/face_synth_node/views"]) == len(views)
    assert replay.returncode == 0
