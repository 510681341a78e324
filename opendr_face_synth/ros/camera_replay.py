"""camera_replay: publishes a video file, an image folder or the bundled sample as a camera would.

So the whole pipeline runs without a camera (demo, tests, benchmark). Publishes ``image``
(sensor_msgs/Image) and, with ``publish_compressed``, ``image/compressed`` (JPEG), stamped with the
publishing time. The bundled sample (``source: sample``) is scikit-image's astronaut photo, placed on
a ``width`` x ``height`` canvas ``sample_faces`` times side by side, drifting slowly so trackers see
motion.

``ros2 run opendr_face_synth camera_replay --ros-args -p source:=sample -p rate:=30.0``
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image

from .image_conversion import array_to_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def sample_photo() -> np.ndarray:
    """The bundled sample's head-and-shoulders crop of the astronaut photo (RGB uint8, 400x400)."""
    from ..io.samples import astronaut_rgb

    return astronaut_rgb()[0:400, 56:456]


def sample_frame(
    index: int, faces: int = 1, width: int = 640, height: int = 480, photo: np.ndarray | None = None
) -> np.ndarray:
    """Frame ``index`` of the bundled sample: ``faces`` astronaut crops side by side (RGB uint8).
    ``photo``: :func:`sample_photo` when the caller has it already (decoding it costs more than the rest)."""
    photo = sample_photo() if photo is None else photo
    canvas = np.full((height, width, 3), 90, np.uint8)
    cell_w = width // faces
    side = min(cell_w, height)
    tile = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
    drift = int(round(6 * np.sin(index / 15.0)))  # a few pixels of slow sideways motion
    for k in range(faces):
        x = k * cell_w + (cell_w - side) // 2 + drift
        x = min(max(x, 0), width - side)
        y = (height - side) // 2
        canvas[y : y + side, x : x + side] = tile
    return canvas


def _frames(source: str, width: int, height: int, faces: int, loop: bool) -> Iterator[np.ndarray]:
    """RGB frames from the source; raises ValueError with the reason when it cannot be read."""
    if source == "sample":
        photo = sample_photo()  # decoded once: per frame it would eat into a 30 Hz budget
        index = 0
        while True:
            yield sample_frame(index, faces, width or 640, height or 480, photo)
            index += 1
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {path}")
        while True:
            for file in files:
                bgr = cv2.imread(str(file), cv2.IMREAD_COLOR)
                if bgr is None:
                    continue
                yield _resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), width, height)
            if not loop:
                return
    if not path.is_file():
        raise ValueError(f"source {source!r} is not 'sample', a folder or a video file")
    while True:
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise ValueError(f"cannot open video {path}")
        count = 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            count += 1
            yield _resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), width, height)
        capture.release()
        if count == 0:
            raise ValueError(f"video {path} has no readable frame")
        if not loop:
            return


def _resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    if width and height and (rgb.shape[1], rgb.shape[0]) != (width, height):
        return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    return rgb


class CameraReplay(Node):
    """Publishes frames from ``source`` at ``rate`` Hz."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__("camera_replay", **node_kwargs)
        d = ParameterDescriptor
        self.declare_parameter("source", "sample", d(description="'sample', an image folder or a video file"))
        self.declare_parameter(
            "rate",
            10.0,
            d(
                description="frames per second",
                floating_point_range=[FloatingPointRange(from_value=0.1, to_value=1000.0, step=0.0)],
            ),
        )
        self.declare_parameter("loop", True, d(description="start again at the end"))
        self.declare_parameter("encoding", "rgb8", d(description="rgb8 | bgr8 | mono8"))
        self.declare_parameter("width", 0, d(description="resize to this width (0: source size; sample: 640)"))
        self.declare_parameter("height", 0, d(description="resize to this height (0: source size; sample: 480)"))
        self.declare_parameter(
            "sample_faces",
            1,
            d(description="faces in the sample frame", integer_range=[IntegerRange(from_value=1, to_value=6, step=1)]),
        )
        self.declare_parameter("frame_id", "camera", d(description="header.frame_id"))
        self.declare_parameter("publish_compressed", False, d(description="also publish image/compressed (JPEG)"))
        self.declare_parameter("max_frames", 0, d(description="stop publishing after this many frames (0: never)"))
        self.declare_parameter(
            "wait_for_subscribers", 0, d(description="start once this many subscribers are connected (0: at once)")
        )
        p = {
            name: self.get_parameter(name).value
            for name in (
                "source",
                "rate",
                "loop",
                "encoding",
                "width",
                "height",
                "sample_faces",
                "frame_id",
                "publish_compressed",
                "max_frames",
                "wait_for_subscribers",
            )
        }
        try:
            if p["encoding"] not in ("rgb8", "bgr8", "mono8"):
                raise ValueError(f"encoding {p['encoding']!r} is not rgb8, bgr8 or mono8")
            self._frames = _frames(p["source"], p["width"], p["height"], p["sample_faces"], p["loop"])
            self._first = next(self._frames, None)  # fail now, with the reason, if the source is unreadable
            if self._first is None:
                raise ValueError(f"{p['source']} has no frame")
        except ValueError:
            self.destroy_node()
            raise
        self._params = p
        self._pub = self.create_publisher(Image, "image", 10)
        self._cpub = self.create_publisher(CompressedImage, "image/compressed", 10) if p["publish_compressed"] else None
        self.published = 0
        self._timer = self.create_timer(1.0 / p["rate"], self._tick)
        self.get_logger().info(
            f"publishing {p['source']} ({self._first.shape[1]}x{self._first.shape[0]}) at {p['rate']} Hz "
            f"on {self._pub.topic_name}"
        )

    def _tick(self) -> None:
        if self.published == 0 and self._pub.get_subscription_count() < self._params["wait_for_subscribers"]:
            return
        limit = self._params["max_frames"]
        if limit and self.published >= limit:
            self._timer.cancel()
            self.get_logger().info(f"published {self.published} frames; stopping")
            return
        if self._first is not None:
            rgb, self._first = self._first, None
        else:
            rgb = next(self._frames, None)
            if rgb is None:
                self._timer.cancel()
                self.get_logger().info(f"end of {self._params['source']} after {self.published} frames")
                return
        stamp = self.get_clock().now().to_msg()
        enc = self._params["encoding"]
        if enc == "bgr8":
            pixels = rgb[:, :, ::-1]
        elif enc == "mono8":
            pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        else:
            pixels = rgb
        msg = array_to_image(pixels, enc)
        msg.header.stamp = stamp
        msg.header.frame_id = self._params["frame_id"]
        self._pub.publish(msg)
        if self._cpub is not None:
            ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
            if ok:
                cmsg = CompressedImage(format="rgb8; jpeg compressed bgr8", data=jpeg.tobytes())
                cmsg.header = msg.header
                self._cpub.publish(cmsg)
        self.published += 1


def main(args: list[str] | None = None) -> int:
    """Entry point of ``camera_replay``: 0 on SIGINT/SIGTERM, 2 when the source cannot be read."""
    rclpy.init(args=args)
    node: CameraReplay | None = None
    code = 0
    try:
        node = CameraReplay()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        code = 0
    except ValueError as err:
        rclpy.logging.get_logger("camera_replay").fatal(str(err))
        code = 2
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
