"""End-to-end benchmark of face_synth_node: input stamp -> views received, and the sustained rate.

A 640x480 rgb8 stream at 30 Hz (the bundled sample with 1 or 3 faces, stamped when published) goes
to face_synth_node running as its own process, exactly as deployed; this process subscribes to
``~/views``. Reported per configuration:

* latency (ms) from the input frame's header stamp to the views message's arrival here, median and
  p95 (the node's own stamp-to-publish figure from /diagnostics is printed beside it);
* sustained rate: views messages per second over the measuring window (after a warm-up), and how many
  input frames the node dropped in that window: skipped because it was busy (it always works on the
  newest frame) or lost before its callback;
* where the time goes: the node's per-stage medians from /diagnostics (input transport, queued, convert,
  detect, fit, scene, render, message, publish; ms per frame, last 512 frames).

    .venv/bin/python bench/bench_node.py --faces 1 3 --views 8 --seconds 30 --device cpu
    .venv/bin/python bench/bench_node.py --device cuda --json out/bench_node_gpu.jsonl

Prints one JSON line per configuration (and appends them to --json FILE when given), then a table.

Isolated on its own ROS domain. --transport localhost (default): discovery limited to this machine with
rmw_fastrtps's transports, which lose most 0.9 MB best-effort frames between processes; large_data: Fast
DDS's LARGE_DATA transports (see opendr_face_synth.ros.testing). bench/ros_transport_probe.py measures
the transport alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np


def _views_yaws(count: int) -> list[float]:
    """``count`` yaws spread over [-60, 60] without 0 repeated (8 -> -60..60 in 17.1 degree steps)."""
    return [round(float(v), 1) for v in np.linspace(-60.0, 60.0, count)]


def run_one(
    faces: int,
    views: int,
    size: int,
    rate: float,
    seconds: float,
    warmup: float,
    device: str,
    domain: int,
    params: list[str],
    transport: str,
    input_qos: str = "reliable",
):
    from diagnostic_msgs.msg import DiagnosticArray
    from opendr_face_synth.msg import SynthFaceArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from opendr_face_synth.ros.camera_replay import sample_frame
    from opendr_face_synth.ros.image_conversion import array_to_image
    from opendr_face_synth.ros.testing import RosHarness, diagnostics_values, localhost_env, wait_until

    yaws = _views_yaws(views)
    node_cmd = [
        sys.executable, "-m", "opendr_face_synth.ros.node", "--ros-args", "-r", "image:=/bench/image",
        "-p", f"yaws:={json.dumps(yaws)}", "-p", 'pitches:=""', "-p", f"output_size:={size}",
        "-p", f"device:={device}", "-p", "diagnostics_period:=1.0", "-p", "mosaic:=false",
        "-p", f"qos_reliability:={input_qos}", *(arg for param in params for arg in ("-p", param)),
    ]  # fmt: skip
    node = subprocess.Popen(
        node_cmd,
        env=localhost_env(domain, transport=transport),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(node.stdout), daemon=True).start()  # type: ignore[arg-type]
    ros = RosHarness(domain, threads=1, transport=transport)
    arrivals: list[tuple[int, int, int]] = []  # (arrival ns, stamp ns, faces)
    diag: list[tuple[int, dict[str, str]]] = []  # (arrival ns, values)
    lock = threading.Lock()

    def on_views(msg: SynthFaceArray) -> None:
        now = time.time_ns()
        with lock:
            arrivals.append((now, msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec, len(msg.faces)))

    def on_diag(msg: DiagnosticArray) -> None:
        values = diagnostics_values(msg)
        if values:
            with lock:
                diag.append((time.time_ns(), values))

    ros.probe.create_subscription(SynthFaceArray, "/face_synth_node/views", on_views, QoSProfile(depth=50))
    ros.probe.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    reliability = ReliabilityPolicy.RELIABLE if input_qos == "reliable" else ReliabilityPolicy.BEST_EFFORT
    sensor_qos = QoSProfile(depth=1, reliability=reliability)
    pub = ros.probe.create_publisher(Image, "/bench/image", sensor_qos)
    frames = [array_to_image(sample_frame(i, faces=faces), "rgb8") for i in range(0, 60, 6)]
    try:
        wait_until(lambda: pub.get_subscription_count() > 0 or node.poll() is not None, 180, "the node to subscribe")
        if node.poll() is not None:
            raise RuntimeError("face_synth_node exited:\n" + "".join(log[-20:]))
        stop = threading.Event()
        sent: list[int] = []  # publish times, ns

        def stream() -> None:
            period = 1.0 / rate
            t_next = time.monotonic()
            while not stop.is_set():
                msg = frames[len(sent) % len(frames)]
                now = time.time_ns()
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
                msg.header.frame_id = "bench_camera"
                pub.publish(msg)
                sent.append(now)
                t_next += period
                time.sleep(max(0.0, t_next - time.monotonic()))

        streamer = threading.Thread(target=stream, daemon=True)
        t_start = time.time_ns()
        streamer.start()
        time.sleep(warmup + seconds)
        stop.set()
        streamer.join(5)
        t_end = time.time_ns()
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGINT)
            try:
                node.wait(60)
            except subprocess.TimeoutExpired:
                node.kill()
        ros.close()
    if node.returncode != 0:
        tail = "".join(line for line in log[-40:] if "inference_feedback" not in line)
        print(f"[bench] face_synth_node exited with {node.returncode}; its last lines:\n{tail}", file=sys.stderr)
    t_measure = t_start + int(warmup * 1e9)
    # The node's counters are reported once a second and a lost frame is counted when the next one
    # arrives, so the window counts below can differ from the bench's own by a second's worth of frames.
    with lock:
        window = [a for a in arrivals if t_measure <= a[0] <= t_end]
        diag_all = list(diag)
    if not window:
        tail = "".join(line for line in log[-30:] if "inference_feedback" not in line)
        raise RuntimeError(f"no views message in the measuring window ({len(arrivals)} in total); node log:\n{tail}")
    latency = np.array([(a - s) / 1e6 for a, s, _ in window])
    face_counts = [f for _, _, f in window]
    # Counters over the measuring window: the last report before it starts against the last one of the run.
    before = [v for t, v in diag_all if t <= t_measure]
    first = before[-1] if before else {}
    last = diag_all[-1][1] if diag_all else {}

    def counted(key: str) -> int:
        return int(last.get(key, 0)) - int(first.get(key, 0))

    stages: dict[str, dict[str, float]] = {}
    for key, value in last.items():
        if key.startswith("stage_") and "_ms_" in key:
            stage, _, pct = key[len("stage_") :].rpartition("_ms_")
            stages.setdefault(stage, {})[pct] = float(value)
    return {
        "faces_in_frame": faces,
        "faces_found_median": float(np.median(face_counts)),
        "views_per_face": views,
        "yaws": yaws,
        "output_size": size,
        "input_rate_hz": rate,
        "device": last.get("device", device),
        "node_params": params,
        "transport": transport,
        "input_qos": input_qos,
        "measured_s": (t_end - t_measure) / 1e9,
        "views_messages": len(window),
        "sustained_rate_hz": len(window) / ((t_end - t_measure) / 1e9),
        "latency_ms_median": float(np.median(latency)),
        "latency_ms_p95": float(np.percentile(latency, 95)),
        "node_latency_ms_p50": float(last.get("latency_ms_p50", "nan")),
        "node_latency_ms_p95": float(last.get("latency_ms_p95", "nan")),
        "node_processing_ms_p50": float(last.get("processing_ms_p50", "nan")),
        "node_processing_ms_p95": float(last.get("processing_ms_p95", "nan")),
        "node_stages_ms": stages,
        "frames_sent": sum(1 for t in sent if t_measure <= t <= t_end),
        # Sent in the window minus views received in it: the frames that got no views (skipped while the
        # node was busy, or lost on the way); the node's counters below say which.
        "frames_without_views": max(0, sum(1 for t in sent if t_measure <= t <= t_end) - len(window)),
        "frames_received_by_node": counted("frames_received"),
        "frames_processed_by_node": counted("frames_processed"),
        "dropped_frames": counted("dropped_frames"),
        "dropped_busy": counted("dropped_busy"),
        "dropped_before_callback": counted("dropped_before_callback"),
        "frames_sent_total": len(sent),
        "dropped_frames_total": int(last.get("dropped_frames", 0)),
        "engine_errors": int(last.get("engine_errors", 0)),
        "node_exit_code": node.returncode,
    }


def main(argv: list[str] | None = None) -> int:
    from opendr_face_synth.ros.testing import TRANSPORTS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=int, nargs="+", default=[1, 3], help="faces per frame (sample), one run each")
    parser.add_argument("--views", type=int, default=8, help="views per face (yaws spread over [-60, 60])")
    parser.add_argument("--size", type=int, default=256, help="output view size")
    parser.add_argument("--rate", type=float, default=30.0, help="input frame rate, Hz")
    parser.add_argument("--seconds", type=float, default=30.0, help="measuring window per run")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds ignored at the start of each run")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument(
        "--param", action="append", default=[], metavar="NAME:=VALUE", help="another node parameter (repeatable)"
    )
    parser.add_argument(
        "--transport",
        choices=sorted(TRANSPORTS),
        default="localhost",
        help="DDS set-up of both processes (opendr_face_synth.ros.testing.TRANSPORTS; large_data: Fast DDS "
        "LARGE_DATA transports, needed for 0.9 MB best-effort frames)",
    )
    parser.add_argument(
        "--input-qos",
        choices=("reliable", "best_effort"),
        default="reliable",
        help="reliability of the frame publisher and of the node's subscription (best_effort loses most 0.9 MB "
        "frames with the localhost transport)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also append the JSON lines here")
    args = parser.parse_args(argv)

    results = []
    for index, faces in enumerate(args.faces):
        domain = (os.getpid() % 20) * 10 + 8 + index % 2
        what = (
            f"{faces} face(s) x {args.views} views, {args.size} px, {args.rate:g} Hz, device {args.device}, "
            + ", ".join([args.transport, f"input {args.input_qos}", *args.param])
        )
        print(f"[bench] {what} ...", flush=True)
        result = run_one(
            faces,
            args.views,
            args.size,
            args.rate,
            args.seconds,
            args.warmup,
            args.device,
            domain,
            args.param,
            args.transport,
            args.input_qos,
        )
        result["host"] = f"{platform.node()}, {os.cpu_count()} CPUs, python {platform.python_version()}"
        line = json.dumps(result)
        print(line, flush=True)
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            with args.json.open("a") as f:
                f.write(line + "\n")
        results.append(result)
    print()
    print(f"face_synth_node end-to-end ({platform.node()}, {os.cpu_count()} CPUs, python {platform.python_version()})")
    header = (
        f"{'faces':>5} {'views':>5} {'size':>4} {'device':>7} {'latency p50':>11} {'p95':>8} "
        f"{'node p50':>8} {'node p95':>8} {'rate Hz':>7} {'views/sent':>10} {'busy':>5} {'lost':>5}"
    )
    print(header)
    for r in results:
        print(
            f"{r['faces_found_median']:>5.0f} {r['views_per_face']:>5} {r['output_size']:>4} {r['device']:>7} "
            f"{r['latency_ms_median']:>9.1f}ms {r['latency_ms_p95']:>6.1f}ms {r['node_latency_ms_p50']:>6.1f}ms "
            f"{r['node_latency_ms_p95']:>6.1f}ms {r['sustained_rate_hz']:>7.2f} "
            f"{r['views_messages']:>5}/{r['frames_sent']:<4} {r['dropped_busy']:>5} {r['dropped_before_callback']:>5}"
        )
    print("node stages, median ms per frame (p95):")
    for r in results:
        parts = [
            f"{k} {v.get('p50', float('nan')):.1f} ({v.get('p95', float('nan')):.1f})"
            for k, v in r["node_stages_ms"].items()
        ]
        print(f"  {r['faces_found_median']:.0f} face(s): " + ", ".join(parts))
    if args.json is not None:
        print(f"appended to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
