"""The demo without `ros2 launch` (not installable from pip): camera_replay -> face_synth_node
(recording) for a few seconds, SIGINT, then the bag exported as a dataset and a summary printed.

    python -m opendr_face_synth.ros.demo_runner --seconds 12 --out out

Both nodes run as child processes of this interpreter, exactly as `ros2 launch
opendr_face_synth face_synth_demo.launch.py` starts them on a ROS machine. The run is kept on this
machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST unless set) and on its own ROS_DOMAIN_ID unless set.
Exit status: 0 when the bag was exported with at least one view, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

TOPIC = "/face_synth_demo/image"
READY_MARK = "ready on "


def _default_params_file() -> Path | None:
    """config/face_synth.yaml from the install prefix (pip set-up / colcon) or the source tree."""
    for candidate in (
        Path(sys.prefix) / "share" / "opendr_face_synth" / "config" / "face_synth.yaml",
        Path(__file__).resolve().parents[2] / "config" / "face_synth.yaml",
    ):
        if candidate.is_file():
            return candidate
    return None


def _pump(stream: IO[str], prefix: str, ready: threading.Event, lines: list[str]) -> None:
    """Echo a child's output with a prefix; note when the node says it is ready."""
    for line in stream:
        lines.append(line)
        if READY_MARK in line:
            ready.set()
        if "inference_feedback_manager" in line or "GetPrototype" in line or "warnings.warn(" in line:
            continue  # mediapipe / protobuf start-up noise
        sys.stdout.write(f"{prefix} {line}")
        sys.stdout.flush()


def _start(
    cmd: list[str], prefix: str, env: dict[str, str]
) -> tuple[subprocess.Popen[str], threading.Event, list[str]]:
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    ready, lines = threading.Event(), []
    assert proc.stdout is not None
    threading.Thread(target=_pump, args=(proc.stdout, prefix, ready, lines), daemon=True).start()
    return proc, ready, lines


def _interrupt(proc: subprocess.Popen[str], timeout: float) -> int:
    """SIGINT, then wait; SIGKILL only if it does not stop in time (reported as -9)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo_runner", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="how long to record once the node is ready")
    parser.add_argument("--source", default="sample", help="'sample', an image folder or a video file")
    parser.add_argument("--rate", type=float, default=10.0, help="replay rate, frames per second")
    parser.add_argument("--faces", type=int, default=1, help="faces in the sample frames (1-6)")
    parser.add_argument("--out", type=Path, default=Path("out"), help="bags go to OUT/bags, the dataset to OUT/dataset")
    parser.add_argument("--params-file", type=Path, default=None, help="node parameters (default: face_synth.yaml)")
    parser.add_argument("--device", default=None, help="override the config's device (auto, cpu, cuda, cuda:N)")
    parser.add_argument("--storage", default=None, choices=("mcap", "sqlite3"), help="override the bag storage")
    parser.add_argument("--no-record-input", action="store_true", help="record the views only, not the frames")
    parser.add_argument("--start-timeout", type=float, default=120.0, help="seconds to wait for the node to be ready")
    args = parser.parse_args(argv)

    params_file = args.params_file or _default_params_file()
    out = args.out.resolve()
    bag_dir = out / "bags"
    env = dict(os.environ)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    env["PYTHONUNBUFFERED"] = "1"

    node_cmd = [sys.executable, "-m", "opendr_face_synth.ros.node", "--ros-args", "-r", f"image:={TOPIC}"]
    if params_file is not None:
        node_cmd += ["--params-file", str(params_file)]
    # camera_replay publishes reliably: a 640x480 frame (0.9 MB) sent best-effort between processes is
    # mostly lost with Fast DDS's default transports on localhost (docs/ros.md, "Transport").
    node_cmd += ["-p", "record:=true", "-p", f"bag_dir:={bag_dir}", "-p", "qos_reliability:=reliable"]
    if not args.no_record_input:  # the export's contact sheets then show each face's crop
        node_cmd += ["-p", "record_input:=true"]
    if args.device:
        node_cmd += ["-p", f"device:={args.device}"]
    if args.storage:
        node_cmd += ["-p", f"bag_storage:={args.storage}"]
    replay_cmd = [
        sys.executable, "-m", "opendr_face_synth.ros.camera_replay", "--ros-args", "-r", f"image:={TOPIC}",
        "-p", f"source:={args.source}", "-p", f"rate:={float(args.rate)}", "-p", f"sample_faces:={args.faces}",
    ]  # fmt: skip

    before = set(bag_dir.glob("face_synth_*")) if bag_dir.is_dir() else set()
    print(f"[demo] ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}, params {params_file or '(node defaults)'}, bags in {bag_dir}")
    node, node_ready, node_lines = _start(node_cmd, "[node]  ", env)
    started = time.monotonic()
    while not node_ready.wait(0.5):
        if node.poll() is not None or time.monotonic() - started > args.start_timeout:
            _interrupt(node, 10)
            print(f"[demo] face_synth_node did not start (exit {node.returncode}):\n{''.join(node_lines[-20:])}")
            return 1
    replay, _, _ = _start(replay_cmd, "[replay]", env)
    print(f"[demo] recording {args.seconds:.0f} s of {args.source} at {args.rate:g} Hz ...")
    time.sleep(args.seconds)
    node_rc = _interrupt(node, 60)
    replay_rc = _interrupt(replay, 10)
    print(f"[demo] face_synth_node exited with {node_rc}, camera_replay with {replay_rc}")

    bags = sorted(set(bag_dir.glob("face_synth_*")) - before)
    if not bags:
        print(f"[demo] no bag was written in {bag_dir}")
        return 1
    bag = bags[-1]
    from ..cli.export_bag import ExportError, export_bag

    dataset = out / "dataset"
    try:
        summary = export_bag(bag, dataset)
    except ExportError as err:
        print(f"[demo] export failed: {err}")
        return 1
    size_mb = sum(p.stat().st_size for p in bag.iterdir() if p.is_file()) / 1e6
    print()
    print("=== opendr_face_synth demo summary ===")
    print(f"bag:      {bag} ({size_mb:.1f} MB)")
    print(f"dataset:  {dataset}")
    print(
        f"          {summary.frames} frames, {summary.faces} faces, {summary.views} views, "
        f"{len(summary.tracks)} track(s): {', '.join(f'track_{t:04d}' for t in sorted(summary.tracks))}"
    )
    print(f"          metadata: {dataset / 'metadata.csv'}; contact sheets: {dataset / 'contact_sheets'}")
    ok = summary.views > 0 and node_rc == 0
    print("result:   OK" if ok else "result:   FAILED (no views exported or the node did not exit cleanly)")
    return 0 if ok else 1


def main() -> int:
    return run()


if __name__ == "__main__":
    raise SystemExit(main())
