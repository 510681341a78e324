#!/usr/bin/env bash
# Builds neural_renderer (PyPI sdist neural-renderer-pytorch 1.1.3, the seed's CUDA renderer) for the current
# python / torch / CUDA and installs it. The sdist does not compile against current torch as published: its
# C++ uses AT_CHECK (removed from torch), passes Tensor.type() to AT_DISPATCH_* (which now takes a ScalarType)
# and calls the deprecated Tensor.data<T>(); this script patches those before building. See
# docs/neural_renderer.md.
#
# Usage:
#   bash scripts/build_neural_renderer.sh [--sdist FILE_OR_DIR] [--target DIR]
#       build and install (pip install --no-build-isolation; --target DIR: into DIR, then use PYTHONPATH=DIR)
#   bash scripts/build_neural_renderer.sh --download DIR
#       only fetch the sdist into DIR (works without CUDA, e.g. to carry it to an offline GPU machine)
# Environment: PYTHON (default python3; its torch must be a CUDA build with nvcc reachable, CUDA_HOME or
# PATH), TORCH_CUDA_ARCH_LIST (default: the visible GPUs), MAX_JOBS (parallel compile jobs).
set -euo pipefail

VERSION=1.1.3
PY="${PYTHON:-python3}"
SDIST=""
TARGET=""
DOWNLOAD=""
while [ $# -gt 0 ]; do
  case "$1" in
    --sdist) SDIST="$2"; shift 2 ;;
    --target) TARGET="$2"; shift 2 ;;
    --download) DOWNLOAD="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

download() {  # $1: destination folder
  # pip prepares an sdist's metadata even for 'download', and this setup.py imports torch's CUDAExtension,
  # which fails without CUDA; a stub of that one module lets the metadata step pass (nothing is built).
  mkdir -p "$WORK/stub/torch/utils" "$1"
  : > "$WORK/stub/torch/__init__.py"
  : > "$WORK/stub/torch/utils/__init__.py"
  cat > "$WORK/stub/torch/utils/cpp_extension.py" <<'EOF'
from setuptools import Extension
from setuptools.command.build_ext import build_ext as BuildExtension


def CUDAExtension(name, sources, **kwargs):
    return Extension(name, sources)
EOF
  PYTHONPATH="$WORK/stub" "$PY" -m pip download --no-binary :all: --no-deps --no-build-isolation \
    -d "$1" "neural-renderer-pytorch==$VERSION"
}

if [ -n "$DOWNLOAD" ]; then
  download "$DOWNLOAD"
  exit 0
fi

if [ -z "$SDIST" ]; then
  download "$WORK/dl"
  SDIST="$WORK/dl"
fi
if [ -d "$SDIST" ]; then
  SDIST="$(find "$SDIST" -maxdepth 1 -name "neural_renderer_pytorch-$VERSION.tar.gz" | head -n 1)"
fi
[ -f "$SDIST" ] || { echo "no neural_renderer_pytorch-$VERSION.tar.gz found (--sdist)" >&2; exit 1; }

echo "[nr] unpacking $SDIST"
tar -xzf "$SDIST" -C "$WORK"
SRC="$WORK/neural_renderer_pytorch-$VERSION"
CSRC=("$SRC"/neural_renderer/cuda/*.cpp "$SRC"/neural_renderer/cuda/*.cu)

echo "[nr] patching for current torch"
sed -i \
  -e 's/\bAT_CHECK(/TORCH_CHECK(/g' \
  -e 's/\.type()\.is_cuda()/.is_cuda()/g' \
  -e 's/AT_DISPATCH_FLOATING_TYPES(\([A-Za-z_][A-Za-z0-9_]*\)\.type(),/AT_DISPATCH_FLOATING_TYPES(\1.scalar_type(),/g' \
  -e 's/\.data<\([A-Za-z0-9_]*\)>()/.data_ptr<\1>()/g' \
  "${CSRC[@]}"
if grep -nE '\bAT_CHECK\b|\.type\(\)|\.data<' "${CSRC[@]}"; then
  echo "[nr] the patch left the lines above unchanged: is this really version $VERSION?" >&2
  exit 1
fi

echo "[nr] building with $("$PY" -c 'import sys, torch; print(sys.executable, "torch", torch.__version__, "CUDA", torch.version.cuda)')"
"$PY" -c 'import torch, sys; sys.exit(0 if torch.version.cuda else "torch is not a CUDA build: neural_renderer needs one")'
args=(--no-build-isolation --no-deps --no-index --no-cache-dir)
if [ -n "$TARGET" ]; then
  TARGET="$(mkdir -p "$TARGET" && cd "$TARGET" && pwd)"  # absolute: pip runs in the unpacked source
  args+=(--target "$TARGET" --upgrade)
fi
(cd "$SRC" && "$PY" -m pip install "${args[@]}" .)

echo "[nr] checking the import"
(cd "$WORK" && PYTHONPATH="${TARGET:+$TARGET${PYTHONPATH:+:}}${PYTHONPATH:-}" "$PY" -c \
  'import neural_renderer, neural_renderer.cuda.rasterize as r; print("[nr] ok:", neural_renderer.__file__)')
