"""camera_replay: the bundled sample, an image folder and a video file published at a given rate."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not importable (bash scripts/setup_env.sh installs it)")

from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from opendr_face_synth.ros.camera_replay import CameraReplay, sample_frame  # noqa: E402
from opendr_face_synth.ros.image_conversion import compressed_to_rgb, image_to_rgb  # noqa: E402
from opendr_face_synth.ros.testing import RosHarness, isolated_domain, wait_until  # noqa: E402

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def ros():
    harness = RosHarness(isolated_domain(4))
    yield harness
    harness.close()


def _run(ros, params: dict, count: int, topic: str = "/image", msg_type=Image, timeout: float = 20.0) -> list:
    received, sub = ros.collect(msg_type, topic)
    node = CameraReplay(context=ros.context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    ros.add_node(node)
    try:
        wait_until(lambda: len(received) >= count, timeout, f"{count} frames on {topic}")
    finally:
        ros.remove_node(node)
        node.destroy_node()
        ros.probe.destroy_subscription(sub)
    return list(received)


def test_sample_frames_have_faces_that_drift() -> None:
    a, b = sample_frame(0, faces=3), sample_frame(20, faces=3)
    assert a.shape == (480, 640, 3) and a.dtype == np.uint8
    assert not np.array_equal(a, b)
    assert sample_frame(5, faces=1, width=320, height=240).shape == (240, 320, 3)


def test_sample_at_rate_with_stamps_and_frame_id(ros) -> None:
    t0 = time.monotonic()
    frames = _run(ros, {"rate": 20.0, "frame_id": "replay", "encoding": "bgr8"}, 10)
    elapsed = time.monotonic() - t0
    assert elapsed < 5.0
    msg = frames[0]
    assert (msg.width, msg.height, msg.encoding, msg.header.frame_id) == (640, 480, "bgr8", "replay")
    np.testing.assert_array_equal(image_to_rgb(msg), sample_frame(0))
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in frames[:10]]
    gaps = np.diff(stamps)
    # ~20 Hz (0.05 s); the bound tells 20 Hz from 10 Hz while leaving room for a busy 2-core CI machine.
    assert np.all(gaps > 0) and 0.03 < float(np.median(gaps)) < 0.095


def test_image_folder_loops_and_compressed(ros, tmp_path: Path) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    for i, colour in enumerate(colours):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((40, 60, 3), colour[::-1], np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    params = {"source": str(tmp_path), "rate": 50.0, "publish_compressed": True}
    frames = _run(ros, params, 7)
    firsts = [tuple(int(v) for v in image_to_rgb(m)[0, 0]) for m in frames[:7]]
    assert firsts == [colours[i % 3] for i in range(7)]
    compressed = _run(ros, params, 2, "/image/compressed", CompressedImage)
    assert compressed[0].format.endswith("jpeg compressed bgr8")
    assert np.abs(compressed_to_rgb(compressed[0]).astype(int) - np.array(colours[0])).max() < 10


def test_video_file_and_max_frames(ros, tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert writer.isOpened()
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    params = {"source": str(path), "rate": 50.0, "loop": False, "max_frames": 3, "wait_for_subscribers": 1}
    frames = _run(ros, params, 3)
    time.sleep(0.3)
    assert len(frames) == 3 and (frames[0].width, frames[0].height) == (64, 48)
    levels = [int(image_to_rgb(m).mean()) for m in frames]
    assert levels == sorted(levels) and levels[0] < 20


def test_unreadable_sources_are_refused_with_the_reason(ros, tmp_path: Path) -> None:
    for source, reason in (
        (str(tmp_path / "missing.mp4"), "is not 'sample', a folder or a video file"),
        (str(tmp_path), "no images"),
    ):
        with pytest.raises(ValueError, match=reason):
            CameraReplay(context=ros.context, parameter_overrides=[Parameter("source", value=source)])
    with pytest.raises(ValueError, match="encoding 'yuv' is not"):
        CameraReplay(context=ros.context, parameter_overrides=[Parameter("encoding", value="yuv")])
