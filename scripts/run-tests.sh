#!/usr/bin/env bash
# Set up on first use, then run the whole test suite inside QGIS's Python (PyQGIS and qgis_process.bin).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/bootstrap.sh"
export HF_HUB_OFFLINE=1 QT_QPA_PLATFORM=offscreen MOBCLIP_REQUIRE_QGIS=1
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/runtime-$(id -u)}
mkdir -p -m 0700 "$XDG_RUNTIME_DIR"
# qgis_process.bin's embedded Python takes its site-packages from the first python3 on PATH
export PATH="$ROOT/.venv/bin:$PATH"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest -p no:cacheprovider "$@"
