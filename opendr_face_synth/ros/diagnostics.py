"""Counters of the node and their /diagnostics message (diagnostic_msgs/DiagnosticArray).

All counters are updated from the subscription callbacks and the worker thread under one lock; the
diagnostics timer takes a snapshot. Windows are bounded (deques), so memory stays constant.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RATE_WINDOW_S = 5.0
LATENCY_SAMPLES = 512
FACE_SAMPLES = 128


class _RateWindow:
    """Events per second over the last ``RATE_WINDOW_S`` seconds."""

    def __init__(self) -> None:
        self._times: deque[float] = deque(maxlen=4096)

    def add(self, now: float) -> None:
        self._times.append(now)

    def rate(self, now: float) -> float:
        while self._times and now - self._times[0] > RATE_WINDOW_S:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        span = max(now - self._times[0], 1e-6)
        return (len(self._times) - 1) / span if span > 0 else 0.0


@dataclass
class StatsSnapshot:
    input_rate_hz: float
    processed_rate_hz: float
    frames_received: int
    frames_processed: int
    dropped_busy: int
    dropped_rate_limit: int
    lost_in_transport: int
    rejected: dict[str, int]
    last_rejection: str
    engine_errors: int
    last_engine_error: str
    latency_ms: dict[str, float]
    processing_ms: dict[str, float]
    faces_per_frame: float
    max_faces_per_frame: int
    mosaic_frames: int
    stages_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> p50, p95 (ms per frame)
    extra: dict[str, str] = field(default_factory=dict)


def _percentiles(values: deque[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "max": float("nan")}
    arr = np.fromiter(values, dtype=np.float64)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(arr.max())}


class NodeStats:
    """Thread-safe counters and bounded windows."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._input = _RateWindow()
        self._processed = _RateWindow()
        self.frames_received = 0
        self.frames_processed = 0
        self.dropped_busy = 0
        self.dropped_rate_limit = 0
        self.lost_in_transport = 0
        self.rejected: Counter[str] = Counter()
        self.last_rejection = ""
        self.engine_errors = 0
        self.last_engine_error = ""
        self.mosaic_frames = 0
        self._latency: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._processing: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._faces: deque[int] = deque(maxlen=FACE_SAMPLES)
        self._stages: dict[str, deque[float]] = {}

    def frame_received(self, replaced_unprocessed: bool) -> None:
        with self._lock:
            self.frames_received += 1
            self._input.add(time.monotonic())
            if replaced_unprocessed:
                self.dropped_busy += 1

    def frame_skipped_rate_limit(self) -> None:
        with self._lock:
            self.dropped_rate_limit += 1

    def transport_lost(self, count: int) -> None:
        with self._lock:
            self.lost_in_transport += count

    def frame_rejected(self, kind: str, reason: str) -> None:
        with self._lock:
            self.rejected[kind] += 1
            self.last_rejection = reason

    def engine_error(self, reason: str) -> None:
        with self._lock:
            self.engine_errors += 1
            self.last_engine_error = reason

    def frame_processed(
        self, latency_ms: float, processing_ms: float, faces: int, stages_ms: Mapping[str, float] | None = None
    ) -> None:
        """One published frame; ``stages_ms``: time of each stage of it (name -> ms), in the order they ran."""
        with self._lock:
            self.frames_processed += 1
            self._processed.add(time.monotonic())
            self._latency.append(latency_ms)
            self._processing.append(processing_ms)
            self._faces.append(faces)
            for stage, ms in (stages_ms or {}).items():
                self._stages.setdefault(stage, deque(maxlen=LATENCY_SAMPLES)).append(ms)

    def mosaic_built(self) -> None:
        with self._lock:
            self.mosaic_frames += 1

    def snapshot(self) -> StatsSnapshot:
        now = time.monotonic()
        with self._lock:
            faces = list(self._faces)
            return StatsSnapshot(
                input_rate_hz=self._input.rate(now),
                processed_rate_hz=self._processed.rate(now),
                frames_received=self.frames_received,
                frames_processed=self.frames_processed,
                dropped_busy=self.dropped_busy,
                dropped_rate_limit=self.dropped_rate_limit,
                lost_in_transport=self.lost_in_transport,
                rejected=dict(self.rejected),
                last_rejection=self.last_rejection,
                engine_errors=self.engine_errors,
                last_engine_error=self.last_engine_error,
                latency_ms=_percentiles(self._latency),
                processing_ms=_percentiles(self._processing),
                faces_per_frame=float(np.mean(faces)) if faces else 0.0,
                max_faces_per_frame=max(faces) if faces else 0,
                mosaic_frames=self.mosaic_frames,
                stages_ms={
                    stage: {k: v for k, v in _percentiles(window).items() if k in ("p50", "p95")}
                    for stage, window in self._stages.items()
                },
            )


def build_diagnostic_array(
    snap: StatsSnapshot,
    name: str,
    device: str,
    recording: dict[str, str],
    stamp: Any,
    previous: StatsSnapshot | None = None,
) -> Any:
    """DiagnosticArray with one status for the node. Level: ERROR when the engine failed since the last
    report, WARN when recording failed or frames were rejected since the last report, else OK."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    status = DiagnosticStatus()
    status.name = name
    status.hardware_id = device
    new_engine_errors = snap.engine_errors - (previous.engine_errors if previous else 0)
    new_rejections = sum(snap.rejected.values()) - (sum(previous.rejected.values()) if previous else 0)
    if new_engine_errors > 0:
        status.level = DiagnosticStatus.ERROR
        status.message = f"engine error: {snap.last_engine_error}"
    elif recording.get("state") == "error":
        status.level = DiagnosticStatus.WARN
        status.message = f"recording stopped: {recording.get('error', '')}"
    elif new_rejections > 0:
        status.level = DiagnosticStatus.WARN
        status.message = f"rejected input: {snap.last_rejection}"
    else:
        status.level = DiagnosticStatus.OK
        status.message = f"{snap.processed_rate_hz:.1f} Hz processed of {snap.input_rate_hz:.1f} Hz input"

    def fmt(value: float) -> str:
        return "nan" if value != value else f"{value:.2f}"

    values: list[tuple[str, str]] = [
        ("device", device),
        ("input_rate_hz", fmt(snap.input_rate_hz)),
        ("processed_rate_hz", fmt(snap.processed_rate_hz)),
        ("frames_received", str(snap.frames_received)),
        ("frames_processed", str(snap.frames_processed)),
        ("dropped_frames", str(snap.dropped_busy + snap.dropped_rate_limit + snap.lost_in_transport)),
        ("dropped_busy", str(snap.dropped_busy)),
        ("dropped_rate_limit", str(snap.dropped_rate_limit)),
        ("dropped_before_callback", str(snap.lost_in_transport)),
        ("rejected_frames", str(sum(snap.rejected.values()))),
        ("last_rejection", snap.last_rejection),
        ("engine_errors", str(snap.engine_errors)),
        ("faces_per_frame", fmt(snap.faces_per_frame)),
        ("max_faces_per_frame", str(snap.max_faces_per_frame)),
        ("mosaic_frames", str(snap.mosaic_frames)),
    ]
    for key in ("p50", "p95", "p99", "max"):
        values.append((f"latency_ms_{key}", fmt(snap.latency_ms[key])))
    for key in ("p50", "p95"):
        values.append((f"processing_ms_{key}", fmt(snap.processing_ms[key])))
    for stage, percentiles in snap.stages_ms.items():
        for key, value in percentiles.items():
            values.append((f"stage_{stage}_ms_{key}", fmt(value)))
    for kind, count in sorted(snap.rejected.items()):
        values.append((f"rejected_{kind}", str(count)))
    for key, value in recording.items():
        values.append((f"recording_{key}", value))
    for key, value in snap.extra.items():
        values.append((key, value))
    status.values = [KeyValue(key=k, value=v) for k, v in values]
    array = DiagnosticArray()
    array.header.stamp = stamp
    array.status = [status]
    return array
