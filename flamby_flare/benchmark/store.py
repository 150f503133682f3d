"""A crash-safe, append-only results CSV: FLamby's layout plus wall time and divergence.

A cell (method, seed, hyperparameters) owns ``NUM_CLIENTS + 1`` rows (every local test set and the
pooled one), appended with one ``write`` and an fsync as soon as the cell ends. Opening the store
repairs what a kill may have left: a torn last line is cut, and a cell with a wrong number of rows is
dropped (it will run again), so a re-run completes the sweep with no duplicate or missing row.
"""

from __future__ import annotations

import csv
import io
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from flamby_flare.results import COMMUNICATION_COLUMNS, PERSONALIZATION_COLUMNS, PRIVACY_COLUMNS, RESULT_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

# A DP cell's settings (empty for the others), then what each site spent (``results.PRIVACY_COLUMNS``)
DP_SETTINGS = ("dp_target_epsilon", "dp_target_delta", "dp_max_grad_norm")
COLUMNS = (
    RESULT_COLUMNS
    + ("wall_time_s", "status", "diverged_at")
    + DP_SETTINGS
    + PRIVACY_COLUMNS
    + PERSONALIZATION_COLUMNS
    + COMMUNICATION_COLUMNS
)
KEY_COLUMNS = (
    "Method",
    "seed",
    "learning_rate",
    "server_learning_rate",
    "mu",
    "tau",
    "beta1",
    "beta2",
    "deterministic_cycle",
    "num_updates",
    "nrounds",
    "personalization",
) + DP_SETTINGS


def cell_key(row: dict) -> tuple:
    return tuple("" if row.get(c) is None else str(row.get(c)) for c in KEY_COLUMNS)


class ResultStore:
    def __init__(self, path: str | Path, rows_per_cell: int):
        self.path = Path(path)
        self.rows_per_cell = rows_per_cell
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._done = self._repair()

    def _repair(self) -> set[tuple]:
        if not self.path.is_file() or self.path.stat().st_size == 0:
            self.path.write_text(",".join(COLUMNS) + "\n")
            return set()
        text = self.path.read_text()
        outdated = text.split("\n", 1)[0] != ",".join(COLUMNS)  # written by an older version: rewrite
        if not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]  # a torn last line
        rows = list(csv.DictReader(io.StringIO(text)))
        counts: dict[tuple, int] = {}
        for row in rows:
            counts[cell_key(row)] = counts.get(cell_key(row), 0) + 1
        done = {k for k, n in counts.items() if n == self.rows_per_cell}
        kept = [r for r in rows if cell_key(r) in done]
        if outdated or len(kept) != len(rows) or not self.path.read_text().endswith("\n"):
            self._rewrite(kept)
        return done

    def _rewrite(self, rows: list[dict]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def is_done(self, key_row: dict) -> bool:
        return cell_key(key_row) in self._done

    def append(self, rows: list[dict]) -> None:
        """Append one cell's rows atomically (one write, then fsync)."""
        if len(rows) != self.rows_per_cell:
            raise ValueError(f"a cell has {self.rows_per_cell} rows, got {len(rows)}")
        buf = io.StringIO()
        csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore").writerows(rows)
        with self._lock:
            with open(self.path, "a", newline="") as f:
                f.write(buf.getvalue())
                f.flush()
                os.fsync(f.fileno())
            self._done.add(cell_key(rows[0]))

    def frame(self) -> "pd.DataFrame":
        import pandas as pd

        return pd.read_csv(self.path)
