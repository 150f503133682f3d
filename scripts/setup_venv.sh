#!/usr/bin/env bash
# Create (or reuse) ./.venv and install flamby-flare with its images, mlflow, quantization, he and dev extras. Sourced by the other scripts.
# Re-installs only when pyproject.toml or constraints.txt changed since the last install.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.flamby_flare_installed"
WANT="$(cat "$REPO/pyproject.toml" "$REPO/constraints.txt" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "[setup] installing flamby-flare and its dependencies into $VENV (torch is large: first time takes minutes)"
  LOG="$VENV/install.log"
  if ! { "$VENV/bin/python" -m pip install --upgrade pip && "$VENV/bin/python" -m pip install -e "$REPO[images,mlflow,quantization,he,dev]" -c "$REPO/constraints.txt"; } > "$LOG" 2>&1; then
    echo "[setup] install failed; last lines of $LOG:" >&2
    tail -25 "$LOG" >&2
    exit 1
  fi
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
