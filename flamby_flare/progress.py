"""A progress display for long work: one refreshed line on a terminal, a line every 10 % in a log."""

from __future__ import annotations

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

