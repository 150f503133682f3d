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
rm -rf "$WS"; mkdir -p "$(dirname "$WS")"
echo "[run] nvflare simulator jobs/fed_heart_disease_fedavg -w $WS -t 4   (log: $WS/server/log.txt)"
# -t 4 runs the 4 sites as 4 live processes; without it NVFlare swaps one process between sites
# (same results, about 10x slower). One torch thread per site.
OMP_NUM_THREADS=1 nvflare simulator jobs/fed_heart_disease_fedavg -w "$WS" -t 4 > "$WS.log" 2>&1 || {
  echo "simulator failed; last lines of $WS.log:"; tail -20 "$WS.log"; exit 1; }
flamby-flare results "$WS"
