"""How many sensor_msgs/Image messages of a given size cross from one process to another, and how late.

Isolates the DDS transport (rmw_fastrtps_cpp) from face_synth_node: this process publishes rgb8 images
at a fixed rate (stamped when published); a child process does nothing but receive them, with the QoS
given (the node's input: best effort, keep last 1). Prints one JSON line: sent, received, the fraction
received, and stamp -> callback latency (median, p95). --transport picks the DDS set-up of both
processes (opendr_face_synth.ros.testing.TRANSPORTS): localhost (the tests' and the benchmark's default)
or large_data (Fast DDS's LARGE_DATA transports).

    .venv/bin/python bench/ros_transport_probe.py                                  # 640x480, 30 Hz, best effort
    .venv/bin/python bench/ros_transport_probe.py --transport large_data
    .venv/bin/python bench/ros_transport_probe.py --width 1568 --height 1344 --reliable --depth 10   # ~6.3 MB
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np


def _qos(reliable: bool, depth: int):
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    reliability = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability)


def receive(args: argparse.Namespace) -> int:
    """Child: count messages until SIGINT/SIGTERM, then print {received, latencies} as JSON."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import Image

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("transport_probe_sub")
    latencies: list[float] = []

    def on_image(msg: Image) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        latencies.append((time.time_ns() - stamp) / 1e6)

    node.create_subscription(Image, "/probe/image", on_image, _qos(args.reliable, args.depth))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    print("ready", flush=True)
    while not stop.is_set():
        executor.spin_once(timeout_sec=0.1)
    print(json.dumps({"received": len(latencies), "latencies_ms": latencies}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def publish(args: argparse.Namespace) -> int:
    import rclpy
    from sensor_msgs.msg import Image

    from opendr_face_synth.ros.testing import isolated_domain, localhost_env, wait_until

    domain = isolated_domain(7)
    child = subprocess.Popen(
        [sys.executable, __file__, "--role", "sub", *sys.argv[1:]],
        env=localhost_env(domain, transport=args.transport),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    if child.stdout.readline().strip() != "ready":
        raise RuntimeError("the receiving process did not start")
    os.environ.update(localhost_env(domain, transport=args.transport))
    rclpy.init(domain_id=domain)
    node = rclpy.create_node("transport_probe_pub")
    pub = node.create_publisher(Image, "/probe/image", _qos(args.reliable, args.depth))
    wait_until(lambda: pub.get_subscription_count() > 0, 30, "the receiver to match")
    time.sleep(0.5)
    msg = Image(height=args.height, width=args.width, encoding="rgb8", step=args.width * 3)
    msg.data = np.random.default_rng(0).integers(0, 255, args.height * args.width * 3, dtype=np.uint8).tobytes()
    sent, period, t_next = 0, 1.0 / args.rate, time.monotonic()
    t_end = t_next + args.seconds
    while time.monotonic() < t_end:
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 1_000_000_000)
        pub.publish(msg)
        sent += 1
        t_next += period
        time.sleep(max(0.0, t_next - time.monotonic()))
    time.sleep(1.0)
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=30)
    node.destroy_node()
    rclpy.try_shutdown()
    got = json.loads(out.strip().splitlines()[-1])
    lat = np.array(got["latencies_ms"]) if got["latencies_ms"] else np.array([float("nan")])
    result = {
        "bytes": len(msg.data),
        "rate_hz": args.rate,
        "qos": ("reliable" if args.reliable else "best_effort") + f", depth {args.depth}",
        "transport": args.transport,
        "sent": sent,
        "received": got["received"],
        "received_fraction": got["received"] / max(sent, 1),
        "latency_ms_median": float(np.median(lat)),
        "latency_ms_p95": float(np.percentile(lat, 95)),
    }
    print(json.dumps(result), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--reliable", action="store_true", help="reliable QoS (default: best effort, like the node)")
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--transport", choices=("localhost", "large_data"), default="localhost")
    parser.add_argument("--role", choices=("pub", "sub"), default="pub", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return receive(args) if args.role == "sub" else publish(args)


if __name__ == "__main__":
    raise SystemExit(main())
