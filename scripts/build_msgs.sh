#!/usr/bin/env bash
# Builds this package's ROS 2 messages (msg/*.msg) into a virtualenv that holds the pip ROS 2 wheels,
# with plain CMake (no colcon, no system ROS), and installs the ament index entry, the executables
# lib/opendr_face_synth/{face_synth_node,camera_replay} (with the venv's interpreter in their first
# line, so they run without activating the venv), launch and config files into the venv prefix.
#
# Usage: bash scripts/build_msgs.sh VENV        (called by scripts/setup_env.sh)
# Idempotent: does nothing when the inputs' hash matches the last successful build and the messages import.
# Why the generated Python code goes to VENV/lib/opendr_face_synth/python and not site-packages:
# rosidl names it `opendr_face_synth`, like our own (editable) package; in site-packages it would shadow
# ours. opendr_face_synth/__init__.py adds that directory to the package's __path__ instead.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(cd "${1:?usage: build_msgs.sh VENV}" && pwd)"
PY="$VENV/bin/python"
PKG=opendr_face_synth
BUILD="$VENV/var/build/$PKG"
STAMP="$VENV/share/$PKG/.msgs-stamp"
PY_INSTALL_DIR="lib/$PKG/python"

inputs_hash() {
  (cd "$ROOT" && cat msg/*.msg CMakeLists.txt package.xml launch/* config/* scripts/build_msgs.sh \
     && "$PY" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-16
}
import_check() {
  (cd / && "$PY" -c "from $PKG.msg import SynthFaceArray; SynthFaceArray()") >/dev/null 2>&1
}

HASH="$(inputs_hash)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ] && import_check; then
  echo "[build_msgs] messages up to date"
  exit 0
fi
echo "[build_msgs] building $PKG messages into $VENV"
START=$SECONDS

# The wheels' exported CMake files name include directories of the container they were built in
# (/opt/python/cpXY-cpXY/...); CMake rejects non-existent paths. Point them at this interpreter's.
"$PY" - "$VENV" <<'EOF'
import glob, os, re, sys, sysconfig
import numpy
venv = sys.argv[1]
py_inc = sysconfig.get_paths()["include"]
np_inc = numpy.get_include()
patterns = [
    (re.compile(r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/(?:_core|core)/include"), np_inc),
    (re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+"), py_inc),
]
changed = 0
for path in glob.glob(os.path.join(venv, "share", "*", "cmake", "*.cmake")):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    new = text
    for pattern, repl in patterns:
        new = pattern.sub(lambda _m, r=repl: r, new)
    if new != text:
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
        changed += 1
print(f"[build_msgs] rewrote build-container include paths in {changed} CMake files")
EOF

GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
rm -rf "$BUILD" && mkdir -p "$(dirname "$BUILD")"
AMENT_PREFIX_PATH="$VENV" cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$VENV" \
  -DCMAKE_INSTALL_PREFIX="$VENV" \
  -DPython3_EXECUTABLE="$PY" \
  -DBUILD_TESTING=OFF \
  -DPYTHON_INSTALL_DIR="$PY_INSTALL_DIR" \
  -DOPENDR_FACE_SYNTH_INSTALL_PYTHON=OFF \
  -DOPENDR_FACE_SYNTH_WRAPPER_PYTHON="$PY" \
  >"$BUILD.configure.log" 2>&1 || { cat "$BUILD.configure.log"; echo "[build_msgs] configure failed"; exit 1; }
JOBS="$(nproc 2>/dev/null || echo 2)"
cmake --build "$BUILD" -j "$JOBS" >"$BUILD.build.log" 2>&1 \
  || { tail -50 "$BUILD.build.log"; echo "[build_msgs] build failed (full log: $BUILD.build.log)"; exit 1; }
cmake --install "$BUILD" >"$BUILD.install.log" 2>&1 \
  || { tail -30 "$BUILD.install.log"; echo "[build_msgs] install failed"; exit 1; }

if ! import_check; then
  (cd / && "$PY" -c "from $PKG.msg import SynthFaceArray") || true
  echo "[build_msgs] the generated messages do not import"
  exit 1
fi
mkdir -p "$(dirname "$STAMP")"
echo "$HASH" >"$STAMP"
echo "[build_msgs] done in $((SECONDS - START)) s"
