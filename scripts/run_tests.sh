#!/usr/bin/env bash
# One command from a fresh clone: venv + install, then the whole test suite (real data from the mirror:
# FLAMBY_FLARE_MIRROR, default ../shared/mirror beside the repository).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/scripts/setup_venv.sh"
cd "$REPO"
export OMP_NUM_THREADS=1
# Three pytest-xdist workers on a 2-core machine: much of an end-to-end test is waiting (process start-up,
# polling, a lost site's timeout), so a third worker fills the gaps; a module runs whole in one worker, the
# longest ones first (tests/conftest.py's LONG_MODULES; --no-loadscope-reorder: not xdist's order, by test count).
# FLAMBY_FLARE_TEST_WORKERS=0: one process.
exec python -m pytest -n "${FLAMBY_FLARE_TEST_WORKERS:-3}" --dist loadfile --no-loadscope-reorder "$@"
