#!/usr/bin/env bash
# Whole test suite: set-up (idempotent), lint, then pytest. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh" >&2
cd "$ROOT"
.venv/bin/ruff check opendr_face_synth test bench launch
exec .venv/bin/python -m pytest -q -rfEs "$@"
