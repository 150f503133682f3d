#!/usr/bin/env bash
# One command from a fresh clone: venv + install, fetch Fed-Heart-Disease, run the FedAvg job in NVFlare's
# simulator (4 hospitals, FLamby's settings) and print the per-site results.
#   FLAMBY_FLARE_MIRROR=DIR   take the data from a local mirror instead of the network
#   FLAMBY_FLARE_SEED=N       run seed (default 42)
#   FLAMBY_FLARE_DATA=DIR     data root (default ~/.cache/flamby_flare)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/scripts/setup_venv.sh"
cd "$REPO"
flamby-flare download fed_heart_disease
WS="$REPO/workspace/fed_heart_disease_fedavg"
rm -rf "$WS" "$WS.log"
mkdir -p "$(dirname "$WS")"
echo "[run] flamby-flare simulator jobs/fed_heart_disease_fedavg -w $WS   (full log: $WS.log)"
# = nvflare simulator jobs/fed_heart_disease_fedavg -w "$WS" -t 4: the 4 sites as 4 live processes (NVFlare's
# default, one process swapped between the sites at every task, gives the same result about twice as slowly).
set +e
OMP_NUM_THREADS=1 flamby-flare simulator jobs/fed_heart_disease_fedavg -w "$WS" 2>&1 | tee "$WS.log" \
  | grep --line-buffered -oE "round [0-9]+/[0-9]+: train loss [0-9.a-z]+"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  reason=$(grep -m1 -oE "(FATAL_SYSTEM_ERROR: |Exception in model controller run: ).*" "$WS.log" || true)
  echo "error: the simulator run failed (exit $status)${reason:+: ${reason#*: }}; full log: $WS.log" >&2
  exit 1
fi
flamby-flare results "$WS"
