"""What is left of a benchmark sweep, with central and federated cells modelled apart.

A central cell (pooled or local training) costs about what the central cells before it cost. A federated
cell's cost is its rounds: the sweep counts the rounds still to run, times the seconds a round has taken so
far, plus the start-up of each simulator job not yet started (the time to its first round). The two kinds
run side by side, so what is left is the longer of the two. Until a kind with work left has been timed its
share is unknown, and the estimate says so instead of guessing.
"""

from __future__ import annotations

import statistics


class SweepEstimate:
    """``central``: central cells to run; ``rounds``: the federated cells' rounds to run; ``jobs``: the
    simulator jobs to start; ``parallel``: cells of each kind run at a time."""

    def __init__(self, central: int, rounds: int, jobs: int, parallel: int):
        self.central_left, self.rounds_left, self.jobs_left = central, rounds, jobs
        self.parallel = max(1, parallel)
        self.central_s: list[float] = []
        self.round_s: list[float] = []
        self.startup_s: list[float] = []

    def central_done(self, seconds: float) -> None:
        self.central_left -= 1
        self.central_s.append(seconds)

    def job_started(self, seconds_to_first_round: float) -> None:
        self.jobs_left -= 1
        self.startup_s.append(seconds_to_first_round)

    def round_done(self, seconds: float | None) -> None:
        """A federated round ended (``seconds`` since the cell's previous round; None for a cell's first)."""
        self.rounds_left -= 1
        if seconds is not None:
            self.round_s.append(seconds)

    def cell_skipped(self, rounds: int) -> None:
        """A federated cell ended with ``rounds`` of its rounds not run (it diverged, or failed)."""
        self.rounds_left -= rounds

    def seconds_left(self) -> float | None:
        """The estimate; None while a kind with work left has not been timed."""
        central = federated = 0.0
        if self.central_left > 0:
            if not self.central_s:
                return None
            central = self.central_left * statistics.fmean(self.central_s)
        if self.rounds_left > 0:
            if not self.round_s:
                return None
            startup = statistics.median(self.startup_s) if self.startup_s else 0.0
            federated = self.rounds_left * statistics.median(self.round_s) + max(self.jobs_left, 0) * startup
        return max(central, federated) / self.parallel

    def describe(self) -> str:
        left = self.seconds_left()
        if left is None:
            missing = [
                what
                for what, untimed in (
                    ("a central cell", self.central_left > 0 and not self.central_s),
                    ("a federated round", self.rounds_left > 0 and not self.round_s),
                )
                if untimed
            ]
            return "time left: known after " + " and ".join(missing)
        minutes, seconds = divmod(int(left), 60)
        return f"~{minutes}m{seconds:02d}s left"
