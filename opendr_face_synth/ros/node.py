"""face_synth_node: camera frames in, every face x every requested view out (ROS 2, rclpy).

Threads: the executor runs the subscription callbacks, which only keep the newest frame (a frame that
replaces one not yet processed is counted as dropped) and never block; one worker thread converts the
newest frame, runs the engine (all faces x views batched on the device), tracks faces, publishes
``~/views``, ``~/mosaic`` (only while subscribed) and hands messages to the bag writer thread.
Output headers (stamp, frame_id) are the input's. SIGINT / SIGTERM: exit 0 after the worker stopped
and the bag was closed.

Run: ``ros2 run opendr_face_synth face_synth_node --ros-args --params-file config/face_synth.yaml``
(pip set-up: ``.venv/bin/python -m opendr_face_synth.ros.node --ros-args ...``).
"""

from __future__ import annotations

import array
import signal
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import rclpy
import rclpy.exceptions
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rclpy.subscription import Subscription
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import SetBool

from ..core.config import ConfigError, SynthConfig, parse_angle_list
from .diagnostics import NodeStats, StatsSnapshot, build_diagnostic_array
from .image_conversion import ImageConversionError, compressed_to_rgb, image_to_rgb, rgb_to_image
from .messages import views_message
from .mosaic import build_mosaic
from .recorder import BagRecorder, RecordingError, TopicSpec, new_bag_path
from .tracking import FaceTracker

try:  # Iron and later
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

SynthesizerFactory = Callable[[SynthConfig], Any]
NODE_NAME = "face_synth_node"
VIEWS_DEPTH = 10
_LOG_THROTTLE_S = 1.0
_MAX_PLAUSIBLE_LATENCY_MS = 3_600_000.0

# Parameters that define the engine: changing one at run time rebuilds it between two frames.
ENGINE_PARAMS = (
    "yaws",
    "pitches",
    "grid",
    "output_size",
    "supersampling",
    "render_backend",
    "background",
    "max_faces",
    "min_face_size",
    "detection_confidence",
    "device",
    "fitter",
    "refiner",
    "weights_dir",
)


def _int_range(lo: int, hi: int) -> list[IntegerRange]:
    return [IntegerRange(from_value=lo, to_value=hi, step=1)]


def _float_range(lo: float, hi: float) -> list[FloatingPointRange]:
    return [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]


def _descriptor(
    description: str,
    ptype: int | None = None,
    read_only: bool = False,
    ints: tuple[int, int] | None = None,
    floats: tuple[float, float] | None = None,
    constraints: str = "",
) -> ParameterDescriptor:
    d = ParameterDescriptor(description=description, read_only=read_only, additional_constraints=constraints)
    if ptype is None:
        d.dynamic_typing = True
    else:
        d.type = ptype
    if ints is not None:
        d.integer_range = _int_range(*ints)
    if floats is not None:
        d.floating_point_range = _float_range(*floats)
    return d


_B, _I, _D, _S = (
    ParameterType.PARAMETER_BOOL,
    ParameterType.PARAMETER_INTEGER,
    ParameterType.PARAMETER_DOUBLE,
    ParameterType.PARAMETER_STRING,
)

# name -> (default, descriptor). Defaults equal config/face_synth.yaml (a test checks).
PARAMETERS: dict[str, tuple[Any, ParameterDescriptor]] = {
    "yaws": (
        [-60.0, -30.0, 0.0, 30.0, 60.0],
        _descriptor("absolute yaw of each view, degrees", constraints="numbers or 'a, b' text, each in [-90, 90]"),
    ),
    "pitches": ("", _descriptor("absolute pitch of each view, degrees", constraints="like yaws; '' = none")),
    "grid": (False, _descriptor("true: every yaw x every pitch; false: one view per yaw and one per pitch", _B)),
    "output_size": (256, _descriptor("side of the square views, pixels", _I, ints=(32, 2048))),
    "supersampling": (
        2, _descriptor("anti-aliasing: rasterize at N x the size and average; 1 is fastest", _I, ints=(1, 4))
    ),
    "render_backend": (
        "builtin",
        _descriptor("rasterizer", _S, constraints="builtin | neural_renderer | auto (neural_renderer where usable)"),
    ),
    "background": ("scene", _descriptor("scene or black", _S, constraints="scene | black")),
    "max_faces": (0, _descriptor("faces per frame (best scores), 0 = all", _I, ints=(0, 64))),
    "min_face_size": (32, _descriptor("smallest face side in the input, pixels", _I, ints=(8, 4096))),
    "detection_confidence": (0.5, _descriptor("face detector threshold", _D, floats=(0.0, 1.0), constraints="(0, 1)")),
    "device": ("auto", _descriptor("compute device", _S, constraints="auto | cpu | cuda | cuda:N")),
    "fitter": ("mediapipe", _descriptor("3D face fitter", _S, read_only=True, constraints="mediapipe | 3ddfa")),
    "refiner": ("none", _descriptor("view refiner", _S, read_only=True, constraints="none | rotate_and_render")),
    "weights_dir": ("", _descriptor("folder of model weights for the fitter/refiner", _S, read_only=True)),
    "subscribe_compressed": (False, _descriptor("also subscribe image/compressed", _B, read_only=True)),
    "qos_depth": (1, _descriptor("input queue depth", _I, read_only=True, ints=(1, 100))),
    "qos_reliability": (
        "best_effort",
        _descriptor("input reliability", _S, read_only=True, constraints="best_effort | reliable"),
    ),
    "max_input_pixels": (
        4096 * 4096,
        _descriptor("larger input frames are rejected before decoding", _I, ints=(1, 1 << 30)),
    ),
    "max_rate_hz": (0.0, _descriptor("processing rate cap, 0 = unlimited", _D, floats=(0.0, 1000.0))),
    "publish_masks": (True, _descriptor("fill SynthView.mask", _B)),
    "mosaic": (True, _descriptor("publish ~/mosaic while subscribed", _B)),
    "mosaic_tile_size": (128, _descriptor("mosaic tile side, pixels", _I, ints=(32, 1024))),
    "diagnostics_period": (1.0, _descriptor("seconds between /diagnostics", _D, read_only=True, floats=(0.1, 60.0))),
    "track_min_iou": (0.3, _descriptor("box overlap continuing a track", _D, floats=(0.0, 1.0))),
    "track_max_age": (10.0, _descriptor("seconds a lost face keeps its id", _D, floats=(0.0, 3600.0))),
    "track_max_missed": (5, _descriptor("processed frames a lost face keeps its id", _I, ints=(0, 1000))),
    "record": (
        False,
        _descriptor("record from the start (use ~/set_recording at run time)", _B, read_only=True),
    ),
    "bag_dir": ("face_synth_bags", _descriptor("folder of the bags (new sub-folder per recording)", _S)),
    "bag_storage": ("mcap", _descriptor("bag storage", _S, constraints="mcap | sqlite3")),
    "bag_writer": (
        "auto",
        _descriptor("bag writer", _S, constraints="auto (rosbag2_py when importable) | rosbag2_py | builtin"),
    ),
    "record_input": (False, _descriptor("also record the input frames", _B)),
    "bag_max_size_mb": (1024, _descriptor("split files at this size, 0 = no split", _I, ints=(0, 1_000_000))),
    "bag_max_duration": (0.0, _descriptor("split files after seconds, 0 = no split", _D, floats=(0.0, 86400.0))),
    "record_queue_size": (64, _descriptor("messages waiting for the bag writer", _I, ints=(1, 10000))),
    "record_min_free_mb": (200, _descriptor("stop recording below this free disk, MB", _I, ints=(0, 1_000_000))),
}


def _angles(value: Any, name: str) -> tuple[float, ...]:
    """yaws / pitches parameter value (number list, text or unset) -> angles; ConfigError with the reason."""
    if isinstance(value, array.array):  # arrays arrive as array.array through the parameter services
        value = value.tolist()
    if value is None or value == "" or value == []:
        return ()
    if isinstance(value, (list, tuple)):
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{name}: {list(value)!r} is not a list of numbers")
        return parse_angle_list([str(v) for v in value], name)
    if isinstance(value, str):
        return parse_angle_list(value, name)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return parse_angle_list(str(value), name)
    raise ConfigError(f"{name}: {value!r} is not a list of angles")


def _default_factory(config: SynthConfig) -> Any:
    from ..core.synthesizer import FaceSynthesizer

    return FaceSynthesizer(config)


class _LatestFrame:
    """Mailbox of size one: ``put`` replaces what the worker has not taken yet (never blocks)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._closed = False

    def put(self, item: Any) -> bool:
        """Store ``item``; True when it replaced an unprocessed one."""
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float) -> Any:
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class FaceSynthNode(Node):
    """The ROS 2 shell around FaceSynthesizer; see the module docstring."""

    def __init__(
        self,
        synthesizer_factory: SynthesizerFactory | None = None,
        node_name: str = NODE_NAME,
        **node_kwargs: Any,
    ) -> None:
        super().__init__(node_name, **node_kwargs)
        self._factory = synthesizer_factory or _default_factory
        self._stats = NodeStats()
        self._values: dict[str, Any] = {}
        self._engine_dirty = False
        self._params_lock = threading.Lock()
        self._last_log: dict[str, float] = {}
        self._stop = threading.Event()
        self._slot = _LatestFrame()
        self._worker_phase = "idle"
        self._recorder: BagRecorder | None = None
        self._recorder_lock = threading.Lock()
        self._prev_snapshot: StatsSnapshot | None = None
        self._recording_error = ""

        self.add_on_set_parameters_callback(self._on_set_parameters)
        for name, (default, descriptor) in PARAMETERS.items():
            self.declare_parameter(name, default, descriptor)
        config = self._synth_config(self._values)  # cross-parameter checks; raises ConfigError
        self._synth = self._factory(config)
        self._device = str(getattr(self._synth, "device", config.device))
        self._tracker = FaceTracker(
            self._values["track_min_iou"],
            max_age_s=self._values["track_max_age"],
            max_missed=self._values["track_max_missed"],
        )

        qos_in = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=self._values["qos_depth"],
            reliability=(
                ReliabilityPolicy.RELIABLE
                if self._values["qos_reliability"] == "reliable"
                else ReliabilityPolicy.BEST_EFFORT
            ),
        )
        self._input_group = MutuallyExclusiveCallbackGroup()
        self._control_group = MutuallyExclusiveCallbackGroup()
        # Frames that never reach the callback (the input queue overwritten while the executor was busy,
        # or lost on the network) are counted from gaps in each publisher's sequence numbers where rclpy
        # passes MessageInfo (Iron and later), else from the middleware's message-lost events (Humble).
        self._last_sequence: dict[bytes, int] = {}
        with_info = hasattr(Subscription, "CallbackType")
        events = None if with_info else SubscriptionEventCallbacks(message_lost=self._on_message_lost)
        self._image_sub = self.create_subscription(
            Image,
            "image",
            self._on_image_info if with_info else self._on_image,
            qos_in,
            callback_group=self._input_group,
            event_callbacks=events,
        )
        self._compressed_sub = None
        if self._values["subscribe_compressed"]:
            self._compressed_sub = self.create_subscription(
                CompressedImage,
                "image/compressed",
                self._on_compressed_info if with_info else self._on_compressed,
                qos_in,
                callback_group=self._input_group,
            )
        from opendr_face_synth.msg import SynthFaceArray

        self._views_pub = self.create_publisher(SynthFaceArray, "~/views", VIEWS_DEPTH)
        self._mosaic_pub = self.create_publisher(Image, "~/mosaic", 1)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._record_srv = self.create_service(
            SetBool, "~/set_recording", self._on_set_recording, callback_group=self._control_group
        )
        self._diag_timer = self.create_timer(
            self._values["diagnostics_period"], self._publish_diagnostics, callback_group=self._control_group
        )
        self._worker = threading.Thread(target=self._work, name="face_synth_worker", daemon=True)
        self._worker.start()
        views = ", ".join(r.label() for r in config.view_requests())
        self.get_logger().info(
            f"ready on {self._device}: {len(config.view_requests())} views per face ({views}), "
            f"input {self._image_sub.topic_name}"
            + (f" + {self._compressed_sub.topic_name}" if self._compressed_sub else "")
            + f", output {self._views_pub.topic_name}"
        )
        if self._values["record"]:
            ok, message = self.start_recording()
            if not ok:
                self.get_logger().error(f"recording at launch failed: {message}")

    # ------------------------------------------------------------------ parameters

    def _synth_config(self, values: dict[str, Any]) -> SynthConfig:
        return SynthConfig(
            yaws=_angles(values["yaws"], "yaws"),
            pitches=_angles(values["pitches"], "pitches"),
            grid=bool(values["grid"]),
            output_size=int(values["output_size"]),
            supersampling=int(values["supersampling"]),
            render_backend=str(values["render_backend"]),
            device=str(values["device"]),
            background=str(values["background"]),
            max_faces=int(values["max_faces"]),
            min_face_size=int(values["min_face_size"]),
            detection_confidence=float(values["detection_confidence"]),
            fitter=str(values["fitter"]),
            refiner=str(values["refiner"]),
            weights_dir=str(values["weights_dir"]) or None,
        ).validate()

    @staticmethod
    def _check_value(name: str, value: Any) -> str | None:
        """Reason why ``value`` is invalid for ``name`` on its own, or None."""
        choices = {
            "background": ("scene", "black"),
            "render_backend": ("builtin", "neural_renderer", "auto"),
            "qos_reliability": ("best_effort", "reliable"),
            "bag_storage": ("mcap", "sqlite3"),
            "bag_writer": ("auto", "rosbag2_py", "builtin"),
            "fitter": ("mediapipe", "3ddfa"),
            "refiner": ("none", "rotate_and_render"),
        }
        try:
            if name in ("yaws", "pitches"):
                _angles(value, name)
            elif name == "detection_confidence" and not 0.0 < value < 1.0:
                return f"detection_confidence {value} is not in (0, 1)"
            elif name == "device":
                SynthConfig(device=value).validate()
                if value.startswith("cuda"):
                    import torch

                    if not torch.cuda.is_available():
                        return f"device {value!r}: CUDA is not available on this machine"
                    index = int(value[5:]) if ":" in value else 0
                    if index >= torch.cuda.device_count():
                        return f"device {value!r}: only {torch.cuda.device_count()} CUDA device(s)"
            elif name in choices and value not in choices[name]:
                return f"{name} {value!r} is not one of {', '.join(choices[name])}"
            elif name == "bag_dir" and not str(value).strip():
                return "bag_dir is empty"
        except ConfigError as err:
            return str(err)
        return None

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Validate (alone and together with the other values); reject with the reason, else apply."""
        with self._params_lock:
            candidate = dict(self._values)
            for p in params:
                if p.name not in PARAMETERS:
                    continue
                value = p.value
                if p.type_ == Parameter.Type.NOT_SET and p.name in ("yaws", "pitches"):
                    value = ""  # an empty YAML list arrives unset
                reason = self._check_value(p.name, value)
                if reason:
                    return SetParametersResult(successful=False, reason=reason)
                candidate[p.name] = value
            engine_change = any(p.name in ENGINE_PARAMS for p in params)
            if engine_change and all(k in candidate for k in ENGINE_PARAMS):
                try:
                    self._synth_config(candidate)
                except ConfigError as err:
                    return SetParametersResult(successful=False, reason=str(err))
            started = hasattr(self, "_synth")
            self._values = candidate
            if started and engine_change:
                self._engine_dirty = True
            if started and any(p.name.startswith("track_") for p in params):
                self._tracker.min_iou = float(candidate["track_min_iou"])
                self._tracker.max_age_s = float(candidate["track_max_age"])
                self._tracker.max_missed = int(candidate["track_max_missed"])
        return SetParametersResult(successful=True)

    def _value(self, name: str) -> Any:
        with self._params_lock:
            return self._values[name]

    # ------------------------------------------------------------------ input callbacks (never block)

    def _on_image(self, msg: Image) -> None:
        self._enqueue(msg, "raw")

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._enqueue(msg, "compressed")

    def _on_image_info(self, msg: Image, info: dict[str, Any]) -> None:
        self._count_gap(info)
        self._enqueue(msg, "raw")

    def _on_compressed_info(self, msg: CompressedImage, info: dict[str, Any]) -> None:
        self._count_gap(info)
        self._enqueue(msg, "compressed")

    def _count_gap(self, info: dict[str, Any]) -> None:
        """Frames of this publisher that were sent but never reached the callback."""
        sequence = info.get("publication_sequence_number")
        gid = info.get("publisher_gid")
        if not sequence or gid is None:
            return
        key = bytes(gid.get("data", b"")) if isinstance(gid, dict) else bytes(gid)
        last = self._last_sequence.get(key)
        self._last_sequence[key] = sequence
        if last is not None and sequence > last + 1:
            self._stats.transport_lost(sequence - last - 1)

    def _enqueue(self, msg: Any, kind: str) -> None:
        replaced = self._slot.put((msg, kind, time.monotonic(), self.get_clock().now().nanoseconds))
        self._stats.frame_received(replaced and self._worker_phase != "throttled")
        if replaced and self._worker_phase == "throttled":
            self._stats.frame_skipped_rate_limit()

    def _on_message_lost(self, info: Any) -> None:
        self._stats.transport_lost(int(getattr(info, "total_count_change", 1)))

    # ------------------------------------------------------------------ worker

    def _work(self) -> None:
        next_allowed = 0.0
        while not self._stop.is_set():
            rate = float(self._value("max_rate_hz"))
            if rate > 0:
                wait = next_allowed - time.monotonic()
                if wait > 0:
                    self._worker_phase = "throttled"
                    if self._stop.wait(wait):
                        break
            self._worker_phase = "idle"
            item = self._slot.take(timeout=0.2)
            if item is None:
                continue
            self._worker_phase = "busy"
            next_allowed = time.monotonic() + (1.0 / rate if rate > 0 else 0.0)
            try:
                self._process(*item)
            except Exception as err:  # noqa: BLE001 - one failing frame must not stop the node
                if self._stop.is_set() or not self.context.ok():
                    break
                reason = f"{type(err).__name__}: {err}"
                self._stats.engine_error(reason)
                self._log_throttled("error", "engine", f"frame failed: {reason}\n{traceback.format_exc()}")
            finally:
                self._worker_phase = "idle"

    def _rebuild_engine(self) -> None:
        with self._params_lock:
            self._engine_dirty = False
            values = dict(self._values)
        config = self._synth_config(values)
        try:
            new = self._factory(config)
        except (ConfigError, RuntimeError, ValueError, OSError) as err:
            self._stats.engine_error(f"rebuild failed: {err}")
            self.get_logger().error(f"new engine settings not applied ({err}); keeping the previous engine")
            return
        old, self._synth = self._synth, new
        self._device = str(getattr(new, "device", config.device))
        close = getattr(old, "close", None)
        if close is not None:
            close()
        self.get_logger().info(f"engine rebuilt on {self._device}: {len(config.view_requests())} views per face")

    def _process(self, msg: Any, kind: str, received_mono: float, received_ns: int) -> None:
        taken = time.monotonic()
        max_pixels = int(self._value("max_input_pixels"))
        try:
            rgb = image_to_rgb(msg, max_pixels) if kind == "raw" else compressed_to_rgb(msg, max_pixels)
        except ImageConversionError as err:
            self._stats.frame_rejected(err.kind, str(err))
            self._log_throttled("warn", f"reject_{err.kind}", f"frame {_describe(msg)} rejected: {err}")
            return
        converted_ms = (time.monotonic() - taken) * 1e3
        if self._engine_dirty:
            self._rebuild_engine()
        start = time.perf_counter()
        result = self._synth.process([rgb])[0]
        engine_done = time.perf_counter()
        faces = result.faces
        track_ids = self._tracker.update([f.detection.box for f in faces], received_mono)
        out = views_message(msg.header, result, track_ids, bool(self._value("publish_masks")))
        message_done = time.perf_counter()
        if self._stop.is_set():
            return
        self._views_pub.publish(out)
        published = time.perf_counter()
        now_ns = self.get_clock().now().nanoseconds
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        latency_ms = (now_ns - stamp_ns) / 1e6
        stamp_ok = stamp_ns > 0 and 0.0 <= latency_ms <= _MAX_PLAUSIBLE_LATENCY_MS
        if not stamp_ok:
            latency_ms = (now_ns - received_ns) / 1e6  # unset or foreign-clock stamp: from reception
        # Where the latency goes: input transport (stamp -> callback), waiting for the worker, conversion,
        # the engine's stages (detect, fit, scene, render), building and publishing the views message.
        stages = {"input": (received_ns - stamp_ns) / 1e6} if stamp_ok else {}
        stages["queued"] = (taken - received_mono) * 1e3
        stages["convert"] = converted_ms
        stages.update(result.timings_ms)
        stages["message"] = (message_done - engine_done) * 1e3
        stages["publish"] = (published - message_done) * 1e3
        self._stats.frame_processed(latency_ms, (published - start) * 1e3, len(faces), stages)
        if self._value("mosaic") and self._mosaic_pub.get_subscription_count() > 0:
            tiles = build_mosaic(rgb, faces, track_ids, int(self._value("mosaic_tile_size")))
            self._mosaic_pub.publish(rgb_to_image(tiles, msg.header))
            self._stats.mosaic_built()
        recorder = self._recorder
        if recorder is not None and recorder.state == "recording":
            recorder.write(self._views_pub.topic_name, out, now_ns)
            if self._value("record_input"):
                topic = self._image_sub.topic_name if kind == "raw" else self._compressed_sub.topic_name
                recorder.write(topic, msg, received_ns)

    def _log_throttled(self, level: str, key: str, text: str) -> None:
        """Log ``text`` at most once per second per ``key`` (one bad stream must not flood the log)."""
        now = time.monotonic()
        if now - self._last_log.get(key, -1e9) < _LOG_THROTTLE_S:
            return
        self._last_log[key] = now
        logger = self.get_logger()
        {"warn": logger.warning, "error": logger.error, "info": logger.info}[level](text)

    # ------------------------------------------------------------------ recording

    def start_recording(self) -> tuple[bool, str]:
        """Open a new bag; (success, message). Safe from any thread."""
        with self._recorder_lock:
            if self._recorder is not None and self._recorder.state == "recording":
                return True, f"already recording to {self._recorder.path}"
            v = {k: self._value(k) for k in PARAMETERS}
            from opendr_face_synth.msg import SynthFaceArray  # noqa: F401 - checks the interfaces exist

            topics = [TopicSpec(self._views_pub.topic_name, "opendr_face_synth/msg/SynthFaceArray", VIEWS_DEPTH)]
            if v["record_input"]:
                reliable = v["qos_reliability"] == "reliable"
                topics.append(TopicSpec(self._image_sub.topic_name, "sensor_msgs/msg/Image", v["qos_depth"], reliable))
                if self._compressed_sub is not None:
                    topics.append(
                        TopicSpec(
                            self._compressed_sub.topic_name, "sensor_msgs/msg/CompressedImage", v["qos_depth"], reliable
                        )
                    )
            recorder = BagRecorder(
                new_bag_path(v["bag_dir"]),
                topics,
                storage=v["bag_storage"],
                max_file_bytes=int(v["bag_max_size_mb"]) * 1_000_000,
                max_file_duration_s=float(v["bag_max_duration"]),
                queue_size=int(v["record_queue_size"]),
                min_free_bytes=int(v["record_min_free_mb"]) * 1_000_000,
                writer=v["bag_writer"],
                log=self._recorder_log,
            )
            try:
                recorder.start()
            except RecordingError as err:
                self._recording_error = str(err)  # shown in diagnostics until a recording starts
                self.get_logger().error(f"recording not started: {err}")
                return False, str(err)
            self._recorder = recorder
            self._recording_error = ""
            self.get_logger().info(f"recording to {recorder.path} ({recorder.writer_name}, {recorder.storage})")
            return True, f"recording to {recorder.path}"

    def stop_recording(self) -> tuple[bool, str]:
        with self._recorder_lock:
            recorder = self._recorder
            if recorder is None or recorder.state not in ("recording", "stopping"):
                return True, "not recording"
            recorder.stop()
            return True, f"bag closed: {recorder.path}"

    def _recorder_log(self, level: str, text: str) -> None:
        logger = self.get_logger()
        (logger.error if level == "error" else logger.info)(text)

    def _on_set_recording(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        ok, message = self.start_recording() if request.data else self.stop_recording()
        response.success, response.message = ok, message
        return response

    def recording_status(self) -> dict[str, str]:
        recorder = self._recorder
        if self._recording_error:
            return {"state": "error", "error": self._recording_error}
        if recorder is None:
            return {"state": "off"}
        return recorder.status()

    # ------------------------------------------------------------------ diagnostics, shutdown

    def _publish_diagnostics(self) -> None:
        snap = self._stats.snapshot()
        array = build_diagnostic_array(
            snap,
            f"{self.get_name()}: face synthesis",
            self._device,
            self.recording_status(),
            self.get_clock().now().to_msg(),
            self._prev_snapshot,
        )
        self._prev_snapshot = snap
        self._diag_pub.publish(array)

    @property
    def stats(self) -> NodeStats:
        return self._stats

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the worker, close the bag, release the engine (idempotent; call before destroy_node)."""
        self._stop.set()
        self._slot.close()
        if self._worker.is_alive():
            self._worker.join(timeout)
        with self._recorder_lock:
            if self._recorder is not None:
                self._recorder.stop()
        close = getattr(self._synth, "close", None)
        if close is not None:
            close()


def _describe(msg: Any) -> str:
    header = msg.header
    stamp = f"{header.stamp.sec}.{header.stamp.nanosec:09d}"
    if hasattr(msg, "encoding"):
        return f"{msg.width}x{msg.height} {msg.encoding!r} stamp {stamp}"
    return f"compressed {msg.format!r} ({len(msg.data)} bytes) stamp {stamp}"


def spin_until_signal(node: Node, executor: Any) -> None:
    """Spin until SIGINT / SIGTERM. The signals only set a flag (rclpy's own handlers are off, see
    ``main``), so the node still has a valid context afterwards to stop cleanly: finish the frame,
    close the bag, log, publish."""
    stop = threading.Event()
    wake = node.create_guard_condition(lambda: None)

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()
        wake.trigger()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.is_set() and executor.context.ok():
            executor.spin_once(timeout_sec=0.5)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        node.destroy_guard_condition(wake)


def main(args: list[str] | None = None, synthesizer_factory: SynthesizerFactory | None = None) -> int:
    """Entry point of ``face_synth_node``: 0 on SIGINT/SIGTERM, 2 on an invalid configuration."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node: FaceSynthNode | None = None
    # Every callback returns at once (the worker thread does the work), so one executor thread is enough;
    # rclpy 9.1's MultiThreadedExecutor also busy-loops on queued tasks and starves the worker of the GIL.
    executor = SingleThreadedExecutor()
    code = 0
    try:
        node = FaceSynthNode(synthesizer_factory)
        executor.add_node(node)
        spin_until_signal(node, executor)
        node.get_logger().info("stopping")
    except (KeyboardInterrupt, ExternalShutdownException):
        code = 0
    except ConfigError as err:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"invalid configuration: {err}")
        code = 2
    except rclpy.exceptions.InvalidParameterValueException as err:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"invalid parameter: {err}")
        code = 2
    finally:
        if node is not None:
            node.shutdown()  # worker stopped, bag closed
        executor.shutdown(timeout_sec=10.0)  # callbacks still running finish before the node goes
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["FaceSynthNode", "PARAMETERS", "main"]
