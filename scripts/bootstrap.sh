#!/usr/bin/env bash
# One-time, idempotent set-up on Debian 12 / Ubuntu as root: QGIS from apt, then a virtual environment on
# Debian's python3.11 (the Python QGIS embeds) with system site packages and the pinned ML stack.
# Re-running is cheap: each step is skipped when its stamp is current.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MOBCLIP_VENV:-$ROOT/.venv}
log() { printf '[bootstrap] %s\n' "$*" >&2; }

if ! command -v /usr/bin/qgis_process.bin >/dev/null 2>&1 || ! /usr/bin/python3.11 -c 'import qgis.core' 2>/dev/null; then
  [ "$(id -u)" = 0 ] || { log "QGIS is missing; run this script as root (it calls apt-get install qgis)"; exit 1; }
  log "installing QGIS from apt (about 1 minute, 1.2 GB)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends qgis python3-venv >/dev/null
fi
/usr/bin/python3.11 -c 'import qgis.core' || { log "QGIS's Python bindings do not import"; exit 1; }
if ! command -v xvfb-run >/dev/null 2>&1 || ! command -v xauth >/dev/null 2>&1; then
  # the desktop tests start the real QGIS app on a virtual X server
  [ "$(id -u)" = 0 ] || { log "xvfb-run is missing: apt-get install xvfb xauth x11-utils (as root)"; exit 1; }
  log "installing Xvfb for the desktop tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends xvfb xauth x11-utils >/dev/null
fi
if ! command -v java >/dev/null 2>&1; then  # Apache Spark (the cluster graph engine) runs on the JVM
  log "installing a Java runtime for Spark"
  apt-get install -y -qq --no-install-recommends default-jre-headless >/dev/null
fi

stamp_src=$(cat "$ROOT/pyproject.toml" "$ROOT/requirements/"*.txt | sha256sum | cut -c1-16)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.mobclip-stamp" 2>/dev/null)" != "$stamp_src" ]; then
  log "creating $VENV on /usr/bin/python3.11 with system site packages (3 to 4 minutes the first time)"
  [ -x "$VENV/bin/python" ] || /usr/bin/python3.11 -m venv --system-site-packages "$VENV"
  "$VENV/bin/pip" install -q --no-cache-dir -U pip
  # one pip call, eager upgrades: stale Debian copies (attrs, scipy, pillow...) are shadowed inside the venv
  "$VENV/bin/pip" install -q --no-cache-dir -U --upgrade-strategy eager \
    -c "$ROOT/requirements/constraints-qgis.txt" -r "$ROOT/requirements/dev.txt" -e "$ROOT[all]"
  echo "$stamp_src" > "$VENV/.mobclip-stamp"
fi
"$VENV/bin/python" - <<'PY'
import importlib, sys
missing = []
for name in ("qgis.core", "osgeo.gdal_array", "numpy", "numba", "h3", "polars_h3", "torch", "torch_geometric", "lightgbm",
             "sentence_transformers", "open_clip", "rasterio", "geopandas", "geoclip.model.location_encoder",
             "duckdb", "pyspark", "mobclip_core"):
    try:
        importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - report every broken import at once
        missing.append(f"{name}: {exc}")
if missing:
    sys.exit("[bootstrap] broken environment:\n  " + "\n  ".join(missing))
PY
log "environment ready: $VENV"
