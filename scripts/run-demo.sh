#!/usr/bin/env bash
# Set up on first use (QGIS from apt, venv, pinned ML stack), then run the whole pipeline on the demo city.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/bootstrap.sh"
export HF_HUB_OFFLINE=1
exec "$ROOT/.venv/bin/mobclip" demo --out "${1:-$ROOT/demo_output}"
