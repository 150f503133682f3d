"""The wall time of a whole process, as the benchmarks that compare ours with FLamby measure it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def timed(
    cmd: list[str], env: dict, cwd: Path | None = None, stdin: str | None = None, timeout: float = 3600
) -> tuple[float, str]:
    """Run ``cmd`` to its end: (seconds, its stdout); a failed run stops the benchmark with its output's tail."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return seconds, proc.stdout
