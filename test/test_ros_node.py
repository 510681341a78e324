"""face_synth_node end to end over real rclpy / DDS with the real engine on real face photos.

The node runs in this process on its own executor thread, on an isolated ROS domain with localhost
discovery; the test side publishes frames and subscribes like any other node.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not importable (bash scripts/setup_env.sh installs it)")
pytest.importorskip("opendr_face_synth.msg", reason="messages not built (bash scripts/build_msgs.sh .venv)")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from opendr_face_synth.msg import SynthFaceArray  # noqa: E402
from rcl_interfaces.msg import Log, Parameter, ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import GetParameters, SetParameters  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from opendr_face_synth.ros.camera_replay import sample_frame  # noqa: E402
from opendr_face_synth.ros.image_conversion import array_to_image  # noqa: E402
from opendr_face_synth.ros.node import FaceSynthNode  # noqa: E402
from opendr_face_synth.ros.testing import RosHarness, diagnostics_values, isolated_domain, wait_until  # noqa: E402

pytestmark = pytest.mark.ros
YAWS = [-30.0, 30.0]
SIZE = 64
NODE = "/face_synth_node"
_stamp_counter = iter(range(1, 1_000_000))


@pytest.fixture(scope="module")
def ros():
    harness = RosHarness(isolated_domain(1))
    yield harness
    harness.close()


@pytest.fixture(scope="module")
def node(ros):
    overrides = [
        rclpy.parameter.Parameter("yaws", value=YAWS),
        rclpy.parameter.Parameter("output_size", value=SIZE),
        rclpy.parameter.Parameter("device", value="cpu"),
        rclpy.parameter.Parameter("qos_reliability", value="reliable"),
        rclpy.parameter.Parameter("subscribe_compressed", value=True),
        rclpy.parameter.Parameter("mosaic_tile_size", value=48),
        rclpy.parameter.Parameter("diagnostics_period", value=0.5),
    ]
    n = FaceSynthNode(context=ros.context, parameter_overrides=overrides)
    ros.add_node(n)
    yield n
    n.shutdown()
    ros.remove_node(n)
    n.destroy_node()


@pytest.fixture(scope="module")
def io(ros, node):
    """Publishers of raw / compressed frames and the collected outputs."""
    views, _ = ros.collect(SynthFaceArray, f"{NODE}/views")
    diags, _ = ros.collect(DiagnosticArray, "/diagnostics")
    logs, _ = ros.collect(Log, "/rosout", depth=1000)
    raw = ros.publisher(Image, "/image")
    compressed = ros.publisher(CompressedImage, "/image/compressed")
    ros.wait_for_subscribers(raw)
    ros.wait_for_subscribers(compressed)
    wait_until(lambda: node._views_pub.get_subscription_count() > 0, 10, "views subscription")
    return {"views": views, "diags": diags, "logs": logs, "raw": raw, "compressed": compressed}


def _frame(rgb: np.ndarray, encoding: str = "rgb8", frame_id: str = "camera_optical") -> Image:
    if encoding == "bgr8":
        pixels = rgb[:, :, ::-1]
    elif encoding in ("rgba8", "bgra8"):
        pixels = np.dstack([rgb if encoding == "rgba8" else rgb[:, :, ::-1], np.full(rgb.shape[:2], 255, np.uint8)])
    elif encoding == "mono8":
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    elif encoding == "mono16":
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257
    else:
        pixels = rgb
    msg = array_to_image(pixels, encoding)
    msg.header.frame_id = frame_id
    return msg


def _stamp(msg) -> tuple[int, int]:
    msg.header.stamp.sec = 1_700_000_000 + next(_stamp_counter)
    msg.header.stamp.nanosec = 123_456_789
    return msg.header.stamp.sec, msg.header.stamp.nanosec


def _send(io, msg, compressed: bool = False, timeout: float = 60.0) -> SynthFaceArray:
    """Publish one frame and return the views message computed from it (matched by stamp)."""
    key = _stamp(msg)
    (io["compressed"] if compressed else io["raw"]).publish(msg)
    found: list[SynthFaceArray] = []

    def arrived() -> bool:
        found[:] = [m for m in list(io["views"]) if (m.header.stamp.sec, m.header.stamp.nanosec) == key]
        return bool(found)

    wait_until(arrived, timeout, f"views for frame {key}")
    return found[0]


def _latest_diag(io, after: float = 0.0, key: str = "frames_processed", minimum: int = 0) -> dict[str, str]:
    def ok() -> bool:
        vals = [diagnostics_values(d) for d in list(io["diags"])]
        return any(v and int(v.get(key, "0")) >= minimum for v in vals)

    wait_until(ok, 10, f"diagnostics with {key} >= {minimum}")
    return [diagnostics_values(d) for d in list(io["diags"]) if diagnostics_values(d)][-1]


def test_astronaut_frame_gives_every_view_with_header_and_angles(io, astronaut_rgb) -> None:
    msg = _frame(astronaut_rgb)
    out = _send(io, msg)
    assert out.header.frame_id == "camera_optical"
    assert (out.header.stamp.sec, out.header.stamp.nanosec) == (msg.header.stamp.sec, msg.header.stamp.nanosec)
    assert (out.image_width, out.image_height) == (512, 512)
    assert out.VERSION == 1
    assert len(out.faces) == 1
    face = out.faces[0]
    assert face.track_id >= 1 and face.error == ""
    assert 0.5 < face.score <= 1.0
    roi = face.roi
    assert 150 < roi.x_offset < 260 and 60 < roi.y_offset < 160 and 60 < roi.width < 200 and 60 < roi.height < 200
    assert roi.x_offset + roi.width <= 512 and roi.y_offset + roi.height <= 512
    assert face.has_source_pose and abs(face.source_pose.yaw) < 20 and abs(face.source_pose.pitch) < 25
    assert [v.requested_yaw for v in face.views] == YAWS
    for view in face.views:
        assert view.yaw_requested and not view.pitch_requested and view.requested_pitch == 0.0
        assert view.target.yaw == pytest.approx(view.requested_yaw)
        assert view.target.pitch == pytest.approx(face.source_pose.pitch, abs=1e-4)  # seed: pitch kept
        assert view.has_achieved and view.achieved.yaw == pytest.approx(view.requested_yaw, abs=2.0)
        img, mask = view.image, view.mask
        assert (img.width, img.height, img.encoding, img.step) == (SIZE, SIZE, "rgb8", 3 * SIZE)
        assert len(img.data) == 3 * SIZE * SIZE
        assert (mask.width, mask.height, mask.encoding, len(mask.data)) == (SIZE, SIZE, "mono8", SIZE * SIZE)
        assert img.header.frame_id == "camera_optical" and img.header.stamp.sec == msg.header.stamp.sec
        pixels = np.frombuffer(img.data, np.uint8).reshape(SIZE, SIZE, 3)
        assert pixels.std() > 10  # a picture, not a blank tile
        assert 0 < np.count_nonzero(np.frombuffer(mask.data, np.uint8)) < SIZE * SIZE


def test_track_ids_are_stable_over_a_sequence(io) -> None:
    ids = []
    for index in (0, 8, 16, 24):  # the replay sample drifts sideways between these frames
        out = _send(io, _frame(sample_frame(index, faces=1)))
        assert len(out.faces) == 1
        ids.append(out.faces[0].track_id)
    assert len(set(ids)) == 1, ids
    three = [_send(io, _frame(sample_frame(i, faces=3))) for i in (0, 5)]
    first, second = ([f.track_id for f in m.faces] for m in three)
    assert len(first) == 3 and len(set(first)) == 3
    assert first == second  # same people, same ids, left to right
    assert ids[0] not in first


@pytest.mark.parametrize(("name", "faces"), [("trump_hillary.jpg", 2), ("emma.jpg", 3)])
def test_real_photos_with_several_faces(io, shared_dir: Path, name: str, faces: int) -> None:
    bgr = cv2.imread(str(shared_dir / "data" / "faces" / name))
    assert bgr is not None
    out = _send(io, _frame(np.ascontiguousarray(bgr[:, :, ::-1])))
    assert (out.image_width, out.image_height) == (bgr.shape[1], bgr.shape[0])
    assert len(out.faces) == faces
    xs = [f.roi.x_offset for f in out.faces]
    assert xs == sorted(xs)  # left to right
    assert all(len(f.views) == len(YAWS) and f.error == "" for f in out.faces)
    assert len({f.track_id for f in out.faces}) == faces


@pytest.mark.parametrize("encoding", ["bgr8", "rgba8", "bgra8"])
def test_colour_encodings_give_the_same_faces_as_rgb8(io, astronaut_rgb, encoding: str) -> None:
    reference = _send(io, _frame(astronaut_rgb)).faces[0].roi
    out = _send(io, _frame(astronaut_rgb, encoding))
    assert len(out.faces) == 1
    roi = out.faces[0].roi
    assert (roi.x_offset, roi.y_offset, roi.width, roi.height) == (
        reference.x_offset, reference.y_offset, reference.width, reference.height,
    )  # fmt: skip


@pytest.mark.parametrize("encoding", ["mono8", "mono16"])
def test_mono_encodings_are_converted(io, astronaut_rgb, encoding: str) -> None:
    out = _send(io, _frame(astronaut_rgb, encoding))
    assert (out.image_width, out.image_height) == (512, 512)
    assert len(out.faces) == 1 and len(out.faces[0].views) == len(YAWS)


def test_compressed_input(io, astronaut_rgb) -> None:
    ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(astronaut_rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    msg = CompressedImage(format="rgb8; jpeg compressed bgr8", data=jpeg.tobytes())
    msg.header.frame_id = "compressed_cam"
    out = _send(io, msg, compressed=True)
    assert out.header.frame_id == "compressed_cam"
    assert (out.image_width, out.image_height) == (512, 512)
    assert len(out.faces) == 1
    reference = _send(io, _frame(astronaut_rgb)).faces[0].roi
    assert abs(out.faces[0].roi.x_offset - reference.x_offset) <= 4


def test_bad_inputs_are_logged_with_the_reason_and_the_next_good_frame_is_served(io, node, astronaut_rgb) -> None:
    unknown = _frame(astronaut_rgb)
    unknown.encoding = "yuv422_yuy2"
    short = _frame(astronaut_rgb)
    short.data = bytes(short.data)[:1000]
    empty = Image(encoding="rgb8", width=0, height=0, step=0)
    huge = Image(encoding="mono8", width=8000, height=8000, step=8000, data=bytes(8000 * 8000))
    ok, jpeg = cv2.imencode(".jpg", astronaut_rgb)
    corrupt = CompressedImage(format="jpeg", data=jpeg.tobytes()[:400] + bytes(3000) + b"\xff\xd9")
    cases = [
        (unknown, False, "unsupported encoding 'yuv422_yuy2'"),
        (short, False, "data length 1000 does not match step x height"),
        (empty, False, "zero-size image (0x0)"),
        (corrupt, True, "corrupt JPEG"),
        (huge, False, "image 8000x8000 has more than max_input_pixels"),
    ]
    before = len(io["logs"])
    for bad, compressed, reason in cases:
        _stamp(bad)
        (io["compressed"] if compressed else io["raw"]).publish(bad)
        wait_until(
            lambda r=reason: any(r in m.msg for m in list(io["logs"])[before:]), 30, f"a log line with {reason!r}"
        )
        line = next(m for m in list(io["logs"])[before:] if reason in m.msg)
        assert line.level == Log.WARN and line.name == "face_synth_node" and "rejected" in line.msg
        out = _send(io, _frame(astronaut_rgb))  # the node goes on serving
        assert len(out.faces) == 1
    values = _latest_diag(io, key="rejected_frames", minimum=len(cases))
    for kind in ("encoding", "layout", "empty", "decode", "too_large"):
        assert int(values[f"rejected_{kind}"]) >= 1, kind


def test_mosaic_is_built_only_while_someone_subscribes(ros, io, node, astronaut_rgb) -> None:
    assert node._mosaic_pub.get_subscription_count() == 0
    _send(io, _frame(astronaut_rgb))
    assert node.stats.snapshot().mosaic_frames == 0
    mosaics, sub = ros.collect(Image, f"{NODE}/mosaic")
    wait_until(lambda: node._mosaic_pub.get_subscription_count() == 1, 10, "mosaic subscriber")
    msg = _frame(astronaut_rgb)
    out = _send(io, msg)
    wait_until(lambda: any(m.header.stamp == out.header.stamp for m in list(mosaics)), 10, "the mosaic")
    mosaic = next(m for m in list(mosaics) if m.header.stamp == out.header.stamp)
    tile = 48
    assert (mosaic.encoding, mosaic.width, mosaic.height) == ("rgb8", tile * (1 + len(YAWS)), tile * len(out.faces))
    assert mosaic.header.frame_id == "camera_optical"
    built = node.stats.snapshot().mosaic_frames
    assert built >= 1
    ros.probe.destroy_subscription(sub)
    wait_until(lambda: node._mosaic_pub.get_subscription_count() == 0, 10, "mosaic unsubscription")
    _send(io, _frame(astronaut_rgb))
    assert node.stats.snapshot().mosaic_frames == built


def test_diagnostics_content(io, node, astronaut_rgb) -> None:
    for _ in range(3):
        _send(io, _frame(astronaut_rgb))
    values = _latest_diag(io, key="frames_processed", minimum=node.stats.snapshot().frames_processed)
    for key in (
        "input_rate_hz", "processed_rate_hz", "dropped_frames", "dropped_busy", "latency_ms_p50", "latency_ms_p95",
        "latency_ms_p99", "faces_per_frame", "recording_state", "engine_errors", "mosaic_frames",
    ):  # fmt: skip
        assert key in values, key
    assert values["device"] == "cpu"
    assert values["recording_state"] == "off"
    assert float(values["faces_per_frame"]) >= 1.0
    assert 0.0 < float(values["latency_ms_p50"]) <= float(values["latency_ms_p95"]) < 120_000
    assert int(values["frames_received"]) >= int(values["frames_processed"]) >= 3
    # Where the time goes, per stage of a frame. The input transport time needs a plausible stamp; these
    # frames are stamped in 2023 (unique keys for _send), so it is left out rather than reported as years.
    assert "stage_input_ms_p50" not in values
    stages = ("queued", "convert", "detect", "fit", "scene", "render", "message", "publish")
    for stage in stages:
        p50, p95 = float(values[f"stage_{stage}_ms_p50"]), float(values[f"stage_{stage}_ms_p95"])
        assert 0.0 <= p50 <= p95 < 120_000, (stage, p50, p95)
    assert float(values["stage_render_ms_p50"]) > 0.0 and float(values["stage_fit_ms_p50"]) > 0.0


def _param(name: str, value) -> Parameter:
    if isinstance(value, list):
        pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE_ARRAY, double_array_value=value)
    elif isinstance(value, bool):
        pv = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    elif isinstance(value, int):
        pv = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    elif isinstance(value, float):
        pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    else:
        pv = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
    return Parameter(name=name, value=pv)


def _set(ros, name: str, value):
    """What `ros2 param set` does: the node's SetParameters service."""
    request = SetParameters.Request(parameters=[_param(name, value)])
    response = ros.call(SetParameters, f"{NODE}/set_parameters", request)
    return response.results[0]


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("yaws", [100.0], "outside [-90, 90]"),
        ("yaws", "10, abc", "'abc' is not a number"),
        ("output_size", 5, "out of range"),
        ("supersampling", 0, "out of range"),
        ("render_backend", "opengl", "not one of builtin, neural_renderer, auto"),
        ("device", "gpu", "is not auto, cpu, cuda or cuda:N"),
        ("detection_confidence", 1.0, "not in (0, 1)"),
        ("bag_storage", "zip", "not one of mcap, sqlite3"),
        ("qos_depth", 5, "read-only"),
        ("max_rate_hz", -1.0, "out of range"),
        ("grid", "yes", "Wrong parameter type"),
    ],
)
def test_invalid_parameter_values_are_refused_with_a_reason(ros, node, name: str, value, reason: str) -> None:
    before = node.get_parameter(name).value
    result = _set(ros, name, value)
    assert not result.successful
    assert reason.lower() in result.reason.lower(), result.reason
    assert node.get_parameter(name).value == before


def test_views_change_at_run_time(ros, io, astronaut_rgb) -> None:
    result = _set(ros, "yaws", "0")
    assert result.successful, result.reason
    try:
        out = _send(io, _frame(astronaut_rgb))
        assert [v.requested_yaw for v in out.faces[0].views] == [0.0]
        assert _set(ros, "pitches", [15.0]).successful
        out = _send(io, _frame(astronaut_rgb))
        views = out.faces[0].views
        assert [(v.yaw_requested, v.pitch_requested) for v in views] == [(True, False), (False, True)]
        assert views[1].requested_pitch == 15.0 and views[1].target.pitch == pytest.approx(15.0)
        assert _set(ros, "yaws", "").successful  # pitch views only
        assert not _set(ros, "pitches", "").successful  # ... but never no view at all
    finally:
        assert _set(ros, "yaws", YAWS).successful
        assert _set(ros, "pitches", "").successful
    out = _send(io, _frame(astronaut_rgb))
    assert [v.requested_yaw for v in out.faces[0].views] == YAWS


def test_render_settings_reach_the_engine_at_run_time(ros, io, node, astronaut_rgb) -> None:
    assert _set(ros, "supersampling", 1).successful
    try:
        out = _send(io, _frame(astronaut_rgb))  # the engine is rebuilt before this frame
        assert node._synth.config.supersampling == 1 and node._synth.supersampling == 1
        assert len(out.faces[0].views) == len(YAWS) and out.faces[0].views[0].image.width == SIZE
    finally:
        assert _set(ros, "supersampling", 2).successful
    _send(io, _frame(astronaut_rgb))
    assert node._synth.supersampling == 2


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def test_burst_of_200_frames_at_100_hz(ros, io, node) -> None:
    frames = [_frame(sample_frame(i, faces=1)) for i in range(0, 40, 4)]
    _send(io, frames[0])  # warm
    start = node.stats.snapshot()
    rss_before = _rss_mb()
    answers: list[float] = []
    stop = threading.Event()

    def ping() -> None:  # the node must keep answering services during the burst
        while not stop.is_set():
            t0 = time.monotonic()
            ros.call(GetParameters, f"{NODE}/get_parameters", GetParameters.Request(names=["output_size"]), timeout=10)
            answers.append(time.monotonic() - t0)
            time.sleep(0.2)

    pinger = threading.Thread(target=ping, daemon=True)
    pinger.start()
    t0 = time.monotonic()
    for i in range(200):
        msg = frames[i % len(frames)]
        _stamp(msg)
        io["raw"].publish(msg)
        time.sleep(max(0.0, t0 + (i + 1) * 0.01 - time.monotonic()))
    burst_s = time.monotonic() - t0
    time.sleep(1.0)
    stop.set()
    pinger.join(15)
    rss_after = _rss_mb()
    end = node.stats.snapshot()
    received = end.frames_received - start.frames_received
    processed = end.frames_processed - start.frames_processed
    dropped = end.dropped_busy - start.dropped_busy
    never_reached = end.lost_in_transport - start.lost_in_transport  # input queue overwritten (depth 1)
    # 2 s nominal; on 2 busy CPU cores the publisher itself is slower. A subscription that blocked the
    # (reliable) publisher would stretch this to the engine's pace: 200 frames x ~0.3 s.
    assert burst_s < 10.0, f"publishing 200 frames took {burst_s:.1f} s"
    # Every frame is accounted for: processed, dropped while the worker was busy, or dropped before the
    # callback (sequence gaps); a couple may still be in flight.
    assert 195 <= received + never_reached <= 200, (received, never_reached)
    assert processed < received and dropped > 0
    assert received - processed - dropped <= 2, (received, processed, dropped)
    assert answers and max(answers) < 2.0, answers
    assert rss_after - rss_before < 300, (rss_before, rss_after)
    values = _latest_diag(io, key="dropped_frames", minimum=end.dropped_busy + end.lost_in_transport)
    assert int(values["dropped_busy"]) >= end.dropped_busy
    assert int(values["dropped_before_callback"]) >= end.lost_in_transport
    out = _send(io, _frame(sample_frame(0, faces=1)))  # still serving
    assert len(out.faces) == 1
