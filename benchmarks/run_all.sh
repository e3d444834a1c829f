#!/usr/bin/env bash
# Run every benchmark one after the other (they must not share the 2 cores) and keep their output in results/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export HF_HUB_OFFLINE=1 QT_QPA_PLATFORM=offscreen PATH="$PWD/.venv/bin:$PATH"
mkdir -p benchmarks/results
for b in bench_grid bench_graph bench_model bench_embed bench_qgis bench_map_tool bench_sources bench_demo bench_chicago; do
  echo "== $b"
  python -m "benchmarks.$b" 2>&1 | grep -vE "Warning|warn|adj = torch|Loading weights|^\s*$" | tee "benchmarks/results/$b.txt"
done
