#!/usr/bin/env bash
# One command from a fresh clone: venv + install, then the whole test suite (real data from the mirror:
# FLAMBY_FLARE_MIRROR, default ../shared/mirror beside the repository).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/scripts/setup_venv.sh"
cd "$REPO"
export OMP_NUM_THREADS=1
exec python -m pytest "$@"
