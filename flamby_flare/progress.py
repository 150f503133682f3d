"""Long work: a progress display (tqdm's bar with rate and ETA on a terminal, a line every 10 % in a log)
and a process-parallel map that drives it."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable


def interactive(log: Callable[[str], None]) -> bool:
    """Whether progress can be drawn: messages go to the terminal (``print``) and stderr is one."""
    return log is print and sys.stderr.isatty()


class Progress:
    """``label: done/total`` of ``unit`` (``"B"``: bytes, shown in KiB/MiB/GiB). On a terminal, a tqdm bar
    with rate and ETA (``note`` adds a live detail; ``own_estimate``: the caller's estimate of the time left
    is in the note, tqdm's own, from the mean item, is not shown, and the caller writes its own log lines);
    in a log, a line every 10 % and at the end."""

    def __init__(
        self,
        label: str,
        total: int,
        log: Callable[[str], None] = print,
        unit: str = "item",
        initial: int = 0,
        own_estimate: bool = False,
    ):
        self.label, self.total, self.log, self.unit, self.own_estimate = label, total, log, unit, own_estimate
        self.start = time.perf_counter()
        self._next = 0.1
        self.bar = None
        if interactive(log):
            from tqdm import tqdm

            size = unit == "B"
            screen = shutil.get_terminal_size((100, 24))  # a terminal of unknown size (0 x 0): 100 x 24
            self.bar = tqdm(
                total=total,
                initial=initial,
                desc=f"  {label}",
                unit=unit,
                unit_scale=size,
                unit_divisor=1024 if size else 1000,
                file=sys.stderr,
                ncols=screen.columns,
                nrows=screen.lines,
                leave=True,
                bar_format=("{desc}: {percentage:3.0f}%|{bar:16}| {n_fmt}/{total_fmt} {unit}s [{elapsed}{postfix}]")
                if own_estimate
                else None,
            )

    def __call__(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            if done >= self.total:
                self.bar.close()
        elif self.own_estimate:
            return  # the caller writes its own lines (``write``)
        elif done >= self.total or done >= self._next * self.total:
            elapsed = time.perf_counter() - self.start
            amount = f"{done >> 20}/{self.total >> 20} MiB" if self.unit == "B" else f"{done}/{self.total}"
            self.log(f"  {self.label}: {amount} ({elapsed:.0f} s)")
            self._next = (int(done * 10 / max(self.total, 1)) + 1) / 10

    def note(self, text: str) -> None:
        """A live detail beside the bar (the running cell's round, an estimate); nothing in a log."""
        if self.bar is not None and not self.bar.disable:  # disabled: closed
            self.bar.set_postfix_str(text, refresh=True)

    def write(self, line: str) -> None:
        """A line of output that keeps the bar below it."""
        if self.bar is not None and not self.bar.disable:
            self.bar.write(line, file=sys.stdout)
        else:
            self.log(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def parallel_map(
    fn: Callable,
    tasks: list[tuple],
    progress: Progress,
    workers: int | None = None,
    count: Callable[[object], int] = lambda result: 1,
) -> list:
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
