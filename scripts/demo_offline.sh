#!/usr/bin/env bash
# Offline main job: multi-view faces of the bundled sample photo into ./out/ (with a contact sheet).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh" >&2
cd "$ROOT"
IN="$ROOT/build/sample_input"
.venv/bin/python -m opendr_face_synth.io.samples "$IN" >/dev/null
exec .venv/bin/python -m opendr_face_synth.cli.main generate "$IN" "$ROOT/out" --yaw -60,-30,0,30,60 --pitch -20,20 "$@"
