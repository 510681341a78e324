"""Fetch (here) the wheels that bench/device_node_env.sh installs on the GPU machine, trimmed to travel.

The GPU machine has no network and no ROS or mediapipe; its Python 3.12 already holds torch, numpy,
opencv-python-headless, scipy, scikit-image, PyYAML, matplotlib, absl-py, attrs, flatbuffers, packaging,
pyparsing, python-dateutil and typing-extensions. What it lacks: the ROS 2 kilted wheels of
requirements-ros.txt with their whole closure (the ``ros-*`` pins of constraints.txt; no rosbags/mcap),
what the message build imports (catkin-pkg, docutils, lark-parser; empy is an sdist, see below),
mediapipe 0.10.14 and the protobuf 4.25 it needs. All of it must fit the 64 MiB that travels with a call,
so two wheels are trimmed (their RECORD rewritten to match):

* mediapipe: the .tflite models of solutions the engine never runs (pose, hands, palm, iris, holistic)
  and the tasks' tests; kept: all code and graphs, the face detection, face mesh (with attention) and
  selfie segmentation models;
* ros-fastdds: ships libfastdds three times (.so, .so.3.2 = SONAME, .so.3.2.2), 19 MB each unpacked;
  only the SONAME file is kept and device_node_env.sh links the other two names to it.

empy 4.2.1 (rosidl's templates) has no wheel: it is built here into one with ``pip wheel``.

For a machine without a C++ compiler or CMake, ``--msgs-from VENV`` also packs the message build of a
venv that device_node_env.sh made here (with a Python 3.12, at the VENV path the GPU machine uses) into
.whl/ofs_msgs_prebuilt.tar.gz; device_node_env.sh unpacks it only where it cannot build.

    .venv/bin/python bench/device_node_wheels.py            # -> .whl/ (git-ignored), prints the sizes
    BASE_PY=python3.12 bash bench/device_node_env.sh /tmp/ofs_node_venv     # dry run here (no torch needed)
    .venv/bin/python bench/device_node_wheels.py --msgs-from /tmp/ofs_node_venv
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
EXTRA = ("catkin-pkg", "docutils", "lark-parser", "protobuf", "mediapipe")
UNUSED_SOLUTIONS = (
    "pose_landmark",
    "pose_detection",
    "hand_landmark",
    "palm_detection",
    "iris_landmark",
    "holistic_landmark",
)
MEDIAPIPE_UNUSED_MODELS = tuple(f"mediapipe/modules/{m}/" for m in UNUSED_SOLUTIONS)
FASTDDS_DROP = ("/data/lib/libfastdds.so", "/data/lib/libfastdds.so.3.2.2")


def pins() -> list[str]:
    """``name==version`` of every ros-* package and of EXTRA, from constraints.txt."""
    wanted = []
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name = line.split("==")[0].strip().lower()
        if "==" in line and (name.startswith("ros-") or name in EXTRA):
            wanted.append(line.strip())
    return wanted


def mediapipe_unused(name: str) -> bool:
    return (name.startswith(MEDIAPIPE_UNUSED_MODELS) and name.endswith(".tflite")) or name.startswith(
        "mediapipe/tasks/python/test/"
    )


def trim(wheel: Path, drop) -> int:
    """Rewrite ``wheel`` without the members ``drop(name)`` selects; bytes saved."""
    before = wheel.stat().st_size
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
        record_name = next(n for n in src.namelist() if n.endswith(".dist-info/RECORD"))
        kept = [i for i in src.infolist() if not drop(i.filename) and i.filename != record_name]
        records = []
        for info in kept:
            data = src.read(info)
            dst.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            records.append(f"{info.filename},sha256={digest},{len(data)}")
        records.append(f"{record_name},,")
        dst.writestr(src.getinfo(record_name), "\n".join(records) + "\n")
    tmp.replace(wheel)
    return before - wheel.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=ROOT / ".whl")
    parser.add_argument("--msgs-from", type=Path, default=None, help="venv whose message build to pack as well")
    args = parser.parse_args(argv)
    args.dest.mkdir(parents=True, exist_ok=True)
    platform_args = [a for p in PLATFORMS for a in ("--platform", p)]
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run(
        [*pip, "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
         *platform_args, "-d", str(args.dest), *pins()],
        check=True,
    )  # fmt: skip
    empy = [line.strip() for line in (ROOT / "constraints.txt").read_text().splitlines() if line.startswith("empy==")]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(args.dest), *empy], check=True)
    for wheel in args.dest.glob("mediapipe-*.whl"):
        saved = trim(wheel, mediapipe_unused)
        print(f"trimmed {wheel.name}: -{saved / 2**20:.1f} MiB")
    for wheel in args.dest.glob("ros_fastdds-*.whl"):
        saved = trim(wheel, lambda name: name.endswith(FASTDDS_DROP))
        print(f"trimmed {wheel.name}: -{saved / 2**20:.1f} MiB")
    if args.msgs_from is not None:
        manifest = args.msgs_from.resolve() / "var/build/opendr_face_synth/install_manifest.txt"
        packed = args.dest / "ofs_msgs_prebuilt.tar.gz"
        with tarfile.open(packed, "w:gz") as tar:
            for line in manifest.read_text().splitlines():
                if line.strip():
                    tar.add(line, arcname=line.lstrip("/"), recursive=False)
        print(f"packed the message build of {args.msgs_from} into {packed} ({packed.stat().st_size / 2**20:.2f} MiB)")
    wheels = sorted(args.dest.glob("*.whl"), key=lambda w: -w.stat().st_size)
    for wheel in wheels[:6]:
        print(f"{wheel.stat().st_size / 2**20:7.2f} MiB  {wheel.name}")
    total = sum(w.stat().st_size for w in wheels)
    print(f"{len(wheels)} wheels, {total / 2**20:.1f} MiB in {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
