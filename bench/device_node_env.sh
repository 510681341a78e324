#!/usr/bin/env bash
# Set-up for bench/bench_node.py on the GPU machine: no network, no ROS, no mediapipe, and a Python 3.12
# (the `python3` on the PATH, /opt/torch/.venv) that holds torch, numpy, opencv-python-headless, scipy,
# scikit-image, PyYAML, matplotlib and friends. This
#  1. makes a venv from that Python that also sees its packages (a .pth calling site.addsitedir, appended
#     after the venv's own: `venv --system-site-packages` would see the system Python's instead);
#  2. installs the carried wheels offline (.whl/, made here by bench/device_node_wheels.py: the ROS 2
#     kilted wheels, mediapipe, protobuf 4.25, catkin-pkg, empy, lark-parser, docutils) into it;
#  3. puts this checkout on the venv's path (like `pip install -e .`, without a build);
#  4. builds the package's messages into the venv (scripts/build_msgs.sh; the venv is the ROS prefix),
#     or, where this machine has no C++ compiler or CMake, unpacks the same build made elsewhere at the
#     same VENV path (.whl/ofs_msgs_prebuilt.tar.gz, when carried);
#  5. prints the versions the benchmark runs with.
# Then: $VENV/bin/python bench/bench_node.py --device cuda ...
#
# Usage: bash bench/device_node_env.sh [VENV]        (default /tmp/ofs_node_venv; starts from scratch)
#        BASE_PY=/path/to/python3.12 bash bench/device_node_env.sh ...   (another base interpreter)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-/tmp/ofs_node_venv}"
BASE_PY="${BASE_PY:-$(command -v python3)}"
WHEELS="$ROOT/.whl"
START=$SECONDS

# The base interpreter's bin holds its cmake and ninja (pip packages) on the GPU machine.
export PATH="$(dirname "$BASE_PY"):$PATH"
mapfile -t BASE_SITES < <("$BASE_PY" -c 'import sysconfig; p = sysconfig.get_paths(); print(p["purelib"]); print(p["platlib"])' | sort -u)
ls "$WHEELS"/*.whl >/dev/null

echo "[device_env] venv $VENV from $BASE_PY ($("$BASE_PY" --version)), sees ${BASE_SITES[*]}"
rm -rf "$VENV"
"$BASE_PY" -m venv --without-pip "$VENV"
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

# Install before the base packages become visible: pip then sees an empty venv and touches nothing else.
PIP_ARGS=(install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check)
"$BASE_PY" -m pip --python "$VENV/bin/python" "${PIP_ARGS[@]}" "$WHEELS"/*.whl
echo "[device_env] installed $(ls "$WHEELS"/*.whl | wc -l) wheels ($((SECONDS - START)) s)"

# ros-fastdds is carried with one copy of libfastdds (its SONAME); the other two names point to it.
for name in libfastdds.so libfastdds.so.3.2.2; do
  [ -e "$VENV/lib/$name" ] || ln -s libfastdds.so.3.2 "$VENV/lib/$name"
done

for dir in "${BASE_SITES[@]}"; do
  echo "import site; site.addsitedir('$dir')"
done >"$SITE/zz_base_python.pth"
echo "$ROOT" >"$SITE/opendr_face_synth_checkout.pth"

CXX_FOUND="$(command -v c++ || command -v g++ || true)"
PREBUILT="$WHEELS/ofs_msgs_prebuilt.tar.gz"
if [ -n "$CXX_FOUND" ] && command -v cmake >/dev/null; then
  bash "$ROOT/scripts/build_msgs.sh" "$VENV"
elif [ -f "$PREBUILT" ]; then
  echo "[device_env] no C++ compiler or CMake here: unpacking $PREBUILT (built at the same VENV path)"
  tar -xzf "$PREBUILT" -C /
  (cd / && "$VENV/bin/python" -c 'from opendr_face_synth.msg import SynthFaceArray; SynthFaceArray()')
else
  echo "[device_env] no C++ compiler or CMake here and no $PREBUILT: cannot build the messages" >&2
  exit 1
fi

echo "[device_env] ready in $((SECONDS - START)) s: $VENV/bin/python"
echo "[device_env] cmake: $(cmake --version 2>/dev/null | head -1 || echo none); c++: ${CXX_FOUND:-none}"
cd / && "$VENV/bin/python" - <<'EOF'
import importlib.util
import sys

import cv2
import google.protobuf
import mediapipe
import numpy
import rclpy
from opendr_face_synth.msg import SynthFaceArray  # noqa: F401

import opendr_face_synth

torch_text = "torch: not installed"
if importlib.util.find_spec("torch") is not None:
    import torch

    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    torch_text = f"torch {torch.__version__} ({cuda})"
print(f"[device_env] python {sys.version.split()[0]}, {torch_text}, numpy {numpy.__version__}, cv2 {cv2.__version__}, "
      f"mediapipe {mediapipe.__version__}, protobuf {google.protobuf.__version__}, rclpy from {rclpy.__file__}, "
      f"opendr_face_synth from {opendr_face_synth.__file__}")
EOF
