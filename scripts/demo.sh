#!/usr/bin/env bash
# The README's "main job": set up the pip-based environment (first run: a few minutes), then run the
# ROS 2 demo without a camera: camera_replay publishes the bundled sample, face_synth_node synthesises
# the views and records a bag, SIGINT stops both after a few seconds, the bag is exported as a dataset
# to ./out/dataset and a summary is printed. Extra arguments go to the demo runner, e.g.
#   bash scripts/demo.sh --seconds 20 --faces 3 --device cpu
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${OPENDR_FACE_SYNTH_VENV:-$ROOT/.venv}"
bash "$ROOT/scripts/setup_env.sh"
exec "$VENV/bin/python" -m opendr_face_synth.ros.demo_runner --out "$PWD/out" "$@"
