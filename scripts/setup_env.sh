#!/usr/bin/env bash
# Creates ./.venv with pinned dependencies, installs this package (editable) and builds the ROS 2
# message package into the venv. Idempotent: a second run only checks and returns quickly.
# Usage: bash scripts/setup_env.sh        (source nothing; scripts call .venv/bin/python directly)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${OPENDR_FACE_SYNTH_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.setup-stamp"

need_apt=()
command -v cmake >/dev/null || need_apt+=(cmake)
command -v g++ >/dev/null || need_apt+=(g++)
command -v ninja >/dev/null || need_apt+=(ninja-build)
ldconfig -p 2>/dev/null | grep -q 'libGL.so.1' || need_apt+=(libgl1)
ldconfig -p 2>/dev/null | grep -q 'libglib-2.0.so.0' || need_apt+=(libglib2.0-0)
"$PY" -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "[setup] installing system packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Re-install only when a requirements file changed since the last successful set-up.
HASH="$(cat "$ROOT"/requirements*.txt "$ROOT"/constraints.txt "$ROOT"/setup.py "$ROOT"/setup.cfg | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtualenv $VENV"
  "$PY" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$HASH" ]; then
  echo "[setup] installing pinned Python dependencies (first run: about a minute)"
  "$VENV/bin/python" -m pip install -q --upgrade pip 'setuptools>=77' wheel
  "$VENV/bin/python" -m pip install -q -c "$ROOT/constraints.txt" \
      -r "$ROOT/requirements.txt" -r "$ROOT/requirements-ros.txt" -r "$ROOT/requirements-dev.txt"
  "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$ROOT"
  echo "$HASH" > "$STAMP"
fi

if [ -f "$ROOT/scripts/build_msgs.sh" ]; then
  bash "$ROOT/scripts/build_msgs.sh" "$VENV"
fi
echo "[setup] ready: $VENV"
