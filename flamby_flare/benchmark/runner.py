"""``flamby-flare benchmark``: FLamby's protocol for one dataset over seeds (reference §3).

Per seed one shared initial model (``set_seed(seed); Baseline()``); the Pooled and one Local baseline
per center, trained centrally (not federated); then each strategy as a real NVFlare simulator run of
its job with the dataset's FLamby hyperparameters. Every model is evaluated on every center's local test
set and on the pooled test set. Cells run ``--jobs`` at a time and are appended to the store as they end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from flamby_flare.benchmark.central import POOLED, Diverged, evaluate_everywhere, initial_model, train_central
from flamby_flare.benchmark.store import ResultStore
from flamby_flare.datasets import get_dataset
from flamby_flare.download import locate_dataset
from flamby_flare.hyperparameters import NUM_UPDATES, STRATEGIES, flamby_hyperparameters
from flamby_flare.jobs import job_name, write_job
from flamby_flare.model_state import NumpyState
from flamby_flare.paths import resolve_data_root
from flamby_flare.errors import FlambyFlareError

METHOD_NAMES = {"fedavg": "FedAvg", "fedprox": "FedProx", "scaffold": "Scaffold", "cyclic": "Cyclic",
                "fedadam": "FedAdam", "fedyogi": "FedYogi", "fedadagrad": "FedAdagrad"}
SGD = "<class 'torch.optim.sgd.SGD'>"


@dataclass(frozen=True)
class Cell:
    dataset: str
    seed: int
    method: str  # FLamby's label: "Pooled Training", "Local 2", "FedAvg100", ...
    strategy: str | None = None  # None for the central baselines
    center: int = POOLED
    hyperparameters: dict = field(default_factory=dict, hash=False, compare=False)

    def key_row(self) -> dict:
        return {"Method": self.method, "seed": self.seed, **self.hyperparameters}


def plan_cells(dataset: str, seeds: list[int], strategies: list[str]) -> list[Cell]:
    module = get_dataset(dataset)
    central = {"learning_rate": module.LR, "optimizer_class": str(module.Optimizer)}
    cells = []
    for seed in seeds:
        cells.append(Cell(dataset, seed, "Pooled Training", hyperparameters=central))
        cells += [Cell(dataset, seed, f"Local {c}", center=c, hyperparameters=central) for c in range(module.NUM_CLIENTS)]
        for strategy in strategies:
            hp = {**flamby_hyperparameters(dataset, strategy), "optimizer_class": SGD, "num_updates": NUM_UPDATES,
                  "nrounds": module.get_nb_max_rounds(NUM_UPDATES)}
            if strategy in ("fedadam", "fedyogi", "fedadagrad"):
                hp.update(beta1=0.9, beta2=0.999)
            cells.append(Cell(dataset, seed, f"{METHOD_NAMES[strategy]}{NUM_UPDATES}", strategy, hyperparameters=hp))
    return cells


def _rows(cell: Cell, metrics: dict[str, float], seconds: float, diverged_at: int | None) -> list[dict]:
    return [
        {"Test": test, "Metric": value, **cell.key_row(), "wall_time_s": round(seconds, 3),
         "status": "diverged" if diverged_at is not None else "ok", "diverged_at": diverged_at if diverged_at is not None else ""}
        for test, value in metrics.items()
    ]


def run_central(cell: Cell, data_dir: Path) -> list[dict]:
    module = get_dataset(cell.dataset)
    start = time.monotonic()
    init = initial_model(module, cell.seed)
    try:
        params = train_central(module, data_dir, init, cell.seed, cell.center)
        metrics, diverged = evaluate_everywhere(module, data_dir, params), None
    except Diverged as exc:
        metrics = {t: float("nan") for t in evaluate_everywhere(module, data_dir, init)}
        diverged = exc.epoch
    return _rows(cell, metrics, time.monotonic() - start, diverged)


def run_federated(cell: Cell, data_root: Path, work: Path) -> list[dict]:
    """One strategy cell: the job (with the seed fixed) through ``nvflare simulator``, one process per site."""
    module = get_dataset(cell.dataset)
    name = f"{job_name(cell.dataset, cell.strategy)}_s{cell.seed}"
    job = write_job(cell.dataset, cell.strategy, work / "jobs" / name, seed=cell.seed)
    ws = work / "runs" / name
    ws.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    env = {**os.environ, "FLAMBY_FLARE_DATA": str(data_root), "OMP_NUM_THREADS": "1"}
    with open(f"{ws}.log", "w") as log:
        proc = subprocess.run(
            [str(Path(sys.executable).with_name("nvflare")), "simulator", str(job), "-w", str(ws), "-t", str(module.NUM_CLIENTS)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    summary_path = ws / "server" / "simulate_job" / "summary.json"
    if proc.returncode != 0 or not summary_path.is_file():
        raise FlambyFlareError(f"{cell.method} seed {cell.seed}: the simulator run failed (exit {proc.returncode}); log: {ws}.log")
    summary = json.loads(summary_path.read_text())
    metrics = {f"client_test_{i}": v for i, v in enumerate(summary["per_site"].values())}
    diverged = summary.get("diverged_at_round")
    if diverged is None:
        checkpoint = torch.load(ws / "server" / "simulate_job" / "FL_global_model.pt")
        params: NumpyState = {k: v.numpy() for k, v in checkpoint["model"].items()}
        metrics["Pooled Test"] = evaluate_everywhere(module, locate_dataset(module.SOURCE, data_root / cell.dataset), params)["Pooled Test"]
    else:
        metrics["Pooled Test"] = float("nan")
    return _rows(cell, metrics, time.monotonic() - start, diverged)


def _fmt_s(seconds: float) -> str:
    minutes, sec = divmod(int(seconds), 60)
    return f"{minutes}m{sec:02d}s"


def run_benchmark(
    dataset: str, seeds: list[int], strategies: list[str], out: Path, jobs: int = 1,
    data_root: str | None = None, log: Callable[[str], None] = print,
) -> Path:
    """Run every missing cell of the sweep; returns the results CSV."""
    module = get_dataset(dataset)
    root = resolve_data_root(data_root).resolve()
    data_dir = locate_dataset(module.SOURCE, root / dataset)
    for s in strategies:
        if s not in STRATEGIES:
            raise FlambyFlareError(f"unknown strategy {s!r}; strategies: {', '.join(STRATEGIES)}")
    work = Path(out) / dataset
    store = ResultStore(work / "results.csv", rows_per_cell=module.NUM_CLIENTS + 1)
    cells = plan_cells(dataset, seeds, strategies)
    todo = [c for c in cells if not store.is_done(c.key_row())]
    total, done = len(cells), len(cells) - len(todo)
    log(f"{module.SOURCE.title}: {total} cells ({done} already done), {jobs} at a time -> {store.path}")
    torch.set_num_threads(1)
    start = time.monotonic()
    failures = []

    def execute(cell: Cell) -> list[dict]:
        return run_central(cell, data_dir) if cell.strategy is None else run_federated(cell, root, work)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        pending = {}
        queue = list(todo)
        while queue or pending:
            while queue and len(pending) < max(1, jobs):
                cell = queue.pop(0)
                pending[pool.submit(execute, cell)] = cell
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                cell = pending.pop(future)
                try:
                    rows = future.result()
                except Exception as exc:  # one failed cell must not stop the sweep; it is retried on re-run
                    failures.append(f"{cell.method} seed {cell.seed}: {exc}")
                    log(f"  FAILED {failures[-1]}")
                    continue
                store.append(rows)
                done += 1
                local = [r["Metric"] for r in rows if r["Test"].startswith("client_test")]
                finished_here = done - (total - len(todo))
                elapsed = time.monotonic() - start
                eta = elapsed / finished_here * (total - done) if finished_here else 0.0
                status = f"diverged at {rows[0]['diverged_at']}" if rows[0]["status"] == "diverged" else f"{sum(local) / len(local):.4f}"
                running = ", ".join(f"{c.method} s{c.seed}" for c in pending.values()) or "-"
                log(f"[{done}/{total}] {cell.method} seed {cell.seed}: {status} ({rows[0]['wall_time_s']:.1f} s) | "
                    f"elapsed {_fmt_s(elapsed)}, ~{_fmt_s(eta)} left | running: {running}")
    if failures:
        raise FlambyFlareError(f"{len(failures)} cell(s) failed; re-run to retry them. First: {failures[0]}")
    log(f"done in {_fmt_s(time.monotonic() - start)}: {store.path}")
    return store.path
