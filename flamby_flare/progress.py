"""Long work: a progress display (one refreshed line on a terminal, a line every 10 % in a log) and a
process-parallel map that drives it."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable


class Progress:
    """``label: done/total`` on one refreshed line (a terminal), or a line every 10 % (a log)."""

    def __init__(self, label: str, total: int, log: Callable[[str], None] = print):
        self.label, self.total, self.log = label, total, log
        self.start = time.perf_counter()
        self._tty = log is print and sys.stdout.isatty()
        self._next = 0.1

    def __call__(self, done: int) -> None:
        elapsed = time.perf_counter() - self.start
        line = f"  {self.label}: {done}/{self.total} ({elapsed:.0f} s)"
        if self._tty:
            print("\r" + line, end="\n" if done == self.total else "", flush=True)
        elif done == self.total or done >= self._next * self.total:
            self.log(line)
            self._next = (int(done * 10 / self.total) + 1) / 10



def parallel_map(fn: Callable, tasks: list[tuple], progress: Progress, workers: int | None = None,
                 count: Callable[[object], int] = lambda result: 1) -> list:
    """``fn(*task)`` for every task over ``workers`` processes (default: all cores), the results in task order;
    ``progress`` advances by ``count(result)`` as each task finishes."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    results: list = [None] * len(tasks)
    done = 0
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        futures = {pool.submit(fn, *task): i for i, task in enumerate(tasks)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            done += count(results[futures[future]])
            progress(done)
    return results
