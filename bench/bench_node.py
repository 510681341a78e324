"""End-to-end benchmark of face_synth_node: input stamp -> views received, and the sustained rate.

A 640x480 rgb8 stream at 30 Hz (the bundled sample with 1 or 3 faces, stamped when published) goes
to face_synth_node running as its own process, exactly as deployed; this process subscribes to
``~/views``. Reported per configuration:

* latency (ms) from the input frame's header stamp to the views message's arrival here, median and
  p95 (the node's own stamp-to-publish figure from /diagnostics is printed beside it);
* sustained rate: views messages per second over the measuring window (after a warm-up), and how many
  input frames the node skipped because it was busy (it always works on the newest frame).

    .venv/bin/python bench/bench_node.py --faces 1 3 --views 8 --seconds 30 --device cpu
    .venv/bin/python bench/bench_node.py --device cuda --json out/bench_node_gpu.json

Isolated on its own ROS domain with localhost discovery.
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


def run_one(faces: int, views: int, size: int, rate: float, seconds: float, warmup: float, device: str, domain: int):
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
    ]  # fmt: skip
    node = subprocess.Popen(
        node_cmd, env=localhost_env(domain), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(node.stdout), daemon=True).start()  # type: ignore[arg-type]
    ros = RosHarness(domain, threads=1)
    arrivals: list[tuple[int, int, int]] = []  # (arrival ns, stamp ns, faces)
    diag: list[dict[str, str]] = []
    lock = threading.Lock()

    def on_views(msg: SynthFaceArray) -> None:
        now = time.time_ns()
        with lock:
            arrivals.append((now, msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec, len(msg.faces)))

    def on_diag(msg: DiagnosticArray) -> None:
        values = diagnostics_values(msg)
        if values:
            diag.append(values)

    ros.probe.create_subscription(SynthFaceArray, "/face_synth_node/views", on_views, QoSProfile(depth=50))
    ros.probe.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    sensor_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
    pub = ros.probe.create_publisher(Image, "/bench/image", sensor_qos)
    frames = [array_to_image(sample_frame(i, faces=faces), "rgb8") for i in range(0, 60, 6)]
    try:
        wait_until(lambda: pub.get_subscription_count() > 0 or node.poll() is not None, 180, "the node to subscribe")
        if node.poll() is not None:
            raise RuntimeError("face_synth_node exited:\n" + "".join(log[-20:]))
        stop = threading.Event()
        sent = [0]

        def stream() -> None:
            period = 1.0 / rate
            t_next = time.monotonic()
            while not stop.is_set():
                msg = frames[sent[0] % len(frames)]
                now = time.time_ns()
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
                msg.header.frame_id = "bench_camera"
                pub.publish(msg)
                sent[0] += 1
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
    with lock:
        window = [a for a in arrivals if t_measure <= a[0] <= t_end]
    if not window:
        tail = "".join(line for line in log[-30:] if "inference_feedback" not in line)
        raise RuntimeError(f"no views message in the measuring window ({len(arrivals)} in total); node log:\n{tail}")
    latency = np.array([(a - s) / 1e6 for a, s, _ in window])
    face_counts = [f for _, _, f in window]
    last = diag[-1] if diag else {}
    return {
        "faces_in_frame": faces,
        "faces_found_median": float(np.median(face_counts)),
        "views_per_face": views,
        "yaws": yaws,
        "output_size": size,
        "input_rate_hz": rate,
        "device": last.get("device", device),
        "measured_s": (t_end - t_measure) / 1e9,
        "views_messages": len(window),
        "sustained_rate_hz": len(window) / ((t_end - t_measure) / 1e9),
        "latency_ms_median": float(np.median(latency)),
        "latency_ms_p95": float(np.percentile(latency, 95)),
        "node_latency_ms_p50": float(last.get("latency_ms_p50", "nan")),
        "node_latency_ms_p95": float(last.get("latency_ms_p95", "nan")),
        "node_processing_ms_p50": float(last.get("processing_ms_p50", "nan")),
        "frames_sent": sent[0],
        "frames_received_by_node": int(last.get("frames_received", 0)),
        "dropped_frames": int(last.get("dropped_frames", 0)),
        "node_exit_code": node.returncode,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=int, nargs="+", default=[1, 3], help="faces per frame (sample), one run each")
    parser.add_argument("--views", type=int, default=8, help="views per face (yaws spread over [-60, 60])")
    parser.add_argument("--size", type=int, default=256, help="output view size")
    parser.add_argument("--rate", type=float, default=30.0, help="input frame rate, Hz")
    parser.add_argument("--seconds", type=float, default=30.0, help="measuring window per run")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds ignored at the start of each run")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    results = []
    for index, faces in enumerate(args.faces):
        domain = (os.getpid() % 20) * 10 + 8 + index % 2
        what = f"{faces} face(s) x {args.views} views, {args.size} px, {args.rate:g} Hz, device {args.device}"
        print(f"[bench] {what} ...", flush=True)
        results.append(run_one(faces, args.views, args.size, args.rate, args.seconds, args.warmup, args.device, domain))
    print()
    print(f"face_synth_node end-to-end ({platform.node()}, {os.cpu_count()} CPUs, python {platform.python_version()})")
    header = (
        f"{'faces':>5} {'views':>5} {'size':>4} {'device':>7} {'latency p50':>11} {'p95':>8} "
        f"{'node p50':>8} {'node p95':>8} {'rate Hz':>7} {'dropped/sent':>12}"
    )
    print(header)
    for r in results:
        print(
            f"{r['faces_found_median']:>5.0f} {r['views_per_face']:>5} {r['output_size']:>4} {r['device']:>7} "
            f"{r['latency_ms_median']:>9.1f}ms {r['latency_ms_p95']:>6.1f}ms {r['node_latency_ms_p50']:>6.1f}ms "
            f"{r['node_latency_ms_p95']:>6.1f}ms {r['sustained_rate_hz']:>7.2f} "
            f"{r['dropped_frames']:>7}/{r['frames_sent']:<4}"
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": sys.argv, "results": results}, indent=2))
        print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
